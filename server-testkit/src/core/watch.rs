//! Watches, per connection (a connection is ZooKeeper's `Watcher`): one-shot data/exists and
//! child watches, persistent and persistent-recursive watches (`WatchManager.java`).
//!
//! Like ZooKeeper there are two tables, data and child. Persistent watches live in both. A change
//! triggers one table for one path; every connection that matches gets at most one event per
//! trigger.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use zkit::proto::EventType;

use super::ConnId;

/// Modes a connection holds on one path in one table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Modes {
    standard: bool,
    persistent: bool,
    recursive: bool,
}

impl Modes {
    fn is_empty(&self) -> bool {
        !(self.standard || self.persistent || self.recursive)
    }
}

/// Which kind of watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum WatchKind {
    /// One-shot data or exists watch.
    Data,
    /// One-shot child watch.
    Child,
    /// Persistent watch (addWatch mode 0).
    Persistent,
    /// Persistent recursive watch (addWatch mode 1).
    PersistentRecursive,
}

/// One table (data or child).
#[derive(Debug, Default, Clone)]
struct Table {
    by_path: HashMap<String, BTreeMap<ConnId, Modes>>,
    recursive_count: usize,
}

impl Table {
    fn modes_mut(&mut self, path: &str, conn: ConnId) -> &mut Modes {
        self.by_path
            .entry(path.to_owned())
            .or_default()
            .entry(conn)
            .or_default()
    }

    fn add(&mut self, path: &str, conn: ConnId, f: impl FnOnce(&mut Modes)) {
        let m = self.modes_mut(path, conn);
        let was = m.recursive;
        f(m);
        if m.recursive && !was {
            self.recursive_count += 1;
        }
    }

    fn cleanup(&mut self, path: &str, conn: ConnId) {
        if let Some(map) = self.by_path.get_mut(path) {
            if map.get(&conn).is_some_and(|m| m.is_empty()) {
                map.remove(&conn);
            }
            if map.is_empty() {
                self.by_path.remove(path);
            }
        }
    }

    /// Removes modes selected by `f` (which returns whether anything was removed).
    fn remove(&mut self, path: &str, conn: ConnId, f: impl FnOnce(&mut Modes) -> bool) -> bool {
        let Some(m) = self.by_path.get_mut(path).and_then(|m| m.get_mut(&conn)) else {
            return false;
        };
        let was = m.recursive;
        let removed = f(m);
        if was && !m.recursive {
            self.recursive_count -= 1;
        }
        self.cleanup(path, conn);
        removed
    }

    fn contains(&self, path: &str, conn: ConnId, f: impl Fn(&Modes) -> bool) -> bool {
        self.by_path
            .get(path)
            .and_then(|m| m.get(&conn))
            .is_some_and(f)
    }

    /// `WatchManager.triggerWatch`: returns the connections to notify, minus `suppress`.
    fn trigger(
        &mut self,
        path: &str,
        event: EventType,
        suppress: &BTreeSet<ConnId>,
    ) -> BTreeSet<ConnId> {
        let mut out = BTreeSet::new();
        // Exact path: every mode.
        if let Some(map) = self.by_path.get_mut(path) {
            for (conn, m) in map.iter_mut() {
                if m.standard
                    || m.persistent
                    || (m.recursive && event != EventType::NodeChildrenChanged)
                {
                    out.insert(*conn);
                }
                m.standard = false;
            }
            map.retain(|_, m| !m.is_empty());
            if map.is_empty() {
                self.by_path.remove(path);
            }
        }
        // Ancestors: recursive watches only, never for child events.
        if self.recursive_count > 0 && event != EventType::NodeChildrenChanged {
            let mut p = path;
            while p != "/" {
                p = zkit::proto::path::parent(p);
                if let Some(map) = self.by_path.get(p) {
                    for (conn, m) in map {
                        if m.recursive {
                            out.insert(*conn);
                        }
                    }
                }
            }
        }
        out.retain(|c| !suppress.contains(c));
        out
    }
}

