//! The log writer: one thread that appends committed txns to the log, fsyncs once per group of
//! batches (group commit: whatever queued up while the previous fsync ran), and only then
//! releases the replies and notifications that the batches carry. Replies of read-only steps
//! queue behind pending writes so that a connection never sees them out of order.
//!
//! It also rolls the log, starts background (fuzzy) snapshots every `snap_count` txns, and
//! simulates crashes: [`Pipeline::kill`] stops without delivering anything more and cuts the log
//! back to the last fsync.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::snapshot::{publish, write_fuzzy};
use super::txnlog::LogWriter;
use super::{version_dir, PersistError, PersistOptions};
use crate::core::{Committed, Database};

/// Sends a step's outputs to its connections (runs on the writer thread once the step's txns
/// are durable).
pub type Deliver = Box<dyn FnOnce() + Send>;

/// A visit of the live database with its `(last zxid, tree digest)`.
pub type Visit<'a> = dyn FnMut(&Database, Option<(i64, i64)>) + 'a;

/// Runs a [`Visit`] under the server's lock; false when the server is gone.
pub type DbAccess = Box<dyn Fn(&mut Visit<'_>) -> bool + Send + Sync>;

enum Cmd {
    Batch(Vec<Committed>, Deliver),
    /// Commit what is queued, roll the log, answer with the last zxid written.
    Roll(mpsc::Sender<i64>),
    /// Commit what is queued, answer with the current file and its length.
    Flush(mpsc::Sender<Option<(PathBuf, u64)>>),
    Stop,
}

#[derive(Debug, Default)]
struct State {
    /// Last zxid written (and fsynced when force_sync).
    written: i64,
    /// Writer gone (stopped, killed or failed).
    dead: bool,
}

struct Inner {
    data_dir: PathBuf,
    opts: PersistOptions,
    access: DbAccess,
    state: Mutex<State>,
    cond: Condvar,
    killed: AtomicBool,
    snapshotting: AtomicBool,
    snap_lock: Mutex<()>,
    snap_thread: Mutex<Option<JoinHandle<()>>>,
    durable_point: Mutex<Option<(PathBuf, u64)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Handle on the writer thread.
pub struct Pipeline {
    tx: Mutex<mpsc::Sender<Cmd>>,
    inflight: Arc<AtomicUsize>,
    inner: Arc<Inner>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("data_dir", &self.inner.data_dir)
            .field("inflight", &self.inflight.load(Ordering::Relaxed))
            .finish()
    }
}

impl Pipeline {
    /// Starts the writer for `data_dir`, whose last recovered zxid is `last_zxid`.
    pub fn start(
        data_dir: &Path,
        opts: PersistOptions,
        last_zxid: i64,
        access: DbAccess,
    ) -> Pipeline {
        let (tx, rx) = mpsc::channel();
        let inner = Arc::new(Inner {
            data_dir: data_dir.to_owned(),
            opts,
            access,
            state: Mutex::new(State {
                written: last_zxid,
                dead: false,
            }),
            cond: Condvar::new(),
            killed: AtomicBool::new(false),
            snapshotting: AtomicBool::new(false),
            snap_lock: Mutex::new(()),
            snap_thread: Mutex::new(None),
            durable_point: Mutex::new(None),
        });
        let inflight = Arc::new(AtomicUsize::new(0));
        let (i2, f2) = (inner.clone(), inflight.clone());
        let writer = std::thread::Builder::new()
            .name("zkit-txnlog".into())
            .spawn(move || writer_loop(i2, f2, rx))
            .ok();
        Pipeline {
            tx: Mutex::new(tx),
            inflight,
            inner,
            writer: Mutex::new(writer),
        }
    }

    /// Whether earlier batches are still waiting for the disk (later outputs must queue too).
    pub fn busy(&self) -> bool {
        self.inflight.load(Ordering::Acquire) > 0
    }

    /// Queues the txns of one core step and the delivery of its outputs.
    pub fn submit(&self, entries: Vec<Committed>, deliver: Deliver) {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        if lock(&self.tx).send(Cmd::Batch(entries, deliver)).is_err() {
            tracing::debug!("txn log writer is gone; outputs dropped");
        }
    }

    /// Takes a snapshot now (fuzzy, writes go on) after rolling the log; returns its path.
    /// Blocks: call from a blocking context.
    pub fn snapshot_now(&self) -> Result<PathBuf, PersistError> {
        let (tx, rx) = mpsc::channel();
        let _ = lock(&self.tx).send(Cmd::Roll(tx));
        let _ = rx.recv();
        take_snapshot(&self.inner)
    }

    /// Waits until everything queued so far is written; returns the current log file and its
    /// written length (for a consistent copy).
    pub fn flush(&self) -> Option<(PathBuf, u64)> {
        let (tx, rx) = mpsc::channel();
        let _ = lock(&self.tx).send(Cmd::Flush(tx));
        rx.recv().ok().flatten()
    }

    /// Graceful stop: writes and delivers everything queued, waits for a running snapshot.
    pub fn shutdown(&self) {
        let _ = lock(&self.tx).send(Cmd::Stop);
        if let Some(h) = lock(&self.writer).take() {
            let _ = h.join();
        }
        self.mark_dead();
        if let Some(h) = lock(&self.inner.snap_thread).take() {
            let _ = h.join();
        }
    }

    /// Crash simulation: stops at once, delivers nothing more, and cuts the current log file
    /// back to its last fsync (what a power loss would keep).
    pub fn kill(&self) {
        // With `killed` set, stopping writes and delivers nothing more.
        self.inner.killed.store(true, Ordering::SeqCst);
        self.shutdown();
        if let Some((path, durable)) = lock(&self.inner.durable_point).take() {
            let r = if durable <= 16 {
                std::fs::remove_file(&path)
            } else {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(durable))
            };
            if let Err(e) = r {
                tracing::warn!(file = %path.display(), error = %e, "crash simulation could not cut the log");
            }
            tracing::info!(file = %path.display(), durable, "killed: log cut back to the last fsync");
        }
    }

    fn mark_dead(&self) {
        lock(&self.inner.state).dead = true;
        self.inner.cond.notify_all();
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        if !self.inner.killed.load(Ordering::SeqCst) {
            self.shutdown();
        }
    }
}

