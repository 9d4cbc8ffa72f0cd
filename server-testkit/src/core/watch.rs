//! Watches, per connection (a connection is ZooKeeper's `Watcher`), modelled on the 3.6–3.8
//! `WatchManager` + `WatcherModeManager` and checked against a real 3.8 server.
//!
//! There are two tables, data (data and exists watches) and child. In each table a connection
//! is registered at most once per path, with ONE mode: standard (one-shot), persistent or
//! persistent-recursive; the last registration wins. So on a 3.8 server a one-shot getData watch
//! set on a path that has a persistent watch turns the data side of it into a one-shot watch.
//! addWatch registers in both tables. A change triggers one table for one path (and, for
//! recursive watches, its ancestors); each selected connection gets one event per trigger.

use std::collections::{BTreeSet, HashMap, HashSet};

use zkit_proto::{Acl, EventType, WatcherType};

use super::ConnId;

/// A registration's mode; standard watches have no entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Persistent,
    Recursive,
}

/// Which kind of watch (for listings).
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

/// One `WatchManager`.
#[derive(Debug, Default, Clone)]
struct Table {
    table: HashMap<String, BTreeSet<ConnId>>,
    paths: HashMap<ConnId, HashSet<String>>,
    modes: HashMap<(ConnId, String), Mode>,
    recursive: usize,
}

impl Table {
    fn set_mode(&mut self, conn: ConnId, path: &str, mode: Option<Mode>) {
        let key = (conn, path.to_owned());
        let old = match mode {
            Some(m) => self.modes.insert(key, m),
            None => self.modes.remove(&key),
        };
        let was = old == Some(Mode::Recursive);
        let is = mode == Some(Mode::Recursive);
        if was && !is {
            self.recursive -= 1;
        } else if is && !was {
            self.recursive += 1;
        }
    }

    fn add(&mut self, path: &str, conn: ConnId, mode: Option<Mode>) {
        self.table.entry(path.to_owned()).or_default().insert(conn);
        self.paths.entry(conn).or_default().insert(path.to_owned());
        self.set_mode(conn, path, mode);
    }

    /// `WatchManager.containsWatcher` as 3.6–3.8 have it: true when ANY connection watches
    /// `path` in this table ("at the leaf node, all watcher types match"), or when this
    /// connection has a recursive watch there.
    fn contains(&self, path: &str, conn: ConnId) -> bool {
        self.table.get(path).is_some_and(|s| !s.is_empty())
            || self.modes.get(&(conn, path.to_owned())) == Some(&Mode::Recursive)
    }

    fn remove(&mut self, path: &str, conn: ConnId) -> bool {
        if !self.paths.get_mut(&conn).is_some_and(|p| p.remove(path)) {
            return false;
        }
        let Some(set) = self.table.get_mut(path) else {
            return false;
        };
        if !set.remove(&conn) {
            return false;
        }
        if set.is_empty() {
            self.table.remove(path);
        }
        self.set_mode(conn, path, None);
        true
    }

    fn remove_conn(&mut self, conn: ConnId) {
        if let Some(paths) = self.paths.remove(&conn) {
            for p in paths {
                if let Some(set) = self.table.get_mut(&p) {
                    set.remove(&conn);
                    if set.is_empty() {
                        self.table.remove(&p);
                    }
                }
                self.set_mode(conn, &p, None);
            }
        }
    }

    fn size(&self) -> usize {
        self.table.values().map(BTreeSet::len).sum()
    }

    /// `WatchManager.triggerWatch`: returns every selected connection (the "processed" set);
    /// `fire` gets those not in `suppress`.
    fn trigger(
        &mut self,
        path: &str,
        event: EventType,
        suppress: &BTreeSet<ConnId>,
        fire: &mut dyn FnMut(ConnId),
    ) -> BTreeSet<ConnId> {
        let mut selected = BTreeSet::new();
        let mut local = path.to_owned();
        let mut at_parent = false;
        loop {
            if let Some(set) = self.table.get_mut(&local) {
                let mut fired_once = Vec::new();
                for conn in set.iter() {
                    let mode = self.modes.get(&(*conn, local.clone()));
                    if mode == Some(&Mode::Recursive) {
                        // Recursive watches never see child events.
                        if event != EventType::NodeChildrenChanged {
                            selected.insert(*conn);
                        }
                    } else if !at_parent {
                        selected.insert(*conn);
                        if mode.is_none() {
                            fired_once.push(*conn);
                        }
                    }
                }
                for conn in fired_once {
                    set.remove(&conn);
                    if let Some(p) = self.paths.get_mut(&conn) {
                        p.remove(&local);
                    }
                }
                if set.is_empty() {
                    self.table.remove(&local);
                }
            }
            if self.recursive == 0 || local == "/" {
                break;
            }
            local = zkit_proto::path::parent(&local).to_owned();
            at_parent = true;
        }
        for conn in &selected {
            if !suppress.contains(conn) {
                fire(*conn);
            }
        }
        selected
    }

