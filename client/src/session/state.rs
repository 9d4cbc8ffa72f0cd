//! [`SessionState`]: the session's state as the application sees it.

use crate::error::Error;

/// The session's state as the application sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SessionState {
    /// Looking for a server (first connect, or after a disconnect).
    Connecting,
    /// Connected to a server that accepts writes.
    Connected,
    /// Connected to a read-only server: reads work, writes fail with `NotReadOnly`.
    ConnectedReadOnly,
    /// The connection was lost; the session may still be alive on the ensemble (a "suspended"
    /// state: a lock holder should assume it may have lost its lock until reconnected).
    Disconnected,
    /// The session expired: its ephemerals are gone and its watches are void.
    Expired,
    /// Authentication failed; the session is unusable.
    AuthFailed,
    /// The client was closed.
    Closed,
}

impl SessionState {
    /// Whether the session can never serve requests again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            SessionState::Expired | SessionState::AuthFailed | SessionState::Closed
        )
    }

    /// Whether a server connection is up.
    pub fn is_connected(self) -> bool {
        matches!(
            self,
            SessionState::Connected | SessionState::ConnectedReadOnly
        )
    }

    /// The error requests get in this terminal state.
    pub fn terminal_error(self) -> Option<Error> {
        match self {
            SessionState::Expired => Some(Error::SessionExpired),
            SessionState::AuthFailed => Some(Error::AuthFailed),
            SessionState::Closed => Some(Error::Closed),
            _ => None,
        }
    }
}
