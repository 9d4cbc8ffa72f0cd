//! The one error type of zkit: a variant per ZooKeeper error code plus client-side failures.

use zkit_proto::codec::DecodeError;
use zkit_proto::ErrorCode;

/// Everything a zkit operation can fail with.
///
/// `Error` is `Clone + Send + Sync`, so one failure (a lost connection, an expired session) can be
/// handed to every request in flight. [`Error::code`] gives ZooKeeper's [`ErrorCode`] where one
/// exists (and `Error::from(code)` goes the other way); [`Error::is_retryable`] and [`Error::is_session_gone`] classify it.
///
/// ```
/// use zkit::{Error, ErrorCode};
/// let e = Error::from(ErrorCode::NoNode);
/// assert_eq!(e, Error::NoNode);
/// assert_eq!(e.code(), Some(ErrorCode::NoNode));
/// assert_eq!(e.code().map(ErrorCode::code), Some(-101));
/// assert!(!e.is_retryable());
/// assert!(Error::ConnectionLoss.is_retryable());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// -1: a system error.
    #[error("system error")]
    SystemError,
    /// -2: a multi op after the failing one (never the first error of a multi).
    #[error("runtime inconsistency")]
    RuntimeInconsistency,
    /// -3: data inconsistency.
    #[error("data inconsistency")]
    DataInconsistency,
    /// -4: the connection to the server was lost before a reply arrived; the request may or may
    /// not have been applied.
    #[error("connection lost")]
    ConnectionLoss,
    /// -5: the server could not decode the request.
    #[error("marshalling error")]
    MarshallingError,
    /// -6: the server does not implement the operation (e.g. TTL nodes disabled).
    #[error("operation not implemented by the server")]
    Unimplemented,
    /// -7: the operation timed out.
    #[error("operation timeout")]
    OperationTimeout,
    /// -8: invalid arguments (path, flags, TTL...), detected by the client or the server.
    #[error("bad arguments: {0}")]
    BadArguments(String),
    /// -12: unknown session.
    #[error("unknown session")]
    UnknownSession,
    /// -13: reconfig: no quorum in the new config.
    #[error("new config has no quorum")]
    NewConfigNoQuorum,
    /// -14: reconfig in progress.
    #[error("reconfig in progress")]
    ReconfigInProgress,
    /// -101: the node does not exist.
    #[error("node does not exist")]
    NoNode,
    /// -102: the ACL denies the operation.
    #[error("not authorized")]
    NoAuth,
    /// -103: the expected version did not match.
    #[error("version mismatch")]
    BadVersion,
    /// -108: ephemeral nodes may not have children.
    #[error("ephemeral nodes may not have children")]
    NoChildrenForEphemerals,
    /// -110: the node already exists.
    #[error("node already exists")]
    NodeExists,
    /// -111: the node has children.
    #[error("node has children")]
    NotEmpty,
    /// -112: the session expired; create a new client (or enable re-creation).
    #[error("session expired")]
    SessionExpired,
    /// -113: invalid callback.
    #[error("invalid callback")]
    InvalidCallback,
    /// -114: invalid ACL.
    #[error("invalid ACL")]
    InvalidAcl,
    /// -115: authentication failed (fatal to the session).
    #[error("authentication failed")]
    AuthFailed,
    /// -118: the session moved to another server.
    #[error("session moved")]
    SessionMoved,
    /// -119: a write was sent to a read-only server.
    #[error("server is read-only")]
    NotReadOnly,
    /// -120: ephemeral on a local session.
    #[error("ephemeral on local session")]
    EphemeralOnLocalSession,
    /// -121: no watcher to remove or check.
    #[error("no such watcher")]
    NoWatcher,
    /// -122: the request was not answered within its timeout.
    #[error("request timed out")]
    RequestTimeout,
    /// -123: reconfig is disabled on the server.
    #[error("reconfig disabled")]
    ReconfigDisabled,
    /// -124: session closed, SASL auth required.
    #[error("session closed: SASL authentication required")]
    SessionClosedRequireSaslAuth,
    /// -125: quota exceeded.
    #[error("quota exceeded")]
    QuotaExceeded,
    /// -127: the server throttled the request; safe to retry.
    #[error("throttled by the server")]
    Throttled,
    /// A code this version does not know.
    #[error("unknown ZooKeeper error code {0}")]
    Unknown(i32),
    /// A multi was aborted: `index` is the failing op, `error` its error, `codes` every op's code
    /// (0 = rolled back, -2 = not run).
    #[error("multi aborted at op {index}: {error}")]
    MultiAborted {
        /// Index of the failing op.
        index: usize,
        /// The failing op's error.
        error: Box<Error>,
        /// Per-op error codes as the server reported them.
        codes: Vec<i32>,
    },
    /// The client was closed.
    #[error("client closed")]
    Closed,
    /// The connect string could not be parsed.
    #[error("invalid connect string: {0}")]
    InvalidConnectString(String),
    /// No server could be reached (e.g. `connect` gave up).
    #[error("could not connect: {0}")]
    ConnectFailed(String),
    /// The peer sent bytes that do not decode.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// TLS could not be set up: unreadable certificates or keys, or no server passed the
    /// TLS handshake (unknown CA, a certificate that does not name the host, a client
    /// certificate refused). The message says which.
    #[error("TLS: {0}")]
    Tls(String),
}

