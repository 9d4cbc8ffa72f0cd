//! Typed operations for `multi` and `multi_read`, and their typed results.

use bytes::Bytes;

use crate::options::CreateOptions;
use zkit_proto::Stat;

/// One write inside a [`multi`](crate::Client::multi) transaction.
///
/// ```
/// use zkit::{CreateOptions, Op};
/// let ops = vec![
///     Op::create("/app/a", b"1", &CreateOptions::persistent()),
///     Op::check("/app", 0),
///     Op::set_data("/app/b", b"2", None),
///     Op::delete("/app/c", Some(3)),
/// ];
/// # let _ = ops;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// Create a node.
    Create {
        /// Path.
        path: String,
        /// Data.
        data: Bytes,
        /// Mode, ACL, TTL.
        options: CreateOptions,
    },
    /// Delete a node (version `None` = any).
    Delete {
        /// Path.
        path: String,
        /// Expected version.
        version: Option<i32>,
    },
    /// Set a node's data (version `None` = any).
    SetData {
        /// Path.
        path: String,
        /// Data.
        data: Bytes,
        /// Expected version.
        version: Option<i32>,
    },
    /// Require a node to be at a version.
    Check {
        /// Path.
        path: String,
        /// Expected version.
        version: i32,
    },
}

impl Op {
    /// A create, with options taken like [`Client::create`](crate::Client::create) takes them.
    pub fn create(path: &str, data: impl AsRef<[u8]>, options: &CreateOptions) -> Op {
        Op::Create {
            path: path.to_owned(),
            data: Bytes::copy_from_slice(data.as_ref()),
            options: options.clone(),
        }
    }
    /// A delete.
    pub fn delete(path: &str, version: Option<i32>) -> Op {
        Op::Delete {
            path: path.to_owned(),
            version,
        }
    }
    /// A setData.
    pub fn set_data(path: &str, data: impl AsRef<[u8]>, version: Option<i32>) -> Op {
        Op::SetData {
            path: path.to_owned(),
            data: Bytes::copy_from_slice(data.as_ref()),
            version,
        }
    }
    /// A version check.
    pub fn check(path: &str, version: i32) -> Op {
        Op::Check {
            path: path.to_owned(),
            version,
        }
    }
}

/// The result of one op of a successful multi.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpResult {
    /// A node was created.
    Create {
        /// Its path (with sequence suffix).
        path: String,
        /// Its Stat. Apache ZooKeeper 3.8 answers plain creates inside a multi with the path
        /// only, so this is all zeros for them; container and TTL creates carry a real Stat.
        stat: Stat,
    },
    /// A node was deleted.
    Delete,
    /// Data was set.
    SetData {
        /// The new Stat.
        stat: Stat,
    },
    /// The check passed.
    Check,
}

/// One read inside a [`multi_read`](crate::Client::multi_read).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadOp {
    /// getData.
    GetData(String),
    /// getChildren.
    GetChildren(String),
}

/// The result of one read of a `multi_read`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadResult {
    /// Data and Stat.
    Data {
        /// Data.
        data: Bytes,
        /// Stat.
        stat: Stat,
    },
    /// Child names.
    Children(Vec<String>),
}
