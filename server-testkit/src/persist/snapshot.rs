//! Snapshots (`docs/disk-format.md` §5): header "ZKSN", sessions, the ACL cache
//! (`ReferenceCountedACLCache`: index → ACL list, -1 = open ACL of the system nodes), the nodes in
//! pre-order (path, data, ACL index, StatPersisted), the "/" terminator, an Adler-32 seal, the
//! ZxidDigest and a second seal.
//!
//! Serialization is *fuzzy* like ZooKeeper's: the tree is walked in chunks, each under the
//! server's lock, while writes go on between chunks. The snapshot is named after the last zxid
//! when the walk started, may contain later changes, and is repaired by replaying the log from
//! that zxid + 1 (every replayed txn sets absolute values, and create/delete of existing/missing
//! nodes is tolerated).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use bytes::{BufMut, Bytes, BytesMut};
use zkit_proto::{Acl, DecodeError, JuteWrite, Reader, Record};

use super::checksum::Adler32;
use super::txnlog::{file_header, SNAP_MAGIC};
use super::{file_name, PersistError, SNAP_PREFIX};
use crate::core::AclList;
use crate::core::{join, tree_digest, DataTree, Database, StatPersisted, DIGEST_VERSION};

/// Nodes serialized per lock acquisition in a fuzzy snapshot.
pub const CHUNK: usize = 2000;

/// Runs a closure on the live database and its `(last zxid, tree digest)` (None when unknown:
/// the digest is then computed); returns false when the server is gone.
pub type Access<'a> = dyn FnMut(&mut dyn FnMut(&Database, Option<(i64, i64)>)) -> bool + 'a;

/// What a written snapshot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Zxid in the name: last zxid when serialization started.
    pub zxid: i64,
    /// Zxid of the ZxidDigest: last txn applied when serialization finished.
    pub end_zxid: i64,
    /// Nodes written.
    pub nodes: u64,
    /// The temporary file (publish with [`publish`]).
    pub tmp: PathBuf,
}

/// Systems nodes whose ACL ZooKeeper keeps as null (index -1).
fn null_acl_path(path: &str) -> bool {
    matches!(path, "/" | "/zookeeper" | "/zookeeper/quota")
}

fn put_stat(b: &mut BytesMut, s: &StatPersisted) {
    b.put_i64(s.czxid);
    b.put_i64(s.mzxid);
    b.put_i64(s.ctime);
    b.put_i64(s.mtime);
    b.put_i32(s.version);
    b.put_i32(s.cversion);
    b.put_i32(s.aversion);
    b.put_i64(s.ephemeral_owner);
    b.put_i64(s.pzxid);
}

/// Write buffer of the snapshot file and of its node spill file (and the copy between them).
const SPILL_BUFFER: usize = 256 * 1024;

/// Removes a temporary file when dropped (also on an error path).
struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}

/// A writer that keeps the Adler-32 of everything written.
struct Sealed<W: Write> {
    w: W,
    sum: Adler32,
}

impl<W: Write> Sealed<W> {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.sum.update(b);
        self.w.write_all(b)
    }
    fn seal(&mut self) -> std::io::Result<()> {
        let mut b = BytesMut::new();
        b.put_i64(self.sum.value() as i64);
        b.put_string("/");
        self.put(&b)
    }
}

