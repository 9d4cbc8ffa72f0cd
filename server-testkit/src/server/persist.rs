//! The persistence side of [`Server`] and [`Builder`]: data dir options, recovery at start,
//! wiring the log writer between the core's committed txns and the connections, snapshots,
//! backups, crash simulation.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use super::{Builder, Error, Server};
use crate::core::{Committed, Config, Core, Database, TreeDigest};
use crate::net::{now_ms, Ctx, Durability, Release};
use crate::persist::backup::{backup_dir, restore_into, BackupInfo};
use crate::persist::pipeline::Pipeline;
use crate::persist::pipeline::{DbAccess, Visit};
use crate::persist::{recover, secret, PersistError, PersistOptions, RecoveryReport};

/// Persistence settings held by the [`Builder`].
#[derive(Debug, Clone, Default)]
pub(super) struct PersistConfig {
    pub data_dir: Option<PathBuf>,
    pub opts: PersistOptions,
    pub restore_from: Option<PathBuf>,
    pub last_report: Option<RecoveryReport>,
    /// The data dir when it is a temporary one this server made (a restore without
    /// `data_dir`): removed once the last handle holding it is gone.
    pub temp_dir: Option<Arc<TempDataDir>>,
}

/// A data dir the server created for itself, removed on drop.
#[derive(Debug)]
pub(super) struct TempDataDir(PathBuf);

impl Drop for TempDataDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(dir = %self.0.display(), error = %e, "could not remove temporary data dir");
        }
    }
}

impl Builder {
    /// Keeps the data in a ZooKeeper data dir (`DIR/version-2/{log,snapshot}.*`): recovered at
    /// start, every write logged and fsynced before it is acknowledged. In memory by default.
    ///
    /// Sessions are part of the data: after a restart (of this handle or of the whole process)
    /// each recovered session gets a full timeout from the moment it is loaded, like ZooKeeper,
    /// so a client that reconnects within its timeout resumes it with its ephemerals and one
    /// that does not is expired. For that the key of session passwords is kept in
    /// `DIR/zkit-secret` (created once with mode 0600, read on every start; a damaged file
    /// refuses to start). Unlike ZooKeeper, whose password is a function of the session id
    /// alone, zkit's password cannot be computed from a session id without this file: treat it
    /// like a credential. A backup ([`Server::backup_to`]) does not copy it, so a server started
    /// from a backup draws a new secret and the sessions in the backup cannot be resumed.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.persist.data_dir = Some(dir.into());
        self
    }

    /// Log, snapshot, purge and recovery settings (used with [`Builder::data_dir`]).
    pub fn persist_options(mut self, opts: PersistOptions) -> Self {
        self.persist.opts = opts;
        self
    }

    /// Seeds the (empty) data dir from a backup made by [`Server::backup_to`], a real ZooKeeper
    /// data dir or its `version-2` directory. Without [`Builder::data_dir`] a fresh directory
    /// under the system temp dir is used (and kept).
    pub fn restore_from(mut self, backup: impl Into<PathBuf>) -> Self {
        self.persist.restore_from = Some(backup.into());
        self
    }

    /// Point-in-time restore: recover only txns up to `zxid` (later ones are set aside under
    /// `version-2/after-restore/`).
    pub fn restore_to_zxid(mut self, zxid: i64) -> Self {
        self.persist.opts.restore_to_zxid = Some(zxid);
        self
    }
}

fn fresh_temp_dir() -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "zkit-restore-{}-{}-{}",
        std::process::id(),
        now_ms(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Builds the core: recovered from the data dir when there is one, else fresh. With a data dir
/// the session secret is the one stored there (`cfg.secret` is stored when there is none yet),
/// so the sessions recovered with the tree can be resumed by their clients.
pub(super) async fn prepare(b: &mut Builder, mut cfg: Config) -> Result<Core, Error> {
    if b.persist.restore_from.is_some() && b.persist.data_dir.is_none() {
        let dir = fresh_temp_dir();
        b.persist.temp_dir = Some(Arc::new(TempDataDir(dir.clone())));
        b.persist.data_dir = Some(dir);
    }
    let Some(dir) = b.persist.data_dir.clone() else {
        return Ok(Core::new(cfg, now_ms()));
    };
    let from = b.persist.restore_from.take();
    let opts = b.persist.opts.clone();
    let extended = cfg.extended_types;
    let fresh = cfg.secret.clone();
    let (rec, secret) = tokio::task::spawn_blocking(move || -> Result<_, PersistError> {
        if let Some(src) = from {
            restore_into(&src, &dir)?;
        }
        let rec = recover(&dir, &opts, extended)?;
        Ok((rec, secret::load_or_create(&dir, &fresh)?))
    })
    .await
    .map_err(|e| Error::Config(format!("recovery task failed: {e}")))??;
    cfg.secret = secret;
    // A point-in-time restore happens once; later restarts recover everything on disk.
    b.persist.opts.restore_to_zxid = None;
    let core = Core::with_digested_db(cfg, rec.db, TreeDigest::known(rec.digest), now_ms());
    b.persist.last_report = Some(rec.report);
    Ok(core)
}

/// The txn log holds back a step's outputs until its txns are fsynced.
impl Durability for Pipeline {
    fn busy(&self) -> bool {
        Pipeline::busy(self)
    }

    fn submit(&self, txns: Vec<Committed>, release: Release) {
        Pipeline::submit(self, txns, release)
    }
}

/// Starts the log writer for a freshly started listener and wires it into the dispatch path.
pub(super) fn attach(b: &Builder, ctx: &Arc<Ctx>) -> Option<Arc<Pipeline>> {
    let dir = b.persist.data_dir.clone()?;
    let weak: Weak<Ctx> = Arc::downgrade(ctx);
    // The log threads keep a temporary data dir alive until they are done with it.
    let keep_dir = b.persist.temp_dir.clone();
    let access: DbAccess = Box::new(move |f: &mut Visit<'_>| -> bool {
        let _ = &keep_dir;
        let Some(ctx) = weak.upgrade() else {
            return false;
        };
        let g = ctx.lock();
        let db = g.core.db();
        f(db, Some((db.last_zxid, g.core.digest())));
        true
    });
    let last = ctx.lock().core.db().last_zxid;
    let p = Arc::new(Pipeline::start(&dir, b.persist.opts.clone(), last, access));
    ctx.lock().durability = Some(p.clone());
    Some(p)
}

