//! The data tree: znodes with ZooKeeper's persisted Stat, and the one function that applies a
//! txn to it ([`DataTree::apply`] via [`crate::core::Database::apply`]).
//!
//! Stat semantics follow `DataTree.java` / `DataNode.java` of Apache ZooKeeper 3.8, checked
//! against a real server:
//! - the persisted `cversion` counts child *creations* only; clients see
//!   `2 * cversion - numChildren` (so a delete also appears to bump it by one, and the root of a
//!   fresh server shows `cversion = -1`, `/zookeeper` shows `-2`);
//! - a create sets the parent's pzxid, a delete raises it (never lowers it);
//! - containers and TTL nodes report `ephemeralOwner = 0` to clients.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::jhash::JavaHashSet;
use super::nodes::Nodes;

use bytes::Bytes;
use zkit_proto::path::{basename, parent};
use zkit_proto::{Acl, ErrorCode, Stat, CONTAINER_EPHEMERAL_OWNER};

/// The root path.
pub const ROOT: &str = "/";
/// ZooKeeper's system subtree.
pub const ZOOKEEPER: &str = "/zookeeper";
/// Quota subtree.
pub const QUOTA: &str = "/zookeeper/quota";
/// Dynamic config node (getConfig reads it).
pub const CONFIG: &str = "/zookeeper/config";

/// The Stat as ZooKeeper persists it (`StatPersisted`): no dataLength / numChildren, and a
/// `cversion` that counts child creations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatPersisted {
    /// Zxid of the create.
    pub czxid: i64,
    /// Zxid of the last data change.
    pub mzxid: i64,
    /// Creation time.
    pub ctime: i64,
    /// Last data change time.
    pub mtime: i64,
    /// Data version.
    pub version: i32,
    /// Number of child creations.
    pub cversion: i32,
    /// ACL version.
    pub aversion: i32,
    /// Owner session, container marker, TTL encoding or 0.
    pub ephemeral_owner: i64,
    /// Zxid of the last child change.
    pub pzxid: i64,
}

/// What kind of node an ephemeralOwner denotes (`EphemeralType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// Plain persistent node.
    Persistent,
    /// Ephemeral, owned by a session.
    Ephemeral,
    /// Container.
    Container,
    /// Node with a TTL.
    Ttl(i64),
}

impl NodeKind {
    /// Classifies an ephemeralOwner the way ZooKeeper does (TTLs exist only with extended types).
    pub fn of(owner: i64, extended_types: bool) -> NodeKind {
        if owner == CONTAINER_EPHEMERAL_OWNER {
            NodeKind::Container
        } else if extended_types && (owner as u64) >> 56 == 0xFF {
            NodeKind::Ttl(owner & zkit_proto::MAX_TTL)
        } else if owner == 0 {
            NodeKind::Persistent
        } else {
            NodeKind::Ephemeral
        }
    }
}

/// An ACL list as the tree keeps it: interned, so the nodes that share a list (nearly all of
/// them, in practice) share one copy, like ZooKeeper's ACL cache.
pub type AclList = Arc<[Acl]>;

/// One znode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Data (`None` when created with a null buffer).
    pub data: Option<Bytes>,
    /// ACL (interned).
    pub acl: AclList,
    /// Persisted stat.
    pub stat: StatPersisted,
    /// Child names, iterated in Java `HashSet` order like ZooKeeper's `DataNode`.
    pub children: JavaHashSet,
}

impl Node {
    pub(super) fn new(data: Option<Bytes>, acl: AclList, stat: StatPersisted) -> Node {
        Node {
            data,
            acl,
            stat,
            children: JavaHashSet::with_capacity(8),
        }
    }

    /// The Stat a client sees (`DataNode.copyStat`).
    pub fn client_stat(&self, extended_types: bool) -> Stat {
        let s = &self.stat;
        let n = self.children.len() as i32;
        Stat {
            czxid: s.czxid,
            mzxid: s.mzxid,
            ctime: s.ctime,
            mtime: s.mtime,
            version: s.version,
            cversion: s.cversion.wrapping_mul(2).wrapping_sub(n),
            aversion: s.aversion,
            ephemeral_owner: match NodeKind::of(s.ephemeral_owner, extended_types) {
                NodeKind::Ephemeral => s.ephemeral_owner,
                _ => 0,
            },
            data_length: self.data.as_ref().map_or(0, |d| d.len() as i32),
            num_children: n,
            pzxid: s.pzxid,
        }
    }
}

