//! Targeted faults, sans-IO: rules that pick requests (by session, opcode, path prefix, count)
//! and what happens to them, and per-session network faults (delayed frames, held watch
//! events, dropped pings, a connection cut every N ms). The core consults this on every
//! request and every frame it sends; time comes in from the core's caller.
//!
//! A delayed frame holds up everything sent after it on the same connection: a client sees
//! its replies in request order, as ZooKeeper guarantees (the Java client closes a connection
//! whose replies arrive out of order).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use zkit_proto::{ErrorCode, OpCode};

use super::{ConnId, Frame};

/// Identifies a fault rule (unique in the process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleId(pub u64);

impl RuleId {
    /// A fresh id.
    pub(crate) fn next() -> RuleId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        RuleId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl std::fmt::Display for RuleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What happens to a request a [`FaultRule`] picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultAction {
    /// The request takes effect, then the connection is closed instead of the reply being
    /// sent: the ambiguous write (the client sees ConnectionLoss, the server applied it).
    ApplyThenDisconnect,
    /// The request takes effect; its reply (and everything after it on the connection) is
    /// held this long.
    ApplyThenDelay(Duration),
    /// The request fails with this ZooKeeper error and does not take effect.
    Fail(ErrorCode),
    /// The request is dropped silently: neither applied nor answered (the client times out).
    Drop,
}

/// A rule picking requests: every condition given must hold. Built with the methods below.
///
/// ```
/// use zkit_testkit::{FaultAction, FaultRule, OpCode};
/// // The next create under /locks, whichever session sends it.
/// let rule = FaultRule::new(FaultAction::ApplyThenDisconnect)
///     .op(OpCode::Create)
///     .path_prefix("/locks")
///     .times(1);
/// # let _ = rule;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    session: Option<i64>,
    op: Option<OpCode>,
    path_prefix: Option<String>,
    times: Option<u64>,
    action: FaultAction,
}

impl FaultRule {
    /// A rule that picks every request (narrow it with the methods below).
    pub fn new(action: FaultAction) -> FaultRule {
        FaultRule {
            session: None,
            op: None,
            path_prefix: None,
            times: None,
            action,
        }
    }

    /// Only requests of this session.
    pub fn session(mut self, id: i64) -> FaultRule {
        self.session = Some(id);
        self
    }

    /// Only this opcode. `Create` stands for every create (create, create2, createContainer,
    /// createTTL) and `GetChildren` for both getChildren variants.
    pub fn op(mut self, op: OpCode) -> FaultRule {
        self.op = Some(op);
        self
    }

    /// Only requests whose path starts with `prefix` (a multi: its first operation's path;
    /// a request without a path never matches).
    pub fn path_prefix(mut self, prefix: impl Into<String>) -> FaultRule {
        self.path_prefix = Some(prefix.into());
        self
    }

    /// Fires at most `n` times, then stays installed without effect (default: every time).
    pub fn times(mut self, n: u64) -> FaultRule {
        self.times = Some(n);
        self
    }

    /// The action.
    pub fn action(&self) -> FaultAction {
        self.action
    }

    fn matches(&self, session: i64, op: OpCode, path: Option<&str>) -> bool {
        self.session.is_none_or(|s| s == session)
            && self.op.is_none_or(|o| same_op(o, op))
            && match &self.path_prefix {
                None => true,
                Some(p) => path.is_some_and(|path| path.starts_with(p.as_str())),
            }
    }
}

/// Whether a rule's opcode `want` covers `got`.
fn same_op(want: OpCode, got: OpCode) -> bool {
    use OpCode::*;
    let group = |o: OpCode| match o {
        Create | Create2 | CreateContainer | CreateTtl => Create,
        GetChildren | GetChildren2 => GetChildren,
        o => o,
    };
    group(want) == group(got)
}

/// Per-session network faults, built with the methods below.
///
/// ```
/// use std::time::Duration;
/// use zkit_testkit::SessionFaults;
/// let f = SessionFaults::new().delay(Duration::from_millis(200)).hold_events();
/// # let _ = f;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionFaults {
    delay: Duration,
    drop_pings: bool,
    hold_events: bool,
    cut_every: Option<Duration>,
}