    fn list(&self, data: bool, out: &mut BTreeSet<(ConnId, String, WatchKind)>) {
        for (path, set) in &self.table {
            for conn in set {
                let kind = match self.modes.get(&(*conn, path.clone())) {
                    Some(Mode::Persistent) => WatchKind::Persistent,
                    Some(Mode::Recursive) => WatchKind::PersistentRecursive,
                    None if data => WatchKind::Data,
                    None => WatchKind::Child,
                };
                out.insert((*conn, path.clone(), kind));
            }
        }
    }
}

/// All watches of the server.
#[derive(Debug, Default, Clone)]
pub struct WatchManager {
    data: Table,
    child: Table,
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
    /// ACL a watcher needs READ on to be told (empty: anyone).
    pub acl: Vec<Acl>,
}

impl WatchManager {
    /// Registers a watch: a one-shot data/exists or child watch, or an addWatch in both
    /// tables.
    pub fn add(&mut self, conn: ConnId, path: &str, kind: WatchKind) {
        match kind {
            WatchKind::Data => self.data.add(path, conn, None),
            WatchKind::Child => self.child.add(path, conn, None),
            WatchKind::Persistent => {
                self.data.add(path, conn, Some(Mode::Persistent));
                self.child.add(path, conn, Some(Mode::Persistent));
            }
            WatchKind::PersistentRecursive => {
                self.data.add(path, conn, Some(Mode::Recursive));
                self.child.add(path, conn, Some(Mode::Recursive));
            }
        }
    }

    /// A node was created.
    pub fn created(&mut self, path: &str, acl: &[Acl], parent_acl: &[Acl], out: &mut Vec<Fired>) {
        let none = BTreeSet::new();
        let ev = EventType::NodeCreated;
        self.data
            .trigger(path, ev, &none, &mut push(out, ev, path, acl));
        let parent = zkit_proto::path::parent(path);
        let ev = EventType::NodeChildrenChanged;
        self.child
            .trigger(parent, ev, &none, &mut push(out, ev, parent, parent_acl));
    }

    /// A node was deleted.
    pub fn deleted(&mut self, path: &str, acl: &[Acl], parent_acl: &[Acl], out: &mut Vec<Fired>) {
        let none = BTreeSet::new();
        let ev = EventType::NodeDeleted;
        let processed = self
            .data
            .trigger(path, ev, &none, &mut push(out, ev, path, acl));
        self.child
            .trigger(path, ev, &processed, &mut push(out, ev, path, acl));
        let parent = zkit_proto::path::parent(path);
        let ev = EventType::NodeChildrenChanged;
        self.child
            .trigger(parent, ev, &none, &mut push(out, ev, parent, parent_acl));
    }

    /// A node's data changed.
    pub fn data_changed(&mut self, path: &str, acl: &[Acl], out: &mut Vec<Fired>) {
        let ev = EventType::NodeDataChanged;
        self.data
            .trigger(path, ev, &BTreeSet::new(), &mut push(out, ev, path, acl));
    }

    /// checkWatches for [`WatcherType`] Children, Data or Any. Like a 3.8 server, this also
    /// answers true when another connection watches the path.
    pub fn contains(&self, conn: ConnId, path: &str, watcher_type: WatcherType) -> bool {
        match watcher_type {
            WatcherType::Children => self.child.contains(path, conn),
            WatcherType::Data => self.data.contains(path, conn),
            WatcherType::Any => self.child.contains(path, conn) || self.data.contains(path, conn),
            _ => false,
        }
    }

