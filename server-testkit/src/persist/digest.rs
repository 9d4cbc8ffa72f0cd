//! ZooKeeper's tree digest (`DigestCalculator`, digest version 2; `zk-disk-format.md` §6) and the
//! [`Journal`] that records committed txns with the digest after each one, for the txn log.
//!
//! The digest is kept incrementally: before a txn is applied the digests of the nodes it can touch
//! (its paths and their parents) are subtracted, after it they are added back.

use std::collections::BTreeSet;

use zkit_proto::path::parent;

use super::checksum::Crc32;
use crate::core::{DataTree, Node, Txn, TxnBody};

/// Digest version written in TxnDigest / ZxidDigest records.
pub const DIGEST_VERSION: i32 = 2;

/// CRC-32 digest of one node, as `DigestCalculator.calculateDigest` computes it.
pub fn node_digest(path: &str, node: &Node) -> u64 {
    let mut c = Crc32::new();
    if path != "/" {
        c.update(path.as_bytes());
    }
    if let Some(d) = &node.data {
        c.update(d);
    }
    let s = &node.stat;
    for v in [s.czxid, s.mzxid, s.pzxid, s.ctime, s.mtime] {
        c.update(&v.to_be_bytes());
    }
    for v in [s.version, s.cversion, s.aversion] {
        c.update(&v.to_be_bytes());
    }
    c.update(&s.ephemeral_owner.to_be_bytes());
    c.value() as u64
}

/// Whether a path counts in the tree digest (everything except `/zookeeper/...`).
fn counted(path: &str) -> bool {
    !path.starts_with("/zookeeper/")
}

fn digest_of(tree: &DataTree, path: &str) -> u64 {
    match tree.get(path) {
        Some(n) if counted(path) => node_digest(path, n),
        _ => 0,
    }
}

/// The digest of a whole tree (O(nodes)).
pub fn tree_digest(tree: &DataTree) -> i64 {
    let mut sum = 0u64;
    let mut stack = vec!["/".to_owned()];
    while let Some(p) = stack.pop() {
        if let Some(n) = tree.get(&p) {
            if counted(&p) {
                sum = sum.wrapping_add(node_digest(&p, n));
            }
            for c in n.children.iter_order() {
                stack.push(super::join(&p, &c));
            }
        }
    }
    sum as i64
}

/// Paths whose node (and digest) a txn can change.
fn touched(tree: &DataTree, hdr_session: i64, body: &TxnBody, out: &mut BTreeSet<String>) {
    let with_parent = |p: &str, out: &mut BTreeSet<String>| {
        out.insert(p.to_owned());
        out.insert(parent(p).to_owned());
    };
    match body {
        TxnBody::Create(t) | TxnBody::Create2(t) => with_parent(&t.path, out),
        TxnBody::CreateContainer(t) => with_parent(&t.path, out),
        TxnBody::CreateTtl(t) => with_parent(&t.path, out),
        TxnBody::Delete(t) | TxnBody::DeleteContainer(t) => with_parent(&t.path, out),
        TxnBody::SetData(t) => {
            out.insert(t.path.clone());
        }
        TxnBody::SetAcl(t) => {
            out.insert(t.path.clone());
        }
        TxnBody::CloseSession(c) => {
            let paths = if c.paths2_delete.is_empty() {
                tree.ephemerals_of(hdr_session)
            } else {
                c.paths2_delete.clone()
            };
            for p in paths {
                with_parent(&p, out);
            }
        }
        TxnBody::Multi(subs) => {
            for s in subs {
                touched(tree, hdr_session, s, out);
            }
        }
        _ => {}
    }
}

/// A txn ready for the log: the txn and the tree digest after it (None for error txns, which
/// ZooKeeper logs without a digest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// The txn.
    pub txn: Txn,
    /// Tree digest after the txn.
    pub digest: Option<i64>,
}

/// What [`Journal::before`] measured, for [`Journal::after`].
#[derive(Debug)]
pub struct PreApply {
    paths: BTreeSet<String>,
    sum: u64,
}

/// Records committed txns with their digests; owned by the core when persistence is on.
#[derive(Debug, Clone)]
pub struct Journal {
    digest: u64,
    last_zxid: i64,
    pending: Vec<Logged>,
    record: bool,
}

impl Journal {
    /// A journal over `tree` (computes its digest once), last zxid `zxid`.
    pub fn new(tree: &DataTree, zxid: i64) -> Journal {
        Journal {
            digest: tree_digest(tree) as u64,
            last_zxid: zxid,
            pending: Vec::new(),
            record: true,
        }
    }

    /// A journal whose tree digest is already known.
    pub fn with_digest(digest: i64, zxid: i64) -> Journal {
        Journal {
            digest: digest as u64,
            last_zxid: zxid,
            pending: Vec::new(),
            record: true,
        }
    }

    /// Keeps the digest but does not queue txns (recovery replay).
    pub fn digest_only(tree: &DataTree, zxid: i64) -> Journal {
        Journal {
            record: false,
            ..Journal::new(tree, zxid)
        }
    }

    /// Call before applying `txn` to `tree`.
    pub fn before(&self, tree: &DataTree, txn: &Txn) -> PreApply {
        let mut paths = BTreeSet::new();
        touched(tree, txn.hdr.client_id, &txn.body, &mut paths);
        let sum = paths
            .iter()
            .fold(0u64, |s, p| s.wrapping_add(digest_of(tree, p)));
        PreApply { paths, sum }
    }

    /// Call after applying `txn`; queues it with the new digest.
    pub fn after(&mut self, tree: &DataTree, txn: &Txn, pre: PreApply) {
        let sum = pre
            .paths
            .iter()
            .fold(0u64, |s, p| s.wrapping_add(digest_of(tree, p)));
        self.digest = self.digest.wrapping_sub(pre.sum).wrapping_add(sum);
        self.last_zxid = self.last_zxid.max(txn.hdr.zxid);
        if self.record {
            let digest = match txn.body {
                TxnBody::Error(_) => None,
                _ => Some(self.digest as i64),
            };
            self.pending.push(Logged {
                txn: txn.clone(),
                digest,
            });
        }
    }

    /// The tree digest after the last txn.
    pub fn digest(&self) -> i64 {
        self.digest as i64
    }

    /// Zxid of the last txn seen.
    pub fn last_zxid(&self) -> i64 {
        self.last_zxid
    }

    /// Takes the txns committed since the last call.
    pub fn take(&mut self) -> Vec<Logged> {
        std::mem::take(&mut self.pending)
    }

    /// Whether txns are waiting to be taken.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_tree_digest_matches_zookeeper() {
        // zk-disk-format.md §6: 68323592 + 1303661912.
        assert_eq!(tree_digest(&DataTree::new(false)), 1_371_985_504);
    }
}
