//! The connection-state model recipes share, derived from the client's [`SessionState`].
//!
//! A session moves through [`Connected`](ConnectionState::Connected),
//! [`Suspended`](ConnectionState::Suspended) (the connection dropped; the session may still be
//! alive on the ensemble, so a lock or leadership *may* be gone),
//! [`Reconnected`](ConnectionState::Reconnected) and [`Lost`](ConnectionState::Lost) (expired or
//! closed: every ephemeral of the session is gone). This is Apache Curator's model.
//!
//! Holders of locks, leases and leadership are told of a loss through a [`LossSignal`]; the
//! [`LossPolicy`] of the recipe decides whether a suspension already counts (the default, and the
//! safe choice: while disconnected you cannot know whether the ensemble has expired your session
//! and handed the lock to someone else) or only the definite loss of the session.
//!
//! ```no_run
//! # async fn f() -> zkit::Result<()> {
//! use zkit_recipes::state::{connection_states, ConnectionState};
//! let zk = zkit::Client::connect("127.0.0.1:2181").await?;
//! let mut states = connection_states(&zk);
//! while let Some(s) = states.next().await {
//!     if s == ConnectionState::Lost {
//!         eprintln!("session lost: every lock and leadership is gone");
//!     }
//! }
//! # Ok(()) }
//! ```

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use zkit::{Client, EventType, SessionState};

/// The connection state as recipes see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectionState {
    /// The first connection of the client is up.
    Connected,
    /// The connection dropped; the session may or may not still be alive.
    Suspended,
    /// Connected again after a suspension (the same session) or after a loss (a new session, when
    /// the client re-creates sessions on expiry).
    Reconnected,
    /// The session is gone (expired, closed, or authentication failed).
    Lost,
    /// Connected to a read-only server: reads work, writes (and so recipes) do not.
    ReadOnly,
}

/// Turns session-state transitions into [`ConnectionState`]s (a pure fold, so it is unit-tested).
#[derive(Debug, Clone, Default)]
pub struct StateTracker {
    last: Option<ConnectionState>,
}

impl StateTracker {
    /// A tracker that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The last state reported.
    pub fn last(&self) -> Option<ConnectionState> {
        self.last
    }

    /// Feeds one session state; returns the connection state it leads to when that differs from
    /// the last one reported.
    pub fn on(&mut self, s: SessionState) -> Option<ConnectionState> {
        use ConnectionState as C;
        let next = match s {
            SessionState::Connected => match self.last {
                None => C::Connected,
                Some(C::Connected | C::Reconnected) => return None,
                Some(C::Suspended | C::Lost | C::ReadOnly) => C::Reconnected,
            },
            SessionState::ConnectedReadOnly => C::ReadOnly,
            SessionState::Disconnected | SessionState::Connecting => match self.last {
                Some(C::Connected | C::Reconnected | C::ReadOnly) => C::Suspended,
                _ => return None,
            },
            SessionState::Expired | SessionState::AuthFailed | SessionState::Closed => C::Lost,
            _ => return None,
        };
        if self.last == Some(next) {
            return None;
        }
        self.last = Some(next);
        Some(next)
    }
}

/// A stream of [`ConnectionState`]s: first the current one, then every change.
pub struct ConnectionStates {
    inner: futures::stream::BoxStream<'static, ConnectionState>,
}

impl std::fmt::Debug for ConnectionStates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionStates").finish_non_exhaustive()
    }
}

impl ConnectionStates {
    /// The next state; `None` once the client is gone.
    pub async fn next(&mut self) -> Option<ConnectionState> {
        self.inner.next().await
    }
}

impl futures::Stream for ConnectionStates {
    type Item = ConnectionState;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<ConnectionState>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// The client's connection states as a stream (the current state first).
pub fn connection_states(client: &Client) -> ConnectionStates {
    // Subscribe before reading the current state so no transition falls in between.
    let changes = client.state_changes();
    let mut tracker = StateTracker::new();
    let first = tracker.on(client.state());
    let rest = changes.filter_map(move |s| futures::future::ready(tracker.on(s)));
    ConnectionStates {
        inner: futures::stream::iter(first).chain(rest).boxed(),
    }
}

/// When a holder (of a lock, lease, leadership) must consider what it holds gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LossPolicy {
    /// As soon as the connection is suspended (the default; Curator's standard advice): the
    /// session may already be expired on the ensemble and the lock given to someone else.
    #[default]
    Suspended,
    /// Only when the session is definitely gone (expired or closed) or the node was deleted.
    /// Cheaper on flaky networks, but a holder may act for up to a session timeout after the
    /// ensemble has given its lock away.
    Lost,
}

/// Why a holder lost what it held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LossReason {
    /// The connection was suspended (only under [`LossPolicy::Suspended`]).
    Suspended,
    /// The session expired.
    SessionExpired,
    /// The client was closed or authentication failed.
    SessionClosed,
    /// The client now runs a different session (it re-created one after an expiry).
    SessionChanged,
    /// The holder's node was deleted (by an administrator, or another client).
    NodeDeleted,
    /// The holder released it.
    Released,
}