fn writer_loop(inner: Arc<Inner>, inflight: Arc<AtomicUsize>, rx: mpsc::Receiver<Cmd>) {
    let vdir = version_dir(&inner.data_dir);
    let opts = inner.opts.clone();
    let mut w = LogWriter::new(&vdir, opts.prealloc);
    let mut since_snap = 0u64;
    let mut failed = false;
    'outer: while let Ok(first) = rx.recv() {
        let mut cmds = vec![first];
        while cmds.len() < 1024 {
            match rx.try_recv() {
                Ok(c) => cmds.push(c),
                Err(_) => break,
            }
        }
        let mut delivers: Vec<Deliver> = Vec::new();
        let mut n = 0u64;
        for cmd in cmds {
            if inner.killed.load(Ordering::SeqCst) {
                break 'outer;
            }
            match cmd {
                Cmd::Batch(entries, d) => {
                    if !failed {
                        for e in &entries {
                            w.append(e);
                        }
                        n += entries.len() as u64;
                    }
                    delivers.push(d);
                }
                other => {
                    commit(
                        &inner,
                        &inflight,
                        &mut w,
                        &mut delivers,
                        &mut failed,
                        opts.force_sync,
                    );
                    match other {
                        Cmd::Roll(ack) => {
                            roll(&inner, &mut w);
                            since_snap = 0;
                            let _ = ack.send(lock(&inner.state).written);
                        }
                        Cmd::Flush(ack) => {
                            let _ = ack.send(w.written_point());
                        }
                        _ => {
                            roll(&inner, &mut w);
                            break 'outer;
                        }
                    }
                }
            }
        }
        commit(
            &inner,
            &inflight,
            &mut w,
            &mut delivers,
            &mut failed,
            opts.force_sync,
        );
        since_snap += n;
        if since_snap >= opts.snap_count {
            since_snap = 0;
            roll(&inner, &mut w);
            start_background_snapshot(&inner);
        } else if opts.roll_after.is_some_and(|r| w.txns_in_file() >= r) {
            roll(&inner, &mut w);
        }
    }
    lock(&inner.state).dead = true;
    inner.cond.notify_all();
}

