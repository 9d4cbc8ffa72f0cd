//! ZooKeeper's own server-to-server messages: the ZAB `QuorumPacket` (jute, `zookeeper.jute`),
//! the `LearnerInfo` a learner sends first, the fast-leader-election notification and the
//! election-channel handshake of `QuorumCnxManager`.
//!
//! The last two are *not* jute: they are fixed big-endian fields written with Java's
//! `ByteBuffer`/`DataOutputStream`, so they have their own encoders here. Every decoder is
//! bounds-checked and returns a [`DecodeError`] on malformed input.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::codec::{DecodeError, JuteWrite, Reader, Record};
use crate::records::Id;

/// Builds a zxid from an epoch and a counter: `epoch << 32 | counter` (`ZxidUtils.makeZxid`).
pub fn make_zxid(epoch: u32, counter: u32) -> i64 {
    ((epoch as i64) << 32) | counter as i64
}

/// The epoch half of a zxid (`ZxidUtils.getEpochFromZxid`).
pub fn zxid_epoch(zxid: i64) -> u32 {
    (zxid >> 32) as u32
}

/// The counter half of a zxid (`ZxidUtils.getCounterFromZxid`).
pub fn zxid_counter(zxid: i64) -> u32 {
    zxid as u32
}

/// The protocol version a 3.4+ learner puts in [`LearnerInfo`] and the leader in LEADERINFO
/// (`0x10000`; older peers used 0 and got no LEADERINFO).
pub const LEARNER_PROTOCOL_VERSION: i32 = 0x10000;

/// Declares the packet type enum once, with its wire numbers (`Leader.java`).
macro_rules! packet_types {
    ($($(#[$m:meta])* $name:ident = $v:expr,)*) => {
        /// The `type` of a [`QuorumPacket`], as numbered in ZooKeeper 3.8's `Leader.java`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum PacketType { $($(#[$m])* $name = $v,)* }

        impl PacketType {
            /// The type for a wire number, `None` when unknown.
            pub fn from_i32(v: i32) -> Option<Self> {
                match v { $($v => Some(PacketType::$name),)* _ => None }
            }
        }
    };
}

packet_types! {
    /// Learner -> leader: a client write (or session op) to prepare.
    Request = 1,
    /// Leader -> follower: a txn to log and acknowledge.
    Proposal = 2,
    /// Follower -> leader: a proposal (or NEWLEADER) is durable.
    Ack = 3,
    /// Leader -> follower: apply everything up to this zxid.
    Commit = 4,
    /// Both ways: liveness; the learner's reply carries session touches.
    Ping = 5,
    /// Learner -> leader and back: is this session still valid here.
    Revalidate = 6,
    /// Leader -> learner: a `sync` reached the leader.
    Sync = 7,
    /// Leader -> observer: a committed txn (proposal and commit in one).
    Inform = 8,
    /// Like COMMIT, for a reconfig.
    CommitAndActivate = 9,
    /// Leader -> learner: sync is complete for this epoch; acknowledge it.
    NewLeader = 10,
    /// Follower -> leader: first packet, with the accepted epoch and a [`LearnerInfo`].
    FollowerInfo = 11,
    /// Leader -> learner: start serving.
    UpToDate = 12,
    /// Leader -> learner: the txns that follow bring you up to date.
    Diff = 13,
    /// Leader -> learner: drop your log after this zxid.
    Trunc = 14,
    /// Leader -> learner: a full snapshot follows.
    Snap = 15,
    /// Observer -> leader: first packet, like FOLLOWERINFO.
    ObserverInfo = 16,
    /// Leader -> learner: the new epoch and the leader's protocol version.
    LeaderInfo = 17,
    /// Learner -> leader: the new epoch is accepted; carries the current epoch.
    AckEpoch = 18,
    /// Like INFORM, for a reconfig.
    InformAndActivate = 19,
}

/// A ZAB packet (`QuorumPacket` in `zookeeper.jute`): type, zxid, payload and auth info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumPacket {
    /// What the packet is.
    pub kind: PacketType,
    /// The zxid it is about (meaning depends on the type).
    pub zxid: i64,
    /// The payload; `None` is written as a null buffer, as Java does for packets without data.
    pub data: Option<Bytes>,
    /// Auth info of a forwarded REQUEST; empty otherwise.
    pub authinfo: Vec<Id>,
}

impl QuorumPacket {
    /// A packet without auth info.
    pub fn new(kind: PacketType, zxid: i64, data: Option<Bytes>) -> Self {
        QuorumPacket {
            kind,
            zxid,
            data,
            authinfo: Vec::new(),
        }
    }
}

impl Record for QuorumPacket {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_i32(self.kind as i32);
        buf.put_i64(self.zxid);
        buf.put_opt_buffer(self.data.as_deref());
        // Java writes a null vector as -1; an empty one as 0. Packets built without auth info
        // carry null, so keep that byte-for-byte.
        if self.authinfo.is_empty() {
            buf.put_i32(-1);
        } else {
            self.authinfo.encode(buf);
        }
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let raw = r.read_i32()?;
        let kind = PacketType::from_i32(raw).ok_or(DecodeError::InvalidValue {
            field: "QuorumPacket.type",
            value: raw as i64,
        })?;
        Ok(QuorumPacket {
            kind,
            zxid: r.read_i64()?,
            data: r.read_opt_buffer()?,
            authinfo: Vec::<Id>::decode(r)?,
        })
    }
}

