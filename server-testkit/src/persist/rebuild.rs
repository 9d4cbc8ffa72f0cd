//! The tree at a given zxid, rebuilt from disk (what a learner does after TRUNC, and what a
//! ZAB leader serializes for SNAP), and the installation of a snapshot received from a leader.
//!
//! Unlike [`recover`](super::recover), nothing here changes the logs: the tree is the newest
//! snapshot at or before the zxid plus the logged txns up to it, read only.
//!
//! Used by `quorum::disklog`, which is not wired into the server yet (hence `dead_code`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::logread::LogIter;
use super::recovery::replay;
use super::snapshot::{looks_valid, read_snapshot, write_fuzzy};
use super::{file_name, list_files, version_dir, PersistError, LOG_PREFIX, SNAP_PREFIX};
use crate::core::{tree_digest, Database, TreeDigest};

/// Scratch directory (under the version dir) for snapshots in transit.
const SCRATCH: &str = "zab-tmp";

/// A tree rebuilt from disk.
#[derive(Debug)]
pub struct Rebuilt {
    /// Tree and sessions; `last_zxid` = the last txn replayed (or the snapshot's zxid).
    pub db: Database,
    /// The tree digest of `db`.
    pub digest: i64,
}

/// The state at `upto` (`i64::MAX`: everything logged) of the data dir `data_dir`: the newest
/// snapshot named `<= upto` whose digest trailer does not go past `upto` (a fuzzy snapshot
/// finished later may hold changes made after it), then the logged txns up to `upto`.
pub fn load_tree(
    data_dir: &Path,
    upto: i64,
    extended_types: bool,
    read_limit: u64,
) -> Result<Rebuilt, PersistError> {
    let dir = version_dir(data_dir);
    let mut snaps = list_files(&dir, SNAP_PREFIX)?;
    snaps.retain(|(z, p)| *z <= upto && looks_valid(p));
    let mut loaded = None;
    for (_, p) in snaps.iter().rev() {
        match read_snapshot(p, extended_types) {
            Ok(s) if s.digest.is_some_and(|(z, _)| z > upto) => {
                tracing::debug!(file = %p.display(), "snapshot finished past the target zxid; trying an older one");
            }
            Ok(s) => {
                loaded = Some(s.db);
                break;
            }
            Err(e) => {
                tracing::warn!(file = %p.display(), error = %e, "snapshot unreadable; trying an older one")
            }
        }
    }
    let Some(mut db) = loaded else {
        return Err(PersistError::Unrecoverable {
            dir: data_dir.to_owned(),
            reason: format!("no usable snapshot at or before 0x{upto:x}"),
        });
    };
    let mut digest = TreeDigest::of(&db.tree);
    let mut last = db.last_zxid;
    for c in LogIter::new(&dir, db.last_zxid, read_limit)? {
        let c = c?;
        if c.txn.hdr.zxid > upto {
            break;
        }
        replay(&mut db, &mut digest, &c.txn);
        last = c.txn.hdr.zxid;
    }
    db.last_zxid = last;
    let digest = tree_digest(&db.tree);
    Ok(Rebuilt { db, digest })
}

fn scratch(data_dir: &Path) -> Result<PathBuf, PersistError> {
    let d = version_dir(data_dir).join(SCRATCH);
    std::fs::create_dir_all(&d).map_err(|e| PersistError::io(&d, e))?;
    Ok(d)
}

/// `db` in ZooKeeper's snapshot file format, as bytes (the existing snapshot writer, through a
/// scratch file that is removed).
pub fn snapshot_bytes(data_dir: &Path, db: &Database, digest: i64) -> Result<Bytes, PersistError> {
    let dir = scratch(data_dir)?;
    let info = write_fuzzy(&dir, &mut |f| {
        f(db, Some((db.last_zxid, digest)));
        true
    })?;
    let bytes = std::fs::read(&info.tmp).map_err(|e| PersistError::io(&info.tmp, e));
    let _ = std::fs::remove_file(&info.tmp);
    Ok(Bytes::from(bytes?))
}

/// Replaces the whole history of `data_dir` with `snapshot` (snapshot file bytes taken at
/// `zxid`, from a leader's SNAP): the bytes are checked by reading them back as a snapshot,
/// then every log file and every other snapshot is removed, then the snapshot is published as
/// `snapshot.<zxid>`, with fsyncs in between. A crash part way leaves either the old history,
/// an empty one (the leader sends SNAP again), or the new one — never a mix of the two.
/// Returns the loaded snapshot's database.
pub fn install_snapshot(
    data_dir: &Path,
    zxid: i64,
    snapshot: &[u8],
    extended_types: bool,
) -> Result<Database, PersistError> {
    let dir = version_dir(data_dir);
    let tmp = scratch(data_dir)?.join(file_name(SNAP_PREFIX, zxid));
    let write = std::fs::write(&tmp, snapshot)
        .and_then(|_| std::fs::File::open(&tmp).and_then(|f| f.sync_all()))
        .map_err(|e| PersistError::io(&tmp, e));
    let checked = write.and_then(|_| read_snapshot(&tmp, extended_types));
    let loaded = match checked {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if let Some((z, _)) = loaded.digest {
        if z != zxid {
            let _ = std::fs::remove_file(&tmp);
            return Err(PersistError::Corrupt {
                file: tmp,
                offset: 0,
                reason: format!("snapshot for 0x{zxid:x} ends at 0x{z:x}"),
            });
        }
    }
    for (_, p) in list_files(&dir, LOG_PREFIX)?
        .into_iter()
        .chain(list_files(&dir, SNAP_PREFIX)?)
    {
        std::fs::remove_file(&p).map_err(|e| PersistError::io(&p, e))?;
    }
    super::sync_dir(&dir)?;
    let path = dir.join(file_name(SNAP_PREFIX, zxid));
    std::fs::rename(&tmp, &path).map_err(|e| PersistError::io(&path, e))?;
    super::sync_dir(&dir)?;
    tracing::info!(file = %path.display(), nodes = loaded.nodes, "snapshot from the leader installed");
    Ok(loaded.db)
}
