//! Numeric constants of the protocol: opcodes, special xids, event types, states, create modes,
//! permission bits and watcher types (`docs/protocol.md` §3–§9).

use super::codec::DecodeError;

macro_rules! int_enum {
    ($(#[$m:meta])* $name:ident : $field:literal { $($(#[$vm:meta])* $v:ident = $n:expr,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name { $($(#[$vm])* $v,)* }
        impl $name {
            /// The value on the wire.
            pub const fn code(self) -> i32 { match self { $($name::$v => $n,)* } }
            /// Parses a wire value.
            pub fn from_code(code: i32) -> Result<Self, DecodeError> {
                match code { $($n => Ok($name::$v),)* _ => Err(DecodeError::InvalidValue { field: $field, value: code as i64 }) }
            }
        }
    };
}

int_enum! {
    /// Request types (`ZooDefs.OpCode`).
    OpCode: "opcode" {
        /// Watch notification (never a request).
        Notification = 0,
        /// create (reply: path).
        Create = 1,
        /// delete.
        Delete = 2,
        /// exists.
        Exists = 3,
        /// getData.
        GetData = 4,
        /// setData.
        SetData = 5,
        /// getACL.
        GetAcl = 6,
        /// setACL.
        SetAcl = 7,
        /// getChildren.
        GetChildren = 8,
        /// sync.
        Sync = 9,
        /// ping (xid -2).
        Ping = 11,
        /// getChildren2 (children and Stat).
        GetChildren2 = 12,
        /// check version (multi only in practice).
        Check = 13,
        /// multi (transaction).
        Multi = 14,
        /// create2 (reply: path and Stat).
        Create2 = 15,
        /// reconfig.
        Reconfig = 16,
        /// checkWatches.
        CheckWatches = 17,
        /// removeWatches.
        RemoveWatches = 18,
        /// createContainer.
        CreateContainer = 19,
        /// deleteContainer (server internal).
        DeleteContainer = 20,
        /// createTTL.
        CreateTtl = 21,
        /// multiRead.
        MultiRead = 22,
        /// auth (xid -4).
        Auth = 100,
        /// setWatches (xid -8).
        SetWatches = 101,
        /// sasl.
        Sasl = 102,
        /// getEphemerals.
        GetEphemerals = 103,
        /// getAllChildrenNumber.
        GetAllChildrenNumber = 104,
        /// setWatches2 (xid -8).
        SetWatches2 = 105,
        /// addWatch.
        AddWatch = 106,
        /// whoAmI.
        WhoAmI = 107,
        /// createSession (server internal name of the handshake).
        CreateSession = -10,
        /// closeSession.
        CloseSession = -11,
        /// error (type of a failed op in a multi, or an error txn).
        Error = -1,
    }
}

int_enum! {
    /// Error codes of replies and txns (`KeeperException.Code`): the `err` field of a reply header,
    /// of an `ErrorTxn` and of a multi's error result.
    ErrorCode: "error code" {
        /// Success (the `err` of a successful reply).
        Ok = 0,
        /// A server-side failure with no better code.
        SystemError = -1,
        /// A runtime inconsistency was found.
        RuntimeInconsistency = -2,
        /// A data inconsistency was found.
        DataInconsistency = -3,
        /// The connection to the server was lost (client side).
        ConnectionLoss = -4,
        /// A record could not be encoded or decoded.
        MarshallingError = -5,
        /// The operation is not implemented (or not enabled).
        Unimplemented = -6,
        /// The operation timed out.
        OperationTimeout = -7,
        /// Invalid arguments.
        BadArguments = -8,
        /// The session is not known to the server.
        UnknownSession = -12,
        /// A reconfig's new configuration has no quorum.
        NewConfigNoQuorum = -13,
        /// Another reconfig is in progress.
        ReconfigInProgress = -14,
        /// Base of the API errors (never sent alone).
        ApiError = -100,
        /// The node does not exist.
        NoNode = -101,
        /// Not authorised by the node's ACL.
        NoAuth = -102,
        /// The expected version does not match.
        BadVersion = -103,
        /// Ephemeral nodes cannot have children.
        NoChildrenForEphemerals = -108,
        /// The node already exists.
        NodeExists = -110,
        /// The node has children.
        NotEmpty = -111,
        /// The session has expired.
        SessionExpired = -112,
        /// Invalid callback.
        InvalidCallback = -113,
        /// The ACL is invalid.
        InvalidAcl = -114,
        /// Authentication failed.
        AuthFailed = -115,
        /// The session moved to another server.
        SessionMoved = -118,
        /// A write was sent to a read-only server.
        NotReadOnly = -119,
        /// Ephemerals cannot be created by a local session.
        EphemeralOnLocalSession = -120,
        /// No such watcher (removeWatches/checkWatches).
        NoWatcher = -121,
        /// The request timed out (client side).
        RequestTimeout = -122,
        /// Dynamic reconfiguration is disabled.
        ReconfigDisabled = -123,
        /// The session was closed: SASL authentication is required.
        SessionClosedRequireSaslAuth = -124,
        /// A hard quota was exceeded.
        QuotaExceeded = -125,
        /// The request was throttled by the server.
        Throttled = -127,
    }
}

impl ErrorCode {
    /// Whether this is the success code.
    pub const fn is_ok(self) -> bool {
        matches!(self, ErrorCode::Ok)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?} ({})", self.code())
    }
}