impl SessionFaults {
    /// No fault.
    pub fn new() -> SessionFaults {
        SessionFaults::default()
    }

    /// Every reply and event to the session is held this long (in order).
    pub fn delay(mut self, d: Duration) -> SessionFaults {
        self.delay = d;
        self
    }

    /// The session's pings are dropped unanswered and nothing it does keeps it alive any
    /// more: it alone expires at its timeout, while other sessions carry on.
    pub fn drop_pings(mut self) -> SessionFaults {
        self.drop_pings = true;
        self
    }

    /// The session's watch events are held until the fault is lifted (replies still flow).
    pub fn hold_events(mut self) -> SessionFaults {
        self.hold_events = true;
        self
    }

    /// The session's connection is cut every `period` (first after one period).
    pub fn cut_every(mut self, period: Duration) -> SessionFaults {
        self.cut_every = Some(period);
        self
    }

    /// Whether its pings are dropped (see [`SessionFaults::drop_pings`]).
    pub fn drops_pings(&self) -> bool {
        self.drop_pings
    }
}

/// An installed rule and how often it fired.
#[derive(Debug, Clone)]
struct Installed {
    rule: FaultRule,
    fired: u64,
}

/// What becomes of one reply, decided when its request arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReplyFault {
    Disconnect,
    Delay(i64),
}

/// What the core does with a frame it is about to send.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Route {
    /// Send it now.
    Now(Frame),
    /// Close the connection instead.
    Close,
    /// Kept (delayed or held); released later.
    Kept,
}

/// All fault state of one core.
#[derive(Debug, Default)]
pub(super) struct Faults {
    rules: BTreeMap<RuleId, Installed>,
    /// Replies whose request a rule picked, by (connection, xid).
    replies: HashMap<(ConnId, i32), ReplyFault>,
    sessions: HashMap<i64, SessionFaults>,
    /// Next cut of the sessions cut every N ms.
    next_cut: HashMap<i64, i64>,
    /// Per connection, delayed frames with their release time, in send order.
    delayed: BTreeMap<ConnId, VecDeque<(i64, Frame)>>,
    /// Per connection, held watch events.
    held: BTreeMap<ConnId, Vec<Frame>>,
}

impl Faults {
    /// Whether nothing is installed (the fast path).
    pub fn is_idle(&self) -> bool {
        self.rules.is_empty()
            && self.replies.is_empty()
            && self.sessions.is_empty()
            && self.delayed.is_empty()
            && self.held.is_empty()
    }

    pub fn add(&mut self, id: RuleId, rule: FaultRule) {
        self.rules.insert(id, Installed { rule, fired: 0 });
    }

    pub fn remove(&mut self, id: RuleId) -> bool {
        self.rules.remove(&id).is_some()
    }

    pub fn clear_rules(&mut self) {
        self.rules.clear();
    }

    /// How often a rule fired (None: no such rule).
    pub fn fired(&self, id: RuleId) -> Option<u64> {
        self.rules.get(&id).map(|i| i.fired)
    }

    /// The first rule with fires left that picks this request; counted as fired.
    pub fn pick(&mut self, session: i64, op: OpCode, path: Option<&str>) -> Option<FaultAction> {
        let hit = self.rules.values_mut().find(|i| {
            i.rule.times.is_none_or(|n| i.fired < n) && i.rule.matches(session, op, path)
        })?;
        hit.fired += 1;
        Some(hit.rule.action)
    }

    /// Marks the reply to `xid` on `conn`.
    pub fn mark_reply(&mut self, conn: ConnId, xid: i32, f: ReplyFault) {
        self.replies.insert((conn, xid), f);
    }

    pub fn session(&self, session: i64) -> SessionFaults {
        self.sessions.get(&session).copied().unwrap_or_default()
    }

