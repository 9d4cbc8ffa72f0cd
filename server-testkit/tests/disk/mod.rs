//! Helpers shared by the persistence tests: a temp dir removed on drop, and a dump of the tree
//! (data, ACL, persisted Stat and child set of every node) to compare trees exactly.
#![allow(dead_code)]

use std::collections::BTreeMap;

use zkit_testkit::core::{Core, Node};

pub use tempfile::TempDir;

/// A fresh, empty directory named after `tag` (`zkit-it-<tag>-…` under the system temp dir),
/// removed when the returned value is dropped.
pub fn temp_dir(tag: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("zkit-it-{tag}-"))
        .tempdir()
        .expect("create temp dir")
}

/// Every node at or below `root`, by path.
pub fn tree_under(core: &Core, root: &str) -> BTreeMap<String, Node> {
    let tree = &core.db().tree;
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(p) = stack.pop() {
        let Some(n) = tree.get(&p) else { continue };
        for c in n.children.iter_order() {
            stack.push(zkit_proto::path::join(&p, &c));
        }
        out.insert(p, n.clone());
    }
    out
}