/// Special xids (`docs/protocol.md` §3).
pub mod xid {
    /// Watch notification.
    pub const NOTIFICATION: i32 = -1;
    /// Ping.
    pub const PING: i32 = -2;
    /// Auth packet.
    pub const AUTH: i32 = -4;
    /// SetWatches / SetWatches2.
    pub const SET_WATCHES: i32 = -8;
}

int_enum! {
    /// What happened to a watched node (`Watcher.Event.EventType`).
    EventType: "event type" {
        /// A session state change, not a node event.
        None = -1,
        /// The node was created.
        NodeCreated = 1,
        /// The node was deleted.
        NodeDeleted = 2,
        /// The node's data changed.
        NodeDataChanged = 3,
        /// The node's children changed.
        NodeChildrenChanged = 4,
        /// A data watch was removed.
        DataWatchRemoved = 5,
        /// A child watch was removed.
        ChildWatchRemoved = 6,
        /// A persistent watch was removed.
        PersistentWatchRemoved = 7,
    }
}

int_enum! {
    /// Session state carried in a `WatcherEvent` (`Watcher.Event.KeeperState`).
    KeeperState: "keeper state" {
        /// Unknown (deprecated).
        Unknown = -1,
        /// Disconnected.
        Disconnected = 0,
        /// NoSyncConnected (deprecated).
        NoSyncConnected = 1,
        /// Connected: the state of every server-sent notification.
        SyncConnected = 3,
        /// Authentication failed.
        AuthFailed = 4,
        /// Connected to a read-only server.
        ConnectedReadOnly = 5,
        /// SASL authenticated.
        SaslAuthenticated = 6,
        /// The session expired.
        Expired = -112,
        /// The client was closed.
        Closed = 7,
    }
}

int_enum! {
    /// Which watches checkWatches/removeWatches address (`Watcher.WatcherType`).
    WatcherType: "watcher type" {
        /// Child watches.
        Children = 1,
        /// Data and exists watches.
        Data = 2,
        /// Any watch.
        Any = 3,
        /// Persistent watches.
        Persistent = 4,
        /// Persistent recursive watches.
        PersistentRecursive = 5,
    }
}

int_enum! {
    /// addWatch modes.
    AddWatchMode: "add watch mode" {
        /// Data and child events of one node, not removed when fired.
        Persistent = 0,
        /// Data events of a node and all its descendants.
        PersistentRecursive = 1,
    }
}

