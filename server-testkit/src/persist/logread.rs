//! Reading the txn log from a zxid (what a ZAB leader sends as DIFF) and truncating it to a
//! zxid (what a learner does on TRUNC), the way ZooKeeper's `FileTxnLog` does both.
//!
//! A read from `zxid` opens the log files `FileTxnLog.getLogFiles` picks — the newest file
//! whose name (its first zxid) is `<= zxid`, and every later one — and skips the entries up to
//! `zxid`. The entries come out as [`Committed`] txns; [`encode_payload`] turns one into the
//! bytes ZAB ships in a PROPOSAL (`TxnHeader`, the txn record and its `TxnDigest`, like
//! `Util.marshallTxnEntry`).
//!
//! Used by `quorum::disklog`, which is not wired into the server yet (hence `dead_code`).
#![allow(dead_code)]

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::txnlog::{encode_payload, read_log_with, LogEnd};
use super::{list_files, PersistError, LOG_PREFIX};
use crate::core::Committed;

/// The log files a read from `zxid` has to open, oldest first (`FileTxnLog.getLogFiles`): the
/// newest file named `<= zxid` (it may hold `zxid`) and every later one; every file when none
/// is named `<= zxid`.
pub fn log_files_from(dir: &Path, zxid: i64) -> Result<Vec<(i64, PathBuf)>, PersistError> {
    let files = list_files(dir, LOG_PREFIX)?;
    let first = files.iter().rposition(|(z, _)| *z <= zxid).unwrap_or(0);
    Ok(files.into_iter().skip(first).collect())
}

/// The bytes of a logged txn as a ZAB PROPOSAL carries them.
pub fn proposal_bytes(c: &Committed) -> Bytes {
    encode_payload(c).freeze()
}

/// The txns logged after a zxid, file by file (one file's entries in memory at a time).
///
/// A damaged entry with data after it is an error naming the file and offset. A torn final
/// entry (nothing but zeros after it, an append cut by a crash) ends the file; that is only
/// accepted in the newest file, or when the next file starts right after the last good txn,
/// the rule recovery applies.
#[derive(Debug)]
pub struct LogIter {
    files: VecDeque<(i64, PathBuf)>,
    after: i64,
    read_limit: u64,
    batch: VecDeque<Committed>,
    last: i64,
    failed: bool,
}

impl LogIter {
    /// The txns with a zxid above `after` in the logs of the version dir `dir`.
    pub fn new(dir: &Path, after: i64, read_limit: u64) -> Result<LogIter, PersistError> {
        Ok(LogIter {
            files: log_files_from(dir, after)?.into(),
            after,
            read_limit,
            batch: VecDeque::new(),
            last: i64::MIN,
            failed: false,
        })
    }

    /// Reads the next file into `batch`.
    fn load_next(&mut self) -> Result<bool, PersistError> {
        let Some((_, path)) = self.files.pop_front() else {
            return Ok(false);
        };
        let (after, mut last) = (self.after, self.last);
        let mut batch = VecDeque::new();
        let end = read_log_with(&path, self.read_limit, |e| {
            let z = e.txn.hdr.zxid;
            if z <= last {
                return Err(PersistError::Corrupt {
                    file: path.clone(),
                    offset: e.offset,
                    reason: format!("zxid 0x{z:x} follows 0x{last:x}: out of order"),
                });
            }
            last = z;
            if z > after {
                batch.push_back(Committed {
                    txn: e.txn,
                    digest: e.digest,
                });
            }
            Ok(true)
        })?;
        if let LogEnd::Damaged {
            offset,
            reason,
            data_after,
        } = end
        {
            let next = self.files.front().map(|(z, _)| *z);
            #[allow(clippy::unnecessary_map_or)] // `is_none_or` needs Rust 1.82
            let nothing_lost = next.map_or(true, |n| n <= last.saturating_add(1));
            if data_after || !nothing_lost {
                return Err(PersistError::Corrupt {
                    file: path,
                    offset,
                    reason,
                });
            }
            tracing::debug!(file = %path.display(), offset, reason = %reason, "log read stops at a torn final entry");
        }
        self.last = last;
        self.batch = batch;
        Ok(true)
    }
}