/// Serializes the database behind `access` into `dir/.snapshot-tmp.<zxid>` (fsynced), walking the
/// tree in chunks of [`CHUNK`] nodes. The file must be [`publish`]ed once the log holds every txn
/// up to `end_zxid`, so that no effect in it is missing from the log.
pub fn write_fuzzy(dir: &Path, access: &mut Access<'_>) -> Result<SnapshotInfo, PersistError> {
    let gone = || PersistError::Unrecoverable {
        dir: dir.to_owned(),
        reason: "server stopped during snapshot".into(),
    };
    let mut zxid = 0;
    let mut sessions = Vec::new();
    if !access(&mut |db, _| {
        zxid = db.last_zxid;
        sessions = db.sessions.iter().map(|(k, v)| (*k, *v)).collect();
    }) {
        return Err(gone());
    }
    // The tree interns ACL lists, so one list is one allocation: its address is its identity
    // (kept alive by `acl_list` while the snapshot is written).
    let mut acls: HashMap<*const Acl, i64> = HashMap::new();
    let mut acl_list: Vec<(i64, AclList)> = Vec::new();
    // The nodes go to a spill file as they are walked (the ACL section, written before them, is
    // only complete at the end), then are copied behind the header: memory stays at one chunk
    // of nodes plus the write buffers, whatever the tree's size.
    let spill_path = dir.join(format!(".snapshot-nodes.{zxid:x}"));
    let spill_io = |e| PersistError::io(&spill_path, e);
    let mut spill =
        BufWriter::with_capacity(SPILL_BUFFER, File::create(&spill_path).map_err(spill_io)?);
    let spill_guard = RemoveOnDrop(&spill_path);
    let mut nodes = BytesMut::new();
    let mut count = 0u64;
    // Nodes whose data a real ZooKeeper could not read back (interop warning only).
    let mut oversized = (0u64, 0usize);
    let mut stack = vec!["/".to_owned()];
    while !stack.is_empty() {
        let ok = access(&mut |db, _| {
            for _ in 0..CHUNK {
                let Some(path) = stack.pop() else { break };
                let Some(n) = db.tree.get(&path) else {
                    continue; // deleted since its parent was written: replay deletes it anyway
                };
                let idx = if null_acl_path(&path) && *n.acl == *Acl::open_unsafe() {
                    -1
                } else {
                    let key = n.acl.as_ptr();
                    let next = acl_list.len() as i64 + 1;
                    *acls.entry(key).or_insert_with(|| {
                        acl_list.push((next, n.acl.clone()));
                        next
                    })
                };
                nodes.put_string(if path == "/" { "" } else { &path });
                nodes.put_opt_buffer(n.data.as_deref());
                let len = n.data.as_ref().map_or(0, |d| d.len());
                if len > super::txnlog::MAX_RECORD as usize {
                    oversized = (oversized.0 + 1, oversized.1.max(len));
                }
                nodes.put_i64(idx);
                put_stat(&mut nodes, &n.stat);
                count += 1;
                for c in n.children.iter_order().iter().rev() {
                    stack.push(join(&path, c));
                }
            }
        });
        if !ok {
            return Err(gone());
        }
        spill.write_all(&nodes).map_err(spill_io)?;
        nodes.clear();
    }
    let spill = spill.into_inner().map_err(|e| spill_io(e.into_error()))?;
    drop(spill);
    let mut end = (zxid, 0i64);
    let mut have = false;
    if !access(&mut |db, j| match j {
        Some(j) => {
            end = j;
            have = true;
        }
        None => end = (db.last_zxid, tree_digest(&db.tree)),
    }) {
        return Err(gone());
    }
    let _ = have;
    if oversized.0 > 0 {
        tracing::warn!(
            zxid = format_args!("0x{zxid:x}"),
            nodes = oversized.0,
            largest = oversized.1,
            zookeeper_limit = super::txnlog::MAX_RECORD,
            "snapshot holds node data larger than a real ZooKeeper reads with its default \
             jute.maxbuffer; a ZooKeeper server loading this dataDir needs -Djute.maxbuffer={} \
             or more",
            oversized.1.div_ceil(2)
        );
    }
    let tmp = dir.join(format!(".snapshot-tmp.{zxid:x}"));
    let io = |e| PersistError::io(&tmp, e);
    let file = File::create(&tmp).map_err(io)?;
    let mut w = Sealed {
        w: BufWriter::with_capacity(SPILL_BUFFER, file),
        sum: Adler32::new(),
    };
    let mut head = BytesMut::new();
    head.put_slice(&file_header(SNAP_MAGIC, -1));
    head.put_i32(sessions.len() as i32);
    for (id, to) in &sessions {
        head.put_i64(*id);
        head.put_i32(*to);
    }
    head.put_i32(acl_list.len() as i32);
    for (idx, list) in &acl_list {
        head.put_i64(*idx);
        head.put_i32(list.len() as i32);
        for a in list.iter() {
            a.encode(&mut head);
        }
    }
    w.put(&head).map_err(io)?;
    {
        use std::io::Read;
        let mut rd = File::open(&spill_path).map_err(spill_io)?;
        let mut buf = vec![0u8; SPILL_BUFFER];
        loop {
            let n = rd.read(&mut buf).map_err(spill_io)?;
            if n == 0 {
                break;
            }
            w.put(&buf[..n]).map_err(io)?;
        }
    }
    drop(spill_guard);
    let mut term = BytesMut::new();
    term.put_string("/");
    w.put(&term).map_err(io)?;
    w.seal().map_err(io)?;
    let mut zd = BytesMut::new();
    zd.put_i64(end.0);
    zd.put_i32(DIGEST_VERSION);
    zd.put_i64(end.1);
    w.put(&zd).map_err(io)?;
    w.seal().map_err(io)?;
    let file = w.w.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    Ok(SnapshotInfo {
        zxid,
        end_zxid: end.0,
        nodes: count,
        tmp,
    })
}