/// The payload of FOLLOWERINFO / OBSERVERINFO (`LearnerInfo` in `zookeeper.jute`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LearnerInfo {
    /// The learner's server id (`myid`).
    pub server_id: i64,
    /// [`LEARNER_PROTOCOL_VERSION`] for any current learner.
    pub protocol_version: i32,
    /// The version of the learner's last seen config.
    pub config_version: i64,
}

impl Record for LearnerInfo {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_i64(self.server_id);
        buf.put_i32(self.protocol_version);
        buf.put_i64(self.config_version);
    }

    /// Old learners send only the sid (8 bytes) or sid and version (12 bytes); the leader
    /// (`LearnerHandler`) reads whatever is there, and so does this.
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let server_id = r.read_i64()?;
        let protocol_version = if r.remaining() >= 4 { r.read_i32()? } else { 0 };
        let config_version = if r.remaining() >= 8 { r.read_i64()? } else { 0 };
        Ok(LearnerInfo {
            server_id,
            protocol_version,
            config_version,
        })
    }
}

/// The 4-byte payload of LEADERINFO (the leader's protocol version) and of ACKEPOCH (the
/// learner's current epoch, or -1 when it had already accepted this epoch).
pub fn int_payload(v: i32) -> Bytes {
    Bytes::copy_from_slice(&v.to_be_bytes())
}

/// Reads the 4-byte payload of LEADERINFO / ACKEPOCH.
pub fn read_int_payload(data: Option<&Bytes>) -> Result<i32, DecodeError> {
    let mut r = Reader::new(data.cloned().unwrap_or_default());
    r.read_i32()
}

/// A session a learner saw activity on, reported to the leader in its PING reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTouch {
    /// The session.
    pub session_id: i64,
    /// Its timeout, ms.
    pub timeout: i32,
}

/// Encodes PING-reply touches: `(long sessionId, int timeout)` repeated, no count (the reader
/// stops at the end of the buffer, like `LearnerSessionTracker`'s stream).
pub fn encode_touches(touches: &[SessionTouch]) -> Bytes {
    let mut b = BytesMut::with_capacity(touches.len() * 12);
    for t in touches {
        b.put_i64(t.session_id);
        b.put_i32(t.timeout);
    }
    b.freeze()
}

/// Decodes PING-reply touches; a tail that is not a whole entry is an error.
pub fn decode_touches(data: &[u8]) -> Result<Vec<SessionTouch>, DecodeError> {
    if !data.len().is_multiple_of(12) {
        return Err(DecodeError::Truncated {
            needed: 12 - data.len() % 12,
        });
    }
    Ok(data
        .chunks_exact(12)
        .map(|mut c| SessionTouch {
            session_id: c.get_i64(),
            timeout: c.get_i32(),
        })
        .collect())
}

/// The payload of a REQUEST packet: a client request a learner forwards to the leader
/// (`Learner.request`): `long sessionId, int cxid, int type`, then the request's own bytes, no
/// length prefix (Java's `DataOutputStream`, not jute).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardedRequest {
    /// The client's session.
    pub session_id: i64,
    /// The client's xid.
    pub cxid: i32,
    /// The opcode.
    pub op: i32,
    /// The request record, as the client encoded it.
    pub body: Bytes,
}

impl ForwardedRequest {
    /// Encodes the payload.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(16 + self.body.len());
        b.put_i64(self.session_id);
        b.put_i32(self.cxid);
        b.put_i32(self.op);
        b.put_slice(&self.body);
        b.freeze()
    }

    /// Decodes the payload (everything after the 16-byte head is the body).
    pub fn decode(data: Bytes) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        Ok(ForwardedRequest {
            session_id: r.read_i64()?,
            cxid: r.read_i32()?,
            op: r.read_i32()?,
            body: r.into_rest(),
        })
    }
}

