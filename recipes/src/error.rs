//! The recipes' error type.

/// Everything a recipe operation can fail with.
///
/// ZooKeeper failures are passed through as [`Error::Zk`]; the other variants are the recipes' own
/// outcomes (a timeout that left nothing behind, a lock that was lost while held, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A ZooKeeper operation failed.
    #[error(transparent)]
    Zk(#[from] zkit::Error),
    /// The operation did not complete in time; whatever it had created was removed.
    #[error("timed out")]
    Timeout,
    /// The session that held the lock, lease or leadership was suspended or lost.
    #[error("lost: {0:?}")]
    Lost(crate::state::LossReason),
    /// A recipe's node does not hold what the recipe expects (e.g. a counter that is not a number).
    #[error("bad data at {path}: {reason}")]
    BadData {
        /// The node.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The recipe was closed.
    #[error("recipe closed")]
    Closed,
    /// A write was cut off by a connection loss and its outcome cannot be known (e.g. a counter
    /// update: another writer may have produced the very same value and version). The caller
    /// decides whether to read and retry.
    #[error("outcome unknown: {0}")]
    Indeterminate(String),
    /// Invalid arguments to a recipe.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// Whether the underlying session is gone for good (expired, closed).
    pub fn is_session_gone(&self) -> bool {
        match self {
            Error::Zk(e) => e.is_session_gone(),
            Error::Lost(r) => r.is_session_gone(),
            Error::Closed => true,
            _ => false,
        }
    }
}

/// Short for `Result<T, zkit_recipes::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
