//! Bytes on the two peer sockets, as ZooKeeper puts them there.
//!
//! - Election port (`QuorumCnxManager`): the connecting side first sends its handshake
//!   ([`ElectionHandshake`]); after that each notification travels as a 4-byte length and the
//!   message, both ways.
//! - Quorum port (`Learner` / `LearnerHandler`): `QuorumPacket` records written back to back
//!   with jute's `writeRecord` over a buffered stream — no length prefix, a reader parses the
//!   record itself. After a SNAP packet the leader writes its database and the string
//!   `"BenWasHere"`. ZooKeeper's database stream delimits itself; the [`super::super::Log`]
//!   here hands the shell opaque snapshot bytes, so the shell writes them as one jute buffer
//!   (a 4-byte length, then the bytes) before the signature.

use bytes::{Buf, Bytes, BytesMut};
use zkit_proto::quorum::{ElectionHandshake, QuorumPacket, ELECTION_MAX_ADDRESS};
use zkit_proto::{DecodeError, JuteWrite, Record};

/// The string that closes a snapshot on the quorum socket (`LearnerHandler`).
pub(super) const SNAPSHOT_SIGNATURE: &str = "BenWasHere";

/// Largest payload buffer accepted in a quorum packet (ZooKeeper's `jute.maxbuffer` default
/// is 1 MiB; a little room on top, as its `BinaryInputArchive` allows).
pub(super) const MAX_PACKET_DATA: usize = 1024 * 1024 + 1024;

/// Largest snapshot accepted from a leader.
pub(super) const MAX_SNAPSHOT: usize = 256 * 1024 * 1024;

/// Most auth ids a forwarded request may carry.
const MAX_AUTH_IDS: i32 = 1024;