/// The payload of a learner's REVALIDATE (`Learner.validateSession`): `long sessionId, int
/// timeout`.
pub fn encode_revalidate(session_id: i64, timeout: i32) -> Bytes {
    let mut b = BytesMut::with_capacity(12);
    b.put_i64(session_id);
    b.put_i32(timeout);
    b.freeze()
}

/// Decodes a learner's REVALIDATE payload into (session, timeout).
pub fn decode_revalidate(data: Bytes) -> Result<(i64, i32), DecodeError> {
    let mut r = Reader::new(data);
    Ok((r.read_i64()?, r.read_i32()?))
}

/// The payload of the leader's REVALIDATE answer: `long sessionId, boolean valid`.
pub fn encode_revalidate_reply(session_id: i64, valid: bool) -> Bytes {
    let mut b = BytesMut::with_capacity(9);
    b.put_i64(session_id);
    b.put_bool(valid);
    b.freeze()
}

/// Decodes the leader's REVALIDATE answer into (session, valid).
pub fn decode_revalidate_reply(data: Bytes) -> Result<(i64, bool), DecodeError> {
    let mut r = Reader::new(data);
    Ok((r.read_i64()?, r.read_bool()?))
}

/// A server's state as sent in election notifications (`QuorumPeer.ServerState` ordinals).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerState {
    /// Electing.
    Looking = 0,
    /// Following an elected leader.
    Following = 1,
    /// The elected leader.
    Leading = 2,
    /// A non-voting learner.
    Observing = 3,
}

impl ServerState {
    /// The state for an ordinal.
    pub fn from_i32(v: i32) -> Option<Self> {
        match v {
            0 => Some(ServerState::Looking),
            1 => Some(ServerState::Following),
            2 => Some(ServerState::Leading),
            3 => Some(ServerState::Observing),
            _ => None,
        }
    }
}

/// The notification version 3.5+ sends (with the config appended).
pub const NOTIFICATION_VERSION: i32 = 2;

/// A fast-leader-election notification (`FastLeaderElection.buildMsg` / `WorkerReceiver`).
///
/// Wire layout, big-endian, no jute: `int state, long leader, long zxid, long electionEpoch,
/// long peerEpoch, int version, int configLength, byte[config]` — 44 bytes plus the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The sender's state.
    pub state: ServerState,
    /// The sid the sender votes for.
    pub leader: i64,
    /// The last zxid of the proposed leader.
    pub zxid: i64,
    /// The sender's election round (logical clock).
    pub election_epoch: i64,
    /// The current epoch of the proposed leader.
    pub peer_epoch: i64,
    /// [`NOTIFICATION_VERSION`] when sent by this crate; 0 or 1 from old peers.
    pub version: i32,
    /// The sender's quorum config, as text (`QuorumVerifier.toString()`); empty before version 2.
    pub config: Bytes,
}

impl Notification {
    /// Largest config accepted (the election channel's own packet limit is 512 KiB).
    pub const MAX_CONFIG: usize = 512 * 1024;

    /// Encodes the version-2 layout (whatever `version` says, a config is always written).
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(44 + self.config.len());
        b.put_i32(self.state as i32);
        b.put_i64(self.leader);
        b.put_i64(self.zxid);
        b.put_i64(self.election_epoch);
        b.put_i64(self.peer_epoch);
        b.put_i32(NOTIFICATION_VERSION);
        b.put_i32(self.config.len() as i32);
        b.put_slice(&self.config);
        b.freeze()
    }

    /// Decodes a notification, accepting the older layouts ZooKeeper still reads: 28 bytes (no
    /// peer epoch: taken from the zxid), 40 bytes (peer epoch, no version) and version 1 (no
    /// config). Anything shorter than 28 bytes or with a bad config length is an error.
    pub fn decode(msg: Bytes) -> Result<Self, DecodeError> {
        if msg.len() < 28 {
            return Err(DecodeError::Truncated {
                needed: 28 - msg.len(),
            });
        }
        let len = msg.len();
        let mut r = Reader::new(msg);
        let raw_state = r.read_i32()?;
        let state = ServerState::from_i32(raw_state).ok_or(DecodeError::InvalidValue {
            field: "Notification.state",
            value: raw_state as i64,
        })?;
        let leader = r.read_i64()?;
        let zxid = r.read_i64()?;
        let election_epoch = r.read_i64()?;
        let (peer_epoch, version) = match len {
            28 => (zxid_epoch(zxid) as i64, 0),
            40 => (r.read_i64()?, 0),
            _ => (r.read_i64()?, r.read_i32()?),
        };
        let config = if version > 1 {
            let n = r.read_i32()?;
            if n < 0 || n as usize > r.remaining() || n as usize > Self::MAX_CONFIG {
                return Err(DecodeError::InvalidLength(n));
            }
            r.into_rest().split_to(n as usize)
        } else {
            Bytes::new()
        };
        Ok(Notification {
            state,
            leader,
            zxid,
            election_epoch,
            peer_epoch,
            version,
            config,
        })
    }
}

