//! The snapshot that follows a SNAP packet, as ZooKeeper's leader writes it on the quorum
//! socket (`LearnerHandler`, `ZKDatabase.serializeSnapshot`): the sessions, the ACL cache and
//! the nodes up to the `"/"` terminator — the body of a snapshot file without its header,
//! seals or digest trailer, and with no length in front — then the string `"BenWasHere"`.
//!
//! The stream delimits itself only through its structure, so the receiver walks it
//! ([`StreamScanner`], resumable: each call continues where the previous one stopped, so a
//! large snapshot arriving in many reads is walked once). A [`DiskLog`](crate::quorum::disklog)
//! hands the shell whole snapshot files ([`crate::quorum::Log::snapshot`]); [`file_to_stream`]
//! and [`stream_to_file`] convert between the two.

use bytes::{BufMut, Bytes, BytesMut};

use super::wire::{skip_buffer, WireError, MAX_SNAPSHOT, SNAPSHOT_SIGNATURE};
use crate::persist::checksum::adler32;
use crate::persist::txnlog::{file_header, SNAP_MAGIC};

/// Size of a `StatPersisted` record: czxid, mzxid, ctime, mtime, version, cversion, aversion,
/// ephemeralOwner, pzxid.
const STAT_PERSISTED: usize = 8 * 4 + 4 * 3 + 8 + 8;

/// Longest path or ACL string accepted in a snapshot stream.
const MAX_STRING: usize = 1 << 20;

/// Largest node data accepted (ZooKeeper's reader allows twice `jute.maxbuffer`).
const MAX_DATA: usize = 64 << 20;

/// Most sessions, ACL lists or ACLs per list accepted.
const MAX_COUNT: i32 = 1 << 26;

/// Where the walk is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    SessionCount,
    Sessions(i32),
    AclCount,
    Acls(i32),
    Nodes,
    Signature,
    Done,
}

/// Walks a snapshot stream as its bytes arrive; see the module docs.
#[derive(Debug, Clone)]
pub(crate) struct StreamScanner {
    phase: Phase,
    /// Offset of the next item in the buffer.
    pos: usize,
    /// Offset just after the `"/"` terminator, once seen.
    body_end: usize,
}

impl Default for StreamScanner {
    fn default() -> Self {
        Self::new()
    }
}