    /// Installs (or, with the default, lifts) a session's faults; held events of a lifted
    /// hold are returned for sending (on `conn`, the session's connection).
    pub fn set_session(
        &mut self,
        session: i64,
        f: SessionFaults,
        conn: Option<ConnId>,
        now: i64,
    ) -> Vec<Frame> {
        match f.cut_every {
            Some(p) => {
                self.next_cut.insert(session, now + ms(p));
            }
            None => {
                self.next_cut.remove(&session);
            }
        }
        if f == SessionFaults::default() {
            self.sessions.remove(&session);
        } else {
            self.sessions.insert(session, f);
        }
        match conn {
            Some(c) if !f.hold_events => self.held.remove(&c).unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Sessions whose connection is due to be cut at `now` (their next cut is scheduled).
    pub fn due_cuts(&mut self, now: i64) -> Vec<i64> {
        let mut due = Vec::new();
        for (s, at) in self.next_cut.iter_mut() {
            if *at <= now {
                due.push(*s);
                let period = self.sessions.get(s).and_then(|f| f.cut_every).map_or(1, ms);
                *at = now + period.max(1);
            }
        }
        due.sort();
        due
    }

    /// Decides what happens to a frame for `conn` (of `session`): `xid` for a reply, None for
    /// a watch event or a connect response (`event` says which).
    pub fn route(
        &mut self,
        conn: ConnId,
        session: Option<i64>,
        xid: Option<i32>,
        event: bool,
        frame: Frame,
        now: i64,
    ) -> Route {
        let sf = session.map(|s| self.session(s)).unwrap_or_default();
        let reply = xid.and_then(|x| self.replies.remove(&(conn, x)));
        if reply == Some(ReplyFault::Disconnect) {
            return Route::Close;
        }
        if event && sf.hold_events {
            self.held.entry(conn).or_default().push(frame);
            return Route::Kept;
        }
        let mut at = now + ms(sf.delay);
        if let Some(ReplyFault::Delay(d)) = reply {
            at = at.max(now + d);
        }
        let q = self.delayed.entry(conn).or_default();
        if let Some((last, _)) = q.back() {
            // Behind a delayed frame: never overtakes it.
            at = at.max(*last);
        } else if at <= now {
            self.delayed.remove(&conn);
            return Route::Now(frame);
        }
        q.push_back((at, frame));
        Route::Kept
    }

    /// Delayed frames due at `now`, by connection, in order.
    pub fn release(&mut self, now: i64) -> Vec<(ConnId, Frame)> {
        let mut out = Vec::new();
        for (c, q) in self.delayed.iter_mut() {
            while q.front().is_some_and(|(at, _)| *at <= now) {
                if let Some((_, f)) = q.pop_front() {
                    out.push((*c, f));
                }
            }
        }
        self.delayed.retain(|_, q| !q.is_empty());
        out
    }

    /// A connection is gone: what was kept for it goes too.
    pub fn conn_closed(&mut self, conn: ConnId) {
        self.delayed.remove(&conn);
        self.held.remove(&conn);
        self.replies.retain(|(c, _), _| *c != conn);
    }
}

fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128 / 2) as i64
}

