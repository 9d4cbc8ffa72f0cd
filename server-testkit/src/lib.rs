//! # zkit-testkit: an in-process, wire-compatible Apache ZooKeeper server for tests
//!
//! Start a server on `127.0.0.1:0` in milliseconds, point any ZooKeeper client at
//! [`Server::connect_string`], and use the fault controls real servers cannot give: expire one
//! session, cut one connection, stall the server.
//!
//! The server is a sans-IO [`core`] (data tree, txns, sessions, watches, ACLs) driven by a small
//! tokio shell ([`net`]).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod core;
pub mod net;
pub mod persist;
mod server;

pub use server::{Builder, Error, Server, SessionSummary, WatchSummary};
