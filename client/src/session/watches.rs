//! The client's watch registry: which watchers wait on which path, how a server event is routed
//! to them (ZooKeeper's `ZKWatchManager` rules), and what to re-send with SetWatches.

use std::collections::HashMap;

use tokio::sync::{mpsc, oneshot};

use crate::error::Error;
use zkit_proto::{ErrorCode, EventType, WatcherType};

/// A node event as the server reported it (path is the server path, chroot included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    /// What happened.
    pub event_type: EventType,
    /// Server-side path.
    pub path: String,
    /// Zxid from the notification header (-1 when the server had none).
    pub zxid: i64,
}

/// What a watcher receives: an event, or the reason the session ended.
pub type WatchResult = Result<RawEvent, Error>;

/// Where a watch's events go.
#[derive(Debug)]
pub enum Sink {
    /// A one-shot watch: fires once.
    Oneshot(oneshot::Sender<WatchResult>),
    /// A persistent watch: every event, until removed. Unbounded because the server's event rate
    /// is what bounds it; a consumer that stops reading should drop its stream.
    Persistent(mpsc::UnboundedSender<WatchResult>),
}

impl Sink {
    /// Whether the watcher's receiving end is gone.
    pub fn is_closed(&self) -> bool {
        match self {
            Sink::Oneshot(s) => s.is_closed(),
            Sink::Persistent(s) => s.is_closed(),
        }
    }
}

/// The kinds of registration the client keeps apart (the server keeps fewer: data + exists
/// share its data-watch table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WatchKind {
    /// getData watch (also an exists watch on an existing node).
    Data,
    /// exists watch on a missing node.
    Exist,
    /// getChildren watch.
    Child,
    /// addWatch PERSISTENT.
    Persistent,
    /// addWatch PERSISTENT_RECURSIVE.
    PersistentRecursive,
}

const KINDS: [WatchKind; 5] = [
    WatchKind::Data,
    WatchKind::Exist,
    WatchKind::Child,
    WatchKind::Persistent,
    WatchKind::PersistentRecursive,
];

/// A watch waiting for its request's reply before it is registered.
#[derive(Debug)]
pub struct PendingWatch {
    /// Server-side path.
    pub path: String,
    /// Kind; an exists-watch is given as `Exist` and becomes `Data` when the node exists.
    pub kind: WatchKind,
    /// Id that the watcher handle uses to unregister.
    pub id: u64,
    /// Where events go.
    pub sink: Sink,
}

/// Every registered watcher, by kind and path.
#[derive(Debug, Default)]
pub struct WatchRegistry {
    next_id: u64,
    maps: [HashMap<String, Vec<(u64, Sink)>>; 5],
}

fn idx(kind: WatchKind) -> usize {
    kind as usize
}

