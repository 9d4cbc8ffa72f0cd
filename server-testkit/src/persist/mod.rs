//! Persistence in Apache ZooKeeper 3.8's own on-disk format (`docs/disk-format.md`): a txn log
//! (`version-2/log.<zxid>`), snapshots (`version-2/snapshot.<zxid>`), recovery, purge and
//! backup/restore.
//!
//! Layering (sans-IO first):
//! - [`checksum`]: Adler-32 and CRC-32. The txns to log come from the core as
//!   [`Output::Committed`](crate::core::Output::Committed), with the tree digest the core keeps
//!   (the one path: the same txns are applied, logged and replayed).
//! - [`txnlog`]: log file encoding, a writer with preallocation and a strict reader.
//! - [`snapshot`]: snapshot encoding and decoding, fuzzy serialization in chunks.
//! - [`recovery`]: newest valid snapshot + replay of the logs after it.
//! - [`pipeline`]: the log writer thread: group commit, fsync before replies are released,
//!   rolls, background snapshots, crash simulation.
//! - [`backup`]: consistent copies of a data dir, purge, restore to a zxid.
//! - [`logread`]: reads of the log from a zxid (DIFF) and truncation to a zxid (TRUNC).
//! - [`rebuild`]: the tree at a zxid rebuilt from disk (after TRUNC, for SNAP), and the
//!   installation of a leader's snapshot.
//! - [`epoch`]: the quorum's `acceptedEpoch` / `currentEpoch` files (never used standalone).
//! - [`secret`]: the key of session passwords, kept in `<dataDir>/zkit-secret` so that sessions
//!   survive a restart of the process.

pub mod backup;
pub mod checksum;
pub mod epoch;
pub mod logread;
pub mod pipeline;
pub mod rebuild;
pub mod recovery;
pub mod secret;
pub mod snapshot;
pub mod txnlog;

use std::path::{Path, PathBuf};

pub use backup::purge;
pub use recovery::{recover, RecoveryReport};

/// Name of the directory under the data dir that holds the files.
pub const VERSION_DIR: &str = "version-2";
/// Prefix of txn log files.
pub const LOG_PREFIX: &str = "log";
/// Prefix of snapshot files.
pub const SNAP_PREFIX: &str = "snapshot";