/// The path a request names: its first field for the path-first requests, the first
/// operation's for a multi; None otherwise or when malformed. `body` starts after the header.
pub(super) fn request_path(op: OpCode, body: &[u8]) -> Option<String> {
    use OpCode::*;
    let at = match op {
        Create | Delete | Exists | GetData | SetData | GetAcl | SetAcl | GetChildren | Sync
        | GetChildren2 | Check | Create2 | CreateContainer | DeleteContainer | CreateTtl
        | RemoveWatches | CheckWatches | AddWatch | GetEphemerals | GetAllChildrenNumber => 0,
        // MultiHeader: type, done, err.
        Multi | MultiRead => 9,
        _ => return None,
    };
    let b = body.get(at..)?;
    let len = i32::from_be_bytes(b.get(..4)?.try_into().ok()?);
    let len = usize::try_from(len).ok()?;
    let s = b.get(4..4 + len)?;
    Some(String::from_utf8_lossy(s).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(b: &'static [u8]) -> Frame {
        Frame::from(bytes::Bytes::from_static(b))
    }

    #[test]
    fn a_rule_matches_on_every_condition_and_counts_its_fires() {
        let mut f = Faults::default();
        let id = RuleId(1);
        f.add(
            id,
            FaultRule::new(FaultAction::Drop)
                .session(7)
                .op(OpCode::Create)
                .path_prefix("/locks")
                .times(2),
        );
        assert_eq!(f.pick(8, OpCode::Create, Some("/locks/a")), None);
        assert_eq!(f.pick(7, OpCode::SetData, Some("/locks/a")), None);
        assert_eq!(f.pick(7, OpCode::Create2, Some("/other")), None);
        assert_eq!(f.pick(7, OpCode::Create, None), None);
        assert_eq!(f.fired(id), Some(0));
        assert_eq!(
            f.pick(7, OpCode::Create2, Some("/locks/x")),
            Some(FaultAction::Drop)
        );
        assert_eq!(
            f.pick(7, OpCode::CreateContainer, Some("/locks")),
            Some(FaultAction::Drop)
        );
        assert_eq!(f.pick(7, OpCode::Create, Some("/locks/y")), None);
        assert_eq!(f.fired(id), Some(2));
        assert!(f.remove(id));
        assert_eq!(f.fired(id), None);
    }

    #[test]
    fn a_delayed_frame_holds_up_the_frames_after_it() {
        let mut f = Faults::default();
        f.mark_reply(1, 5, ReplyFault::Delay(100));
        let r = f.route(1, Some(9), Some(5), false, frame(b"a"), 1000);
        assert_eq!(r, Route::Kept);
        assert_eq!(
            f.route(1, Some(9), Some(6), false, frame(b"b"), 1010),
            Route::Kept
        );
        assert_eq!(
            f.route(2, Some(8), Some(6), false, frame(b"c"), 1010),
            Route::Now(frame(b"c"))
        );
        assert!(f.release(1099).is_empty());
        let out = f.release(1100);
        assert_eq!(out, vec![(1, frame(b"a")), (1, frame(b"b"))]);
        assert!(f.is_idle());
    }

    #[test]
    fn a_disconnect_fault_closes_instead_of_replying_once() {
        let mut f = Faults::default();
        f.mark_reply(3, 1, ReplyFault::Disconnect);
        assert_eq!(
            f.route(3, Some(1), Some(1), false, frame(b"x"), 0),
            Route::Close
        );
        assert_eq!(
            f.route(3, Some(1), Some(1), false, frame(b"x"), 0),
            Route::Now(frame(b"x"))
        );
    }

    #[test]
    fn session_faults_delay_hold_and_cut_one_session_only() {
        let mut f = Faults::default();
        let sf = SessionFaults::new()
            .delay(Duration::from_millis(50))
            .hold_events()
            .cut_every(Duration::from_millis(200));
        f.set_session(1, sf, Some(10), 0);
        assert_eq!(
            f.route(10, Some(1), None, true, frame(b"e"), 0),
            Route::Kept
        );
        assert_eq!(
            f.route(10, Some(1), Some(1), false, frame(b"r"), 0),
            Route::Kept
        );
        assert_eq!(
            f.route(11, Some(2), Some(1), false, frame(b"o"), 0),
            Route::Now(frame(b"o"))
        );
        assert_eq!(f.release(50), vec![(10, frame(b"r"))]);
        assert!(f.due_cuts(199).is_empty());
        assert_eq!(f.due_cuts(200), vec![1]);
        assert!(f.due_cuts(399).is_empty());
        assert_eq!(f.due_cuts(400), vec![1]);
        let held = f.set_session(1, SessionFaults::new(), Some(10), 500);
        assert_eq!(held, vec![frame(b"e")]);
        assert!(f.due_cuts(10_000).is_empty());
        assert!(f.is_idle());
    }

    #[test]
    fn request_paths_are_read_without_panicking() {
        let mut b = vec![0, 0, 0, 3];
        b.extend_from_slice(b"/ab");
        assert_eq!(request_path(OpCode::GetData, &b).as_deref(), Some("/ab"));
        assert_eq!(request_path(OpCode::Ping, &b), None);
        assert_eq!(request_path(OpCode::GetData, &b[..5]), None);
        assert_eq!(
            request_path(OpCode::GetData, &[0xff, 0xff, 0xff, 0xff]),
            None
        );
        let mut m = vec![0, 0, 0, 1, 0, 0xff, 0xff, 0xff, 0xff];
        m.extend_from_slice(&b);
        assert_eq!(request_path(OpCode::Multi, &m).as_deref(), Some("/ab"));
    }
}
