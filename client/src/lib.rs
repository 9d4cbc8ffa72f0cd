//! # zkit: an async, wire-compatible Apache ZooKeeper client
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod error;
pub mod proto;

pub use error::{Error, Result};