impl WatchRegistry {
    /// A fresh id for a watcher handle.
    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Registers a watch after its request's reply (`err`: the reply's error, `None` on success).
    /// Returns false when the reply means no watch was set.
    pub fn register(&mut self, w: PendingWatch, err: Option<ErrorCode>) -> bool {
        let kind = match (w.kind, err) {
            (WatchKind::Exist, None) => WatchKind::Data,
            (WatchKind::Exist, Some(ErrorCode::NoNode)) => WatchKind::Exist,
            (_, None) => w.kind,
            _ => return false,
        };
        self.maps[idx(kind)]
            .entry(w.path)
            .or_default()
            .push((w.id, w.sink));
        true
    }

    /// Routes a server event; one-shot watchers that fire are removed.
    pub fn dispatch(&mut self, ev: &RawEvent) {
        let path = ev.path.as_str();
        let oneshot_kinds: &[WatchKind] = match ev.event_type {
            EventType::NodeCreated | EventType::NodeDataChanged => {
                &[WatchKind::Data, WatchKind::Exist]
            }
            EventType::NodeDeleted => &[WatchKind::Data, WatchKind::Exist, WatchKind::Child],
            EventType::NodeChildrenChanged => &[WatchKind::Child],
            _ => &[],
        };
        for &k in oneshot_kinds {
            if let Some(list) = self.maps[idx(k)].remove(path) {
                for (_, sink) in list {
                    if let Sink::Oneshot(tx) = sink {
                        let _ = tx.send(Ok(ev.clone()));
                    }
                }
            }
        }
        let persistent_ok = matches!(
            ev.event_type,
            EventType::NodeCreated
                | EventType::NodeDeleted
                | EventType::NodeDataChanged
                | EventType::NodeChildrenChanged
        );
        if !persistent_ok {
            return;
        }
        if let Some(list) = self.maps[idx(WatchKind::Persistent)].get_mut(path) {
            list.retain(|(_, s)| send_persistent(s, ev));
        }
        if ev.event_type != EventType::NodeChildrenChanged {
            let rec = &mut self.maps[idx(WatchKind::PersistentRecursive)];
            if !rec.is_empty() {
                for p in ancestors_and_self(path) {
                    if let Some(list) = rec.get_mut(p) {
                        list.retain(|(_, s)| send_persistent(s, ev));
                    }
                }
            }
        }
    }

    /// Whether a persistent watch registered on this very path already brings every event a
    /// one-shot watch of `kind` waits for. Such a one-shot must not be set on the server:
    /// ZooKeeper 3.6–3.8 keep one mode per (connection, path), so the one-shot would replace the
    /// persistent watch and take it away when it fires.
    pub fn covered_by_persistent(&self, path: &str, kind: WatchKind) -> bool {
        let has = |k: WatchKind| self.maps[idx(k)].get(path).is_some_and(|l| !l.is_empty());
        match kind {
            WatchKind::Data | WatchKind::Exist => {
                has(WatchKind::Persistent) || has(WatchKind::PersistentRecursive)
            }
            // A recursive watch sends no NodeChildrenChanged.
            WatchKind::Child => has(WatchKind::Persistent),
            WatchKind::Persistent | WatchKind::PersistentRecursive => false,
        }
    }

    /// Unregisters one watcher. Returns the watcher type to send in a removeWatches request
    /// when the server-side watch can go without taking another local watcher's with it.
    ///
    /// Apache ZooKeeper 3.8 knows only types Children, Data and Any, and each also
    /// strips the matching part of persistent watches on the path; so a removal is sent only when
    /// nothing else on the path would lose its events (verified against the 3.8 server).
    pub fn unregister(&mut self, path: &str, kind: WatchKind, id: u64) -> Option<WatcherType> {
        let mut found = false;
        for k in KINDS {
            if let Some(list) = self.maps[idx(k)].get_mut(path) {
                let before = list.len();
                list.retain(|(i, _)| *i != id);
                found |= list.len() != before;
                if list.is_empty() {
                    self.maps[idx(k)].remove(path);
                }
            }
        }
        if !found {
            return None;
        }
        let has = |k: WatchKind| self.maps[idx(k)].contains_key(path);
        let persistent = has(WatchKind::Persistent) || has(WatchKind::PersistentRecursive);
        match kind {
            WatchKind::Data | WatchKind::Exist => {
                (!has(WatchKind::Data) && !has(WatchKind::Exist) && !persistent)
                    .then_some(WatcherType::Data)
            }
            WatchKind::Child => {
                (!has(WatchKind::Child) && !persistent).then_some(WatcherType::Children)
            }
            WatchKind::Persistent | WatchKind::PersistentRecursive => {
                KINDS.iter().all(|&k| !has(k)).then_some(WatcherType::Any)
            }
        }
    }

    /// Drops watchers whose receivers are gone (their handles were dropped without unregistering).
    pub fn prune_closed(&mut self) {
        for m in &mut self.maps {
            m.retain(|_, list| {
                list.retain(|(_, s)| !s.is_closed());
                !list.is_empty()
            });
        }
    }

    /// Paths to re-register after a reconnect: (data, exist, child, persistent, recursive).
    pub fn paths(&self) -> [Vec<String>; 5] {
        KINDS.map(|k| self.maps[idx(k)].keys().cloned().collect())
    }

    /// Whether any watch is registered.
    pub fn is_empty(&self) -> bool {
        self.maps.iter().all(|m| m.is_empty())
    }

    /// Number of registered watchers.
    pub fn len(&self) -> usize {
        self.maps
            .iter()
            .map(|m| m.values().map(Vec::len).sum::<usize>())
            .sum()
    }

    /// Ends every watcher with `err` (session expired, closed, auth failed).
    pub fn fail_all(&mut self, err: &Error) {
        for m in &mut self.maps {
            for (_, list) in m.drain() {
                for (_, sink) in list {
                    match sink {
                        Sink::Oneshot(tx) => {
                            let _ = tx.send(Err(err.clone()));
                        }
                        Sink::Persistent(tx) => {
                            let _ = tx.send(Err(err.clone()));
                        }
                    }
                }
            }
        }
    }
}

fn send_persistent(s: &Sink, ev: &RawEvent) -> bool {
    match s {
        Sink::Persistent(tx) => tx.send(Ok(ev.clone())).is_ok(),
        Sink::Oneshot(_) => true,
    }
}