/// The election-channel handshake protocol with one address: what 3.8 sends unless multi-address
/// is enabled (`multiAddress.enabled`).
pub const ELECTION_PROTOCOL_V1: i64 = -65536;
/// The election-channel handshake protocol with `|`-separated addresses (3.6+, sent when
/// multi-address is enabled).
pub const ELECTION_PROTOCOL_V2: i64 = -65535;
/// Longest address string a receiver accepts (`QuorumCnxManager.maxBuffer`).
pub const ELECTION_MAX_ADDRESS: usize = 2048;

/// The first bytes a server sends on a new election connection (`QuorumCnxManager`'s
/// `InitialMessage`): `long protocolVersion, long sid, int length, byte[addresses]`, or, from
/// pre-3.5 servers, just `long sid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElectionHandshake {
    /// A pre-3.5 peer: only its sid (a non-negative first long).
    Legacy {
        /// The sender's sid.
        sid: i64,
    },
    /// A 3.5+ peer.
    Versioned {
        /// [`ELECTION_PROTOCOL_V1`] or [`ELECTION_PROTOCOL_V2`].
        protocol: i64,
        /// The sender's sid.
        sid: i64,
        /// Its election addresses, `host:port` each.
        addresses: Vec<String>,
    },
}

impl ElectionHandshake {
    /// A protocol-V2 handshake (`|`-separated addresses, what 3.8 sends with multi-address
    /// enabled; the quorum shell sends V1 like a default 3.8).
    pub fn new(sid: i64, addresses: Vec<String>) -> Self {
        ElectionHandshake::Versioned {
            protocol: ELECTION_PROTOCOL_V2,
            sid,
            addresses,
        }
    }

    /// The sender's sid.
    pub fn sid(&self) -> i64 {
        match self {
            ElectionHandshake::Legacy { sid } | ElectionHandshake::Versioned { sid, .. } => *sid,
        }
    }

    /// Encodes the handshake.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        match self {
            ElectionHandshake::Legacy { sid } => b.put_i64(*sid),
            ElectionHandshake::Versioned {
                protocol,
                sid,
                addresses,
            } => {
                b.put_i64(*protocol);
                b.put_i64(*sid);
                let joined = addresses.join("|");
                b.put_i32(joined.len() as i32);
                b.put_slice(joined.as_bytes());
            }
        }
        b.freeze()
    }

    /// Decodes a complete handshake. An unknown negative protocol, an empty or over-long
    /// address string and a non-UTF-8 one are errors, as in `InitialMessage.parse`.
    pub fn decode(msg: Bytes) -> Result<Self, DecodeError> {
        let mut r = Reader::new(msg);
        let first = r.read_i64()?;
        if first >= 0 {
            return Ok(ElectionHandshake::Legacy { sid: first });
        }
        if first != ELECTION_PROTOCOL_V1 && first != ELECTION_PROTOCOL_V2 {
            return Err(DecodeError::InvalidValue {
                field: "ElectionHandshake.protocol",
                value: first,
            });
        }
        let sid = r.read_i64()?;
        let n = r.read_i32()?;
        if n <= 0 || n as usize > ELECTION_MAX_ADDRESS || n as usize > r.remaining() {
            return Err(DecodeError::InvalidLength(n));
        }
        let raw = r.into_rest().split_to(n as usize);
        let text = std::str::from_utf8(&raw).map_err(|_| DecodeError::InvalidUtf8)?;
        Ok(ElectionHandshake::Versioned {
            protocol: first,
            sid,
            addresses: text.split('|').map(str::to_owned).collect(),
        })
    }
}

/// Largest election-channel message (`QuorumCnxManager.PACKETMAXSIZE`).
pub const ELECTION_MAX_PACKET: usize = 512 * 1024;

/// Splits one length-prefixed message off an election-channel byte stream: `Ok(None)` when
/// it is not all there yet, an error for a length outside `1..=ELECTION_MAX_PACKET`.
pub fn split_election_frame(buf: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let n = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if n <= 0 || n as usize > ELECTION_MAX_PACKET {
        return Err(DecodeError::InvalidLength(n));
    }
    if buf.len() < 4 + n as usize {
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(n as usize).freeze()))
}

/// Appends one length-prefixed election-channel message.
pub fn put_election_frame(buf: &mut BytesMut, msg: &[u8]) {
    buf.put_i32(msg.len() as i32);
    buf.put_slice(msg);
}

#[cfg(test)]
#[path = "quorum_tests.rs"]
mod tests;