    /// removeWatches for [`WatcherType`] Children, Data or Any; false when nothing was removed.
    pub fn remove(&mut self, conn: ConnId, path: &str, watcher_type: WatcherType) -> bool {
        match watcher_type {
            WatcherType::Children => self.child.remove(path, conn),
            WatcherType::Data => self.data.remove(path, conn),
            WatcherType::Any => {
                let a = self.child.remove(path, conn);
                let b = self.data.remove(path, conn);
                a || b
            }
            _ => false,
        }
    }

    /// Drops every watch of a closed connection.
    pub fn remove_conn(&mut self, conn: ConnId) {
        self.data.remove_conn(conn);
        self.child.remove_conn(conn);
    }

    /// Every watch: (connection, path, kind), sorted; a persistent watch is listed once.
    pub fn list(&self) -> Vec<(ConnId, String, WatchKind)> {
        let mut set = BTreeSet::new();
        self.data.list(true, &mut set);
        self.child.list(false, &mut set);
        set.into_iter().collect()
    }

    /// The data table's registrations, unsorted and borrowed: a cheap copy for the shell to
    /// sort and format outside its lock (`wchc`/`wchp`/`wchs` over many watches).
    pub fn data_watches(&self) -> impl Iterator<Item = (ConnId, &str)> + '_ {
        self.data
            .paths
            .iter()
            .flat_map(|(c, ps)| ps.iter().map(move |p| (*c, p.as_str())))
    }

    /// Registrations across both tables (`zk_watch_count`).
    pub fn count(&self) -> usize {
        self.data.size() + self.child.size()
    }
}

fn push<'a>(
    out: &'a mut Vec<Fired>,
    event: EventType,
    path: &'a str,
    acl: &'a [Acl],
) -> impl FnMut(ConnId) + 'a {
    move |conn| {
        out.push(Fired {
            conn,
            event,
            path: path.to_owned(),
            acl: acl.to_vec(),
        })
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
        w.data_changed("/a", &[], &mut out);
        w.data_changed("/a", &[], &mut out);
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
        w.deleted("/a", &[], &[], &mut out);
        assert_eq!(
            out,
            vec![
                Fired {
                    conn: 1,
                    event: EventType::NodeDeleted,
                    path: "/a".into(),
                    acl: vec![],
                },
                Fired {
                    conn: 2,
                    event: EventType::NodeChildrenChanged,
                    path: "/".into(),
                    acl: vec![],
                }
            ]
        );
    }

    #[test]
    fn recursive_watches_see_descendants_but_no_child_events() {
        let mut w = WatchManager::default();
        w.add(1, "/a", WatchKind::PersistentRecursive);
        let mut out = vec![];
        w.created("/a/b/c", &[], &[], &mut out);
        w.data_changed("/a/b/c", &[], &mut out);
        w.created("/ab", &[], &[], &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].event, EventType::NodeCreated);
        assert_eq!(out[1].event, EventType::NodeDataChanged);
        assert_eq!(w.count(), 2); // registered in both tables
    }

    #[test]
    fn a_one_shot_watch_replaces_the_persistent_mode_like_3_8() {
        let mut w = WatchManager::default();
        w.add(1, "/q", WatchKind::Persistent);
        w.add(1, "/q", WatchKind::Data);
        let mut out = vec![];
        w.created("/q", &[], &[], &mut out);
        w.data_changed("/q", &[], &mut out);
        w.created("/q/k", &[], &[], &mut out);
        w.created("/q/k2", &[], &[], &mut out);
        let evs: Vec<_> = out.iter().map(|f| f.event).collect();
        assert_eq!(
            evs,
            vec![
                EventType::NodeCreated,
                EventType::NodeChildrenChanged,
                EventType::NodeChildrenChanged
            ]
        );
        assert!(!w.contains(1, "/q", WatcherType::Data));
        assert!(w.contains(1, "/q", WatcherType::Children));
    }

    #[test]
    fn persistent_watch_gets_child_events_and_stays() {
        let mut w = WatchManager::default();
        w.add(1, "/a", WatchKind::Persistent);
        let mut out = vec![];
        w.created("/a/x", &[], &[], &mut out);
        w.created("/a/y", &[], &[], &mut out);
        assert_eq!(out.len(), 2);
        assert!(w.contains(1, "/a", WatcherType::Any));
        assert!(w.remove(1, "/a", WatcherType::Any));
        assert!(!w.remove(1, "/a", WatcherType::Any));
        assert!(w.list().is_empty());
    }
}
