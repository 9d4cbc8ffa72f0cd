//! What the server's core asks of the replication layer ([`CoreCommand`]), as the driver
//! carries it out.
//!
//! The core produces these under the lock of the client side's shared state, which is never
//! held across an `.await`: they travel on an unbounded queue, in the order the core emitted
//! them (proposals included). The queue holds what the core produced since the driver's last
//! turn; both run on the same runtime and a paused server pauses its clients too.

use bytes::Bytes;
use tracing::debug;
use zkit_proto::quorum::ForwardedRequest;
use zkit_proto::Id;

use super::{Driver, ShellDisk};
use crate::quorum::peer::{PeerError, Role};
use crate::quorum::Sid;

/// Builds a txn from the zxid it will get.
pub(crate) type TxnAt = Box<dyn FnOnce(i64) -> Bytes + Send>;

/// A request of the core to the replication layer.
pub(crate) enum CoreCommand {
    /// Leader: propose the txn built from the zxid it gets, if this peer still leads `epoch`
    /// (the epoch the core prepared it in); dropped otherwise.
    Propose {
        /// The epoch the core was leading when it prepared the txn.
        epoch: u32,
        /// The txn.
        txn_at: TxnAt,
    },
    /// Learner: forward a client request to the leader.
    Forward {
        /// The request.
        request: ForwardedRequest,
        /// The client's auth ids.
        authinfo: Vec<Id>,
    },
    /// Learner: ask the leader whether a session may attach here.
    Revalidate {
        /// The session.
        session: i64,
        /// Its timeout, ms.
        timeout: i32,
    },
    /// Leader: answer a learner's revalidation.
    RevalidateReply {
        /// The learner.
        to: Sid,
        /// The session.
        session: i64,
        /// Whether it is valid.
        valid: bool,
    },
    /// Learner: activity on a session.
    Touch {
        /// The session.
        session: i64,
        /// Its timeout, ms.
        timeout: i32,
    },
    /// Leader: complete a sync for this server (its own id included).
    SyncFor(Sid),
}

impl CoreCommand {
    fn name(&self) -> &'static str {
        match self {
            CoreCommand::Propose { .. } => "propose",
            CoreCommand::Forward { .. } => "forward",
            CoreCommand::Revalidate { .. } => "revalidate",
            CoreCommand::RevalidateReply { .. } => "revalidate reply",
            CoreCommand::Touch { .. } => "touch",
            CoreCommand::SyncFor(_) => "sync",
        }
    }
}

impl<D: ShellDisk> Driver<D> {
    /// Carries out a core command; one the peer cannot take any more (it changed role since
    /// the core emitted it) is dropped: the core learns of the change from the role event and
    /// closes its clients.
    pub(super) fn on_core(&mut self, cmd: CoreCommand) {
        let what = cmd.name();
        let r = match cmd {
            CoreCommand::Propose { epoch, txn_at } => {
                match (self.peer.role(), self.peer.next_zxid()) {
                    (Role::Leading { epoch: e, .. }, Some(zxid)) if e == epoch => {
                        self.peer.propose(txn_at(zxid)).map(|_| ())
                    }
                    _ => Err(PeerError::NotLeader),
                }
            }
            CoreCommand::Forward { request, authinfo } => self.peer.forward(request, authinfo),
            CoreCommand::Revalidate { session, timeout } => self.peer.revalidate(session, timeout),
            CoreCommand::RevalidateReply { to, session, valid } => {
                self.peer.revalidate_reply(to, session, valid)
            }
            CoreCommand::Touch { session, timeout } => self.peer.touch(session, timeout),
            CoreCommand::SyncFor(sid) => self.peer.sync_for(sid),
        };
        if let Err(e) = r {
            debug!(what, error = %e, "core command dropped: the peer changed role");
        }
    }
}
