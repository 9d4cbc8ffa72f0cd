//! # zkit-testkit: an in-process, wire-compatible Apache ZooKeeper server for tests
//!
//! Start a server on `127.0.0.1:0` in well under a millisecond, point any ZooKeeper client (zkit,
//! the Java client, kazoo, ...) at [`Server::connect_string`], and use the fault controls real
//! servers cannot give: expire one session, cut one connection, stall the server, restart it with
//! the same data.
//!
//! ```no_run
//! use std::time::Duration;
//! use zkit_testkit::{FourLetterWords, Server};
//!
//! # async fn demo() -> Result<(), zkit_testkit::Error> {
//! let mut server = Server::builder()
//!     .tick_time(Duration::from_millis(200))
//!     .four_letter_words(FourLetterWords::all())
//!     .start()
//!     .await?;
//! let connect_string = server.connect_string(); // "127.0.0.1:PORT"
//! # let _ = connect_string;
//! // ... connect a client, create an ephemeral node ...
//! for session in server.sessions() {
//!     server.expire_session(session.id); // ephemerals go, watchers are told
//! }
//! server.pause(Duration::from_secs(1)); // a stalled server
//! server.restart().await?; // same port, same data and sessions
//! server.stop().await;
//! # Ok(()) }
//! ```
//!
//! For replication, [`Ensemble`] starts several servers in the process that elect a leader and
//! replicate every write with ZooKeeper's own protocols over loopback sockets, each on its
//! own client port, and lets a test kill, restart, partition, slow down or stall any of them:
//!
//! ```no_run
//! # async fn demo() -> Result<(), zkit_testkit::Error> {
//! let mut ensemble = zkit_testkit::Ensemble::builder().servers(3).start().await?;
//! let leader = ensemble.wait_for_leader().await?;
//! let connect_string = ensemble.connect_string(); // every server's address
//! # let _ = connect_string;
//! ensemble.kill(leader).await; // clients fail over to the new leader's ensemble
//! ensemble.wait_for_leader().await?;
//! # Ok(()) }
//! ```
//!
//! Inside, the server is a sans-IO core (data tree with ZooKeeper's Stat rules, request -> txn
//! preparation, one txn apply function, sessions, watches, ACLs) driven by a small tokio shell,
//! with optional persistence in ZooKeeper's own data dir format ([`Builder::data_dir`]), across
//! which sessions and their ephemerals survive a restart of the process. The binary
//! `zkit-server` serves the same thing to non-Rust users.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[doc(hidden)]
pub mod bench;
mod core;
#[doc(hidden)]
pub mod diff;
mod ensemble;
mod net;
mod persist;
mod quorum;
mod server;

pub use crate::core::{
    FaultAction, FaultRule, NodeKind, PasswordScheme, RuleId, SessionFaults, StatPersisted,
    WatchKind,
};
pub use ensemble::{
    Builder as EnsembleBuilder, ConfigError, ConfigWarning, Ensemble, Inconsistency, Member,
    MemberConfig, QuorumRole, ServerHandle, ServerLine, ServerMode, ZooCfg,
};
pub use net::{FourLetterWords, ServerTls};
pub use persist::backup::BackupInfo;
pub use persist::{PersistError, PersistOptions, RecoveryReport};
pub use server::{Builder, ConnectionSummary, Error, Server, SessionSummary, WatchSummary, Znode};
/// Opcodes and error codes, for [`FaultRule`]s.
pub use zkit_proto::{ErrorCode, OpCode};
