//! One member of an ensemble: its client side (the standalone server's listener and tasks
//! around its own [`Core`]), its replicated peer, and the apply task between them.
//!
//! The apply task receives the peer's [`Event`]s and feeds them to the core under the client
//! side's lock, then routes what the core emitted (`Shared::dispatch`): replies and
//! notifications to the connections, requests for the replication layer to the peer's
//! unbounded command queue (see [`CoreCommand`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, Instrument};

use super::disk::Disk;
use crate::core::{Committed, Config, Core, Database, Mode, Output};
use crate::net::{now_ms, Ctx, LearnerStats, Replica};
use crate::persist::logread::proposal_bytes;
use crate::persist::txnlog::decode_payload;
use crate::persist::{recover, PersistOptions};
use crate::quorum::disklog::DiskLog;
use crate::quorum::peer::{Event, PeerConfig, Role};
use crate::quorum::shell::{CoreCommand, Listeners, MemoryDisk, QuorumPeer, ShellConfig, Status};
use crate::quorum::Sid;
use crate::server::{self, Error, Running};

/// Events the peer may queue for the apply task before it waits.
const EVENTS: usize = 4096;

/// What every member shares, fixed at start.
#[derive(Debug)]
pub(super) struct Settings {
    /// Client-side settings (listener, session timeouts, four-letter words, ...).
    pub server: server::Builder,
    /// The core's configuration (one session secret for the whole ensemble: a session
    /// moves between servers).
    pub core: Config,
    /// The peer configuration every member's is made from.
    pub peer: PeerConfig,
    /// Every member's election and quorum addresses.
    pub election_addrs: BTreeMap<Sid, SocketAddr>,
    pub quorum_addrs: BTreeMap<Sid, SocketAddr>,
    /// The peers' tick.
    pub tick_interval: Duration,
    /// Seeds the link loss decisions.
    pub seed: u64,
    /// With data dirs: how they are written.
    pub persist: PersistOptions,
}

/// The role of a member as its core was last told (None: down or not told yet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct View {
    pub role: Option<Role>,
}

/// A member.
#[derive(Debug)]
pub(super) struct Node {
    pub index: usize,
    pub sid: Sid,
    pub observer: bool,
    pub client_addr: SocketAddr,
    pub data_dir: Option<PathBuf>,
    /// An in-memory disk outlives its server: a restart starts from it.
    memory: Option<MemoryDisk>,
    pub live: Option<Live>,
    pub view: watch::Sender<View>,
}

/// A running member.
pub(super) struct Live {
    pub client: Running,
    pub peer: QuorumPeer<Disk>,
    apply: AbortOnDrop,
}

/// A task that ends with its owner.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").finish_non_exhaustive()
    }
}

/// A member with its disk open and its client side listening, before its peer starts.
pub(super) struct Prepared {
    disk: Disk,
    applied: i64,
    client: Running,
}

impl Node {
    pub fn new(index: usize, sid: Sid, observer: bool, data_dir: Option<PathBuf>) -> Node {
        Node {
            index,
            sid,
            observer,
            client_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            memory: data_dir.is_none().then(MemoryDisk::new),
            data_dir,
            live: None,
            view: watch::channel(View::default()).0,
        }
    }

    /// Opens the disk, rebuilds the tree it holds, and starts the client side on it (at the
    /// member's old address after the first start).
    pub async fn prepare(&mut self, s: &Settings) -> Result<Prepared, Error> {
        let extended = s.core.extended_types;
        let disk = match (&self.memory, &self.data_dir) {
            (Some(m), _) => Disk::Memory(m.clone()),
            (None, Some(dir)) => {
                let (dir, opts) = (dir.clone(), s.persist.clone());
                blocking(move || {
                    recover(&dir, &opts, extended)?;
                    Ok(Disk::Data(DiskLog::open(&dir, opts, extended)?))
                })
                .await?
            }
            (None, None) => return Err(Error::Config("a member without a disk".into())),
        };
        let d = disk.clone();
        let db: Database = blocking(move || Ok(d.rebuild(i64::MAX, extended)?)).await?;
        let applied = db.last_zxid;
        let core = Core::replica(s.core.clone(), db, now_ms(), self.sid);
        let client = Running::start(&s.server, self.client_addr, core).await?;
        self.client_addr = client.ctx().local_addr;
        Ok(Prepared {
            disk,
            applied,
            client,
        })
    }

