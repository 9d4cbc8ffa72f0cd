//! The client's watch registry: which watchers wait on which path, how a server event is routed
//! to them (ZooKeeper's `ZKWatchManager` rules), and what to re-send with SetWatches.

use std::collections::{HashMap, VecDeque};

use super::{Event, Handle, Handles};
use crate::error::Error;
use zkit_proto::{EventType, WatcherType};

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

/// What a persistent watcher's stream carries besides errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A node event.
    Event(RawEvent),
    /// The watch was re-registered after a reconnect; events may have been missed.
    Resync,
}

/// What a persistent watcher receives: a notice, or the reason the session ended.
pub type StreamResult = Result<Notice, Error>;

/// Where a watch's events go: the caller's handle, returned in [`Event::Watch`].
#[derive(Debug)]
pub enum Sink<H: Handles> {
    /// A one-shot watch: fires once (the handle is given back with its event).
    Oneshot(H::Oneshot),
    /// A persistent watch: every event, until removed (a clone of the handle comes with each).
    Persistent(H::Stream),
}

impl<H: Handles> Sink<H> {
    /// Whether the watcher's receiving end is gone.
    pub fn is_closed(&self) -> bool {
        match self {
            Sink::Oneshot(s) => s.is_dropped(),
            Sink::Persistent(s) => s.is_dropped(),
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
pub struct PendingWatch<H: Handles> {
    /// Server-side path.
    pub path: String,
    /// Kind; an exists-watch is given as `Exist` and becomes `Data` when the node exists.
    pub kind: WatchKind,
    /// Id that the watcher handle uses to unregister.
    pub id: u64,
    /// Where events go.
    pub sink: Sink<H>,
}

/// The watchers of one kind: by path, each with its handle's id.
type ByPath<H> = HashMap<String, Vec<(u64, Sink<H>)>>;

/// Every registered watcher, by kind and path.
#[derive(Debug)]
pub struct WatchRegistry<H: Handles> {
    maps: [ByPath<H>; 5],
}

impl<H: Handles> Default for WatchRegistry<H> {
    fn default() -> Self {
        WatchRegistry {
            maps: Default::default(),
        }
    }
}

fn idx(kind: WatchKind) -> usize {
    kind as usize
}

impl<H: Handles> WatchRegistry<H> {
    /// Registers a watch after its request's reply (`err`: the reply's error, `None` on success).
    /// Returns false when the reply means no watch was set.
    pub fn register(&mut self, w: PendingWatch<H>, err: Option<&Error>) -> bool {
        let kind = match (w.kind, err) {
            (WatchKind::Exist, None) => WatchKind::Data,
            (WatchKind::Exist, Some(Error::NoNode)) => WatchKind::Exist,
            (_, None) => w.kind,
            _ => return false,
        };
        self.maps[idx(kind)]
            .entry(w.path)
            .or_default()
            .push((w.id, w.sink));
        true
    }

    /// Routes a server event into `out`; one-shot watchers that fire are removed, persistent
    /// watchers whose receiver is gone are dropped. Returns the removeWatches those drops call
    /// for (as [`unregister`](Self::unregister) would): the watcher's own unregistration finds
    /// nothing left once it is dropped here.
    pub fn dispatch(
        &mut self,
        ev: &RawEvent,
        out: &mut VecDeque<Event<H>>,
    ) -> Vec<(String, WatchKind, WatcherType)> {
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
                    if matches!(sink, Sink::Oneshot(_)) {
                        out.push_back(Event::Watch {
                            to: sink,
                            result: Ok(ev.clone()),
                        });
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
            return Vec::new();
        }
        let mut dead = Vec::new();
        let kind = WatchKind::Persistent;
        send_persistent(&self.maps[idx(kind)], kind, path, ev, out, &mut dead);
        if ev.event_type != EventType::NodeChildrenChanged {
            let kind = WatchKind::PersistentRecursive;
            let rec = &self.maps[idx(kind)];
            if !rec.is_empty() {
                for p in ancestors_and_self(path) {
                    send_persistent(rec, kind, p, ev, out, &mut dead);
                }
            }
        }
        dead.into_iter()
            .filter_map(|(p, k, id)| {
                let t = self.unregister(p, k, id)?;
                Some((p.to_owned(), k, t))
            })
            .collect()
    }

    /// Whether a persistent watch registered on this very path already brings every event a
    /// one-shot watch of `kind` waits for. Such a one-shot must not be set on the server:
    /// ZooKeeper 3.6–3.8 keep one mode per (connection, path), so the one-shot would replace the
    /// persistent watch and take it away when it fires.
    pub fn covered_by_persistent(&self, path: &str, kind: WatchKind) -> bool {
        let has = |k: WatchKind| self.maps[idx(k)].get(path).is_some_and(|l| !l.is_empty());
        [WatchKind::Persistent, WatchKind::PersistentRecursive]
            .into_iter()
            .any(|p| covers(p, kind) && has(p))
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

    /// Tells every persistent watcher that its watch was just re-registered after a reconnect.
    pub fn resync(&self, out: &mut VecDeque<Event<H>>) {
        for k in [WatchKind::Persistent, WatchKind::PersistentRecursive] {
            for (_, sink) in self.maps[idx(k)].values().flatten() {
                if let Sink::Persistent(tx) = sink {
                    if !tx.is_dropped() {
                        out.push_back(Event::Resync { to: tx.clone() });
                    }
                }
            }
        }
    }

    /// Ends every watcher with `err` (session expired, closed, auth failed) through `out`.
    pub fn fail_all(&mut self, err: &Error, out: &mut VecDeque<Event<H>>) {
        for m in &mut self.maps {
            for (_, list) in m.drain() {
                for (_, sink) in list {
                    out.push_back(Event::Watch {
                        to: sink,
                        result: Err(err.clone()),
                    });
                }
            }
        }
    }
}

/// Whether a watch of kind `persistent` brings every event a one-shot watch of kind `oneshot` on
/// the same path waits for.
pub fn covers(persistent: WatchKind, oneshot: WatchKind) -> bool {
    match (persistent, oneshot) {
        (WatchKind::Persistent, WatchKind::Data | WatchKind::Exist | WatchKind::Child) => true,
        // A recursive watch sends no NodeChildrenChanged.
        (WatchKind::PersistentRecursive, WatchKind::Data | WatchKind::Exist) => true,
        _ => false,
    }
}

/// Gives `ev` to every persistent watcher on `path` in `map` (of watchers of `kind`) whose
/// receiver is still there, and lists the others in `dead` for the caller to unregister.
fn send_persistent<'p, H: Handles>(
    map: &ByPath<H>,
    kind: WatchKind,
    path: &'p str,
    ev: &RawEvent,
    out: &mut VecDeque<Event<H>>,
    dead: &mut Vec<(&'p str, WatchKind, u64)>,
) {
    let Some(list) = map.get(path) else {
        return;
    };
    for (id, s) in list {
        match s {
            Sink::Persistent(tx) if tx.is_dropped() => dead.push((path, kind, *id)),
            Sink::Persistent(tx) => out.push_back(Event::Watch {
                to: Sink::Persistent(tx.clone()),
                result: Ok(ev.clone()),
            }),
            Sink::Oneshot(_) => {}
        }
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
    use crate::session::tests::{probe, T};

    fn ev(t: EventType, p: &str) -> RawEvent {
        RawEvent {
            event_type: t,
            path: p.into(),
            zxid: 1,
        }
    }

    fn watch(path: &str, kind: WatchKind, id: u64, name: &'static str) -> PendingWatch<T> {
        let p = probe(name);
        PendingWatch {
            path: path.into(),
            kind,
            id,
            sink: match kind {
                WatchKind::Persistent | WatchKind::PersistentRecursive => Sink::Persistent(p),
                _ => Sink::Oneshot(p),
            },
        }
    }

    /// Routes `e` and returns who got it, in order.
    fn dispatch(r: &mut WatchRegistry<T>, e: RawEvent) -> Vec<(&'static str, RawEvent)> {
        let mut out = VecDeque::new();
        r.dispatch(&e, &mut out);
        out.into_iter()
            .map(|e| match e {
                Event::Watch {
                    to: Sink::Oneshot(p) | Sink::Persistent(p),
                    result,
                } => (p.name, result.unwrap()),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn exists_watch_kind_depends_on_the_reply() {
        let mut r = WatchRegistry::default();
        assert!(r.register(watch("/a", WatchKind::Exist, 1, "a"), Some(&Error::NoNode)));
        assert_eq!(r.paths()[1], vec!["/a".to_string()]);
        assert!(!r.register(watch("/b", WatchKind::Data, 2, "b"), Some(&Error::NoNode)));
        // An exists watch on a node that exists is a data watch.
        assert!(r.register(watch("/c", WatchKind::Exist, 3, "c"), None));
        assert_eq!(r.paths()[0], vec!["/c".to_string()]);
    }

    #[test]
    fn routing_follows_zookeeper_rules() {
        let mut r = WatchRegistry::default();
        for (k, p, name) in [
            (WatchKind::Data, "/a", "data"),
            (WatchKind::Child, "/a", "child"),
            (WatchKind::Exist, "/b", "exist"),
        ] {
            let err = (k == WatchKind::Exist).then_some(&Error::NoNode);
            r.register(watch(p, k, 0, name), err);
        }
        r.register(watch("/", WatchKind::PersistentRecursive, 99, "rec"), None);
        let got = dispatch(&mut r, ev(EventType::NodeDataChanged, "/a"));
        // The data watch fires; the child watch is untouched; the recursive watch sees it.
        let names: Vec<_> = got.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, vec!["data", "rec"]);
        assert_eq!(got[1].1.path, "/a");
        let got = dispatch(&mut r, ev(EventType::NodeChildrenChanged, "/a"));
        // A recursive watch gets no children-changed events.
        assert_eq!(
            got.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            vec!["child"]
        );
        let got = dispatch(&mut r, ev(EventType::NodeCreated, "/b"));
        assert_eq!(
            got.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            vec!["exist", "rec"]
        );
        assert_eq!(got[1].1.event_type, EventType::NodeCreated);
        // Only the recursive watch is left.
        assert_eq!(
            r.paths(),
            [vec![], vec![], vec![], vec![], vec!["/".to_string()]]
        );
    }

    #[test]
    fn a_persistent_watcher_whose_receiver_is_gone_is_dropped() {
        let mut r = WatchRegistry::default();
        let w = watch("/a", WatchKind::Persistent, 1, "p");
        let Sink::Persistent(p) = &w.sink else {
            unreachable!()
        };
        let p = p.clone();
        r.register(w, None);
        assert_eq!(
            dispatch(&mut r, ev(EventType::NodeDataChanged, "/a")).len(),
            1
        );
        p.gone.set(true);
        assert!(dispatch(&mut r, ev(EventType::NodeDataChanged, "/a")).is_empty());
        assert!(r.is_empty());
    }

    #[test]
    fn unregister_reports_last_watcher_only() {
        let mut r = WatchRegistry::default();
        r.register(watch("/a", WatchKind::Data, 1, "1"), None);
        r.register(watch("/a", WatchKind::Exist, 2, "2"), None);
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
        r.register(watch("/a", WatchKind::PersistentRecursive, 1, "rec"), None);
        r.register(watch("/a", WatchKind::Data, 2, "data"), None);
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