impl Iterator for LogIter {
    type Item = Result<Committed, PersistError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            if let Some(c) = self.batch.pop_front() {
                return Some(Ok(c));
            }
            match self.load_next() {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// The zxid of the last txn in the logs of `dir` (None when they hold none).
pub fn last_logged(dir: &Path, read_limit: u64) -> Result<Option<i64>, PersistError> {
    let files = list_files(dir, LOG_PREFIX)?;
    for (_, path) in files.iter().rev() {
        let mut last = None;
        // A torn final entry (a crash) is not part of the log; recovery cuts it.
        read_log_with(path, read_limit, |e| {
            last = Some(e.txn.hdr.zxid);
            Ok(true)
        })?;
        if last.is_some() {
            return Ok(last);
        }
    }
    Ok(None)
}

/// Drops every logged txn after `zxid` (TRUNC), like `FileTxnLog.truncate`: the file that
/// holds `zxid` is cut right after its last entry `<= zxid` (removed when no entry is left),
/// every later file is deleted, and the cuts are fsynced before this returns. Returns the
/// zxid of the last txn left in the logs.
///
/// Where ZooKeeper keeps the first entry past `zxid` when `zxid` itself is not in the log, this
/// keeps nothing above `zxid` (a leader's TRUNC point is always a zxid of its own history).
pub fn truncate_log(dir: &Path, zxid: i64, read_limit: u64) -> Result<Option<i64>, PersistError> {
    let files = list_files(dir, LOG_PREFIX)?;
    let mut kept = None;
    let mut changed = false;
    for (i, (start, path)) in files.iter().enumerate() {
        if *start > zxid {
            std::fs::remove_file(path).map_err(|e| PersistError::io(path, e))?;
            tracing::info!(file = %path.display(), "log file removed by truncation");
            changed = true;
            continue;
        }
        #[allow(clippy::unnecessary_map_or)] // `is_none_or` needs Rust 1.82
        let holds_zxid = files.get(i + 1).map_or(true, |(n, _)| *n > zxid);
        if !holds_zxid {
            continue;
        }
        // The file that holds `zxid`: find the end of its last entry <= zxid.
        let mut cut = 16u64;
        let mut last = None;
        let end = read_log_with(path, read_limit, |e| {
            if e.txn.hdr.zxid > zxid {
                return Ok(false);
            }
            cut = e.end;
            last = Some(e.txn.hdr.zxid);
            Ok(true)
        })?;
        if let LogEnd::Damaged {
            offset,
            reason,
            data_after: true,
        } = end
        {
            return Err(PersistError::Corrupt {
                file: path.clone(),
                offset,
                reason,
            });
        }
        if last.is_none() {
            std::fs::remove_file(path).map_err(|e| PersistError::io(path, e))?;
        } else {
            std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|f| f.set_len(cut).and_then(|_| f.sync_all()))
                .map_err(|e| PersistError::io(path, e))?;
        }
        tracing::info!(file = %path.display(), offset = cut, zxid = format_args!("0x{zxid:x}"), "log truncated");
        changed = true;
        kept = last;
    }
    if changed {
        super::sync_dir(dir)?;
    }
    match kept {
        Some(z) => Ok(Some(z)),
        None => last_logged(dir, read_limit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Txn, TxnBody};
    use crate::persist::txnlog::{decode_payload, LogWriter, DEFAULT_READ_LIMIT};
    use tempfile::TempDir;
    use zkit_proto::txn::SetDataTxn;

    fn set(zxid: i64) -> Committed {
        Committed {
            txn: Txn::new(
                0x1234,
                zxid as i32,
                zxid,
                1_700_000_000_000 + zxid,
                TxnBody::SetData(SetDataTxn {
                    path: "/a".into(),
                    data: Some(Bytes::from(format!("v{zxid:x}"))),
                    version: zxid as i32,
                }),
            ),
            digest: Some(zxid * 7),
        }
    }

    /// Logs `zxids`, starting a new file before each zxid in `rolls`.
    fn write(dir: &Path, zxids: &[i64], rolls: &[i64]) {
        let mut w = LogWriter::new(dir, 4096);
        for z in zxids {
            if rolls.contains(z) {
                w.roll().unwrap();
            }
            w.append(&set(*z));
        }
        w.roll().unwrap();
    }

    fn read(dir: &Path, after: i64) -> Vec<i64> {
        LogIter::new(dir, after, DEFAULT_READ_LIMIT)
            .unwrap()
            .map(|c| c.unwrap().txn.hdr.zxid)
            .collect()
    }

    fn e(epoch: i64, n: i64) -> i64 {
        epoch << 32 | n
    }

    #[test]
    fn reads_from_the_middle_of_a_file_and_across_files() {
        let d = TempDir::new().unwrap();
        let zs: Vec<i64> = (1..=9)
            .map(|n| e(1, n))
            .chain((1..=4).map(|n| e(2, n)))
            .collect();
        write(d.path(), &zs, &[e(1, 5), e(2, 1)]);
        assert_eq!(log_files_from(d.path(), e(1, 3)).unwrap().len(), 3);
        assert_eq!(log_files_from(d.path(), e(1, 7)).unwrap().len(), 2);
        assert_eq!(read(d.path(), e(1, 3)), zs[3..].to_vec());
        assert_eq!(read(d.path(), e(1, 5)), zs[5..].to_vec());
        assert_eq!(read(d.path(), e(1, 9)), zs[9..].to_vec());
        assert_eq!(read(d.path(), 0), zs);
        assert!(read(d.path(), e(2, 4)).is_empty());
        assert_eq!(
            last_logged(d.path(), DEFAULT_READ_LIMIT).unwrap(),
            Some(e(2, 4))
        );
    }

    #[test]
    fn entries_come_out_as_the_proposal_bytes() {
        let d = TempDir::new().unwrap();
        write(d.path(), &[1, 2, 3], &[]);
        let c = LogIter::new(d.path(), 1, DEFAULT_READ_LIMIT)
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let bytes = proposal_bytes(&c);
        assert_eq!(bytes, proposal_bytes(&set(2)));
        let (txn, digest) = decode_payload(bytes).unwrap();
        assert_eq!((txn, digest), (set(2).txn, Some(14)));
    }

    #[test]
    fn truncates_in_the_middle_of_a_file() {
        let d = TempDir::new().unwrap();
        write(d.path(), &(1..=10).collect::<Vec<_>>(), &[6]);
        assert_eq!(
            truncate_log(d.path(), 3, DEFAULT_READ_LIMIT).unwrap(),
            Some(3)
        );
        assert_eq!(read(d.path(), 0), vec![1, 2, 3]);
        let files = list_files(d.path(), LOG_PREFIX).unwrap();
        assert_eq!(files.len(), 1, "the later file is deleted");
        // Cut right after entry 3: no padding, nothing else.
        let len = std::fs::metadata(&files[0].1).unwrap().len();
        let mut ends = vec![];
        read_log_with(&files[0].1, DEFAULT_READ_LIMIT, |e| {
            ends.push(e.end);
            Ok(true)
        })
        .unwrap();
        assert_eq!(Some(&len), ends.last());
        // Appending after the truncation starts a new file and reads on.
        let mut w = LogWriter::new(d.path(), 4096);
        w.append(&set(4));
        w.roll().unwrap();
        assert_eq!(read(d.path(), 2), vec![3, 4]);
    }

    #[test]
    fn truncates_across_files() {
        let d = TempDir::new().unwrap();
        write(d.path(), &(1..=12).collect::<Vec<_>>(), &[5, 9]);
        assert_eq!(
            truncate_log(d.path(), 8, DEFAULT_READ_LIMIT).unwrap(),
            Some(8)
        );
        assert_eq!(read(d.path(), 0), (1..=8).collect::<Vec<_>>());
        assert_eq!(list_files(d.path(), LOG_PREFIX).unwrap().len(), 2);
        // At a file's last entry: the file stays whole.
        assert_eq!(
            truncate_log(d.path(), 4, DEFAULT_READ_LIMIT).unwrap(),
            Some(4)
        );
        assert_eq!(read(d.path(), 0), (1..=4).collect::<Vec<_>>());
        // Below every entry: nothing is left.
        assert_eq!(truncate_log(d.path(), 0, DEFAULT_READ_LIMIT).unwrap(), None);
        assert!(list_files(d.path(), LOG_PREFIX).unwrap().is_empty());
    }

    #[test]
    fn damage_before_the_end_is_an_error() {
        let d = TempDir::new().unwrap();
        write(d.path(), &[1, 2, 3], &[]);
        let path = d.path().join("log.1");
        let mut b = std::fs::read(&path).unwrap();
        b[16 + 20] ^= 0x01; // inside the first entry's payload
        std::fs::write(&path, &b).unwrap();
        let r: Result<Vec<_>, _> = LogIter::new(d.path(), 0, DEFAULT_READ_LIMIT)
            .unwrap()
            .collect();
        assert!(
            matches!(r, Err(PersistError::Corrupt { offset: 16, .. })),
            "{r:?}"
        );
        assert!(truncate_log(d.path(), 2, DEFAULT_READ_LIMIT).is_err());
    }
}