fn be_i32(b: &[u8], at: usize) -> Option<i32> {
    b.get(at..at + 4)
        .map(|s| i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn count(b: &[u8], at: usize) -> Result<Option<i32>, WireError> {
    match be_i32(b, at) {
        None => Ok(None),
        Some(n) if (0..=MAX_COUNT).contains(&n) => Ok(Some(n)),
        Some(n) => Err(WireError::Length(n as i64)),
    }
}

/// The end of one ACL cache entry (index, then a vector of ACLs) at `at`.
fn skip_acl_entry(b: &[u8], at: usize) -> Result<Option<usize>, WireError> {
    let at = at + 8;
    let Some(n) = be_i32(b, at) else {
        return Ok(None);
    };
    if !(-1..=MAX_COUNT).contains(&n) {
        return Err(WireError::Length(n as i64));
    }
    let mut at = at + 4;
    for _ in 0..n.max(0) {
        at += 4; // perms
        for _ in 0..2 {
            match skip_buffer(b, at, MAX_STRING)? {
                Some(next) => at = next,
                None => return Ok(None),
            }
        }
    }
    Ok(Some(at))
}

impl StreamScanner {
    /// A scanner at the start of a stream.
    pub(crate) fn new() -> Self {
        Self {
            phase: Phase::SessionCount,
            pos: 0,
            body_end: 0,
        }
    }

    /// Walks `buf` (the stream from its first byte; more bytes appended since the last call)
    /// as far as it is complete. `Some(n)` once the signature is in: the stream, signature
    /// included, is `buf[..n]`, and its body is [`StreamScanner::body_len`] bytes.
    pub(crate) fn advance(&mut self, buf: &[u8]) -> Result<Option<usize>, WireError> {
        loop {
            if self.pos > MAX_SNAPSHOT {
                return Err(WireError::Length(self.pos as i64));
            }
            match self.phase {
                Phase::SessionCount => match count(buf, self.pos)? {
                    Some(n) => {
                        self.pos += 4;
                        self.phase = Phase::Sessions(n);
                    }
                    None => return Ok(None),
                },
                Phase::Sessions(0) => self.phase = Phase::AclCount,
                Phase::Sessions(n) => {
                    // All the remaining fixed-size session entries at once.
                    let have = ((buf.len().saturating_sub(self.pos)) / 12).min(n as usize);
                    if have == 0 {
                        return Ok(None);
                    }
                    self.pos += have * 12;
                    self.phase = Phase::Sessions(n - have as i32);
                }
                Phase::AclCount => match count(buf, self.pos)? {
                    Some(n) => {
                        self.pos += 4;
                        self.phase = Phase::Acls(n);
                    }
                    None => return Ok(None),
                },
                Phase::Acls(0) => self.phase = Phase::Nodes,
                Phase::Acls(n) => match skip_acl_entry(buf, self.pos)? {
                    Some(end) => {
                        self.pos = end;
                        self.phase = Phase::Acls(n - 1);
                    }
                    None => return Ok(None),
                },
                Phase::Nodes => {
                    let Some(path_end) = skip_buffer(buf, self.pos, MAX_STRING)? else {
                        return Ok(None);
                    };
                    if &buf[self.pos..path_end] == b"\0\0\0\x01/" {
                        self.pos = path_end;
                        self.body_end = path_end;
                        self.phase = Phase::Signature;
                        continue;
                    }
                    let Some(data_end) = skip_buffer(buf, path_end, MAX_DATA)? else {
                        return Ok(None);
                    };
                    let end = data_end + 8 + STAT_PERSISTED;
                    if buf.len() < end {
                        return Ok(None);
                    }
                    self.pos = end;
                }
                Phase::Signature => {
                    let Some(end) = skip_buffer(buf, self.pos, SNAPSHOT_SIGNATURE.len())? else {
                        return Ok(None);
                    };
                    if &buf[self.pos + 4..end] != SNAPSHOT_SIGNATURE.as_bytes() {
                        return Err(WireError::Signature);
                    }
                    self.pos = end;
                    self.phase = Phase::Done;
                }
                Phase::Done => return Ok(Some(self.pos)),
            }
        }
    }

    /// The length of the body (sessions, ACLs, nodes, terminator), once it is complete.
    pub(crate) fn body_len(&self) -> usize {
        self.body_end
    }
}

/// A snapshot file's body as ZooKeeper streams it, with the signature: the file minus its
/// 16-byte header and everything after the node terminator. `None` when `file` is not a
/// ZooKeeper snapshot file.
pub(crate) fn file_to_stream(file: &[u8]) -> Option<BytesMut> {
    if be_i32(file, 0)? != SNAP_MAGIC {
        return None;
    }
    let body = file.get(16..)?;
    let mut scan = StreamScanner::new();
    // The seal after the terminator is not a signature: walk the body only.
    let _ = scan.advance(body);
    if scan.phase != Phase::Signature && scan.phase != Phase::Done {
        return None;
    }
    let mut out = BytesMut::with_capacity(scan.body_len() + 14);
    out.put_slice(&body[..scan.body_len()]);
    put_signature(&mut out);
    Some(out)
}

/// Appends ZooKeeper's snapshot signature.
pub(crate) fn put_signature(out: &mut BytesMut) {
    out.put_i32(SNAPSHOT_SIGNATURE.len() as i32);
    out.put_slice(SNAPSHOT_SIGNATURE.as_bytes());
}

/// A snapshot file holding a streamed body: the header (database id -1, as ZooKeeper's own
/// snapshots carry), the body, the Adler-32 seal and its `"/"`. No digest trailer: the learner
/// computes its digest when it loads the tree.
pub(crate) fn stream_to_file(body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(body.len() + 16 + 13);
    out.put_slice(&file_header(SNAP_MAGIC, -1));
    out.put_slice(body);
    let seal = adler32(&out) as i64;
    out.put_i64(seal);
    out.put_i32(1);
    out.put_u8(b'/');
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Database;
    use crate::persist::rebuild::snapshot_bytes;
    use crate::persist::snapshot::read_snapshot;

    fn a_db() -> Database {
        let mut db = Database::new(false);
        db.sessions.insert(0x0100_0000_0000_0001, 30_000);
        db.sessions.insert(0x0200_0000_0000_0002, 10_000);
        db
    }

    #[test]
    fn a_snapshot_file_streams_and_comes_back_byte_for_byte_in_its_tree() {
        let dir = tempfile::tempdir().unwrap();
        let db = a_db();
        let file = snapshot_bytes(dir.path(), &db, 0).unwrap();
        let stream = file_to_stream(&file).expect("a snapshot file");
        // Any prefix is incomplete, never an error.
        let mut scan = StreamScanner::new();
        for cut in (0..stream.len()).step_by(3) {
            assert_eq!(scan.advance(&stream[..cut]).unwrap(), None, "cut {cut}");
        }
        let mut more = stream.to_vec();
        more.extend_from_slice(b"next packet");
        assert_eq!(scan.advance(&more).unwrap(), Some(stream.len()));
        let back = stream_to_file(&stream[..scan.body_len()]);
        let p = dir.path().join("snapshot.0");
        std::fs::write(&p, &back).unwrap();
        let loaded = read_snapshot(&p, false).unwrap();
        assert_eq!(loaded.db.sessions, db.sessions);
        assert_eq!(loaded.db.tree.node_count(), db.tree.node_count());
    }

    #[test]
    fn garbage_is_an_error_or_incomplete_never_a_panic() {
        let mut s = StreamScanner::new();
        assert!(s.advance(&[0xff, 0xff, 0xff, 0xfe]).is_err());
        let mut s = StreamScanner::new();
        // No sessions, no ACLs, terminator, then a wrong signature.
        let mut b = vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, b'/'];
        b.extend_from_slice(&[0, 0, 0, 3, b'a', b'b', b'c']);
        assert!(s.advance(&b).is_err());
        assert!(file_to_stream(b"not a snapshot").is_none());
    }
}