impl LossReason {
    /// Whether the session is gone (as opposed to suspended or a node deleted).
    pub fn is_session_gone(self) -> bool {
        matches!(
            self,
            LossReason::SessionExpired | LossReason::SessionClosed | LossReason::SessionChanged
        )
    }

    fn of_state(s: SessionState) -> Option<LossReason> {
        match s {
            SessionState::Expired => Some(LossReason::SessionExpired),
            SessionState::Closed | SessionState::AuthFailed => Some(LossReason::SessionClosed),
            _ => None,
        }
    }
}

/// Tells a holder that what it holds is (or may be) gone. Cheap to clone; every clone sees the
/// same loss.
///
/// ```no_run
/// # async fn f(signal: zkit_recipes::state::LossSignal) {
/// tokio::select! {
///     reason = signal.lost() => eprintln!("stop: {reason:?}"),
///     _ = do_work() => {}
/// }
/// # }
/// # async fn do_work() {}
/// ```
#[derive(Debug, Clone)]
pub struct LossSignal {
    rx: watch::Receiver<Option<LossReason>>,
}

impl LossSignal {
    /// The loss, if it happened.
    pub fn reason(&self) -> Option<LossReason> {
        match *self.rx.borrow() {
            Some(r) => Some(r),
            // The monitor is gone without a reason only when its owner released or was dropped.
            None if self.rx.has_changed().is_err() => Some(LossReason::Released),
            None => None,
        }
    }

    /// Whether it is lost.
    pub fn is_lost(&self) -> bool {
        self.reason().is_some()
    }

    /// Resolves when it is lost (at once if it already is).
    pub async fn lost(&self) -> LossReason {
        let mut rx = self.rx.clone();
        let r = rx.wait_for(|r| r.is_some()).await;
        match r {
            Ok(r) => r.expect("waited for Some"),
            // The monitor is gone only when its owner released or was dropped.
            Err(_) => self.reason().unwrap_or(LossReason::Released),
        }
    }

    /// The loss as a watched value (`None` while held): `changed().await` loops, or
    /// `changes()` as a `Stream`.
    pub fn watched(&self) -> zkit::Watched<Option<LossReason>> {
        zkit::Watched::new(self.rx.clone())
    }
}

