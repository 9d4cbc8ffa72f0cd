//! Start-up recovery (`docs/disk-format.md` §7, made strict): the newest snapshot that validates
//! (older ones as fallback), then every log txn after it, in order; sessions restored, ephemerals of
//! dead sessions dropped, and a fresh snapshot written when anything changed.
//!
//! Damage rules for logs: a damaged *final* entry with nothing but zeros after it (an interrupted
//! append) is dropped with a warning and the file is truncated there; it may be the final entry of
//! an older file only if the next file starts right after the last good txn (nothing is lost).
//! Anything else — a bad entry followed by data, a checksummed entry that does not decode, a gap
//! — is corruption: recovery fails naming the file and offset, unless
//! [`PersistOptions::truncate_corrupt`] asks to cut the log there (the cut-off files are moved to
//! `version-2/truncated/`, not deleted).

use std::path::{Path, PathBuf};

use zkit_proto::path::parent;

use super::snapshot::{looks_valid, read_snapshot, write_db};
use super::txnlog::{read_log_with, LogEnd};
use super::{list_files, version_dir, PersistError, PersistOptions, LOG_PREFIX, SNAP_PREFIX};
use crate::core::{tree_digest, Database, TreeDigest, Txn, TxnBody};

/// What recovery found and did.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// The snapshot loaded (None for a fresh data dir).
    pub snapshot: Option<PathBuf>,
    /// Newer snapshots that were skipped, with the reason.
    pub skipped_snapshots: Vec<(PathBuf, String)>,
    /// Txns replayed from the logs.
    pub txns_replayed: u64,
    /// Zxid of the last txn recovered.
    pub last_zxid: i64,
    /// Torn final entries dropped: file, offset, reason.
    pub torn: Vec<(PathBuf, u64, String)>,
    /// Corrupt entries the log was truncated at (only with `truncate_corrupt`).
    pub truncated: Vec<(PathBuf, u64, String)>,
    /// Txns whose logged digest differed from the recomputed one.
    pub digest_mismatches: u64,
    /// Sessions without a session entry whose ephemerals were dropped.
    pub dead_sessions: Vec<i64>,
    /// Whether the data dir was empty.
    pub fresh: bool,
    /// Snapshot written at the end of recovery, if any.
    pub written_snapshot: Option<PathBuf>,
}

/// The recovered database.
#[derive(Debug)]
pub struct Recovered {
    /// Tree, sessions, last zxid.
    pub db: Database,
    /// Tree digest of `db`.
    pub digest: i64,
    /// What happened.
    pub report: RecoveryReport,
}

/// Applies one replayed txn like `FileTxnSnapLog.processTransaction`: apply errors are ignored
/// (fuzzy snapshot), a create that finds its node still advances the parent's cversion.
pub fn replay(db: &mut Database, digest: &mut TreeDigest, txn: &Txn) {
    let pre = digest.before(&db.tree, txn);
    let rc = db.apply(txn, &mut Vec::new());
    if rc.err == zkit_proto::ErrorCode::NodeExists {
        if let TxnBody::Create(c) = &txn.body {
            db.tree
                .set_cversion_pzxid(parent(&c.path), c.parent_cversion, txn.hdr.zxid);
        }
    }
    digest.after(&db.tree, pre);
}

fn move_aside(dir: &Path, files: &[PathBuf], sub: &str) -> Result<(), PersistError> {
    let dest = dir.join(sub);
    std::fs::create_dir_all(&dest).map_err(|e| PersistError::io(&dest, e))?;
    for f in files {
        if let Some(name) = f.file_name() {
            let to = dest.join(name);
            std::fs::rename(f, &to).map_err(|e| PersistError::io(f, e))?;
        }
    }
    Ok(())
}

/// Cuts `file` at `offset` (deletes it when nothing but the header would remain).
fn cut(file: &Path, offset: u64) -> Result<(), PersistError> {
    if offset <= 16 {
        std::fs::remove_file(file).map_err(|e| PersistError::io(file, e))
    } else {
        std::fs::OpenOptions::new()
            .write(true)
            .open(file)
            .and_then(|f| f.set_len(offset).and_then(|_| f.sync_all()))
            .map_err(|e| PersistError::io(file, e))
    }
}

