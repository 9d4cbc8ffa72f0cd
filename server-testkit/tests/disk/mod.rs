//! Helpers shared by the persistence tests: a temp dir removed on drop, and a dump of the tree
//! (data, ACL, persisted Stat and child set of every node) to compare trees exactly.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use zkit_testkit::core::{Core, Node};

/// A temp dir removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh, empty directory named after `tag`.
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "zkit-it-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every node at or below `root`, by path.
pub fn tree_under(core: &Core, root: &str) -> BTreeMap<String, Node> {
    let tree = &core.db().tree;
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(p) = stack.pop() {
        let Some(n) = tree.get(&p) else { continue };
        for c in n.children.iter_order() {
            stack.push(if p == "/" {
                format!("/{c}")
            } else {
                format!("{p}/{c}")
            });
        }
        out.insert(p, n.clone());
    }
    out
}
