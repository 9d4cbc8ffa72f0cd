//! # zkit: an async, wire-compatible Apache ZooKeeper client
//!
//! - every ZooKeeper 3.9 operation with typed results ([`Client`]);
//! - sessions that survive reconnects across hosts, with watches re-registered by SetWatches and
//!   auth replayed; a session state you can watch ([`SessionState`]);
//! - one-shot watches as futures, persistent watches as streams ([`OneshotWatcher`],
//!   [`PersistentWatcher`]);
//! - many requests in flight on one connection, written in call order;
//! - [`RetryPolicy`] for retrying on connection loss, one rule per [`OpClass`].
//!
//! ```no_run
//! # async fn f() -> zkit::Result<()> {
//! use zkit::{Client, CreateMode, CreateOptions};
//! let zk = Client::connect("127.0.0.1:2181").await?;
//! let (path, _) = zk.create("/jobs/job-", b"{}", &CreateOptions::new(CreateMode::PersistentSequential)).await?;
//! let (data, stat, watch) = zk.get_data_and_watch(&path).await?;
//! zk.set_data(&path, b"done", Some(stat.version)).await?;
//! let event = watch.await?;
//! println!("{path}: {:?} (was {:?})", event.event_type, data);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod driver;
pub mod error;
#[cfg(feature = "gssapi")]
mod gssapi;
mod ops;
mod options;
mod reply;
pub mod retry;
mod sasl;
mod session;
mod tls;
mod watched;
mod watcher;

pub use client::{Client, ClientBuilder, DELETE_ALL_BATCH};
pub use error::{Error, Result};
#[cfg(feature = "gssapi")]
pub use gssapi::GssapiOptions;
pub use ops::{Op, OpResult, ReadOp, ReadResult};
pub use options::{ClientOptions, ConnectString, CreateOptions};
pub use retry::{OpClass, RetryPolicy};
pub use sasl::SaslConfig;
pub use session::SessionState;
pub use tls::TlsConfig;
pub use watched::{Events, RecvError, Ref, Watched};
pub use watcher::{OneshotWatcher, PersistentWatcher, StateStream, WatchItem, WatchedEvent};
pub use zkit_proto::path;
pub use zkit_proto::{
    digest_id, perms, ttl_of_ephemeral_owner, Acl, AddWatchMode, ClientInfo, CreateMode, ErrorCode,
    EventType, Id, Stat, WatcherType, CONTAINER_EPHEMERAL_OWNER, MAX_TTL,
};