/// Aborts its task when dropped: every background task of a recipe has an owner.
#[derive(Debug)]
pub(crate) struct TaskGuard(pub(crate) JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The sending side of a [`LossSignal`] plus the task that drives it.
#[derive(Debug)]
pub(crate) struct LossMonitor {
    tx: watch::Sender<Option<LossReason>>,
    _task: TaskGuard,
}

impl LossMonitor {
    /// Starts watching `client`'s session `session_id` (and `node`, when given) under `policy`.
    pub(crate) fn start(
        client: &Client,
        session_id: i64,
        node: Option<String>,
        policy: LossPolicy,
    ) -> (LossMonitor, LossSignal) {
        let (tx, rx) = watch::channel(None);
        // Subscribe now, not in the task: a transition right after acquisition must not be missed.
        let changes = client.state_changes();
        let task = tokio::spawn(monitor(
            client.clone(),
            changes,
            session_id,
            node,
            policy,
            tx.clone(),
        ));
        (
            LossMonitor {
                tx,
                _task: TaskGuard(task),
            },
            LossSignal { rx },
        )
    }

    /// Marks it lost for `reason` (if not already) and stops the monitor.
    pub(crate) fn finish(&self, reason: LossReason) {
        self.tx.send_if_modified(|r| {
            if r.is_none() {
                *r = Some(reason);
                true
            } else {
                false
            }
        });
    }
}

fn check_now(client: &Client, session_id: i64, policy: LossPolicy) -> Option<LossReason> {
    let s = client.state();
    if let Some(r) = LossReason::of_state(s) {
        return Some(r);
    }
    let id = client.session_id();
    if id != 0 && id != session_id {
        return Some(LossReason::SessionChanged);
    }
    if policy == LossPolicy::Suspended && !s.is_connected() {
        return Some(LossReason::Suspended);
    }
    None
}

async fn monitor(
    client: Client,
    mut changes: zkit::StateStream,
    session_id: i64,
    node: Option<String>,
    policy: LossPolicy,
    tx: watch::Sender<Option<LossReason>>,
) {
    let reason = 'outer: loop {
        if let Some(r) = check_now(&client, session_id, policy) {
            break r;
        }
        // Arm a watch on the node (re-armed after data changes and failed attempts).
        let watcher = match &node {
            Some(path) if client.state().is_connected() => {
                match client.exists_and_watch(path).await {
                    Ok((None, _)) => break LossReason::NodeDeleted,
                    Ok((Some(_), w)) => Some(w),
                    Err(e) if e.is_session_gone() => {
                        break check_now(&client, session_id, LossPolicy::Lost)
                            .unwrap_or(LossReason::SessionClosed)
                    }
                    Err(_) => None,
                }
            }
            _ => None,
        };
        if let Some(r) = check_now(&client, session_id, policy) {
            break r;
        }
        let node_event = async {
            match watcher {
                Some(w) => Some(w.await),
                None => futures::future::pending().await,
            }
        };
        tokio::select! {
            ev = node_event => match ev {
                Some(Ok(ev)) if ev.event_type == EventType::NodeDeleted => break 'outer LossReason::NodeDeleted,
                Some(Ok(_)) => continue,
                Some(Err(e)) if e.is_session_gone() => {
                    break 'outer check_now(&client, session_id, LossPolicy::Lost).unwrap_or(LossReason::SessionClosed)
                }
                // The watch failed for another reason: look again after a short pause.
                Some(Err(_)) | None => tokio::time::sleep(Duration::from_millis(50)).await,
            },
            s = changes.next() => match s {
                None => break LossReason::SessionClosed,
                Some(s) => {
                    if let Some(r) = LossReason::of_state(s) {
                        break r;
                    }
                    if policy == LossPolicy::Suspended && !s.is_connected() {
                        break LossReason::Suspended;
                    }
                }
            },
        }
    };
    tx.send_if_modified(|r| {
        if r.is_none() {
            *r = Some(reason);
            true
        } else {
            false
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Liveness: the one place that answers "is the session still usable". Every recipe asks here
// instead of matching on `SessionState` itself.
// ---------------------------------------------------------------------------------------------

/// Whether state `s` means the client will never serve requests again: closed, authentication
/// failed, or expired on a client that does not re-create sessions.
pub(crate) fn ended_for_good(client: &Client, s: SessionState) -> bool {
    s.is_terminal() && !(s == SessionState::Expired && client.recreates_on_expiry())
}

/// Waits until the client is connected, or until `give_up` accepts a state seen first (returned
/// as `Err`; `None` once the client is gone).
async fn wait_for_connection(
    client: &Client,
    give_up: impl Fn(SessionState) -> bool,
) -> std::result::Result<(), Option<SessionState>> {
    let mut rx = client.state_watch();
    let seen = rx
        .wait_for(|s| s.is_connected() || give_up(*s))
        .await
        .map(|s| *s);
    match seen {
        Ok(s) if s.is_connected() => Ok(()),
        Ok(s) => Err(Some(s)),
        Err(_) => Err(None),
    }
}

/// Waits until the client is connected; fails if the session ends first (an expiry counts, even
/// on a client that re-creates sessions: what was built on the old session is gone).
pub(crate) async fn wait_connected(client: &Client) -> zkit::Result<()> {
    match wait_for_connection(client, SessionState::is_terminal).await {
        Ok(()) => Ok(()),
        Err(Some(s)) => Err(s.terminal_error().unwrap_or(zkit::Error::Closed)),
        Err(None) => Err(zkit::Error::Closed),
    }
}

/// Waits until the client can serve requests again. After an expiry this waits for the
/// re-created session; returns false when the client is closed, or expired and does not
/// re-create sessions (it will never connect again).
pub(crate) async fn usable(client: &Client) -> bool {
    wait_for_connection(client, |s| ended_for_good(client, s))
        .await
        .is_ok()
}

/// Whether `client` still runs session `session_id` (connected or suspended). After an expiry
/// the client shows `Connecting` until its new session is up, and may report the old id until
/// then.
pub(crate) fn in_session(client: &Client, session_id: i64) -> bool {
    client.session_id() == session_id
        && !matches!(client.state(), SessionState::Connecting)
        && !client.state().is_terminal()
}

/// Why a node that session `session_id` made is missing: the client runs another session by
/// now, or someone deleted the node.
pub(crate) fn why_node_gone(client: &Client, session_id: i64) -> LossReason {
    if client.session_id() != session_id {
        LossReason::SessionChanged
    } else {
        LossReason::NodeDeleted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConnectionState as C;
    use SessionState as S;

    fn run(states: &[SessionState]) -> Vec<ConnectionState> {
        let mut t = StateTracker::new();
        states.iter().filter_map(|s| t.on(*s)).collect()
    }

    #[test]
    fn disconnect_then_reconnect_is_suspended_then_reconnected() {
        assert_eq!(
            run(&[S::Connected, S::Disconnected, S::Connected]),
            vec![C::Connected, C::Suspended, C::Reconnected]
        );
    }

    #[test]
    fn expiry_is_lost_and_a_new_session_is_reconnected() {
        assert_eq!(
            run(&[
                S::Connected,
                S::Disconnected,
                S::Expired,
                S::Connecting,
                S::Connected
            ]),
            vec![C::Connected, C::Suspended, C::Lost, C::Reconnected]
        );
    }

    #[test]
    fn repeated_states_are_reported_once() {
        assert_eq!(
            run(&[
                S::Connecting,
                S::Connected,
                S::Connected,
                S::Disconnected,
                S::Connecting
            ]),
            vec![C::Connected, C::Suspended]
        );
    }

    #[test]
    fn close_is_lost() {
        assert_eq!(run(&[S::Connected, S::Closed]), vec![C::Connected, C::Lost]);
    }
}