/// The one table between ZooKeeper's codes and [`Error`]'s variants: each listed variant carries
/// the [`ErrorCode`] of the same name. `BadArguments` (it carries a message) and the codes that
/// are not errors (`Ok`, `ApiError`) are handled beside it.
macro_rules! code_table {
    ($($v:ident),* $(,)?) => {
        impl From<ErrorCode> for Error {
            /// The error for a ZooKeeper code. The codes that are not failures (`Ok`, `ApiError`)
            /// become [`Error::Unknown`].
            fn from(code: ErrorCode) -> Error {
                match code {
                    $(ErrorCode::$v => Error::$v,)*
                    ErrorCode::BadArguments => Error::BadArguments("rejected by the server".into()),
                    other => Error::Unknown(other.code()),
                }
            }
        }

        impl Error {
            /// ZooKeeper's code for this error, where it has one (for a multi, the failing op's).
            pub fn code(&self) -> Option<ErrorCode> {
                match self {
                    $(Error::$v => Some(ErrorCode::$v),)*
                    Error::BadArguments(_) => Some(ErrorCode::BadArguments),
                    Error::MultiAborted { error, .. } => error.code(),
                    Error::Closed
                    | Error::InvalidConnectString(_)
                    | Error::ConnectFailed(_)
                    | Error::Protocol(_)
                    | Error::Tls(_)
                    | Error::Unknown(_) => None,
                }
            }
        }
    };
}

code_table!(
    SystemError,
    RuntimeInconsistency,
    DataInconsistency,
    ConnectionLoss,
    MarshallingError,
    Unimplemented,
    OperationTimeout,
    UnknownSession,
    NewConfigNoQuorum,
    ReconfigInProgress,
    NoNode,
    NoAuth,
    BadVersion,
    NoChildrenForEphemerals,
    NodeExists,
    NotEmpty,
    SessionExpired,
    InvalidCallback,
    InvalidAcl,
    AuthFailed,
    SessionMoved,
    NotReadOnly,
    EphemeralOnLocalSession,
    NoWatcher,
    RequestTimeout,
    ReconfigDisabled,
    SessionClosedRequireSaslAuth,
    QuotaExceeded,
    Throttled,
);

impl Error {
    /// The error for a code read off the wire: a code this version does not know becomes
    /// [`Error::Unknown`].
    pub(crate) fn from_wire(code: i32) -> Error {
        ErrorCode::from_code(code).map_or(Error::Unknown(code), Error::from)
    }

    /// Whether retrying the same request may succeed: connection loss, operation timeout,
    /// request timeout, throttling. (Whether a retry is *safe* depends on the operation.)
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::ConnectionLoss
                | Error::OperationTimeout
                | Error::RequestTimeout
                | Error::Throttled
                | Error::SessionMoved
        )
    }

    /// Whether the session is gone for good (expired, auth failed or closed): nothing sent on this
    /// client will succeed again.
    pub fn is_session_gone(&self) -> bool {
        matches!(
            self,
            Error::SessionExpired | Error::AuthFailed | Error::Closed
        )
    }
}

impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Self {
        Error::Protocol(e.to_string())
    }
}

impl From<zkit_proto::path::PathError> for Error {
    fn from(e: zkit_proto::path::PathError) -> Self {
        Error::BadArguments(e.to_string())
    }
}

/// Short for `Result<T, zkit::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips() {
        for c in [
            -1, -2, -3, -4, -5, -6, -7, -8, -12, -13, -14, -101, -102, -103, -108, -110, -111,
            -112, -113, -114, -115, -118, -119, -120, -121, -122, -123, -124, -125, -127,
        ] {
            let code = ErrorCode::from_code(c).unwrap();
            assert_eq!(Error::from(code).code(), Some(code), "{c}");
            assert_eq!(Error::from_wire(c).code(), Some(code), "{c}");
            assert!(!matches!(Error::from(code), Error::Unknown(_)), "{c}");
        }
        // A code this version does not know keeps its number.
        assert_eq!(Error::from_wire(-999), Error::Unknown(-999));
        assert_eq!(Error::from_wire(-999).code(), None);
        // Codes that are not failures never pass for one.
        assert_eq!(Error::from(ErrorCode::Ok), Error::Unknown(0));
        assert_eq!(Error::from(ErrorCode::Ok).code(), None);
        assert_eq!(Error::from(ErrorCode::ApiError), Error::Unknown(-100));
    }

    #[test]
    fn error_is_clone_send_sync() {
        fn check<T: Clone + Send + Sync + 'static>() {}
        check::<Error>();
    }
}
