//! Where the data tree keeps its znodes: in fixed-size chunks, found through a path index.
//!
//! A hash map of whole nodes keyed by path costs its load-factor slack on every node's full
//! size (a table of 1M nodes has 2M slots of ~150 bytes). Here the index maps a path to a
//! 4-byte slot number (the slack is paid on ~24 bytes), and the nodes themselves sit in chunks
//! of [`CHUNK`] slots that are allocated once and never move; freed slots are reused.

use std::collections::HashMap;

use super::tree::Node;

/// Slots per chunk.
const CHUNK: usize = 4096;

/// The znodes of a tree, by path.
#[derive(Debug, Clone, Default)]
pub struct Nodes {
    index: HashMap<Box<str>, u32>,
    chunks: Vec<Vec<Option<Node>>>,
    free: Vec<u32>,
}

impl Nodes {
    fn slot(&self, i: u32) -> Option<&Node> {
        let i = i as usize;
        self.chunks.get(i / CHUNK)?.get(i % CHUNK)?.as_ref()
    }

    fn slot_mut(&mut self, i: u32) -> Option<&mut Option<Node>> {
        let i = i as usize;
        self.chunks.get_mut(i / CHUNK)?.get_mut(i % CHUNK)
    }

    /// The node at `path`.
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.slot(*self.index.get(path)?)
    }

    /// The node at `path`, to change.
    pub fn get_mut(&mut self, path: &str) -> Option<&mut Node> {
        let i = *self.index.get(path)?;
        self.slot_mut(i)?.as_mut()
    }

    /// Whether there is a node at `path`.
    pub fn contains_key(&self, path: &str) -> bool {
        self.index.contains_key(path)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Every path (in no particular order).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(|k| &**k)
    }

    /// Puts `node` at `path` (replacing any node there).
    pub fn insert(&mut self, path: &str, node: Node) {
        if let Some(slot) = self.index.get(path).copied().and_then(|i| self.slot_mut(i)) {
            *slot = Some(node);
            return;
        }
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                let n = self.chunks.iter().map(Vec::len).sum::<usize>();
                if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
                    self.chunks.push(Vec::with_capacity(CHUNK));
                }
                if let Some(c) = self.chunks.last_mut() {
                    c.push(None);
                }
                n as u32
            }
        };
        if let Some(slot) = self.slot_mut(i) {
            *slot = Some(node);
        }
        self.index.insert(path.into(), i);
    }

    /// Takes the node at `path` out.
    pub fn remove(&mut self, path: &str) -> Option<Node> {
        let i = self.index.remove(path)?;
        let node = self.slot_mut(i)?.take();
        self.free.push(i);
        node
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::StatPersisted;

    fn node(version: i32) -> Node {
        Node::new(
            None,
            Vec::new().into(),
            StatPersisted {
                version,
                ..Default::default()
            },
        )
    }

    #[test]
    fn slots_are_found_by_path_and_reused() {
        let mut n = Nodes::default();
        for i in 0..(CHUNK as i32 + 10) {
            n.insert(&format!("/n{i}"), node(i));
        }
        assert_eq!(n.get("/n4100").map(|x| x.stat.version), Some(4100));
        assert_eq!(n.remove("/n7").map(|x| x.stat.version), Some(7));
        assert!(n.get("/n7").is_none() && !n.contains_key("/n7"));
        n.insert("/again", node(-1));
        assert_eq!(n.chunks.iter().map(Vec::len).sum::<usize>(), CHUNK + 10);
        assert_eq!(n.get("/again").map(|x| x.stat.version), Some(-1));
        n.insert("/again", node(-2));
        assert_eq!(n.len(), CHUNK + 10);
        assert_eq!(n.get_mut("/again").map(|x| x.stat.version), Some(-2));
    }
}
