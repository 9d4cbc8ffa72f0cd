//! The [`Log`] of a peer over a real data dir, in ZooKeeper's on-disk format: the txn log
//! (`version-2/log.*`, through the persistence's [`LogWriter`]), snapshots and the two epoch
//! files.
//!
//! - Appends are written to the current log file as they come (readable at once, not yet
//!   durable); durability is reported back like [`MemoryDisk`](super::shell::disk)'s: the shell
//!   takes a [`SyncTicket`] after a batch of work ([`DiskLog::begin_sync`]) and completes it
//!   off the peer's thread ([`DiskLog::complete_sync`]), which fsyncs and returns the zxid
//!   now durable for [`Peer::durable`](super::peer::Peer::durable). One fsync covers every
//!   append before it (group commit).
//! - Reads from a zxid (DIFF) come from an in-memory tail of the latest appends when it
//!   reaches back far enough (like ZooKeeper's `committedLog`), else from the log files.
//! - TRUNC cuts the log files like `FileTxnLog.truncate` and removes snapshots past the cut;
//!   the state machine then rebuilds its tree from disk ([`DiskLog::rebuild`]), it never
//!   un-applies anything.
//! - SNAP bytes are ZooKeeper's snapshot file format, of the state rebuilt from disk at the
//!   requested zxid; a received snapshot replaces the whole history on disk.
//!
//! The [`Log`] trait cannot fail, a disk can: the first error is kept ([`DiskLog::failure`]),
//! every later write is refused and no durability is reported any more. The shell must check
//! it after each call into the peer and stop the server (ZooKeeper exits on a failed write).
//!
//! Open a data dir with [`DiskLog::open`] after [`recover`](crate::persist::recover) (which
//! validates it and cuts a torn final append).

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tracing::{error, warn};

use super::Log;
use crate::core::{Committed, Database, TreeDigest};
use crate::persist::epoch::{
    load_epochs, write_epoch, Epochs, ACCEPTED_EPOCH_FILE, CURRENT_EPOCH_FILE,
};
use crate::persist::logread::{last_logged, log_files_from, proposal_bytes, truncate_log, LogIter};
use crate::persist::rebuild::{install_snapshot, load_tree, snapshot_bytes, Rebuilt};
use crate::persist::txnlog::{decode_payload, LogWriter};
use crate::persist::{list_files, version_dir, PersistError, PersistOptions, SNAP_PREFIX};

/// Latest appends kept in memory for reads (entries; ZooKeeper keeps 500 committed ones).
pub(crate) const TAIL_ENTRIES: usize = 10_000;
/// ... and at most this many bytes of them.
pub(crate) const TAIL_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug)]
struct Inner {
    data_dir: PathBuf,
    dir: PathBuf,
    opts: PersistOptions,
    extended_types: bool,
    writer: LogWriter,
    /// Txns appended to the current log file (written or still buffered).
    in_file: u64,
    last_zxid: i64,
    /// The latest appends; every logged txn after `tail_base` is in it.
    tail: VecDeque<(i64, Bytes)>,
    tail_base: i64,
    tail_bytes: usize,
    /// The last zxid an fsync covered.
    durable: i64,
    /// Bumped by every truncation and snapshot load: an fsync that straddles one claims nothing.
    generation: u64,
    /// A handle on the current log file for fsyncs off the lock.
    sync_file: Option<(PathBuf, Arc<File>)>,
    /// The log file whose directory entry is known durable.
    dir_synced: Option<PathBuf>,
    epochs: Epochs,
    failure: Option<Arc<PersistError>>,
    /// The tree of the snapshot a leader sent last, kept until the state machine rebuilds at
    /// its zxid (it would otherwise read back the file just written).
    restored: Option<Database>,
}

/// What an fsync started with; see [`DiskLog::begin_sync`].
#[derive(Debug, Clone)]
pub(crate) struct SyncTicket {
    zxid: i64,
    generation: u64,
    file: Option<(PathBuf, Arc<File>)>,
    new_file: bool,
    dir: PathBuf,
}