/// All watches of the server.
#[derive(Debug, Default, Clone)]
pub struct WatchManager {
    data: Table,
    child: Table,
    by_conn: HashMap<ConnId, BTreeSet<String>>,
}

/// A notification to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    /// Connection to notify.
    pub conn: ConnId,
    /// Event type.
    pub event: EventType,
    /// Path of the changed node.
    pub path: String,
}

impl WatchManager {
    /// Registers a watch.
    pub fn add(&mut self, conn: ConnId, path: &str, kind: WatchKind) {
        match kind {
            WatchKind::Data => self.data.add(path, conn, |m| m.standard = true),
            WatchKind::Child => self.child.add(path, conn, |m| m.standard = true),
            WatchKind::Persistent => {
                self.data.add(path, conn, |m| m.persistent = true);
                self.child.add(path, conn, |m| m.persistent = true);
            }
            WatchKind::PersistentRecursive => {
                self.data.add(path, conn, |m| m.recursive = true);
                self.child.add(path, conn, |m| m.recursive = true);
            }
        }
        self.by_conn
            .entry(conn)
            .or_default()
            .insert(path.to_owned());
    }

    /// A node was created.
    pub fn created(&mut self, path: &str, out: &mut Vec<Fired>) {
        let none = BTreeSet::new();
        let c = self.data.trigger(path, EventType::NodeCreated, &none);
        push(out, c, EventType::NodeCreated, path);
        let parent = zkit::proto::path::parent(path);
        let c = self
            .child
            .trigger(parent, EventType::NodeChildrenChanged, &none);
        push(out, c, EventType::NodeChildrenChanged, parent);
    }

    /// A node was deleted.
    pub fn deleted(&mut self, path: &str, out: &mut Vec<Fired>) {
        let none = BTreeSet::new();
        let c = self.data.trigger(path, EventType::NodeDeleted, &none);
        let c2 = self.child.trigger(path, EventType::NodeDeleted, &c);
        push(out, c, EventType::NodeDeleted, path);
        push(out, c2, EventType::NodeDeleted, path);
        let parent = zkit::proto::path::parent(path);
        let c = self
            .child
            .trigger(parent, EventType::NodeChildrenChanged, &none);
        push(out, c, EventType::NodeChildrenChanged, parent);
    }

    /// A node's data changed.
    pub fn data_changed(&mut self, path: &str, out: &mut Vec<Fired>) {
        let c = self
            .data
            .trigger(path, EventType::NodeDataChanged, &BTreeSet::new());
        push(out, c, EventType::NodeDataChanged, path);
    }

    /// Whether `conn` has a watch of the given WatcherType code on `path` (checkWatches).
    pub fn contains(&self, conn: ConnId, path: &str, watcher_type: i32) -> bool {
        let any = |m: &Modes| !m.is_empty();
        match watcher_type {
            1 => self.child.contains(path, conn, any),
            2 => self.data.contains(path, conn, any),
            3 => self.child.contains(path, conn, any) || self.data.contains(path, conn, any),
            4 => self.data.contains(path, conn, |m| m.persistent),
            5 => self.data.contains(path, conn, |m| m.recursive),
            _ => false,
        }
    }

    /// Removes watches of a WatcherType code (removeWatches); false when none matched.
    pub fn remove(&mut self, conn: ConnId, path: &str, watcher_type: i32) -> bool {
        let all = |m: &mut Modes| {
            let had = !m.is_empty();
            *m = Modes::default();
            had
        };
        let removed = match watcher_type {
            1 => self.child.remove(path, conn, all),
            2 => self.data.remove(path, conn, all),
            3 => {
                let a = self.child.remove(path, conn, all);
                let b = self.data.remove(path, conn, all);
                a || b
            }
            4 | 5 => {
                let rec = watcher_type == 5;
                let f = |m: &mut Modes| {
                    let slot = if rec {
                        &mut m.recursive
                    } else {
                        &mut m.persistent
                    };
                    std::mem::replace(slot, false)
                };
                let a = self.data.remove(path, conn, f);
                let b = self.child.remove(path, conn, f);
                a || b
            }
            _ => false,
        };
        if removed
            && !self.data.contains(path, conn, |_| true)
            && !self.child.contains(path, conn, |_| true)
        {
            if let Some(s) = self.by_conn.get_mut(&conn) {
                s.remove(path);
            }
        }
        removed
    }