/// Serializes a database that is not changing (start-up, tests, tools).
pub fn write_db(
    dir: &Path,
    db: &Database,
    digest: Option<(i64, i64)>,
) -> Result<PathBuf, PersistError> {
    let info = write_fuzzy(dir, &mut |f| {
        f(db, digest);
        true
    })?;
    publish(dir, &info)
}

/// Renames the temporary file to `snapshot.<zxid>` and fsyncs the directory.
pub fn publish(dir: &Path, info: &SnapshotInfo) -> Result<PathBuf, PersistError> {
    let path = dir.join(file_name(SNAP_PREFIX, info.zxid));
    std::fs::rename(&info.tmp, &path).map_err(|e| PersistError::io(&path, e))?;
    super::sync_dir(dir)?;
    Ok(path)
}

/// `isValidSnapshot` of §5.3 for plain files: at least 10 bytes ending in `00000001 2f`.
pub fn looks_valid(path: &Path) -> bool {
    let Ok(b) = std::fs::metadata(path) else {
        return false;
    };
    if b.len() < 10 {
        return false;
    }
    let Ok(f) = File::open(path) else {
        return false;
    };
    let mut tail = [0u8; 5];
    use std::os::unix::fs::FileExt;
    f.read_exact_at(&mut tail, b.len() - 5).is_ok() && tail == [0, 0, 0, 1, b'/']
}

/// A snapshot read back.
#[derive(Debug)]
pub struct LoadedSnapshot {
    /// Tree, sessions; `last_zxid` = the zxid in the name.
    pub db: Database,
    /// ZxidDigest trailer, when present.
    pub digest: Option<(i64, i64)>,
    /// Nodes read.
    pub nodes: u64,
}

