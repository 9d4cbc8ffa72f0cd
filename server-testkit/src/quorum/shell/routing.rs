//! How the driver reaches other servers: election connections (`QuorumCnxManager`'s rule of
//! which connection survives), the learner's connection to its leader, and the send path,
//! where partitions ([`QuorumPeer::cut`](super::QuorumPeer::cut)) and link faults
//! ([`LinkFault`](super::LinkFault)) apply.

use std::collections::BTreeSet;

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::links::Link;
use super::{conn, ConnId, Driver, ShellDisk, ELECTION_BACKLOG};
use crate::quorum::peer::Role;
use crate::quorum::Sid;

impl<D: ShellDisk> Driver<D> {
    pub(super) fn set_cut(&mut self, sids: BTreeSet<Sid>) {
        let now = self.now();
        let newly: Vec<Sid> = sids.difference(&self.cut).copied().collect();
        for sid in newly {
            self.election.remove(&sid);
            self.election_backlog.remove(&sid);
            if self.zab.contains_key(&sid) || self.zab_connecting.contains_key(&sid) {
                self.drop_zab(sid);
                self.peer.disconnected(sid, now);
            }
        }
        self.cut = sids;
    }

    /// `QuorumCnxManager.handleConnection`: a smaller sid's connection is closed and this
    /// server connects back; a larger one's is kept (replacing any older one).
    pub(super) fn election_inbound(&mut self, sid: Sid, stream: TcpStream, rest: BytesMut) {
        let known = self.cfg.election_addrs.contains_key(&sid);
        if !known || sid == self.cfg.peer.id {
            warn!(
                sid,
                "election connection from an unknown or our own sid refused"
            );
            return;
        }
        if sid < self.cfg.peer.id {
            drop(stream);
            self.election.remove(&sid);
            self.connect_election(sid);
            return;
        }
        let conn = self.conn_id();
        let (tx, rx) = mpsc::channel(conn::WRITE_QUEUE);
        let inbox = self.inbox_tx.clone();
        self.tasks
            .spawn(conn::election_loop(stream, rest, sid, conn, rx, inbox));
        self.election.insert(sid, Link::new(conn, tx));
        let now = self.now();
        self.election_connected(sid, now);
    }

    /// A new election connection to `sid` is up: what waited for it goes out, or else (as
    /// `QuorumCnxManager`'s `SendWorker` does) the last notification the peer had for `sid`,
    /// which the connection before may have lost.
    pub(super) fn election_connected(&mut self, sid: Sid, now: u64) {
        let backlog = self.election_backlog.remove(&sid).unwrap_or_default();
        if backlog.is_empty() {
            self.peer.connected(sid, now);
        }
        for frame in backlog {
            self.send_election_frame(sid, frame);
        }
    }

    fn connect_election(&mut self, sid: Sid) {
        let (Some(&addr), Some(&my_addr)) = (
            self.cfg.election_addrs.get(&sid),
            self.cfg.election_addrs.get(&self.cfg.peer.id),
        ) else {
            return;
        };
        if self.election.contains_key(&sid) || !self.election_connecting.insert(sid) {
            return;
        }
        let conn = self.conn_id();
        let inbox = self.inbox_tx.clone();
        let me = self.cfg.peer.id;
        let timeout = self.cfg.connect_timeout;
        self.tasks.spawn(conn::election_connect(
            me, my_addr, sid, addr, conn, timeout, inbox,
        ));
    }

