//! # zkit-proto: the Apache ZooKeeper wire protocol, sans-IO
//!
//! Jute encoding, request/response records, multi bodies, txn records, framing and path rules,
//! shared by the `zkit` client and the `zkit-testkit` server. Nothing here does IO, reads a clock
//! or draws randomness. Most users want the `zkit` crate, which re-exports the records a client
//! API needs (`Stat`, `Acl`, `Id`, ...).
//!
//! ```
//! use zkit_proto::{Record, Stat};
//! let stat = Stat { version: 3, ..Default::default() };
//! let bytes = stat.to_bytes();
//! assert_eq!(bytes.len(), 68);
//! assert_eq!(Stat::from_bytes(bytes).unwrap(), stat);
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod acl;
pub mod codec;
pub mod consts;
pub mod frame;
pub mod multi;
pub mod path;
pub mod quorum;
pub mod records;
pub mod sasl;
pub mod txn;

pub use acl::digest_id;
pub use codec::{DecodeError, JuteWrite, Reader, Record};
pub use consts::*;
pub use multi::*;
pub use records::*;
#[cfg(test)]
mod golden_tests;