/// `/a/b/c` → `/a/b/c`, `/a/b`, `/a`, `/`.
fn ancestors_and_self(path: &str) -> impl Iterator<Item = &str> {
    let mut cur = Some(path);
    std::iter::from_fn(move || {
        let p = cur?;
        cur = if p == "/" {
            None
        } else {
            Some(zkit_proto::path::parent(p))
        };
        Some(p)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t: EventType, p: &str) -> RawEvent {
        RawEvent {
            event_type: t,
            path: p.into(),
            zxid: 1,
        }
    }

    #[test]
    fn exists_watch_kind_depends_on_the_reply() {
        let mut r = WatchRegistry::default();
        let (tx, _rx) = oneshot::channel();
        let id = r.next_id();
        assert!(r.register(
            PendingWatch {
                path: "/a".into(),
                kind: WatchKind::Exist,
                id,
                sink: Sink::Oneshot(tx)
            },
            Some(ErrorCode::NoNode)
        ));
        assert_eq!(r.paths()[1], vec!["/a".to_string()]);
        let (tx, _rx) = oneshot::channel();
        assert!(!r.register(
            PendingWatch {
                path: "/b".into(),
                kind: WatchKind::Data,
                id: 2,
                sink: Sink::Oneshot(tx)
            },
            Some(ErrorCode::NoNode)
        ));
    }

    #[test]
    fn routing_follows_zookeeper_rules() {
        let mut r = WatchRegistry::default();
        let mut rxs = Vec::new();
        for (k, p) in [
            (WatchKind::Data, "/a"),
            (WatchKind::Child, "/a"),
            (WatchKind::Exist, "/b"),
        ] {
            let (tx, rx) = oneshot::channel();
            let id = r.next_id();
            r.register(
                PendingWatch {
                    path: p.into(),
                    kind: k,
                    id,
                    sink: Sink::Oneshot(tx),
                },
                if k == WatchKind::Exist {
                    Some(ErrorCode::NoNode)
                } else {
                    None
                },
            );
            rxs.push(rx);
        }
        let (ptx, mut prx) = mpsc::unbounded_channel();
        r.register(
            PendingWatch {
                path: "/".into(),
                kind: WatchKind::PersistentRecursive,
                id: 99,
                sink: Sink::Persistent(ptx),
            },
            None,
        );
        r.dispatch(&ev(EventType::NodeDataChanged, "/a"));
        assert!(rxs[0].try_recv().unwrap().is_ok());
        assert!(rxs[1].try_recv().is_err()); // child watch untouched
        r.dispatch(&ev(EventType::NodeChildrenChanged, "/a"));
        assert!(rxs[1].try_recv().unwrap().is_ok());
        r.dispatch(&ev(EventType::NodeCreated, "/b"));
        assert!(rxs[2].try_recv().unwrap().is_ok());
        // Recursive watch saw data + create, not children-changed.
        assert_eq!(prx.try_recv().unwrap().unwrap().path, "/a");
        assert_eq!(
            prx.try_recv().unwrap().unwrap().event_type,
            EventType::NodeCreated
        );
        assert!(prx.try_recv().is_err());
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn unregister_reports_last_watcher_only() {
        let mut r = WatchRegistry::default();
        for (id, k, err) in [(1, WatchKind::Data, None), (2, WatchKind::Exist, None)] {
            let (tx, _rx) = oneshot::channel();
            r.register(
                PendingWatch {
                    path: "/a".into(),
                    kind: k,
                    id,
                    sink: Sink::Oneshot(tx),
                },
                err,
            );
        }
        assert_eq!(r.unregister("/a", WatchKind::Data, 1), None);
        assert_eq!(
            r.unregister("/a", WatchKind::Data, 2),
            Some(WatcherType::Data)
        );
        assert_eq!(r.unregister("/a", WatchKind::Data, 2), None);
    }

    #[test]
    fn removal_never_takes_another_watchers_events() {
        let mut r = WatchRegistry::default();
        let (ptx, _prx) = mpsc::unbounded_channel();
        r.register(
            PendingWatch {
                path: "/a".into(),
                kind: WatchKind::PersistentRecursive,
                id: 1,
                sink: Sink::Persistent(ptx),
            },
            None,
        );
        let (tx, _rx) = oneshot::channel();
        r.register(
            PendingWatch {
                path: "/a".into(),
                kind: WatchKind::Data,
                id: 2,
                sink: Sink::Oneshot(tx),
            },
            None,
        );
        // removeWatches(Data) would also strip the recursive watch on a 3.8 server.
        assert_eq!(r.unregister("/a", WatchKind::Data, 2), None);
        assert_eq!(
            r.unregister("/a", WatchKind::PersistentRecursive, 1),
            Some(WatcherType::Any)
        );
    }

    #[test]
    fn ancestors() {
        let v: Vec<_> = ancestors_and_self("/a/b").collect();
        assert_eq!(v, vec!["/a/b", "/a", "/"]);
    }
}