/// Graceful stop of the log writer (everything queued is written and delivered).
pub(super) async fn detach(ctx: &Arc<Ctx>, p: Option<Arc<Pipeline>>) {
    ctx.lock().durability = None;
    if let Some(p) = p {
        let _ = tokio::task::spawn_blocking(move || p.shutdown()).await;
    }
}

impl Server {
    /// Starts a server from a backup ([`Server::backup_to`]) or any ZooKeeper data dir, in a new
    /// data dir under the system temp dir. Use [`Builder::restore_from`] for more control.
    pub async fn from_backup(backup: impl AsRef<Path>) -> Result<Server, Error> {
        Server::builder()
            .restore_from(backup.as_ref())
            .start()
            .await
    }

    /// The data dir, when the server persists.
    pub fn data_dir(&self) -> Option<&Path> {
        self.builder.persist.data_dir.as_deref()
    }

    /// What the last start-up recovery found and did.
    pub fn recovery_report(&self) -> Option<&RecoveryReport> {
        self.builder.persist.last_report.as_ref()
    }

    fn pipeline(&self) -> Result<Arc<Pipeline>, Error> {
        self.running
            .as_ref()
            .and_then(|r| r.persist.clone())
            .ok_or_else(|| Error::Config("server is not running with a data dir".into()))
    }

    /// Takes a snapshot now (writes go on while it is written); returns its path.
    pub async fn snapshot_now(&self) -> Result<PathBuf, Error> {
        let p = self.pipeline()?;
        tokio::task::spawn_blocking(move || p.snapshot_now())
            .await
            .map_err(|e| Error::Config(format!("snapshot task failed: {e}")))?
            .map_err(Error::from)
    }

    /// Writes a consistent backup to `dest`: a fresh snapshot and the logs after it, cut at a
    /// point where every earlier txn is written. Start a server from it with
    /// [`Server::from_backup`].
    pub async fn backup_to(&self, dest: impl AsRef<Path>) -> Result<BackupInfo, Error> {
        let p = self.pipeline()?;
        let data_dir = self.data_dir().map(Path::to_owned).unwrap_or_default();
        let dest = dest.as_ref().to_owned();
        tokio::task::spawn_blocking(move || -> Result<BackupInfo, PersistError> {
            p.snapshot_now()?;
            let limit = p.flush();
            backup_dir(&data_dir, &dest, limit)
        })
        .await
        .map_err(|e| Error::Config(format!("backup task failed: {e}")))?
        .map_err(Error::from)
    }

    /// Deletes old snapshots and logs, keeping the `keep` newest snapshots.
    pub fn purge(&self, keep: usize) -> Result<Vec<PathBuf>, Error> {
        let dir = self
            .data_dir()
            .ok_or_else(|| Error::Config("server has no data dir".into()))?;
        Ok(crate::persist::purge(dir, keep)?)
    }

    /// Crash simulation: the server stops at once, no pending reply is sent, and the log is cut
    /// back to its last fsync (with `force_sync` off: to what was written). [`Server::restart`]
    /// then recovers from the data dir.
    pub async fn kill(&mut self) {
        let Some(mut r) = self.running.take() else {
            return;
        };
        let cfg = r.ctx.lock().core.config().clone();
        // The dead pipeline stays wired in: whatever the connections still produce queues
        // behind it and is never sent.
        if let Some(p) = r.persist.take() {
            let _ = tokio::task::spawn_blocking(move || p.kill()).await;
        }
        drop(r);
        self.saved = Some((Database::new(cfg.extended_types), cfg));
        tracing::info!(addr = %self.addr(), "server killed");
    }
}