/// A peer sent bytes this shell cannot accept; the connection is dropped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WireError {
    /// A record did not decode.
    #[error("malformed record: {0}")]
    Decode(#[from] DecodeError),
    /// A length outside what the receiver accepts.
    #[error("length {0} out of range")]
    Length(i64),
    /// The snapshot was not followed by ZooKeeper's signature.
    #[error("snapshot signature missing")]
    Signature,
    /// The first packet on a quorum connection was not FOLLOWERINFO / OBSERVERINFO.
    #[error("a learner must introduce itself first")]
    NoIntroduction,
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// The length of the complete election handshake at the front of `buf`, `None` while more
/// bytes are needed.
pub(super) fn handshake_len(buf: &[u8]) -> Result<Option<usize>, WireError> {
    if buf.len() < 8 {
        return Ok(None);
    }
    if be_i64(buf, 0) >= 0 {
        return Ok(Some(8));
    }
    if buf.len() < 20 {
        return Ok(None);
    }
    let n = be_i32(buf, 16);
    if n <= 0 || n as usize > ELECTION_MAX_ADDRESS {
        return Err(WireError::Length(n as i64));
    }
    let total = 20 + n as usize;
    Ok((buf.len() >= total).then_some(total))
}

/// Splits a complete election handshake off `buf`.
pub(super) fn split_handshake(buf: &mut BytesMut) -> Result<Option<ElectionHandshake>, WireError> {
    match handshake_len(buf)? {
        None => Ok(None),
        Some(n) => Ok(Some(ElectionHandshake::decode(buf.split_to(n).freeze())?)),
    }
}

/// Walks one jute buffer or string (4-byte length, -1 for null) at `at`: the offset after
/// it, or `None` when `buf` ends first.
pub(super) fn skip_buffer(buf: &[u8], at: usize, max: usize) -> Result<Option<usize>, WireError> {
    if buf.len() < at + 4 {
        return Ok(None);
    }
    let n = be_i32(buf, at);
    if n == -1 {
        return Ok(Some(at + 4));
    }
    if n < 0 || n as usize > max {
        return Err(WireError::Length(n as i64));
    }
    let end = at + 4 + n as usize;
    Ok((buf.len() >= end).then_some(end))
}

/// The length of the complete `QuorumPacket` record at the front of `buf` (type, zxid, data
/// buffer, auth-info vector), `None` while more bytes are needed.
pub(super) fn packet_len(buf: &[u8]) -> Result<Option<usize>, WireError> {
    let Some(mut at) = (buf.len() >= 12).then_some(12) else {
        return Ok(None);
    };
    match skip_buffer(buf, at, MAX_PACKET_DATA)? {
        Some(next) => at = next,
        None => return Ok(None),
    }
    if buf.len() < at + 4 {
        return Ok(None);
    }
    let ids = be_i32(buf, at);
    at += 4;
    if !(-1..=MAX_AUTH_IDS).contains(&ids) {
        return Err(WireError::Length(ids as i64));
    }
    for _ in 0..ids.max(0) * 2 {
        match skip_buffer(buf, at, MAX_PACKET_DATA)? {
            Some(next) => at = next,
            None => return Ok(None),
        }
    }
    Ok(Some(at))
}

/// Splits a complete `QuorumPacket` off `buf`.
pub(super) fn split_packet(buf: &mut BytesMut) -> Result<Option<QuorumPacket>, WireError> {
    match packet_len(buf)? {
        None => Ok(None),
        Some(n) => Ok(Some(QuorumPacket::from_bytes(buf.split_to(n).freeze())?)),
    }
}

/// Splits the snapshot that follows a SNAP packet (a jute buffer, then the signature).
pub(super) fn split_snapshot(buf: &mut BytesMut) -> Result<Option<Bytes>, WireError> {
    let Some(end) = skip_buffer(buf, 0, MAX_SNAPSHOT)? else {
        return Ok(None);
    };
    let Some(sig_end) = skip_buffer(buf, end, SNAPSHOT_SIGNATURE.len())? else {
        return Ok(None);
    };
    if &buf[end + 4..sig_end] != SNAPSHOT_SIGNATURE.as_bytes() {
        return Err(WireError::Signature);
    }
    let mut all = buf.split_to(sig_end);
    let n = be_i32(&all, 0).max(0) as usize;
    all.advance(4);
    Ok(Some(all.split_to(n).freeze()))
}

/// Appends a quorum packet as `writeRecord` does.
pub(super) fn put_packet(buf: &mut BytesMut, p: &QuorumPacket) {
    p.encode(buf);
}

/// Appends a snapshot and the signature.
pub(super) fn put_snapshot(buf: &mut BytesMut, snapshot: &[u8]) {
    buf.put_buffer(snapshot);
    buf.put_string(SNAPSHOT_SIGNATURE);
}

#[cfg(test)]
mod tests {
    use bytes::BufMut;
    use zkit_proto::quorum::{PacketType, ELECTION_PROTOCOL_V1};
    use zkit_proto::Id;

    use super::*;

    #[test]
    fn quorum_packets_are_bare_records_split_only_when_whole() {
        let mut p = QuorumPacket::new(PacketType::Request, -1, Some(Bytes::from_static(b"xyz")));
        p.authinfo = vec![Id {
            scheme: "digest".into(),
            id: "u:p".into(),
        }];
        let q = QuorumPacket::new(PacketType::Ping, 7, None);
        let mut wire = BytesMut::new();
        put_packet(&mut wire, &p);
        put_packet(&mut wire, &q);
        // Java's null buffer and null vector: type, zxid, -1, -1.
        assert_eq!(
            wire.len(),
            (4 + 8 + 4 + 3 + 4 + 4 + 6 + 4 + 3) + (4 + 8 + 4 + 4)
        );
        for cut in 0..wire.len() {
            let mut part = BytesMut::from(&wire[..cut]);
            let first = split_packet(&mut part).unwrap();
            if cut < wire.len() - 20 {
                assert!(first.is_none(), "cut {cut}");
            }
        }
        let mut all = wire.clone();
        assert_eq!(split_packet(&mut all).unwrap(), Some(p));
        assert_eq!(split_packet(&mut all).unwrap(), Some(q));
        assert!(all.is_empty());
    }

    #[test]
    fn bad_lengths_are_errors_not_panics() {
        let mut b = BytesMut::new();
        b.put_i32(PacketType::Proposal as i32);
        b.put_i64(1);
        b.put_i32(-5);
        assert!(split_packet(&mut b).is_err());
        let mut b = BytesMut::new();
        b.put_i32(PacketType::Proposal as i32);
        b.put_i64(1);
        b.put_i32(i32::MAX);
        assert!(split_packet(&mut b).is_err());
        let mut b = BytesMut::new();
        b.put_i32(99);
        b.put_i64(1);
        b.put_i32(-1);
        b.put_i32(-1);
        assert!(split_packet(&mut b).is_err(), "unknown packet type");
    }

    #[test]
    fn snapshot_is_a_buffer_then_the_signature() {
        let mut b = BytesMut::new();
        put_snapshot(&mut b, b"state");
        b.put_u8(0xaa);
        for cut in 0..b.len() - 1 {
            let mut part = BytesMut::from(&b[..cut]);
            assert!(split_snapshot(&mut part).unwrap().is_none());
        }
        assert_eq!(split_snapshot(&mut b).unwrap().unwrap(), &b"state"[..]);
        assert_eq!(&b[..], &[0xaa]);
        let mut bad = BytesMut::new();
        bad.put_buffer(b"state");
        bad.put_string("BenWasNotHere");
        assert!(split_snapshot(&mut bad).is_err());
    }

    #[test]
    fn handshakes_of_every_version_are_delimited() {
        let v1 = ElectionHandshake::Versioned {
            protocol: ELECTION_PROTOCOL_V1,
            sid: 3,
            addresses: vec!["127.0.0.1:3888".into()],
        };
        let mut b = BytesMut::from(&v1.encode()[..]);
        b.put_u8(1);
        assert_eq!(split_handshake(&mut b).unwrap(), Some(v1));
        assert_eq!(b.len(), 1);
        let mut legacy = BytesMut::new();
        legacy.put_i64(5);
        assert_eq!(
            split_handshake(&mut legacy).unwrap(),
            Some(ElectionHandshake::Legacy { sid: 5 })
        );
        let mut huge = BytesMut::new();
        huge.put_i64(ELECTION_PROTOCOL_V1);
        huge.put_i64(1);
        huge.put_i32(1 << 20);
        assert!(split_handshake(&mut huge).is_err());
    }
}