/// Why persistence failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PersistError {
    /// An I/O call failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is damaged at `offset` (before its end: not a torn final write).
    #[error("{file} is corrupt at offset {offset}: {reason}")]
    Corrupt {
        /// The file.
        file: PathBuf,
        /// Byte offset of the bad record.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The session secret file exists but does not hold a secret. It is never replaced
    /// silently: a new secret would expire every session restored from the data dir.
    #[error(
        "{file} does not hold a valid session secret ({reason}); restore it from a copy of \
         the data dir, or delete it to start with a new secret (every session restored from \
         the data dir then expires)"
    )]
    BadSecret {
        /// The secret file.
        file: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The data dir cannot be recovered for another reason.
    #[error("cannot recover {dir}: {reason}")]
    Unrecoverable {
        /// The data dir.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
}

impl PersistError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> PersistError {
        PersistError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Persistence settings (ZooKeeper's names in parentheses).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PersistOptions {
    /// fsync the log before replies are released (`forceSync`, default true).
    pub force_sync: bool,
    /// Txns between snapshots (`snapCount`, default 100 000; a snapshot also rolls the log).
    pub snap_count: u64,
    /// Roll the log after this many txns even without a snapshot (default: never).
    pub roll_after: Option<u64>,
    /// Log preallocation step in bytes (`preAllocSize`, default 64 MiB; 0 = no padding).
    pub prealloc: u64,
    /// After each snapshot, purge keeping this many newest snapshots (default: no purge).
    pub purge_keep: Option<usize>,
    /// Truncate the log at a corrupt entry instead of refusing to start (default false).
    pub truncate_corrupt: bool,
    /// Recover only txns up to this zxid (point-in-time restore).
    pub restore_to_zxid: Option<i64>,
    /// Txn log records up to this size are read without further checks (default and minimum:
    /// ZooKeeper's own limit, 2,097,150 bytes — `jute.maxbuffer` plus its extra size); a longer
    /// one is accepted once its end marker and checksum check out, so whatever the writer wrote
    /// reloads.
    pub read_limit: u64,
}

impl Default for PersistOptions {
    fn default() -> Self {
        PersistOptions {
            force_sync: true,
            snap_count: 100_000,
            roll_after: None,
            prealloc: 64 * 1024 * 1024,
            purge_keep: None,
            truncate_corrupt: false,
            restore_to_zxid: None,
            read_limit: txnlog::DEFAULT_READ_LIMIT,
        }
    }
}

impl PersistOptions {
    /// See [`PersistOptions::force_sync`].
    pub fn force_sync(mut self, on: bool) -> Self {
        self.force_sync = on;
        self
    }
    /// See [`PersistOptions::snap_count`] (minimum 2, like ZooKeeper).
    pub fn snap_count(mut self, n: u64) -> Self {
        self.snap_count = n.max(2);
        self
    }
    /// See [`PersistOptions::roll_after`].
    pub fn roll_after(mut self, n: Option<u64>) -> Self {
        self.roll_after = n.map(|n| n.max(1));
        self
    }
    /// See [`PersistOptions::prealloc`].
    pub fn prealloc(mut self, bytes: u64) -> Self {
        self.prealloc = bytes;
        self
    }
    /// See [`PersistOptions::purge_keep`] (at least 1).
    pub fn purge_keep(mut self, n: Option<usize>) -> Self {
        self.purge_keep = n.map(|n| n.max(1));
        self
    }
    /// See [`PersistOptions::truncate_corrupt`].
    pub fn truncate_corrupt(mut self, on: bool) -> Self {
        self.truncate_corrupt = on;
        self
    }
    /// See [`PersistOptions::read_limit`] (never below ZooKeeper's own 2,097,150 bytes).
    pub fn read_limit(mut self, bytes: u64) -> Self {
        self.read_limit = bytes.max(txnlog::DEFAULT_READ_LIMIT);
        self
    }
    /// See [`PersistOptions::restore_to_zxid`].
    pub fn restore_to_zxid(mut self, zxid: Option<i64>) -> Self {
        self.restore_to_zxid = zxid;
        self
    }
}

/// `<data_dir>/version-2`.
pub fn version_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(VERSION_DIR)
}

/// `log.<hex>` / `snapshot.<hex>`: lowercase hex, no padding.
pub fn file_name(prefix: &str, zxid: i64) -> String {
    format!("{prefix}.{:x}", zxid)
}

/// The zxid in a file name with `prefix`, the way ZooKeeper parses it (field 1 of the name split
/// on `.`, as hex); None when the name does not parse.
pub fn zxid_of(name: &str, prefix: &str) -> Option<i64> {
    let mut parts = name.split('.');
    if parts.next()? != prefix {
        return None;
    }
    u64::from_str_radix(parts.next()?, 16)
        .ok()
        .map(|z| z as i64)
}

/// Files in `dir` with `prefix`, sorted by zxid ascending.
pub fn list_files(dir: &Path, prefix: &str) -> Result<Vec<(i64, PathBuf)>, PersistError> {
    let mut v = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(v),
        Err(e) => return Err(PersistError::io(dir, e)),
    };
    for e in rd {
        let e = e.map_err(|e| PersistError::io(dir, e))?;
        if !e.file_type().map(|t| t.is_file()).unwrap_or(false) {
            continue;
        }
        if let Some(z) = e.file_name().to_str().and_then(|n| zxid_of(n, prefix)) {
            v.push((z, e.path()));
        }
    }
    v.sort();
    Ok(v)
}

/// fsyncs a directory so that creates and renames in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), PersistError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| PersistError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_like_zookeeper() {
        assert_eq!(file_name(LOG_PREFIX, 0x1a), "log.1a");
        assert_eq!(zxid_of("log.1a", LOG_PREFIX), Some(0x1a));
        assert_eq!(
            zxid_of("snapshot.100000003", SNAP_PREFIX),
            Some(0x1_0000_0003)
        );
        assert_eq!(zxid_of("snapshot.11.gz", SNAP_PREFIX), Some(0x11));
        assert_eq!(zxid_of("log.zz", LOG_PREFIX), None);
        assert_eq!(zxid_of(".snapshot-tmp.5", SNAP_PREFIX), None);
    }
}