/// A change to the tree that may fire watches, in the order it happened, with the ACLs that
/// decide who may see the notification (CVE-2024-23944: a watcher without READ on the node —
/// or on the parent, for a child event — is not told).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A node was created.
    Created {
        /// Its path.
        path: String,
        /// Its ACL.
        acl: AclList,
        /// Its parent's ACL.
        parent_acl: AclList,
    },
    /// A node was deleted.
    Deleted {
        /// Its path.
        path: String,
        /// Its ACL.
        acl: AclList,
        /// Its parent's ACL.
        parent_acl: AclList,
    },
    /// A node's data was set.
    DataChanged {
        /// Its path.
        path: String,
        /// Its ACL.
        acl: AclList,
    },
}

#[cfg(test)]
impl Change {
    /// The changed node's path.
    pub fn path(&self) -> &str {
        match self {
            Change::Created { path, .. }
            | Change::Deleted { path, .. }
            | Change::DataChanged { path, .. } => path,
        }
    }
}

/// The znode tree.
#[derive(Debug, Clone)]
pub struct DataTree {
    nodes: Nodes,
    /// Per session, like ZooKeeper: the set stays (and keeps its capacity) when emptied, and
    /// goes when the session is killed.
    ephemerals: HashMap<i64, JavaHashSet>,
    containers: BTreeSet<String>,
    ttls: BTreeSet<String>,
    extended_types: bool,
    data_size: usize,
    /// The ACL cache: one shared copy of each distinct list, found by its encoding.
    acls: HashMap<Bytes, AclList>,
}

impl DataTree {
    /// A fresh tree as a real 3.8 standalone server has it: `/`, `/zookeeper`,
    /// `/zookeeper/quota` and `/zookeeper/config`, all with zero zxids and times.
    pub fn new(extended_types: bool) -> DataTree {
        let mut t = DataTree::empty(extended_types);
        let empty = Some(Bytes::new());
        let open = t.intern_acl(Acl::open_unsafe());
        let mut root = Node::new(empty.clone(), open.clone(), StatPersisted::default());
        root.children.insert("zookeeper".into());
        let mut zk = Node::new(empty.clone(), open.clone(), StatPersisted::default());
        zk.children.insert("quota".into());
        zk.children.insert("config".into());
        let quota = Node::new(empty.clone(), open, StatPersisted::default());
        // The real server sets the config node's ACL with version -1 at startup.
        let config = Node::new(
            empty,
            t.intern_acl(Acl::read_unsafe()),
            StatPersisted {
                aversion: -1,
                ..Default::default()
            },
        );
        t.nodes.insert(ROOT, root);
        t.nodes.insert(ZOOKEEPER, zk);
        t.nodes.insert(QUOTA, quota);
        t.nodes.insert(CONFIG, config);
        t.data_size = t.nodes.keys().map(|k| k.len()).sum();
        t
    }

    /// The shared copy of `acl` (added to the cache if new).
    pub fn intern_acl(&mut self, acl: Vec<Acl>) -> AclList {
        let key = zkit_proto::Record::to_bytes(&acl);
        if let Some(a) = self.acls.get(&key) {
            return a.clone();
        }
        // Lists no node uses any more are dropped when the cache grows, so a workload that
        // keeps inventing ACLs does not grow it without bound.
        if self.acls.len() >= 1024 {
            self.acls.retain(|_, a| Arc::strong_count(a) > 1);
        }
        let a: AclList = acl.into();
        self.acls.insert(key, a.clone());
        a
    }

    /// Whether TTL nodes are recognised.
    pub fn extended_types(&self) -> bool {
        self.extended_types
    }

