//! ZooKeeper's tree digest (`DigestCalculator`, digest version 2): a CRC-32 per node, summed
//! over the tree. The core keeps it txn by txn in [`TreeDigest`]: before a txn is applied the
//! digests of the nodes it can touch (its paths and their parents) are subtracted, after it they
//! are added back. Persistence writes it beside every logged txn and in snapshots, and recovery
//! checks replayed txns against it.

use std::collections::BTreeSet;

use zkit_proto::path::parent;

use super::tree::{join, DataTree, Node};
use super::txn::{Txn, TxnBody};

/// Digest version written in TxnDigest / ZxidDigest records.
pub const DIGEST_VERSION: i32 = 2;

/// CRC-32 digest of one node, as `DigestCalculator.calculateDigest` computes it.
pub fn node_digest(path: &str, node: &Node) -> u64 {
    let mut c = crc32fast::Hasher::new();
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
    c.finalize() as u64
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
                stack.push(join(&p, &c));
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

/// What [`TreeDigest::before`] measured, for [`TreeDigest::after`].
#[derive(Debug)]
pub struct PreApply {
    paths: BTreeSet<String>,
    sum: u64,
}

/// The running digest of a tree, kept up to date txn by txn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeDigest(u64);

impl TreeDigest {
    /// The digest of `tree` (computed once, O(nodes)).
    pub fn of(tree: &DataTree) -> TreeDigest {
        TreeDigest(tree_digest(tree) as u64)
    }

    /// A digest already known (recovered with its tree).
    pub fn known(value: i64) -> TreeDigest {
        TreeDigest(value as u64)
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

    /// Call after applying the txn measured by `pre`.
    pub fn after(&mut self, tree: &DataTree, pre: PreApply) {
        let sum = pre
            .paths
            .iter()
            .fold(0u64, |s, p| s.wrapping_add(digest_of(tree, p)));
        self.0 = self.0.wrapping_sub(pre.sum).wrapping_add(sum);
    }

    /// The digest value, as the log and snapshots store it.
    pub fn value(&self) -> i64 {
        self.0 as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_digests_use_javas_crc32() {
        // java.util.zip.CRC32 check value.
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn empty_tree_digest_matches_zookeeper() {
        // `docs/disk-format.md` §6: 68323592 + 1303661912.
        assert_eq!(tree_digest(&DataTree::new(false)), 1_371_985_504);
    }
}
