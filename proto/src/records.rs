//! The jute records of the client protocol (`zookeeper.jute`, `docs/protocol.md` §2–§8), shared
//! by the client and the testkit server. Each record encodes and decodes; field order is wire
//! order.

use bytes::{BufMut, Bytes, BytesMut};

use super::codec::{DecodeError, JuteWrite, Reader, Record};

impl Record for i32 {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_i32(*self)
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        r.read_i32()
    }
}

impl Record for i64 {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_i64(*self)
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        r.read_i64()
    }
}

impl Record for bool {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_bool(*self)
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        r.read_bool()
    }
}

/// A non-null `ustring`.
impl Record for String {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_string(self)
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        r.read_string("ustring")
    }
}

/// A nullable `ustring`.
impl Record for Option<String> {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_opt_buffer(self.as_deref().map(str::as_bytes))
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        r.read_opt_string()
    }
}

/// A `buffer` where null and empty are the same (always written non-null).
impl Record for Bytes {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_buffer(self)
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        r.read_buffer()
    }
}

/// A nullable `buffer` (znode data keeps the distinction on disk).
impl Record for Option<Bytes> {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_opt_buffer(self.as_deref())
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        r.read_opt_buffer()
    }
}

/// A `vector<T>` (null decodes as empty).
impl<T: Record> Record for Vec<T> {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_i32(self.len() as i32);
        for x in self {
            x.encode(buf);
        }
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        r.read_vec(T::decode)
    }
}

/// Declares a record struct whose fields are encoded in declaration order.
macro_rules! record {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $f:ident : $t:ty,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name { $($(#[$fm])* pub $f: $t,)* }
        impl Record for $name {
            fn encode(&self, _buf: &mut BytesMut) { $(self.$f.encode(_buf);)* }
            fn decode(_r: &mut Reader) -> Result<Self, DecodeError> {
                Ok($name { $($f: Record::decode(_r)?,)* })
            }
        }
    };
}
pub(crate) use record;

/// Metadata of a znode (68 bytes on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stat {
    /// Zxid of the create.
    pub czxid: i64,
    /// Zxid of the last data change.
    pub mzxid: i64,
    /// Creation time, ms since the epoch.
    pub ctime: i64,
    /// Last modification time, ms since the epoch.
    pub mtime: i64,
    /// Number of data changes.
    pub version: i32,
    /// Number of child changes.
    pub cversion: i32,
    /// Number of ACL changes.
    pub aversion: i32,
    /// Owning session of an ephemeral (or the container/TTL marker), else 0.
    pub ephemeral_owner: i64,
    /// Length of the data.
    pub data_length: i32,
    /// Number of children.
    pub num_children: i32,
    /// Zxid of the last child change.
    pub pzxid: i64,
}

/// Decoded with one bounds check for all 68 bytes (every reply of a read carries a Stat).
impl Record for Stat {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_i64(self.czxid);
        buf.put_i64(self.mzxid);
        buf.put_i64(self.ctime);
        buf.put_i64(self.mtime);
        buf.put_i32(self.version);
        buf.put_i32(self.cversion);
        buf.put_i32(self.aversion);
        buf.put_i64(self.ephemeral_owner);
        buf.put_i32(self.data_length);
        buf.put_i32(self.num_children);
        buf.put_i64(self.pzxid);
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let a: [u8; 68] = r.read_array()?;
        let l = |at: usize| i64::from_be_bytes(a[at..at + 8].try_into().unwrap_or_default());
        let i = |at: usize| i32::from_be_bytes(a[at..at + 4].try_into().unwrap_or_default());
        Ok(Stat {
            czxid: l(0),
            mzxid: l(8),
            ctime: l(16),
            mtime: l(24),
            version: i(32),
            cversion: i(36),
            aversion: i(40),
            ephemeral_owner: l(44),
            data_length: i(52),
            num_children: i(56),
            pzxid: l(60),
        })
    }
}

/// An identity: scheme and id (`world:anyone`, `digest:user:hash`, `ip:10.0.0.0/8`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Id {
    /// The scheme.
    pub scheme: String,
    /// The id within the scheme.
    pub id: String,
}

/// Clients write an empty string as null (kazoo's `Id("auth", "")` in `CREATOR_ALL_ACL` goes out
/// with length -1), and Java's reader accepts a null for either field: both decode as empty.
impl Record for Id {
    fn encode(&self, buf: &mut BytesMut) {
        self.scheme.encode(buf);
        self.id.encode(buf);
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Id {
            scheme: r.read_opt_string()?.unwrap_or_default(),
            id: r.read_opt_string()?.unwrap_or_default(),
        })
    }
}

record! {
    /// An access control entry: permission bits for an identity.
    Acl {
        /// Permission bits (see [`perms`](super::consts::perms)).
        perms: i32,
        /// Who gets them.
        id: Id,
    }
}

record! {
    /// First frame of every request.
    RequestHeader {
        /// Request id (or a special xid).
        xid: i32,
        /// Opcode.
        op: i32,
    }
}