    /// The node at `path` (the empty string is the root, like in ZooKeeper).
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(if path.is_empty() { ROOT } else { path })
    }

    /// Number of znodes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Approximate size: path lengths plus data lengths (`zk_approximate_data_size`).
    pub fn approximate_data_size(&self) -> usize {
        self.data_size
    }

    /// Ephemeral paths owned by `session`, in the order ZooKeeper hands them out (the
    /// iteration order of a clone of its `HashSet`).
    pub fn ephemerals_of(&self, session: i64) -> Vec<String> {
        self.ephemerals
            .get(&session)
            .map(|s| s.clone_order())
            .unwrap_or_default()
    }

    /// Every session that owns ephemerals, with their paths.
    pub fn all_ephemerals(&self) -> Vec<(i64, Vec<String>)> {
        let mut v: Vec<_> = self
            .ephemerals
            .iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(k, s)| (*k, s.clone_order()))
            .collect();
        v.sort();
        v
    }

    /// Forgets a session's ephemeral set (ZooKeeper's `killSession`).
    pub fn forget_session(&mut self, session: i64) {
        self.ephemerals.remove(&session);
    }

    /// Total number of ephemeral nodes.
    pub fn ephemeral_count(&self) -> usize {
        self.ephemerals.values().map(JavaHashSet::len).sum()
    }

    /// Container paths.
    pub fn containers(&self) -> impl Iterator<Item = &String> {
        self.containers.iter()
    }

    /// TTL node paths.
    pub fn ttls(&self) -> impl Iterator<Item = &String> {
        self.ttls.iter()
    }

    /// Number of descendants of `path` (`getAllChildrenNumber`).
    pub fn all_children_number(&self, path: &str) -> i32 {
        let mut count = 0i32;
        let mut stack = vec![path.to_owned()];
        while let Some(p) = stack.pop() {
            if let Some(n) = self.nodes.get(p.as_str()) {
                for c in n.children.iter_order() {
                    count += 1;
                    stack.push(join(&p, &c));
                }
            }
        }
        count
    }

    /// Creates a node (`DataTree.createNode`). `parent_cversion == -1` means "increment".
    #[allow(clippy::too_many_arguments)]
    pub fn create_node(
        &mut self,
        path: &str,
        data: Option<Bytes>,
        acl: Vec<Acl>,
        owner: i64,
        parent_cversion: i32,
        zxid: i64,
        time: i64,
        changes: &mut Vec<Change>,
    ) -> Result<Stat, ErrorCode> {
        if path == ROOT || !path.starts_with('/') {
            return Err(ErrorCode::NodeExists);
        }
        let parent_path = parent(path).to_owned();
        let name = basename(path).to_owned();
        let extended = self.extended_types;
        let Some(p) = self.nodes.get_mut(parent_path.as_str()) else {
            return Err(ErrorCode::NoNode);
        };
        if p.children.contains(&name) {
            return Err(ErrorCode::NodeExists);
        }
        let mut cv = parent_cversion;
        if cv == -1 {
            cv = p.stat.cversion.wrapping_add(1);
        }
        if cv > p.stat.cversion {
            p.stat.cversion = cv;
            p.stat.pzxid = zxid;
        }
        p.children.insert(name);
        let parent_acl = p.acl.clone();
        let acl = self.intern_acl(acl);
        let stat = StatPersisted {
            czxid: zxid,
            mzxid: zxid,
            ctime: time,
            mtime: time,
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner: owner,
            pzxid: zxid,
        };
        self.data_size += path.len() + data.as_ref().map_or(0, |d| d.len());
        let node = Node::new(own(data), acl.clone(), stat);
        let client = node.client_stat(extended);
        self.nodes.insert(path, node);
        self.index_kind(path, owner);
        changes.push(Change::Created {
            path: path.to_owned(),
            acl,
            parent_acl,
        });
        Ok(client)
    }

    /// Deletes a node (`DataTree.deleteNode`).
    pub fn delete_node(
        &mut self,
        path: &str,
        zxid: i64,
        changes: &mut Vec<Change>,
    ) -> Result<(), ErrorCode> {
        if path == ROOT {
            return Err(ErrorCode::BadArguments);
        }
        let Some(node) = self.nodes.get(path) else {
            return Err(ErrorCode::NoNode);
        };
        if !node.children.is_empty() {
            return Err(ErrorCode::NotEmpty);
        }
        let node = self.nodes.remove(path).ok_or(ErrorCode::NoNode)?;
        self.data_size = self
            .data_size
            .saturating_sub(path.len() + node.data.as_ref().map_or(0, |d| d.len()));
        let parent_path = parent(path);
        let mut parent_acl = AclList::from(Vec::new());
        if let Some(p) = self.nodes.get_mut(parent_path) {
            p.children.remove(basename(path));
            if zxid > p.stat.pzxid {
                p.stat.pzxid = zxid;
            }
            parent_acl = p.acl.clone();
        }
        match NodeKind::of(node.stat.ephemeral_owner, self.extended_types) {
            NodeKind::Container => {
                self.containers.remove(path);
            }
            NodeKind::Ttl(_) => {
                self.ttls.remove(path);
            }
            NodeKind::Ephemeral => {
                let owner = node.stat.ephemeral_owner;
                if let Some(set) = self.ephemerals.get_mut(&owner) {
                    set.remove(path);
                }
            }
            NodeKind::Persistent => {}
        }
        changes.push(Change::Deleted {
            path: path.to_owned(),
            acl: node.acl,
            parent_acl,
        });
        Ok(())
    }

    /// Sets data (`DataTree.setData`).
    pub fn set_data(
        &mut self,
        path: &str,
        data: Option<Bytes>,
        version: i32,
        zxid: i64,
        time: i64,
        changes: &mut Vec<Change>,
    ) -> Result<Stat, ErrorCode> {
        let extended = self.extended_types;
        let Some(n) = self.nodes.get_mut(path) else {
            return Err(ErrorCode::NoNode);
        };
        let old = n.data.as_ref().map_or(0, |d| d.len());
        let new = data.as_ref().map_or(0, |d| d.len());
        n.data = own(data);
        n.stat.mtime = time;
        n.stat.mzxid = zxid;
        n.stat.version = version;
        let stat = n.client_stat(extended);
        self.data_size = self.data_size.saturating_sub(old) + new;
        let acl = n.acl.clone();
        changes.push(Change::DataChanged {
            path: path.to_owned(),
            acl,
        });
        Ok(stat)
    }

    /// Sets the ACL (`DataTree.setACL`).
    pub fn set_acl(&mut self, path: &str, acl: Vec<Acl>, version: i32) -> Result<Stat, ErrorCode> {
        let extended = self.extended_types;
        if !self.nodes.contains_key(path) {
            return Err(ErrorCode::NoNode);
        }
        let acl = self.intern_acl(acl);
        let Some(n) = self.nodes.get_mut(path) else {
            return Err(ErrorCode::NoNode);
        };
        n.acl = acl;
        n.stat.aversion = version;
        Ok(n.client_stat(extended))
    }

    /// Client Stat of `path`.
    pub fn stat(&self, path: &str) -> Option<Stat> {
        self.get(path).map(|n| n.client_stat(self.extended_types))
    }
}