    /// Starts the peer on `listeners` and wires it to the prepared client side.
    pub fn launch(
        &mut self,
        s: &Settings,
        listeners: Listeners,
        p: Prepared,
        progress: &watch::Sender<u64>,
    ) {
        let cfg = ShellConfig {
            peer: PeerConfig {
                id: self.sid,
                ..s.peer.clone()
            },
            election_addrs: s.election_addrs.clone(),
            quorum_addrs: s.quorum_addrs.clone(),
            tick_interval: s.tick_interval,
            connect_timeout: Duration::from_secs(5),
            seed: s.seed,
        };
        let (tx, events) = mpsc::channel(EVENTS);
        let peer = QuorumPeer::start(cfg, listeners, p.disk.clone(), p.applied, tx);
        let ctx = p.client.ctx().clone();
        ctx.lock().replica = Some(replica(&peer));
        ctx.with_core(|c| c.set_config(s.peer.config.clone(), now_ms()));
        self.view.send_replace(View::default());
        let apply = tokio::spawn(
            apply_events(
                ctx,
                p.disk,
                s.core.extended_types,
                events,
                self.view.clone(),
                progress.clone(),
            )
            .instrument(tracing::info_span!("server", id = self.sid)),
        );
        self.live = Some(Live {
            client: p.client,
            peer,
            apply: AbortOnDrop(apply),
        });
        info!(id = self.sid, addr = %self.client_addr, "ensemble member started");
    }

    /// Stops the member: `crash` loses what its disk had not synced (a kill), otherwise
    /// everything is synced first (a clean shutdown). False when it was not running.
    pub async fn shut_down(&mut self, crash: bool) -> bool {
        let Some(live) = self.live.take() else {
            return false;
        };
        let Live {
            client,
            peer,
            apply,
        } = live;
        drop(apply);
        let disk = if crash {
            peer.kill().await
        } else {
            let disk = peer.stop().await;
            let d = disk.clone();
            let _ = tokio::task::spawn_blocking(move || d.sync_all()).await;
            disk
        };
        // A data dir is reopened from its files; an in-memory disk is what a restart has.
        drop(disk);
        client.stop().await;
        self.view.send_replace(View::default());
        info!(id = self.sid, crash, "ensemble member stopped");
        true
    }

    /// The peer's status, when running.
    pub fn status(&self) -> Option<Status> {
        self.live.as_ref().map(|l| *l.peer.status().borrow())
    }

    /// The client side's state, when running.
    pub fn ctx(&self) -> Option<&Arc<Ctx>> {
        self.live.as_ref().map(|l| l.client.ctx())
    }
}

/// Runs a blocking disk job on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Config(format!("disk task failed: {e}")))?
}

/// The core's side of the peer: its outputs for the replication layer become peer commands.
fn replica(peer: &QuorumPeer<Disk>) -> Replica {
    let cmds = peer.core_commands();
    let status = peer.status();
    Replica {
        sink: Box::new(move |o, mode| {
            let cmd = match o {
                Output::Propose(txn, spec) => {
                    let Mode::Leader { epoch } = mode else {
                        debug!("a proposal from a core that does not lead: dropped");
                        return;
                    };
                    CoreCommand::Propose {
                        epoch,
                        txn_at: Box::new(move |zxid| {
                            // The digest holds only for the zxid it was computed for.
                            let digest = spec.filter(|s| s.zxid == zxid).map(|s| s.digest);
                            txn_bytes(*txn, zxid, digest)
                        }),
                    }
                }
                Output::Forward { request, authinfo } => CoreCommand::Forward { request, authinfo },
                Output::Revalidate { session, timeout } => {
                    CoreCommand::Revalidate { session, timeout }
                }
                Output::RevalidateReply { to, session, valid } => {
                    CoreCommand::RevalidateReply { to, session, valid }
                }
                Output::Touch { session, timeout } => CoreCommand::Touch { session, timeout },
                Output::SyncFor(sid) => CoreCommand::SyncFor(sid),
                Output::Committed(_) | Output::Send(..) | Output::Close(..) => return,
            };
            if cmds.send(cmd).is_err() {
                debug!("the peer stopped: core command dropped");
            }
        }),
        learners: Box::new(move || {
            let (learners, synced_followers, synced_observers) = status.borrow().learners;
            LearnerStats {
                learners,
                synced_followers,
                synced_observers,
            }
        }),
    }
}

