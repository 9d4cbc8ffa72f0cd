//! The disk under a shell-driven peer ([`ShellDisk`]): the [`MemoryDisk`] here (a txn log
//! with a durable prefix and the two epoch files, outliving the peer's tasks, so a killed
//! peer restarts from what it had synced, the volatile tail lost as on a power cut), or a
//! [`DiskLog`] over a real data dir.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tracing::warn;

use crate::quorum::disklog::{self, DiskLog};
use crate::quorum::Log;

/// What the shell needs of a peer's disk beyond the [`Log`]: group-commit fsyncs in two
/// halves, a stored failure that stops the server, and what a kill does to it.
pub(crate) trait ShellDisk: Log + Clone + Send + Sync + 'static {
    /// What an fsync started with.
    type Ticket: Send + 'static;
    /// Whether [`ShellDisk::complete_sync`] blocks (then it runs on tokio's blocking pool).
    fn blocking_sync(&self) -> bool;
    /// Starts an fsync covering everything appended so far.
    fn begin_sync(&self) -> Self::Ticket;
    /// Runs the fsync: the zxid it made durable, or `None` when a truncation or snapshot
    /// load came in between (the next fsync covers it) or the disk failed.
    fn complete_sync(&self, t: Self::Ticket) -> Option<i64>;
    /// The last zxid an fsync covered.
    fn synced_zxid(&self) -> i64;
    /// Whether something was appended since the last fsync.
    fn unsynced(&self) -> bool;
    /// The error that broke the disk, if one did: the server must stop.
    fn failure(&self) -> Option<String>;
    /// What a kill of the server does to the disk.
    fn crash(&self);
    /// Whether [`Log::snapshot`] gives ZooKeeper snapshot files, sent and received on the
    /// quorum socket as ZooKeeper streams them (else as one opaque buffer).
    fn zookeeper_snapshots(&self) -> bool {
        false
    }
}

impl ShellDisk for MemoryDisk {
    type Ticket = SyncTicket;

    fn blocking_sync(&self) -> bool {
        false
    }

    fn begin_sync(&self) -> SyncTicket {
        MemoryDisk::begin_sync(self)
    }

    fn complete_sync(&self, t: SyncTicket) -> Option<i64> {
        self.finish_sync(t)
    }

    fn synced_zxid(&self) -> i64 {
        MemoryDisk::synced_zxid(self)
    }

    fn unsynced(&self) -> bool {
        MemoryDisk::unsynced(self)
    }

    fn failure(&self) -> Option<String> {
        None
    }

    /// The unsynced tail is gone, as on a power cut.
    fn crash(&self) {
        MemoryDisk::crash(self)
    }
}

impl ShellDisk for DiskLog {
    type Ticket = disklog::SyncTicket;

    fn zookeeper_snapshots(&self) -> bool {
        true
    }

    fn blocking_sync(&self) -> bool {
        true
    }

    fn begin_sync(&self) -> disklog::SyncTicket {
        DiskLog::begin_sync(self)
    }

    fn complete_sync(&self, t: disklog::SyncTicket) -> Option<i64> {
        DiskLog::complete_sync(self, t)
    }

    fn synced_zxid(&self) -> i64 {
        DiskLog::synced_zxid(self)
    }

    fn unsynced(&self) -> bool {
        DiskLog::unsynced(self)
    }

    fn failure(&self) -> Option<String> {
        DiskLog::failure(self).map(|e| e.to_string())
    }

    /// As a killed process: what the log writer had not written yet is lost with this
    /// handle, what reached the files stays. A restart opens a fresh [`DiskLog`] on the
    /// data dir (after recovery), never this handle.
    fn crash(&self) {}
}

#[derive(Debug, Default)]
struct DiskState {
    entries: Vec<(i64, Bytes)>,
    /// How many entries an fsync covered.
    durable_len: usize,
    accepted: u32,
    current: u32,
    /// Bumped by every truncation, so an fsync that straddles one claims nothing.
    generation: u64,
}

/// What an fsync started with; see [`MemoryDisk::begin_sync`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct SyncTicket {
    len: usize,
    generation: u64,
}

/// A shared handle on one server's in-memory disk; clones see the same disk. The lock is
/// only taken inside synchronous calls, never across an `.await`.
#[derive(Debug, Clone, Default)]
pub(crate) struct MemoryDisk {
    state: Arc<Mutex<DiskState>>,
}

impl MemoryDisk {
    /// An empty disk.
    pub fn new() -> Self {
        MemoryDisk::default()
    }

    fn lock(&self) -> MutexGuard<'_, DiskState> {
        // A panic elsewhere while holding the lock leaves consistent data (every method
        // finishes its mutation before returning), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// fsync at once: everything appended so far becomes durable; returns the zxid it covers.
    pub fn fsync(&self) -> i64 {
        let t = self.begin_sync();
        self.finish_sync(t).unwrap_or(0)
    }

    /// Starts an fsync: it will cover what is appended now.
    pub fn begin_sync(&self) -> SyncTicket {
        let s = self.lock();
        SyncTicket {
            len: s.entries.len(),
            generation: s.generation,
        }
    }

    /// Completes an fsync: the zxid it made durable, or `None` when the log was truncated
    /// meanwhile (what it covered may be gone or replaced; the next fsync covers it).
    pub fn finish_sync(&self, t: SyncTicket) -> Option<i64> {
        let mut s = self.lock();
        if s.generation != t.generation {
            return None;
        }
        s.durable_len = s.durable_len.max(t.len.min(s.entries.len()));
        Some(s.entries[..s.durable_len].last().map_or(0, |e| e.0))
    }