/// Loading from a snapshot (used by `persist`): nodes arrive parent first with their stored stat.
impl DataTree {
    /// A tree with no nodes at all, not even the root; fill it with [`DataTree::restore_node`].
    pub fn empty(extended_types: bool) -> DataTree {
        DataTree {
            nodes: Nodes::default(),
            ephemerals: HashMap::new(),
            containers: BTreeSet::new(),
            ttls: BTreeSet::new(),
            extended_types,
            data_size: 0,
            acls: HashMap::new(),
        }
    }

    /// Inserts a node as stored (`""` or `/` is the root); its parent must already be there.
    /// Children are linked as they arrive. Err names what is wrong.
    pub fn restore_node(
        &mut self,
        path: &str,
        data: Option<Bytes>,
        acl: Vec<Acl>,
        stat: StatPersisted,
    ) -> Result<(), &'static str> {
        let path = if path.is_empty() { ROOT } else { path };
        if self.nodes.contains_key(path) {
            return Err("duplicate node");
        }
        if path != ROOT {
            if !path.starts_with('/') || path.ends_with('/') {
                return Err("invalid path");
            }
            let p = self.nodes.get_mut(parent(path)).ok_or("parent missing")?;
            p.children.insert(basename(path).to_owned());
        }
        self.data_size += path.len() + data.as_ref().map_or(0, |d| d.len());
        self.index_kind(path, stat.ephemeral_owner);
        let acl = self.intern_acl(acl);
        self.nodes.insert(path, Node::new(own(data), acl, stat));
        Ok(())
    }

    /// Files a new node under the container, TTL or ephemeral index its owner puts it in.
    fn index_kind(&mut self, path: &str, owner: i64) {
        match NodeKind::of(owner, self.extended_types) {
            NodeKind::Container => {
                self.containers.insert(path.to_owned());
            }
            NodeKind::Ttl(_) => {
                self.ttls.insert(path.to_owned());
            }
            NodeKind::Ephemeral => {
                self.ephemerals
                    .entry(owner)
                    .or_insert_with(|| JavaHashSet::with_capacity(16))
                    .insert(path.to_owned());
            }
            NodeKind::Persistent => {}
        }
    }

    /// `DataTree.setCversionPzxid`: replaying a create that finds its node already there (a
    /// fuzzy snapshot) still advances the parent's cversion and pzxid.
    pub fn set_cversion_pzxid(&mut self, path: &str, cversion: i32, zxid: i64) {
        if let Some(n) = self.nodes.get_mut(path) {
            let cv = if cversion == -1 {
                n.stat.cversion.wrapping_add(1)
            } else {
                cversion
            };
            if cv > n.stat.cversion {
                n.stat.cversion = cv;
                n.stat.pzxid = zxid;
            }
        }
    }
}