/// Reads and verifies a snapshot (both seals). Compressed snapshots (`.gz`, `.snappy`) are not
/// supported and reported as errors, so recovery falls back to an older plain one.
pub fn read_snapshot(path: &Path, extended_types: bool) -> Result<LoadedSnapshot, PersistError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let zxid =
        super::zxid_of(name, SNAP_PREFIX).ok_or_else(|| corrupt(path, 0, "name does not parse"))?;
    if name.ends_with(".gz") || name.ends_with(".snappy") {
        return Err(corrupt(path, 0, "compressed snapshots are not supported"));
    }
    let all = Bytes::from(std::fs::read(path).map_err(|e| PersistError::io(path, e))?);
    let total = all.len();
    let mut r = Reader::new(all.clone());
    let at = |r: &Reader| (total - r.remaining()) as u64;
    let de = |r: &Reader, e: DecodeError| corrupt(path, at(r), &e.to_string());
    let magic = r.read_i32().map_err(|e| de(&r, e))?;
    if magic != SNAP_MAGIC {
        return Err(corrupt(path, 0, "bad magic (not a ZooKeeper snapshot)"));
    }
    r.read_i32().map_err(|e| de(&r, e))?;
    r.read_i64().map_err(|e| de(&r, e))?;
    let mut db = Database::new(extended_types);
    db.tree = DataTree::empty(extended_types);
    db.last_zxid = zxid;
    let n = r.read_i32().map_err(|e| de(&r, e))?;
    if n < 0 {
        return Err(corrupt(path, at(&r), "negative session count"));
    }
    for _ in 0..n {
        let id = r.read_i64().map_err(|e| de(&r, e))?;
        let to = r.read_i32().map_err(|e| de(&r, e))?;
        db.sessions.insert(id, to);
    }
    let n = r.read_i32().map_err(|e| de(&r, e))?;
    if n < 0 {
        return Err(corrupt(path, at(&r), "negative ACL cache size"));
    }
    let mut acls: HashMap<i64, Vec<Acl>> = HashMap::new();
    for _ in 0..n {
        let idx = r.read_i64().map_err(|e| de(&r, e))?;
        let list = Vec::<Acl>::decode(&mut r).map_err(|e| de(&r, e))?;
        acls.insert(idx, list);
    }
    let mut nodes = 0u64;
    loop {
        let off = at(&r);
        let p = r.read_string("path").map_err(|e| de(&r, e))?;
        if p == "/" {
            break;
        }
        let data = r
            .read_opt_buffer()
            .map_err(|e| de(&r, e))?
            .map(|b| Bytes::copy_from_slice(&b));
        let idx = r.read_i64().map_err(|e| de(&r, e))?;
        let mut s = [0i64; 9];
        for (i, v) in s.iter_mut().enumerate() {
            *v = if (4..7).contains(&i) {
                r.read_i32().map_err(|e| de(&r, e))? as i64
            } else {
                r.read_i64().map_err(|e| de(&r, e))?
            };
        }
        let stat = StatPersisted {
            czxid: s[0],
            mzxid: s[1],
            ctime: s[2],
            mtime: s[3],
            version: s[4] as i32,
            cversion: s[5] as i32,
            aversion: s[6] as i32,
            ephemeral_owner: s[7],
            pzxid: s[8],
        };
        let acl = if idx == -1 {
            Acl::open_unsafe()
        } else {
            acls.get(&idx)
                .cloned()
                .ok_or_else(|| corrupt(path, off, &format!("unknown ACL index {idx}")))?
        };
        db.tree
            .restore_node(&p, data, acl, stat)
            .map_err(|e| corrupt(path, off, &format!("node {p:?}: {e}")))?;
        nodes += 1;
    }
    let check_seal = |r: &mut Reader| -> Result<(), PersistError> {
        let covered = total - r.remaining();
        let want = super::checksum::adler32(&all[..covered]) as i64;
        let got = r.read_i64().map_err(|e| de(r, e))?;
        if got != want {
            return Err(corrupt(path, covered as u64, "checksum mismatch"));
        }
        let slash = r.read_string("seal").map_err(|e| de(r, e))?;
        if slash != "/" {
            return Err(corrupt(path, at(r), "seal not followed by \"/\""));
        }
        Ok(())
    };
    check_seal(&mut r)?;
    let mut digest = None;
    if r.remaining() > 0 {
        let z = r.read_i64().map_err(|e| de(&r, e))?;
        let v = r.read_i32().map_err(|e| de(&r, e))?;
        let d = r.read_i64().map_err(|e| de(&r, e))?;
        check_seal(&mut r)?;
        if v == DIGEST_VERSION {
            digest = Some((z, d));
        }
    } else {
        tracing::warn!(file = %path.display(), "snapshot has no digest trailer");
    }
    if db.tree.get("/").is_none() {
        return Err(corrupt(path, 0, "snapshot has no root node"));
    }
    Ok(LoadedSnapshot { db, digest, nodes })
}

fn corrupt(path: &Path, offset: u64, reason: &str) -> PersistError {
    PersistError::Corrupt {
        file: path.to_owned(),
        offset,
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tempfile::TempDir;

    #[test]
    fn fresh_tree_round_trips_and_has_zookeepers_size() {
        let d = TempDir::with_prefix("zkit-snap-").expect("temp dir");
        let db = Database::new(false);
        let p = write_db(d.path(), &db, None).unwrap();
        assert_eq!(p.file_name().unwrap(), "snapshot.0");
        // `docs/disk-format.md` §5.2: a fresh 3.8 snapshot.0 is 457 bytes.
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 457);
        assert!(looks_valid(&p));
        let back = read_snapshot(&p, false).unwrap();
        assert_eq!(back.nodes, 4);
        assert_eq!(back.digest, Some((0, 1_371_985_504)));
        for path in ["/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"] {
            assert_eq!(back.db.tree.get(path), db.tree.get(path), "{path}");
        }
    }

    #[test]
    fn a_flipped_byte_is_detected() {
        let d = TempDir::with_prefix("zkit-snapflip-").expect("temp dir");
        let p = write_db(d.path(), &Database::new(false), None).unwrap();
        let mut b = std::fs::read(&p).unwrap();
        b[0xd0] ^= 0x40;
        std::fs::write(&p, &b).unwrap();
        assert!(matches!(
            read_snapshot(&p, false),
            Err(PersistError::Corrupt { .. })
        ));
    }
}