    /// The last zxid an fsync covered.
    pub fn synced_zxid(&self) -> i64 {
        let s = self.lock();
        s.entries[..s.durable_len].last().map_or(0, |e| e.0)
    }

    /// Whether something was appended since the last fsync.
    pub fn unsynced(&self) -> bool {
        let s = self.lock();
        s.entries.len() > s.durable_len
    }

    /// A crash: whatever was appended but not synced is gone.
    pub fn crash(&self) {
        let mut s = self.lock();
        let keep = s.durable_len;
        s.entries.truncate(keep);
    }

    /// Every logged txn, in order (for tests and the state machine's rebuild).
    pub fn entries(&self) -> Vec<(i64, Bytes)> {
        self.lock().entries.clone()
    }

    fn encode(entries: &[(i64, Bytes)]) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u32(entries.len() as u32);
        for (z, t) in entries {
            b.put_i64(*z);
            b.put_u32(t.len() as u32);
            b.put_slice(t);
        }
        b.freeze()
    }

    /// Decodes a snapshot from [`Log::snapshot`]; `None` when it is malformed.
    fn decode(mut b: Bytes) -> Option<Vec<(i64, Bytes)>> {
        if b.remaining() < 4 {
            return None;
        }
        let n = b.get_u32() as usize;
        let mut out = Vec::with_capacity(n.min(b.remaining() / 12));
        for _ in 0..n {
            if b.remaining() < 12 {
                return None;
            }
            let z = b.get_i64();
            let len = b.get_u32() as usize;
            if b.remaining() < len || out.last().is_some_and(|(l, _)| *l >= z) {
                return None;
            }
            out.push((z, b.split_to(len)));
        }
        Some(out)
    }
}

impl Log for MemoryDisk {
    fn last_zxid(&self) -> i64 {
        self.lock().entries.last().map_or(0, |e| e.0)
    }

    fn entries_after(&self, zxid: i64) -> Option<Vec<(i64, Bytes)>> {
        let s = self.lock();
        let i = s.entries.partition_point(|e| e.0 <= zxid);
        Some(s.entries[i..].to_vec())
    }

    fn contains(&self, zxid: i64) -> bool {
        zxid == 0
            || self
                .lock()
                .entries
                .binary_search_by_key(&zxid, |e| e.0)
                .is_ok()
    }

    fn floor(&self, zxid: i64) -> i64 {
        let s = self.lock();
        let i = s.entries.partition_point(|e| e.0 <= zxid);
        if i == 0 {
            0
        } else {
            s.entries[i - 1].0
        }
    }

    fn truncate(&mut self, zxid: i64) {
        let mut s = self.lock();
        let i = s.entries.partition_point(|e| e.0 <= zxid);
        s.entries.truncate(i);
        s.durable_len = s.durable_len.min(i);
        s.generation += 1;
    }

    fn append(&mut self, zxid: i64, txn: Bytes) {
        let mut s = self.lock();
        if s.entries.last().is_some_and(|l| l.0 >= zxid) {
            // The peer only appends in zxid order; refuse rather than corrupt the log.
            warn!(zxid, "append out of order ignored");
            return;
        }
        s.entries.push((zxid, txn));
    }

    fn snapshot(&self, zxid: i64) -> Bytes {
        let s = self.lock();
        let i = s.entries.partition_point(|e| e.0 <= zxid);
        Self::encode(&s.entries[..i])
    }

    fn load_snapshot(&mut self, zxid: i64, snapshot: Bytes) {
        let mut s = self.lock();
        match Self::decode(snapshot) {
            Some(entries) => s.entries = entries,
            None => {
                // Keep nothing from a corrupt snapshot: the peer's next sync starts over.
                warn!(zxid, "malformed snapshot from the leader");
                s.entries.clear();
            }
        }
        s.durable_len = s.entries.len();
        s.generation += 1;
    }

    fn accepted_epoch(&self) -> u32 {
        self.lock().accepted
    }

    fn set_accepted_epoch(&mut self, epoch: u32) {
        self.lock().accepted = epoch;
    }

    fn current_epoch(&self) -> u32 {
        self.lock().current
    }

    fn set_current_epoch(&mut self, epoch: u32) {
        self.lock().current = epoch;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_keeps_only_the_synced_prefix() {
        let mut d = MemoryDisk::new();
        d.append(1, Bytes::from_static(b"a"));
        assert_eq!(d.fsync(), 1);
        d.append(2, Bytes::from_static(b"b"));
        d.crash();
        assert_eq!(d.last_zxid(), 1);
    }

    #[test]
    fn an_fsync_covers_what_was_there_when_it_began() {
        let mut d = MemoryDisk::new();
        d.append(1, Bytes::from_static(b"a"));
        let t = d.begin_sync();
        d.append(2, Bytes::from_static(b"b"));
        assert_eq!(d.finish_sync(t), Some(1));
        assert!(d.unsynced());
        let t = d.begin_sync();
        d.truncate(1);
        d.append(2, Bytes::from_static(b"c"));
        assert_eq!(d.finish_sync(t), None, "straddled a truncation");
        d.crash();
        assert_eq!(d.last_zxid(), 1);
    }

    #[test]
    fn snapshots_round_trip_and_garbage_is_refused() {
        let mut d = MemoryDisk::new();
        d.append(1, Bytes::from_static(b"a"));
        d.append(2, Bytes::from_static(b"b"));
        let snap = d.snapshot(2);
        let mut e = MemoryDisk::new();
        e.load_snapshot(2, snap);
        assert_eq!(e.entries(), d.entries());
        e.load_snapshot(2, Bytes::from_static(&[0, 0, 0, 9, 1]));
        assert_eq!(e.last_zxid(), 0);
    }
}