/// Node data in an allocation of its own size: the bytes as received are a slice of a whole
/// read buffer (a connection's, or a snapshot file's), which the node would otherwise keep alive.
fn own(data: Option<Bytes>) -> Option<Bytes> {
    data.map(|d| Bytes::copy_from_slice(&d))
}

pub use zkit_proto::path::join;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_tree_matches_a_real_server() {
        let t = DataTree::new(false);
        let root = t.stat("/").unwrap();
        assert_eq!((root.cversion, root.num_children, root.pzxid), (-1, 1, 0));
        let zk = t.stat("/zookeeper").unwrap();
        assert_eq!((zk.cversion, zk.num_children), (-2, 2));
        let cfg = t.stat("/zookeeper/config").unwrap();
        assert_eq!((cfg.aversion, cfg.cversion, cfg.data_length), (-1, 0, 0));
        assert_eq!(t.stat("/zookeeper/quota").unwrap(), Stat::default());
        assert_eq!(t.node_count(), 4);
    }

    #[test]
    fn cversion_counts_creates_and_deletes_for_clients() {
        let mut t = DataTree::new(false);
        let mut ch = vec![];
        t.create_node("/d", None, Acl::open_unsafe(), 0, -1, 2, 10, &mut ch)
            .unwrap();
        t.create_node("/d/x", None, Acl::open_unsafe(), 0, -1, 3, 10, &mut ch)
            .unwrap();
        t.delete_node("/d/x", 4, &mut ch).unwrap();
        let s = t.stat("/d").unwrap();
        assert_eq!((s.cversion, s.pzxid, s.num_children), (2, 4, 0));
        // The persisted counter (used for sequential names) only counts creates.
        assert_eq!(t.get("/d").unwrap().stat.cversion, 1);
        let paths: Vec<_> = ch.iter().map(|c| c.path()).collect();
        assert_eq!(paths, vec!["/d", "/d/x", "/d/x"]);
        assert!(matches!(ch[2], Change::Deleted { .. }));
    }

    #[test]
    fn containers_show_zero_owner_and_are_tracked() {
        let mut t = DataTree::new(false);
        let mut ch = vec![];
        let s = t
            .create_node(
                "/c",
                None,
                Acl::open_unsafe(),
                CONTAINER_EPHEMERAL_OWNER,
                -1,
                2,
                1,
                &mut ch,
            )
            .unwrap();
        assert_eq!(s.ephemeral_owner, 0);
        assert_eq!(t.containers().count(), 1);
        t.delete_node("/c", 3, &mut ch).unwrap();
        assert_eq!(t.containers().count(), 0);
    }

    #[test]
    fn all_children_number_counts_descendants() {
        let mut t = DataTree::new(false);
        let mut ch = vec![];
        for p in ["/a", "/a/b", "/a/b/c", "/a/d"] {
            t.create_node(p, None, Acl::open_unsafe(), 0, -1, 2, 1, &mut ch)
                .unwrap();
        }
        assert_eq!(t.all_children_number("/a"), 3);
        assert_eq!(t.all_children_number("/"), 7);
    }
}