/// A prepared txn with the zxid the peer gave it, as a PROPOSAL carries it.
fn txn_bytes(mut txn: crate::core::Txn, zxid: i64, digest: Option<i64>) -> Bytes {
    txn.hdr.zxid = zxid;
    proposal_bytes(&Committed { txn, digest })
}

/// How a core serves in a peer role: only an established leader and synced learners serve.
pub(super) fn mode_of(role: Role) -> Mode {
    match role {
        Role::Leading {
            epoch,
            established: true,
        } => Mode::Leader { epoch },
        Role::Following { synced: true, .. } => Mode::Follower,
        Role::Observing { synced: true, .. } => Mode::Observer,
        _ => Mode::NotServing,
    }
}

/// Feeds the peer's events to the core, in order, until the peer stops.
async fn apply_events(
    ctx: Arc<Ctx>,
    disk: Disk,
    extended: bool,
    mut events: mpsc::Receiver<Event>,
    view: watch::Sender<View>,
    progress: watch::Sender<u64>,
) {
    let mut paused = ctx.paused.subscribe();
    while let Some(e) = events.recv().await {
        // A stalled server processes nothing.
        let _ = paused.wait_for(|p| !*p).await;
        let mut role = None;
        match e {
            Event::Deliver { zxid, txn, fuzzy } => match decode_payload(txn) {
                // A leader that attaches its digest (real ZooKeeper) is checked txn by txn.
                Ok((txn, digest)) => {
                    ctx.with_core(|c| c.deliver_checked(&txn, digest, fuzzy, now_ms()))
                }
                Err(err) => return fail(&ctx, &format!("committed txn 0x{zxid:x}: {err}")),
            },
            Event::Restore { zxid, .. } | Event::Reset { zxid } => {
                let d = disk.clone();
                let db = tokio::task::spawn_blocking(move || d.rebuild(zxid, extended)).await;
                match db {
                    Ok(Ok(db)) => ctx.with_core(|c| c.reset(db, now_ms())),
                    Ok(Err(err)) => return fail(&ctx, &format!("rebuild at 0x{zxid:x}: {err}")),
                    Err(err) => return fail(&ctx, &format!("rebuild at 0x{zxid:x}: {err}")),
                }
            }
            Event::RoleChanged(r) => {
                ctx.with_core(|c| c.set_mode(mode_of(r), now_ms()));
                role = Some(r);
            }
            Event::Request {
                from,
                request,
                authinfo,
            } => ctx.with_core(|c| c.learner_request(from, request, authinfo, now_ms())),
            Event::Revalidate {
                from,
                session_id,
                timeout,
            } => ctx.with_core(|c| c.revalidate(from, session_id, timeout, now_ms())),
            Event::Revalidated { session_id, valid } => {
                ctx.with_core(|c| c.revalidated(session_id, valid, now_ms()))
            }
            Event::Touches { from, touches } => {
                ctx.with_core(|c| c.touches(from, &touches, now_ms()))
            }
            Event::Synced => ctx.with_core(|c| c.synced(now_ms())),
        }
        if let Some(r) = role {
            view.send_modify(|v| v.role = Some(r));
        }
        progress.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// The state can no longer follow the log: the server stops serving, as ZooKeeper exits.
fn fail(ctx: &Ctx, why: &str) {
    error!(
        reason = why,
        "cannot apply the replicated history: the server stops serving"
    );
    ctx.with_core(|c| c.set_mode(Mode::NotServing, now_ms()));
}
