//! Server-side backup and retention: purge like `PurgeTxnLog`, a consistent copy of a data dir
//! (newest valid snapshot + the logs after it), and seeding a data dir from such a copy or from
//! any real ZooKeeper data dir.

use std::path::{Path, PathBuf};

use super::snapshot::looks_valid;
use super::{list_files, version_dir, PersistError, LOG_PREFIX, SNAP_PREFIX, VERSION_DIR};

/// Keeps the `keep` newest valid snapshots and the logs needed after the oldest of them; deletes
/// older files. Returns the files removed.
pub fn purge(data_dir: &Path, keep: usize) -> Result<Vec<PathBuf>, PersistError> {
    let dir = version_dir(data_dir);
    let keep = keep.max(1);
    let mut snaps: Vec<(i64, PathBuf)> = list_files(&dir, SNAP_PREFIX)?
        .into_iter()
        .filter(|(_, p)| looks_valid(p))
        .collect();
    if snaps.len() <= keep {
        return Ok(Vec::new());
    }
    snaps.reverse();
    let oldest_kept = snaps[keep - 1].0;
    let logs = list_files(&dir, LOG_PREFIX)?;
    // The newest log starting at or before the oldest kept snapshot may hold txns after it.
    let needed_log = logs
        .iter()
        .filter(|(z, _)| *z <= oldest_kept)
        .map(|(z, _)| *z)
        .max();
    let mut removed = Vec::new();
    let doomed = list_files(&dir, SNAP_PREFIX)?
        .into_iter()
        .filter(|(z, _)| *z < oldest_kept)
        .chain(
            logs.into_iter()
                .filter(|(z, _)| *z < oldest_kept && Some(*z) != needed_log),
        );
    for (_, p) in doomed {
        std::fs::remove_file(&p).map_err(|e| PersistError::io(&p, e))?;
        removed.push(p);
    }
    if !removed.is_empty() {
        tracing::info!(
            removed = removed.len(),
            keep,
            "purged old snapshots and logs"
        );
    }
    Ok(removed)
}

/// Where the files of a data dir live: `dir/version-2` when it exists, else `dir` itself when it
/// holds snapshot or log files (a bare `version-2` directory was given).
pub fn files_dir(dir: &Path) -> PathBuf {
    let v = dir.join(VERSION_DIR);
    if v.is_dir() {
        v
    } else {
        dir.to_owned()
    }
}

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackupInfo {
    /// Zxid of the snapshot copied.
    pub snapshot_zxid: i64,
    /// Files copied (names).
    pub files: Vec<String>,
}

/// Copies the newest valid snapshot of `data_dir` and every log that may hold txns after it into
/// `dest/version-2`. `limit` caps the copy of one log file at a length (the file still being
/// appended to, at a point where everything before is written), so the copy ends on an entry
/// boundary.
pub fn backup_dir(
    data_dir: &Path,
    dest: &Path,
    limit: Option<(PathBuf, u64)>,
) -> Result<BackupInfo, PersistError> {
    let src = files_dir(data_dir);
    let snaps: Vec<(i64, PathBuf)> = list_files(&src, SNAP_PREFIX)?
        .into_iter()
        .filter(|(_, p)| looks_valid(p))
        .collect();
    let Some((sz, snap)) = snaps.last().cloned() else {
        return Err(PersistError::Unrecoverable {
            dir: data_dir.to_owned(),
            reason: "no valid snapshot to back up".into(),
        });
    };
    let logs = list_files(&src, LOG_PREFIX)?;
    let first = logs.iter().rposition(|(z, _)| *z <= sz).unwrap_or(0);
    let out = version_dir(dest);
    std::fs::create_dir_all(&out).map_err(|e| PersistError::io(&out, e))?;
    let mut files = Vec::new();
    let mut copy = |from: &Path, len: Option<u64>| -> Result<(), PersistError> {
        let name = from.file_name().unwrap_or_default();
        let to = out.join(name);
        match len {
            None => {
                std::fs::copy(from, &to).map_err(|e| PersistError::io(&to, e))?;
            }
            Some(n) => {
                use std::io::{Read, Write};
                let mut r = std::fs::File::open(from)
                    .map_err(|e| PersistError::io(from, e))?
                    .take(n);
                let mut w = std::fs::File::create(&to).map_err(|e| PersistError::io(&to, e))?;
                std::io::copy(&mut r, &mut w).map_err(|e| PersistError::io(&to, e))?;
                w.flush().map_err(|e| PersistError::io(&to, e))?;
            }
        }
        std::fs::File::open(&to)
            .and_then(|f| f.sync_all())
            .map_err(|e| PersistError::io(&to, e))?;
        files.push(name.to_string_lossy().into_owned());
        Ok(())
    };
    copy(&snap, None)?;
    for (_, l) in logs.iter().skip(first) {
        let len = limit
            .as_ref()
            .filter(|(p, _)| p.file_name() == l.file_name())
            .map(|(_, n)| *n);
        copy(l, len)?;
    }
    super::sync_dir(&out)?;
    tracing::info!(dest = %dest.display(), snapshot = format_args!("0x{sz:x}"), files = files.len(), "backup written");
    Ok(BackupInfo {
        snapshot_zxid: sz,
        files,
    })
}

/// Seeds an empty `data_dir` with the snapshot and log files of `backup` (a backup made by
/// [`backup_dir`], a ZooKeeper data dir, or its `version-2` directory).
pub fn restore_into(backup: &Path, data_dir: &Path) -> Result<(), PersistError> {
    let src = files_dir(backup);
    let dest = version_dir(data_dir);
    std::fs::create_dir_all(&dest).map_err(|e| PersistError::io(&dest, e))?;
    if !list_files(&dest, SNAP_PREFIX)?.is_empty() || !list_files(&dest, LOG_PREFIX)?.is_empty() {
        return Err(PersistError::Unrecoverable {
            dir: data_dir.to_owned(),
            reason: "restore target already holds snapshots or logs".into(),
        });
    }
    for (_, p) in list_files(&src, SNAP_PREFIX)?
        .into_iter()
        .chain(list_files(&src, LOG_PREFIX)?)
    {
        let to = dest.join(p.file_name().unwrap_or_default());
        std::fs::copy(&p, &to).map_err(|e| PersistError::io(&to, e))?;
    }
    super::sync_dir(&dest)?;
    Ok(())
}
