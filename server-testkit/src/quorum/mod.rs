//! Replication, sans-IO: ZooKeeper's fast leader election and ZAB (discovery, sync, broadcast),
//! with ZooKeeper's own messages from `zkit_proto::quorum`.
//!
//! The shape is raft-rs's: a [`Peer`] is fed messages ([`Peer::step`]), time ([`Peer::tick`])
//! and durability reports ([`Peer::durable`]), and drained of messages to send and events
//! ([`Peer::poll`]). It owns no socket, disk or clock. Txns are opaque bytes here; the
//! [`Log`] trait is where the server's txn log, snapshots and epoch files plug in.
//!
//! Where this differs from ZooKeeper, on purpose:
//! - the election's `finalizeWait` is a fixed deadline from the moment a quorum agrees, not
//!   restarted by every non-better notification;
//! - a learner acknowledges NEWLEADER only once every txn it logged during the sync is durable,
//!   writes its current epoch just before that ACK, and acknowledges no proposal before it
//!   (an ACK from a learner still on the older current epoch could count towards a commit that
//!   a later election, ordered by peer epoch first, would not see); a leader writes its current
//!   epoch only once its own history is durable;
//! - once a role is established, the vote a server answers notifications with carries the
//!   ZAB epoch it is in, so servers that reached the same leader by different rounds agree;
//! - a learner more than `snap_threshold` txns behind gets SNAP (ZooKeeper compares sizes);
//! - a leader steps down when a learner reports an accepted epoch newer than the leader's
//!   (promised to a would-be leader whose discovery never completed): ZooKeeper's leader keeps
//!   leading, and that learner refuses it after every election for as long as it lasts;
//! - a learner synced again by an established leader has its earlier ACKs of the outstanding
//!   proposals forgotten (its TRUNC or SNAP may drop those txns); it acknowledges them anew.
//!
//! [`shell`] runs a peer on tokio over real sockets (ZooKeeper's election and quorum port
//! framing) on an in-memory disk or on [`disklog`], the [`Log`] over a real data dir in
//! ZooKeeper's format; `linearizability` (tests only) checks client histories. Two seeded,
//! deterministic simulations (tests only) drive peers through crashes and partitions: `sim`
//! peers alone, `sim_server` whole servers (a peer under the server core in replicated mode,
//! with clients sending real request frames).
//! The ensemble (`crate::ensemble`) runs one shell per member and ties it to that member's
//! core; parts of this layer only its tests use (hence `dead_code` allowed below).
#![allow(dead_code)]

pub(crate) mod disklog;
pub mod election;
mod follower;
#[cfg(test)]
mod follower_tests;
mod leader;
#[cfg(test)]
pub(crate) mod linearizability;
pub mod peer;
#[cfg(test)]
mod peer_tests;
pub(crate) mod shell;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod sim_server;

use bytes::Bytes;
use zkit_proto::quorum::{Notification, QuorumPacket};

/// A server id (`myid`).
pub type Sid = i64;

/// Milliseconds on the shell's monotonic clock (virtual time in the simulation).
pub type Millis = u64;

/// What travels between two servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// On the election channel.
    Election(Notification),
    /// On the ZAB (learner) channel.
    Zab(QuorumPacket),
    /// On the ZAB channel right after a SNAP packet: the leader's snapshot, in whatever format
    /// the [`Log`] produces (the server's is ZooKeeper's snapshot file format).
    Snapshot(Bytes),
}

/// The durable history a [`Peer`] replicates: a txn log with a snapshot under it, and the two
/// epoch files. Appends are asynchronous (the shell reports durability through
/// [`Peer::durable`]); everything else is expected to be durable when it returns (the epoch
/// files are written atomically, a truncation or a snapshot load is synced before returning).
pub trait Log {
    /// The zxid of the last appended txn (durable or not), or of the snapshot when the log
    /// after it is empty; 0 for an empty history.
    fn last_zxid(&self) -> i64;
    /// The appended txns after `zxid`, in order; `None` when the log no longer reaches back
    /// to `zxid` (it was compacted into a snapshot), so the caller must send a snapshot.
    fn entries_after(&self, zxid: i64) -> Option<Vec<(i64, Bytes)>>;
    /// Whether `zxid` is in the history (in the log, or the snapshot's own zxid); 0 always is.
    fn contains(&self, zxid: i64) -> bool;
    /// The largest zxid in the history that is `<= zxid`.
    fn floor(&self, zxid: i64) -> i64;
    /// Drops every txn after `zxid` (TRUNC).
    fn truncate(&mut self, zxid: i64);
    /// Appends a txn; it becomes durable when the shell says so.
    fn append(&mut self, zxid: i64, txn: Bytes);
    /// The state up to and including `zxid` (a committed zxid) as snapshot bytes.
    fn snapshot(&self, zxid: i64) -> Bytes;
    /// Replaces the whole history with a snapshot taken at `zxid` (SNAP).
    fn load_snapshot(&mut self, zxid: i64, snapshot: Bytes);
    /// The accepted epoch file (0 when absent).
    fn accepted_epoch(&self) -> u32;
    /// Writes the accepted epoch file.
    fn set_accepted_epoch(&mut self, epoch: u32);
    /// The current epoch file (0 when absent).
    fn current_epoch(&self) -> u32;
    /// Writes the current epoch file.
    fn set_current_epoch(&mut self, epoch: u32);
}
