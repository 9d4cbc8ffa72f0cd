//! `zkit-recipes`: distributed coordination recipes built only on the public `zkit` API.
//!
//! The recipes (locks, leader election, caches, barriers) are tracked in issue 5; this crate is the
//! place they will live.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