/// A shared handle on one server's data dir as a [`Log`]; clones see the same log. The lock
/// is only taken inside synchronous calls, never across an fsync of the log or an `.await`.
#[derive(Debug, Clone)]
pub(crate) struct DiskLog {
    inner: Arc<Mutex<Inner>>,
}

impl DiskLog {
    /// Opens a recovered data dir: its last zxid from the logs and snapshots, its epochs with
    /// `QuorumPeer.loadDataBase`'s rules (absent files created from the last zxid; a damaged
    /// or inconsistent one refused). Every logged txn is taken as durable.
    pub fn open(
        data_dir: &Path,
        opts: PersistOptions,
        extended_types: bool,
    ) -> Result<DiskLog, PersistError> {
        let dir = version_dir(data_dir);
        std::fs::create_dir_all(&dir).map_err(|e| PersistError::io(&dir, e))?;
        let logged = last_logged(&dir, opts.read_limit)?.unwrap_or(0);
        let snap = list_files(&dir, SNAP_PREFIX)?.last().map_or(0, |(z, _)| *z);
        let last_zxid = logged.max(snap);
        let epochs = load_epochs(&dir, last_zxid)?;
        Ok(DiskLog {
            inner: Arc::new(Mutex::new(Inner {
                data_dir: data_dir.to_owned(),
                writer: LogWriter::new(&dir, opts.prealloc),
                in_file: 0,
                dir,
                opts,
                extended_types,
                last_zxid,
                tail: VecDeque::new(),
                tail_base: last_zxid,
                tail_bytes: 0,
                durable: last_zxid,
                generation: 0,
                sync_file: None,
                dir_synced: None,
                epochs,
                failure: None,
                restored: None,
            })),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every method finishes its mutation before returning: a poisoned lock is consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The first disk error, after which the log refuses writes (the server must stop).
    pub fn failure(&self) -> Option<Arc<PersistError>> {
        self.lock().failure.clone()
    }

    /// Breaks the log as a failed write would (tests of what a failed disk stops).
    #[cfg(test)]
    pub fn fail_for_test(&self, e: PersistError) {
        self.lock().fail(e);
    }

    /// The data dir.
    pub fn data_dir(&self) -> PathBuf {
        self.lock().data_dir.clone()
    }

    /// The tree at `upto` (`i64::MAX`: everything logged) rebuilt from disk: after a TRUNC
    /// ([`Event::Reset`](super::peer::Event::Reset)) or a SNAP, and at start.
    pub fn rebuild(&self, upto: i64) -> Result<Rebuilt, PersistError> {
        let mut s = self.lock();
        if let Some(db) = s.restored.take().filter(|db| db.last_zxid == upto) {
            let digest = TreeDigest::of(&db.tree).value();
            return Ok(Rebuilt { db, digest });
        }
        s.flush();
        load_tree(&s.data_dir, upto, s.extended_types, s.opts.read_limit)
    }

    /// Writes what was appended to the log file and starts an fsync covering it; complete
    /// it with [`DiskLog::complete_sync`] (on a thread that may block).
    pub fn begin_sync(&self) -> SyncTicket {
        let mut s = self.lock();
        s.flush();
        let file = match s.writer.written_point() {
            Some((path, _)) if s.failure.is_none() => s.sync_handle(&path),
            _ => None,
        };
        SyncTicket {
            zxid: s.last_zxid,
            generation: s.generation,
            new_file: file
                .as_ref()
                .is_some_and(|(p, _)| s.dir_synced.as_ref() != Some(p)),
            file,
            dir: s.dir.clone(),
        }
    }

    /// Runs the fsync of `t`: the zxid now durable, or `None` when the log was truncated or
    /// replaced meanwhile (the next fsync covers it) or the disk failed.
    pub fn complete_sync(&self, t: SyncTicket) -> Option<i64> {
        let r = match &t.file {
            Some((path, f)) => f.sync_data().map_err(|e| PersistError::io(path, e)),
            None => Ok(()),
        };
        let r = r.and_then(|_| {
            if t.new_file {
                crate::persist::sync_dir(&t.dir)
            } else {
                Ok(())
            }
        });
        let mut s = self.lock();
        if let Err(e) = r {
            s.fail(e);
            return None;
        }
        if s.generation != t.generation || s.failure.is_some() {
            return None;
        }
        if t.new_file {
            s.dir_synced = t.file.map(|(p, _)| p);
        }
        s.durable = s.durable.max(t.zxid.min(s.last_zxid));
        Some(s.durable)
    }

    /// Writes and fsyncs everything appended, at once; returns the zxid now durable.
    pub fn fsync(&self) -> Option<i64> {
        let t = self.begin_sync();
        self.complete_sync(t)
    }

    /// The last zxid an fsync covered.
    pub fn synced_zxid(&self) -> i64 {
        self.lock().durable
    }

    /// Whether something was appended since the last fsync.
    pub fn unsynced(&self) -> bool {
        let s = self.lock();
        s.last_zxid > s.durable
    }
}

impl Inner {
    fn fail(&mut self, e: PersistError) {
        if self.failure.is_none() {
            error!(error = %e, dir = %self.data_dir.display(), "data dir failed; no more writes are accepted");
            self.failure = Some(Arc::new(e));
        }
    }

    /// Writes the appended entries to the file (not fsynced), so that reads see them.
    fn flush(&mut self) {
        if self.failure.is_some() {
            return;
        }
        if let Err(e) = self.writer.commit(false) {
            self.fail(e);
        }
    }

    fn sync_handle(&mut self, path: &Path) -> Option<(PathBuf, Arc<File>)> {
        if let Some((p, f)) = &self.sync_file {
            if p == path {
                return Some((p.clone(), f.clone()));
            }
        }
        match std::fs::OpenOptions::new().write(true).open(path) {
            Ok(f) => {
                let h = (path.to_owned(), Arc::new(f));
                self.sync_file = Some(h.clone());
                Some(h)
            }
            Err(e) => {
                self.fail(PersistError::io(path, e));
                None
            }
        }
    }

    /// Closes the current log file (fsynced); the next append starts a new one.
    fn close_file(&mut self) -> Result<(), PersistError> {
        self.writer.roll()?;
        self.sync_file = None;
        self.in_file = 0;
        Ok(())
    }

    fn push_tail(&mut self, zxid: i64, txn: Bytes) {
        self.tail_bytes += txn.len();
        self.tail.push_back((zxid, txn));
        while self.tail.len() > TAIL_ENTRIES || self.tail_bytes > TAIL_BYTES {
            let Some((z, t)) = self.tail.pop_front() else {
                break;
            };
            self.tail_bytes -= t.len();
            self.tail_base = z;
        }
    }

    fn reset_tail(&mut self, base: i64) {
        self.tail.clear();
        self.tail_bytes = 0;
        self.tail_base = base;
    }

    /// The logged txns after `zxid` read from the files; None when the logs do not reach back
    /// to it (ZooKeeper's rule: `zxid` must be in the log; or it is a snapshot's zxid and every
    /// logged txn is later, so the log starts right after that snapshot).
    fn read_after(&mut self, zxid: i64) -> Result<Option<Vec<(i64, Bytes)>>, PersistError> {
        self.flush();
        let first = log_files_from(&self.dir, i64::MIN)?
            .first()
            .map(|(z, _)| *z);
        let reaches = match first {
            Some(f) if zxid >= f => self.logged(zxid)?,
            Some(_) | None => self.is_snapshot(zxid)?,
        };
        if !reaches {
            return Ok(None);
        }
        let mut out = Vec::new();
        for c in LogIter::new(&self.dir, zxid, self.opts.read_limit)? {
            let c = c?;
            out.push((c.txn.hdr.zxid, proposal_bytes(&c)));
        }
        Ok(Some(out))
    }

    fn is_snapshot(&self, zxid: i64) -> Result<bool, PersistError> {
        Ok(list_files(&self.dir, SNAP_PREFIX)?
            .iter()
            .any(|(z, _)| *z == zxid))
    }

    /// Whether `zxid` is a txn in the log files.
    fn logged(&mut self, zxid: i64) -> Result<bool, PersistError> {
        self.flush();
        for c in LogIter::new(&self.dir, zxid.saturating_sub(1), self.opts.read_limit)? {
            let z = c?.txn.hdr.zxid;
            if z >= zxid {
                return Ok(z == zxid);
            }
        }
        Ok(false)
    }

    /// The largest zxid in the history `<= zxid`, from the files.
    fn floor_on_disk(&mut self, zxid: i64) -> Result<i64, PersistError> {
        self.flush();
        let mut best = list_files(&self.dir, SNAP_PREFIX)?
            .iter()
            .map(|(z, _)| *z)
            .filter(|z| *z <= zxid)
            .max()
            .unwrap_or(0);
        for c in LogIter::new(&self.dir, i64::MIN, self.opts.read_limit)? {
            let z = c?.txn.hdr.zxid;
            if z > zxid {
                break;
            }
            best = best.max(z);
        }
        Ok(best)
    }

    fn truncate(&mut self, zxid: i64) -> Result<(), PersistError> {
        let new_last = if zxid >= self.tail_base {
            self.tail
                .iter()
                .rev()
                .map(|(z, _)| *z)
                .find(|z| *z <= zxid)
                .unwrap_or(self.tail_base)
        } else {
            self.floor_on_disk(zxid)?
        };
        self.close_file()?;
        truncate_log(&self.dir, zxid, self.opts.read_limit)?;
        // A snapshot past the cut holds txns that are gone; recovery would load it.
        let mut removed = false;
        for (z, p) in list_files(&self.dir, SNAP_PREFIX)? {
            if z > zxid {
                std::fs::remove_file(&p).map_err(|e| PersistError::io(&p, e))?;
                removed = true;
            }
        }
        if removed {
            crate::persist::sync_dir(&self.dir)?;
        }
        self.writer = LogWriter::new(&self.dir, self.opts.prealloc);
        self.last_zxid = new_last;
        if zxid < self.tail_base {
            self.reset_tail(new_last);
        } else {
            while self.tail.back().is_some_and(|(z, _)| *z > zxid) {
                if let Some((_, t)) = self.tail.pop_back() {
                    self.tail_bytes -= t.len();
                }
            }
        }
        self.durable = self.durable.min(new_last);
        Ok(())
    }

    fn append(&mut self, zxid: i64, txn: &Bytes) -> Result<Bytes, PersistError> {
        let (t, digest) = decode_payload(txn.clone()).map_err(|e| PersistError::Corrupt {
            file: self.dir.clone(),
            offset: 0,
            reason: format!("txn 0x{zxid:x} to append does not decode: {e}"),
        })?;
        if t.hdr.zxid != zxid {
            return Err(PersistError::Corrupt {
                file: self.dir.clone(),
                offset: 0,
                reason: format!("txn logged as 0x{zxid:x} has zxid 0x{:x}", t.hdr.zxid),
            });
        }
        let c = Committed { txn: t, digest };
        self.writer.append(&c);
        self.in_file += 1;
        if self.opts.roll_after.is_some_and(|r| self.in_file >= r) {
            self.close_file()?;
        }
        // What the file holds, re-encoded: reads from memory and from disk agree.
        Ok(proposal_bytes(&c))
    }
}

impl Log for DiskLog {
    fn last_zxid(&self) -> i64 {
        self.lock().last_zxid
    }

    fn entries_after(&self, zxid: i64) -> Option<Vec<(i64, Bytes)>> {
        let mut s = self.lock();
        if zxid >= s.last_zxid {
            return Some(Vec::new());
        }
        if zxid >= s.tail_base {
            let i = s.tail.partition_point(|(z, _)| *z <= zxid);
            return Some(s.tail.range(i..).cloned().collect());
        }
        match s.read_after(zxid) {
            Ok(r) => r,
            Err(e) => {
                s.fail(e);
                None
            }
        }
    }

    fn contains(&self, zxid: i64) -> bool {
        let mut s = self.lock();
        if zxid == 0 || zxid == s.tail_base || zxid == s.last_zxid {
            return true;
        }
        if zxid > s.last_zxid {
            return false;
        }
        if zxid > s.tail_base {
            return s.tail.binary_search_by_key(&zxid, |(z, _)| *z).is_ok();
        }
        match s
            .is_snapshot(zxid)
            .and_then(|snap| Ok(snap || s.logged(zxid)?))
        {
            Ok(b) => b,
            Err(e) => {
                s.fail(e);
                false
            }
        }
    }

    fn floor(&self, zxid: i64) -> i64 {
        let mut s = self.lock();
        if zxid >= s.last_zxid {
            return s.last_zxid;
        }
        if zxid >= s.tail_base {
            let i = s.tail.partition_point(|(z, _)| *z <= zxid);
            return if i == 0 { s.tail_base } else { s.tail[i - 1].0 };
        }
        match s.floor_on_disk(zxid) {
            Ok(z) => z,
            Err(e) => {
                s.fail(e);
                0
            }
        }
    }

    fn truncate(&mut self, zxid: i64) {
        let mut s = self.lock();
        if s.failure.is_some() || zxid >= s.last_zxid {
            return;
        }
        s.generation += 1;
        s.restored = None;
        if let Err(e) = s.truncate(zxid) {
            s.fail(e);
        }
    }

    fn append(&mut self, zxid: i64, txn: Bytes) {
        let mut s = self.lock();
        if s.failure.is_some() {
            return;
        }
        if zxid <= s.last_zxid {
            // The peer only appends in zxid order; refuse rather than corrupt the log.
            warn!(zxid, last = s.last_zxid, "append out of order ignored");
            return;
        }
        match s.append(zxid, &txn) {
            Ok(bytes) => {
                s.last_zxid = zxid;
                s.push_tail(zxid, bytes);
            }
            Err(e) => s.fail(e),
        }
    }

    fn snapshot(&self, zxid: i64) -> Bytes {
        let mut s = self.lock();
        s.flush();
        let r = load_tree(&s.data_dir, zxid, s.extended_types, s.opts.read_limit)
            .and_then(|t| snapshot_bytes(&s.data_dir, &t.db, t.digest));
        match r {
            Ok(b) => b,
            Err(e) => {
                // An empty snapshot is refused by the learner, which then elects again.
                s.fail(e);
                Bytes::new()
            }
        }
    }

    fn load_snapshot(&mut self, zxid: i64, snapshot: Bytes) {
        let mut s = self.lock();
        if s.failure.is_some() {
            return;
        }
        s.generation += 1;
        s.restored = None;
        let r = s
            .close_file()
            .and_then(|_| install_snapshot(&s.data_dir, zxid, &snapshot, s.extended_types));
        match r {
            Ok(mut db) => {
                db.last_zxid = zxid;
                s.restored = Some(db);
                s.writer = LogWriter::new(&s.dir, s.opts.prealloc);
                s.last_zxid = zxid;
                s.durable = zxid;
                s.reset_tail(zxid);
            }
            Err(e) => s.fail(e),
        }
    }

    fn accepted_epoch(&self) -> u32 {
        self.lock().epochs.accepted
    }

    fn set_accepted_epoch(&mut self, epoch: u32) {
        let mut s = self.lock();
        if s.failure.is_some() {
            return;
        }
        match write_epoch(&s.dir, ACCEPTED_EPOCH_FILE, epoch) {
            Ok(()) => s.epochs.accepted = epoch,
            Err(e) => s.fail(e),
        }
    }

    fn current_epoch(&self) -> u32 {
        self.lock().epochs.current
    }

    fn set_current_epoch(&mut self, epoch: u32) {
        let mut s = self.lock();
        if s.failure.is_some() {
            return;
        }
        match write_epoch(&s.dir, CURRENT_EPOCH_FILE, epoch) {
            Ok(()) => s.epochs.current = epoch,
            Err(e) => s.fail(e),
        }
    }
}

#[cfg(test)]
#[path = "disklog_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "disklog_peer_tests.rs"]
mod peer_tests;