    /// Drops every watch of a closed connection.
    pub fn remove_conn(&mut self, conn: ConnId) {
        if let Some(paths) = self.by_conn.remove(&conn) {
            for p in paths {
                let all = |m: &mut Modes| {
                    *m = Modes::default();
                    true
                };
                self.data.remove(&p, conn, all);
                self.child.remove(&p, conn, all);
            }
        }
    }

    /// Every watch: (connection, path, kind), sorted.
    pub fn list(&self) -> Vec<(ConnId, String, WatchKind)> {
        let mut v = Vec::new();
        for (table, is_data) in [(&self.data, true), (&self.child, false)] {
            for (path, map) in &table.by_path {
                for (conn, m) in map {
                    if m.standard {
                        let k = if is_data {
                            WatchKind::Data
                        } else {
                            WatchKind::Child
                        };
                        v.push((*conn, path.clone(), k));
                    }
                    if is_data && m.persistent {
                        v.push((*conn, path.clone(), WatchKind::Persistent));
                    }
                    if is_data && m.recursive {
                        v.push((*conn, path.clone(), WatchKind::PersistentRecursive));
                    }
                }
            }
        }
        v.sort();
        v
    }

    /// Number of (connection, path) watch registrations across both tables (`wchs` total).
    pub fn count(&self) -> usize {
        self.data.by_path.values().map(|m| m.len()).sum::<usize>()
            + self.child.by_path.values().map(|m| m.len()).sum::<usize>()
    }
}

fn push(out: &mut Vec<Fired>, conns: BTreeSet<ConnId>, event: EventType, path: &str) {
    for conn in conns {
        out.push(Fired {
            conn,
            event,
            path: path.to_owned(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shot_watches_fire_once() {
        let mut w = WatchManager::default();
        w.add(1, "/a", WatchKind::Data);
        let mut out = vec![];
        w.data_changed("/a", &mut out);
        w.data_changed("/a", &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(w.count(), 0);
    }

    #[test]
    fn delete_with_data_and_child_watch_fires_one_event() {
        let mut w = WatchManager::default();
        w.add(1, "/a", WatchKind::Data);
        w.add(1, "/a", WatchKind::Child);
        w.add(2, "/", WatchKind::Child);
        let mut out = vec![];
        w.deleted("/a", &mut out);
        assert_eq!(
            out,
            vec![
                Fired {
                    conn: 1,
                    event: EventType::NodeDeleted,
                    path: "/a".into()
                },
                Fired {
                    conn: 2,
                    event: EventType::NodeChildrenChanged,
                    path: "/".into()
                }
            ]
        );
    }

    #[test]
    fn recursive_watches_see_descendants_but_no_child_events() {
        let mut w = WatchManager::default();
        w.add(1, "/a", WatchKind::PersistentRecursive);
        let mut out = vec![];
        w.created("/a/b/c", &mut out);
        w.data_changed("/a/b/c", &mut out);
        w.created("/ab", &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].event, EventType::NodeCreated);
        assert_eq!(out[1].event, EventType::NodeDataChanged);
        assert_eq!(w.count(), 2); // still registered in both tables
    }

    #[test]
    fn persistent_watch_gets_child_events_and_stays() {
        let mut w = WatchManager::default();
        w.add(1, "/a", WatchKind::Persistent);
        let mut out = vec![];
        w.created("/a/x", &mut out);
        w.created("/a/y", &mut out);
        assert_eq!(out.len(), 2);
        assert!(w.contains(1, "/a", 4));
        assert!(w.remove(1, "/a", 4));
        assert!(!w.remove(1, "/a", 4));
        assert!(w.list().is_empty());
    }
}