    pub(super) fn send_election_frame(&mut self, sid: Sid, frame: Bytes) {
        if self.cut.contains(&sid) {
            return;
        }
        let fault = self.faults.get(&sid).copied().unwrap_or_default();
        if self.rng.chance(fault.loss) {
            debug!(sid, "link fault: notification lost");
            return;
        }
        if let Some(link) = self.election.get_mut(&sid) {
            match link.send(frame, fault.delay, false, &mut self.tasks) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    debug!(sid, "election queue full: notification dropped");
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(frame)) => {
                    self.election.remove(&sid);
                    self.backlog_election(sid, frame);
                }
            }
        } else {
            self.backlog_election(sid, frame);
        }
        self.connect_election(sid);
    }

    fn backlog_election(&mut self, sid: Sid, frame: Bytes) {
        let q = self.election_backlog.entry(sid).or_default();
        if q.len() >= ELECTION_BACKLOG {
            q.pop_front();
        }
        q.push_back(frame);
    }

    pub(super) fn zab_up(&mut self, sid: Sid, conn: ConnId, tx: mpsc::Sender<Bytes>, now: u64) {
        if self.zab_connecting.get(&sid) == Some(&conn) {
            // Our own attempt to reach the leader succeeded.
            self.zab_connecting.remove(&sid);
            self.zab.insert(sid, Link::new(conn, tx));
            for frame in self.zab_backlog.remove(&sid).unwrap_or_default() {
                self.send_zab_frame(sid, frame, now);
            }
            return;
        }
        if self.zab_connecting.contains_key(&sid) || !self.cfg.quorum_addrs.contains_key(&sid) {
            // A superseded attempt, or a learner we do not know: dropping `tx` closes it.
            return;
        }
        // A learner (re)connected: its older connection is over.
        if self.zab.remove(&sid).is_some() {
            self.peer.disconnected(sid, now);
        }
        self.zab.insert(sid, Link::new(conn, tx));
    }

    pub(super) fn drop_zab(&mut self, sid: Sid) {
        self.zab.remove(&sid);
        self.zab_connecting.remove(&sid);
        self.zab_backlog.remove(&sid);
    }

    pub(super) fn send_zab_frame(&mut self, sid: Sid, frame: Bytes, now: u64) {
        if self.cut.contains(&sid) {
            // As a connect that cannot get through: the peer learns the link is down.
            debug!(sid, "cut off: quorum packet dropped");
            self.peer.disconnected(sid, now);
            return;
        }
        let fault = self.faults.get(&sid).copied().unwrap_or_default();
        if self.zab.contains_key(&sid) && self.rng.chance(fault.loss) {
            debug!(
                sid,
                "link fault: a quorum packet lost, the connection breaks"
            );
            self.drop_zab(sid);
            self.peer.disconnected(sid, now);
            return;
        }
        // A learner's frames to its leader (forwarded client requests above all) wait for room:
        // a client pipelining writes faster than the leader takes them must be slowed, not
        // cut off with every other client of this server. A leader's frames to a learner that
        // cannot keep up end that connection (the learner must resync).
        let to_leader = matches!(
            self.peer.role(),
            Role::Following { leader, .. } | Role::Observing { leader, .. } if leader == sid
        );
        if let Some(link) = self.zab.get_mut(&sid) {
            if link
                .send(frame, fault.delay, to_leader, &mut self.tasks)
                .is_err()
            {
                warn!(sid, "quorum connection cannot keep up: closing it");
                self.drop_zab(sid);
                self.peer.disconnected(sid, now);
            }
            return;
        }
        let leader = match self.peer.role() {
            Role::Following { leader, .. } | Role::Observing { leader, .. } => Some(leader),
            _ => None,
        };
        if leader != Some(sid) {
            debug!(sid, "no quorum connection: packet dropped");
            return;
        }
        let backlog = self.zab_backlog.entry(sid).or_default();
        if backlog.len() >= conn::WRITE_QUEUE {
            warn!(sid, "leader unreachable for too long: giving up on it");
            self.drop_zab(sid);
            self.peer.disconnected(sid, now);
            return;
        }
        backlog.push(frame);
        if !self.zab_connecting.contains_key(&sid) {
            let Some(&addr) = self.cfg.quorum_addrs.get(&sid) else {
                return;
            };
            let conn = self.conn_id();
            self.zab_connecting.insert(sid, conn);
            let inbox = self.inbox_tx.clone();
            let timeout = self.cfg.connect_timeout;
            let zk_stream = self.disk.zookeeper_snapshots();
            self.tasks.spawn(conn::zab_connect(
                sid, addr, conn, timeout, zk_stream, inbox,
            ));
        }
    }
}
