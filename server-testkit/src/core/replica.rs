//! The core in a replicated server: the interface the ensemble shell drives.
//!
//! In an ensemble the core no longer applies a write when it receives it. The leader's core
//! *prepares* it (validates it and turns it into a txn) against the committed tree plus every
//! proposal still outstanding, and hands the txn to the replication layer
//! ([`Output::Propose`]); a learner's core forwards the request to the leader
//! ([`Output::Forward`]). Every server applies txns only once the quorum committed them
//! ([`Core::deliver`]) and answers its own clients then. A session's requests are answered in
//! order on the server it is connected to: a read waits behind that session's earlier writes.
//!
//! The shell maps the replication layer's events onto the calls here and the `Output`s for
//! the replication layer onto its commands.

use zkit_proto::quorum::{ForwardedRequest, SessionTouch};
use zkit_proto::Id;

use super::{Config, Core, Database, Txn};

/// How a core serves clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One server on its own: writes are applied at once (today's behaviour).
    Standalone,
    /// The established leader of epoch `epoch`: prepares and proposes.
    Leader {
        /// The ZAB epoch.
        epoch: u32,
    },
    /// A follower in broadcast: forwards writes, applies commits.
    Follower,
    /// An observer in broadcast: as a follower, without a vote.
    Observer,
    /// Not in broadcast (electing, syncing): refuses clients, as ZooKeeper does.
    NotServing,
}

impl Core {
    /// A core for a member of an ensemble with server id `server_id` (the high byte of the
    /// session ids it creates), over `db` (what the server's disk holds). It starts
    /// [`Mode::NotServing`].
    pub fn replica(cfg: Config, db: Database, now: i64, server_id: i64) -> Core {
        let _ = server_id;
        Core::with_db(cfg, db, now)
    }

    /// How this core serves.
    pub fn mode(&self) -> Mode {
        Mode::Standalone
    }

    /// The replication layer changed role. Leaving broadcast closes every client connection
    /// and drops every waiting request (clients reconnect elsewhere).
    pub fn set_mode(&mut self, mode: Mode, now: i64) {
        let _ = (mode, now);
    }

    /// A committed txn, in zxid order, each once: applied, its watches fired, and the waiting
    /// request of a local session answered.
    pub fn deliver(&mut self, txn: &Txn, now: i64) {
        let _ = now;
        self.commit(txn);
    }

    /// The state was rebuilt from disk (TRUNC) or a snapshot (SNAP): replaces the database.
    /// Closes every client connection.
    pub fn reset(&mut self, db: Database, now: i64) {
        let _ = (db, now);
    }

    /// Leader: a learner forwarded a client request (or a createSession/closeSession/sync).
    pub fn learner_request(
        &mut self,
        from: i64,
        request: ForwardedRequest,
        authinfo: Vec<Id>,
        now: i64,
    ) {
        let _ = (from, request, authinfo, now);
    }

    /// Leader: a learner asks whether a session may attach to it; answered with
    /// [`Output::RevalidateReply`].
    pub fn revalidate(&mut self, from: i64, session: i64, timeout: i32, now: i64) {
        let _ = (from, session, timeout, now);
    }

    /// Learner: the leader's answer to an [`Output::Revalidate`].
    pub fn revalidated(&mut self, session: i64, valid: bool, now: i64) {
        let _ = (session, valid, now);
    }

    /// Leader: sessions a learner saw activity on.
    pub fn touches(&mut self, from: i64, touches: &[SessionTouch], now: i64) {
        let _ = (from, touches, now);
    }

    /// A `sync` completed (everything proposed before it is committed): the oldest waiting
    /// sync on this server is answered.
    pub fn synced(&mut self, now: i64) {
        let _ = now;
    }
}

#[allow(unused_imports)]
use super::Output;