/// Closes the current log file (fsynced) so the next append opens a new one.
fn roll(inner: &Inner, w: &mut LogWriter) {
    match w.roll() {
        Ok(()) => *lock(&inner.durable_point) = None,
        Err(e) => tracing::error!(error = %e, "log roll failed"),
    }
}

/// Writes (and fsyncs) what was appended, then releases the outputs waiting for it.
fn commit(
    inner: &Inner,
    inflight: &AtomicUsize,
    w: &mut LogWriter,
    delivers: &mut Vec<Deliver>,
    failed: &mut bool,
    sync: bool,
) {
    if !*failed {
        match w.commit(sync) {
            Ok(z) => {
                // Without force_sync a kill keeps what was written (a process crash: the OS
                // still has it); with it, what the last fsync covered (a power loss).
                *lock(&inner.durable_point) = if sync {
                    w.durable_point()
                } else {
                    w.written_point()
                };
                let mut s = lock(&inner.state);
                s.written = s.written.max(z);
                inner.cond.notify_all();
            }
            Err(e) => {
                tracing::error!(error = %e, "txn log write failed; no more writes are acknowledged");
                *failed = true;
            }
        }
    }
    if inner.killed.load(Ordering::SeqCst) {
        delivers.clear();
        return;
    }
    let k = delivers.len();
    if !*failed {
        for d in delivers.drain(..) {
            d();
        }
    } else {
        delivers.clear();
    }
    inflight.fetch_sub(k, Ordering::AcqRel);
}

fn start_background_snapshot(inner: &Arc<Inner>) {
    if inner.snapshotting.swap(true, Ordering::SeqCst) {
        tracing::warn!("previous snapshot still running; skipping this one");
        return;
    }
    let i2 = inner.clone();
    let h = std::thread::Builder::new()
        .name("zkit-snapshot".into())
        .spawn(move || {
            if let Err(e) = take_snapshot(&i2) {
                tracing::warn!(error = %e, "background snapshot failed");
            }
            i2.snapshotting.store(false, Ordering::SeqCst);
        });
    if let Ok(h) = h {
        if let Some(old) = lock(&inner.snap_thread).replace(h) {
            let _ = old.join();
        }
    }
}

/// Serializes (fuzzy), waits until the log holds every txn the snapshot may contain, publishes,
/// purges.
fn take_snapshot(inner: &Inner) -> Result<PathBuf, PersistError> {
    let _one = lock(&inner.snap_lock);
    let vdir = version_dir(&inner.data_dir);
    let started = std::time::Instant::now();
    let info = write_fuzzy(&vdir, &mut |f| {
        !inner.killed.load(Ordering::SeqCst) && (inner.access)(f)
    })?;
    let mut s = lock(&inner.state);
    while s.written < info.end_zxid && !s.dead {
        s = inner.cond.wait(s).unwrap_or_else(|p| p.into_inner());
    }
    let ok = s.written >= info.end_zxid && !inner.killed.load(Ordering::SeqCst);
    drop(s);
    if !ok {
        return Err(PersistError::Unrecoverable {
            dir: inner.data_dir.clone(),
            reason: "server stopped before the snapshot's txns were logged".into(),
        });
    }
    let path = publish(&vdir, &info)?;
    tracing::info!(file = %path.display(), nodes = info.nodes, ms = started.elapsed().as_millis() as u64, "snapshot written");
    if let Some(keep) = inner.opts.purge_keep {
        if let Err(e) = super::purge(&inner.data_dir, keep) {
            tracing::warn!(error = %e, "purge failed");
        }
    }
    Ok(path)
}