int_enum! {
    /// How a znode is created (`CreateMode`); the value is `CreateRequest.flags`.
    CreateMode: "create mode" {
        /// Persistent.
        Persistent = 0,
        /// Deleted when the creating session ends.
        Ephemeral = 1,
        /// Persistent, with a sequence suffix.
        PersistentSequential = 2,
        /// Ephemeral, with a sequence suffix.
        EphemeralSequential = 3,
        /// Deleted by the server once it had children and became empty.
        Container = 4,
        /// Deleted after its TTL without modification once childless.
        PersistentWithTtl = 5,
        /// Sequential, with a TTL.
        PersistentSequentialWithTtl = 6,
    }
}

impl CreateMode {
    /// Whether the node is ephemeral.
    pub fn is_ephemeral(self) -> bool {
        matches!(
            self,
            CreateMode::Ephemeral | CreateMode::EphemeralSequential
        )
    }
    /// Whether the name gets a sequence suffix.
    pub fn is_sequential(self) -> bool {
        matches!(
            self,
            CreateMode::PersistentSequential
                | CreateMode::EphemeralSequential
                | CreateMode::PersistentSequentialWithTtl
        )
    }
    /// Whether the node is a container.
    pub fn is_container(self) -> bool {
        self == CreateMode::Container
    }
    /// Whether the node has a TTL.
    pub fn is_ttl(self) -> bool {
        matches!(
            self,
            CreateMode::PersistentWithTtl | CreateMode::PersistentSequentialWithTtl
        )
    }
}

/// ACL permission bits (`ZooDefs.Perms`).
pub mod perms {
    /// Read data and list children.
    pub const READ: i32 = 1;
    /// Set data.
    pub const WRITE: i32 = 2;
    /// Create children.
    pub const CREATE: i32 = 4;
    /// Delete children.
    pub const DELETE: i32 = 8;
    /// Set ACLs.
    pub const ADMIN: i32 = 16;
    /// Everything.
    pub const ALL: i32 = 31;
}

/// `Stat.ephemeralOwner` of a container node.
pub const CONTAINER_EPHEMERAL_OWNER: i64 = i64::MIN;
/// Maximum TTL in milliseconds (40 bits, `EphemeralType.TTL`).
pub const MAX_TTL: i64 = (1 << 40) - 1;

/// `Stat.ephemeralOwner` of a TTL node with the given TTL.
pub const fn ttl_ephemeral_owner(ttl: i64) -> i64 {
    (0xFFu64 << 56) as i64 | ttl
}

/// The TTL encoded in an ephemeralOwner, if it is a TTL node.
pub const fn ttl_of_ephemeral_owner(owner: i64) -> Option<i64> {
    if (owner as u64) >> 56 == 0xFF {
        Some(owner & MAX_TTL)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_round_trip() {
        for c in [0, -1, -8, -101, -110, -112, -115, -118, -127] {
            assert_eq!(ErrorCode::from_code(c).unwrap().code(), c);
        }
        assert!(ErrorCode::from_code(-9999).is_err());
    }

    #[test]
    fn codes_round_trip() {
        for c in [-11, -10, -1, 0, 1, 2, 14, 22, 100, 105, 106, 107] {
            assert_eq!(OpCode::from_code(c).unwrap().code(), c);
        }
        assert!(OpCode::from_code(10).is_err());
        assert_eq!(KeeperState::from_code(-112).unwrap(), KeeperState::Expired);
        assert!(CreateMode::from_code(7).is_err());
    }

    #[test]
    fn ttl_owner_encoding() {
        let o = ttl_ephemeral_owner(1000);
        assert_eq!(o as u64, 0xFF00_0000_0000_03E8);
        assert_eq!(ttl_of_ephemeral_owner(o), Some(1000));
        assert_eq!(ttl_of_ephemeral_owner(0x1234), None);
        assert_eq!(ttl_of_ephemeral_owner(CONTAINER_EPHEMERAL_OWNER), None);
    }
}