record! {
    /// First frame of every reply.
    ReplyHeader {
        /// The request's xid (or a special xid).
        xid: i32,
        /// The server's last processed zxid.
        zxid: i64,
        /// Error code; 0 is OK.
        err: i32,
    }
}

/// The handshake request (no header).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectRequest {
    /// Always 0.
    pub protocol_version: i32,
    /// Highest zxid the client has seen.
    pub last_zxid_seen: i64,
    /// Requested session timeout, ms.
    pub timeout: i32,
    /// 0 for a new session, else the session to resume.
    pub session_id: i64,
    /// Session password (16 zero bytes for a new session).
    pub passwd: Bytes,
    /// Whether a read-only server is acceptable; `None` when the peer omitted the byte.
    pub read_only: Option<bool>,
}

impl Record for ConnectRequest {
    fn encode(&self, buf: &mut BytesMut) {
        self.protocol_version.encode(buf);
        self.last_zxid_seen.encode(buf);
        self.timeout.encode(buf);
        self.session_id.encode(buf);
        self.passwd.encode(buf);
        if let Some(ro) = self.read_only {
            ro.encode(buf);
        }
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(ConnectRequest {
            protocol_version: r.read_i32()?,
            last_zxid_seen: r.read_i64()?,
            timeout: r.read_i32()?,
            session_id: r.read_i64()?,
            passwd: r.read_buffer()?,
            read_only: if r.is_empty() {
                None
            } else {
                Some(r.read_bool()?)
            },
        })
    }
}

/// The handshake reply (no header).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectResponse {
    /// Always 0.
    pub protocol_version: i32,
    /// Negotiated timeout, ms; 0 means the session is invalid (expired).
    pub timeout: i32,
    /// The session id.
    pub session_id: i64,
    /// The session password.
    pub passwd: Bytes,
    /// Whether the server is read-only; `None` when the byte is absent.
    pub read_only: Option<bool>,
}

impl Record for ConnectResponse {
    fn encode(&self, buf: &mut BytesMut) {
        self.protocol_version.encode(buf);
        self.timeout.encode(buf);
        self.session_id.encode(buf);
        self.passwd.encode(buf);
        if let Some(ro) = self.read_only {
            ro.encode(buf);
        }
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(ConnectResponse {
            protocol_version: r.read_i32()?,
            timeout: r.read_i32()?,
            session_id: r.read_i64()?,
            passwd: r.read_buffer()?,
            read_only: if r.is_empty() {
                None
            } else {
                Some(r.read_bool()?)
            },
        })
    }
}

record! {
    /// create / create2 / createContainer.
    CreateRequest {
        /// Path (a sequential node gets a suffix).
        path: String,
        /// Data (null when the client sent none).
        data: Option<Bytes>,
        /// ACL of the new node.
        acl: Vec<Acl>,
        /// [`CreateMode`](super::consts::CreateMode) value.
        flags: i32,
    }
}

record! {
    /// createTTL.
    CreateTtlRequest {
        /// Path.
        path: String,
        /// Data.
        data: Option<Bytes>,
        /// ACL.
        acl: Vec<Acl>,
        /// Create mode value.
        flags: i32,
        /// TTL in ms.
        ttl: i64,
    }
}

record! {
    /// delete / deleteContainer.
    DeleteRequest {
        /// Path.
        path: String,
        /// Expected version, -1 for any.
        version: i32,
    }
}

record! {
    /// exists / getData / getChildren / getChildren2: a path and a watch flag.
    PathWatchRequest {
        /// Path.
        path: String,
        /// Whether to leave a watch.
        watch: bool,
    }
}

record! {
    /// getACL / sync / getEphemerals / getAllChildrenNumber: a path alone.
    PathRequest {
        /// Path (a prefix for getEphemerals).
        path: String,
    }
}

record! {
    /// setData.
    SetDataRequest {
        /// Path.
        path: String,
        /// New data.
        data: Option<Bytes>,
        /// Expected version, -1 for any.
        version: i32,
    }
}

record! {
    /// setACL.
    SetAclRequest {
        /// Path.
        path: String,
        /// New ACL.
        acl: Vec<Acl>,
        /// Expected aversion, -1 for any.
        version: i32,
    }
}

record! {
    /// check (in a multi).
    CheckVersionRequest {
        /// Path.
        path: String,
        /// Expected version.
        version: i32,
    }
}

record! {
    /// reconfig.
    ReconfigRequest {
        /// Servers to add (incremental).
        joining_servers: Option<String>,
        /// Server ids to remove (incremental).
        leaving_servers: Option<String>,
        /// The whole new membership (non-incremental).
        new_members: Option<String>,
        /// Expected current config version, -1 for any.
        cur_config_id: i64,
    }
}

record! {
    /// checkWatches / removeWatches.
    WatchesRequest {
        /// Path.
        path: String,
        /// [`WatcherType`](super::consts::WatcherType) value.
        watcher_type: i32,
    }
}