/// Recovers `data_dir` (creating it when missing). See the module docs for the rules.
pub fn recover(
    data_dir: &Path,
    opts: &PersistOptions,
    extended_types: bool,
) -> Result<Recovered, PersistError> {
    let dir = version_dir(data_dir);
    std::fs::create_dir_all(&dir).map_err(|e| PersistError::io(&dir, e))?;
    // Leftovers of a snapshot interrupted before it was published.
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with(".snapshot-tmp.")
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let unrecoverable = |reason: String| PersistError::Unrecoverable {
        dir: data_dir.to_owned(),
        reason,
    };
    let target = opts.restore_to_zxid.unwrap_or(i64::MAX);
    let mut report = RecoveryReport::default();

    // 1. Newest snapshot that loads.
    let mut snaps = list_files(&dir, SNAP_PREFIX)?;
    snaps.retain(|(z, _)| *z <= target);
    snaps.reverse();
    let candidates: Vec<_> = snaps
        .into_iter()
        .filter(|(_, p)| looks_valid(p))
        .take(100)
        .collect();
    let mut loaded = None;
    for (_, p) in &candidates {
        match read_snapshot(p, extended_types) {
            Ok(s) => {
                loaded = Some((p.clone(), s));
                break;
            }
            Err(e) => {
                tracing::warn!(file = %p.display(), error = %e, "problem reading snapshot, trying an older one");
                report.skipped_snapshots.push((p.clone(), e.to_string()));
            }
        }
    }
    let logs = list_files(&dir, LOG_PREFIX)?;
    let (mut db, snap_digest) = match loaded {
        Some((p, s)) => {
            tracing::info!(file = %p.display(), nodes = s.nodes, "snapshot loaded");
            report.snapshot = Some(p);
            (s.db, s.digest)
        }
        None if !candidates.is_empty() => {
            return Err(unrecoverable(
                "no valid snapshot among the candidates".into(),
            ));
        }
        None if !logs.is_empty() => {
            return Err(unrecoverable(
                "no snapshot found, but there are log files".into(),
            ));
        }
        None => {
            report.fresh = true;
            (Database::new(extended_types), None)
        }
    };

    // 2. Logs after the snapshot.
    let t = db.last_zxid + 1;
    let first = logs.iter().rposition(|(z, _)| *z < t).unwrap_or(0);
    let files: Vec<(i64, PathBuf)> = logs.into_iter().skip(first).collect();
    let mut digest = TreeDigest::of(&db.tree);
    let check_from = snap_digest.map_or(i64::MAX, |(z, _)| z);
    let mut last = db.last_zxid;
    let mut i = 0;
    while i < files.len() {
        let (_, path) = &files[i];
        let end = read_log_with(path, opts.read_limit, |e| {
            let z = e.txn.hdr.zxid;
            if z < t {
                return Ok(true);
            }
            if z > target {
                return Ok(false);
            }
            if z <= last {
                tracing::error!(zxid = z, previous = last, file = %path.display(), "zxid out of order in txn log");
            }
            replay(&mut db, &mut digest, &e.txn);
            if let Some(d) = e.digest {
                if z > check_from && d != digest.value() {
                    if report.digest_mismatches == 0 {
                        tracing::warn!(
                            zxid = z,
                            logged = d,
                            computed = digest.value(),
                            "first digest mismatch on txn"
                        );
                    }
                    report.digest_mismatches += 1;
                }
            }
            report.txns_replayed += 1;
            last = last.max(z);
            Ok(true)
        })?;
        match end {
            LogEnd::Clean { .. } => {}
            LogEnd::Stopped { end } => {
                // Point-in-time restore: cut after the target and set later files aside.
                cut(path, end)?;
                let later: Vec<PathBuf> = files[i + 1..].iter().map(|(_, p)| p.clone()).collect();
                move_aside(&dir, &later, "after-restore")?;
                break;
            }
            LogEnd::Damaged {
                offset,
                reason,
                data_after,
            } => {
                let next_start = files.get(i + 1).map(|(z, _)| *z);
                // (`map_or`, not `is_none_or`: the workspace supports Rust 1.80.)
                #[allow(clippy::unnecessary_map_or)]
                let nothing_lost = next_start.map_or(true, |n| n <= last + 1);
                if !data_after && nothing_lost {
                    tracing::warn!(file = %path.display(), offset, reason = %reason, "dropping torn final log entry");
                    report.torn.push((path.clone(), offset, reason));
                    cut(path, offset)?;
                } else if opts.truncate_corrupt {
                    tracing::warn!(file = %path.display(), offset, reason = %reason, "truncating the log at a corrupt entry as asked");
                    let mut aside = vec![];
                    let backup = dir.join("truncated");
                    std::fs::create_dir_all(&backup).map_err(|e| PersistError::io(&backup, e))?;
                    if let Some(name) = path.file_name() {
                        let copy = backup.join(name);
                        std::fs::copy(path, &copy).map_err(|e| PersistError::io(&copy, e))?;
                    }
                    aside.extend(files[i + 1..].iter().map(|(_, p)| p.clone()));
                    move_aside(&dir, &aside, "truncated")?;
                    report.truncated.push((path.clone(), offset, reason));
                    cut(path, offset)?;
                    break;
                } else {
                    let reason = if data_after {
                        reason
                    } else {
                        format!(
                            "{reason}; the next log starts at 0x{:x} but the last good txn is 0x{last:x}",
                            next_start.unwrap_or_default()
                        )
                    };
                    return Err(PersistError::Corrupt {
                        file: path.clone(),
                        offset,
                        reason,
                    });
                }
            }
        }
        i += 1;
    }
    db.last_zxid = last;

    // 3. Ephemerals of sessions that are gone (ZooKeeperServer.loadData, no txn logged).
    for (owner, paths) in db.tree.all_ephemerals() {
        if !db.sessions.contains_key(&owner) {
            for p in paths {
                let _ = db.tree.delete_node(&p, last, &mut Vec::new());
            }
            report.dead_sessions.push(owner);
        }
    }
    let digest = tree_digest(&db.tree);
    report.last_zxid = last;
    if report.fresh
        || report.txns_replayed > 0
        || !report.dead_sessions.is_empty()
        || !report.torn.is_empty()
    {
        let p = write_db(&dir, &db, Some((last, digest)))?;
        report.written_snapshot = Some(p);
    }
    tracing::info!(
        last_zxid = format_args!("0x{last:x}"),
        replayed = report.txns_replayed,
        sessions = db.sessions.len(),
        nodes = db.tree.node_count(),
        "recovered data dir"
    );
    Ok(Recovered { db, digest, report })
}
