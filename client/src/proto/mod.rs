//! The ZooKeeper wire protocol, sans-IO: jute encoding, records, multi bodies, txn records,
//! framing and path rules. Shared by the client and the `zkit-testkit` server.
//!
//! ```
//! use zkit::proto::{Record, Stat};
//! let stat = Stat { version: 3, ..Default::default() };
//! let bytes = stat.to_bytes();
//! assert_eq!(bytes.len(), 68);
//! assert_eq!(Stat::from_bytes(bytes).unwrap(), stat);
//! ```

pub mod codec;
pub mod consts;
pub mod frame;
pub mod multi;
pub mod path;
pub mod records;
pub mod txn;

pub use codec::{DecodeError, JuteWrite, Reader, Record};
pub use consts::*;
pub use multi::*;
pub use records::*;
#[cfg(test)]
mod golden_tests;