record! {
    /// addWatch.
    AddWatchRequest {
        /// Path.
        path: String,
        /// [`AddWatchMode`](super::consts::AddWatchMode) value.
        mode: i32,
    }
}

record! {
    /// setWatches (re-registration after reconnect).
    SetWatches {
        /// Client's last seen zxid; changes after it fire at once.
        relative_zxid: i64,
        /// Data watches.
        data_watches: Vec<String>,
        /// Exists watches.
        exist_watches: Vec<String>,
        /// Child watches.
        child_watches: Vec<String>,
    }
}

record! {
    /// setWatches2: setWatches plus persistent watches (3.6+).
    SetWatches2 {
        /// Client's last seen zxid.
        relative_zxid: i64,
        /// Data watches.
        data_watches: Vec<String>,
        /// Exists watches.
        exist_watches: Vec<String>,
        /// Child watches.
        child_watches: Vec<String>,
        /// Persistent watches.
        persistent_watches: Vec<String>,
        /// Persistent recursive watches.
        persistent_recursive_watches: Vec<String>,
    }
}

record! {
    /// auth (xid -4).
    AuthPacket {
        /// Always 0.
        auth_type: i32,
        /// Scheme, e.g. `digest`.
        scheme: String,
        /// Credential bytes, e.g. `user:password`.
        auth: Bytes,
    }
}

record! {
    /// A notification (xid -1).
    WatcherEvent {
        /// [`EventType`](super::consts::EventType) value.
        event_type: i32,
        /// [`KeeperState`](super::consts::KeeperState) value.
        state: i32,
        /// Path of the node (server path, chroot included).
        path: String,
    }
}

record! {
    /// Reply of create / sync: a path.
    PathResponse {
        /// The path.
        path: String,
    }
}

record! {
    /// Reply of create2 / createContainer / createTTL.
    Create2Response {
        /// Created path.
        path: String,
        /// Stat of the new node.
        stat: Stat,
    }
}

record! {
    /// Reply of exists / setData / setACL / check: a Stat.
    StatResponse {
        /// The node's Stat.
        stat: Stat,
    }
}

record! {
    /// Reply of getData (also reconfig).
    GetDataResponse {
        /// Data (null when the node was created without data).
        data: Option<Bytes>,
        /// Stat.
        stat: Stat,
    }
}

record! {
    /// Reply of getACL.
    GetAclResponse {
        /// The ACL.
        acl: Vec<Acl>,
        /// Stat.
        stat: Stat,
    }
}

record! {
    /// Reply of getChildren (also getEphemerals: a vector of strings).
    GetChildrenResponse {
        /// Child names (or paths for getEphemerals).
        children: Vec<String>,
    }
}

record! {
    /// Reply of getChildren2.
    GetChildren2Response {
        /// Child names.
        children: Vec<String>,
        /// Stat of the parent.
        stat: Stat,
    }
}

record! {
    /// Reply of getAllChildrenNumber; also ErrorResponse (an int).
    IntResponse {
        /// The number (or error code).
        value: i32,
    }
}

record! {
    /// One identity in a whoAmI reply.
    ClientInfo {
        /// Scheme.
        auth_scheme: String,
        /// User.
        user: String,
    }
}

record! {
    /// Reply of whoAmI.
    WhoAmIResponse {
        /// The client's identities.
        client_info: Vec<ClientInfo>,
    }
}

record! {
    /// Header before each op in a multi request and response.
    MultiHeader {
        /// Opcode of the op (or -1).
        op: i32,
        /// True only on the terminator.
        done: bool,
        /// Error code (-1 in requests).
        err: i32,
    }
}

record! {
    /// Sasl token (request and response).
    SaslPacket {
        /// Token.
        token: Bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_is_68_bytes_and_round_trips() {
        let s = Stat {
            czxid: 1,
            mzxid: 2,
            ctime: 3,
            mtime: 4,
            version: 5,
            cversion: 6,
            aversion: 7,
            ephemeral_owner: 8,
            data_length: 9,
            num_children: 10,
            pzxid: 11,
        };
        let b = s.to_bytes();
        assert_eq!(b.len(), 68);
        assert_eq!(Stat::from_bytes(b).unwrap(), s);
    }

    #[test]
    fn connect_request_is_45_bytes_with_read_only() {
        let c = ConnectRequest {
            timeout: 30000,
            passwd: Bytes::from_static(&[0; 16]),
            read_only: Some(false),
            ..Default::default()
        };
        let b = c.to_bytes();
        assert_eq!(b.len(), 45);
        assert_eq!(ConnectRequest::from_bytes(b.clone()).unwrap(), c);
        // A pre-3.4 peer omits the byte.
        let old = ConnectRequest::from_bytes(b.slice(..44)).unwrap();
        assert_eq!(old.read_only, None);
    }

    #[test]
    fn truncated_records_are_errors() {
        let b = Create2Response {
            path: "/a".into(),
            stat: Stat::default(),
        }
        .to_bytes();
        for n in 0..b.len() {
            assert!(Create2Response::from_bytes(b.slice(..n)).is_err(), "{n}");
        }
    }
}
