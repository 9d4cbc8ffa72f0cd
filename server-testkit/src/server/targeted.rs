//! Targeted faults on a [`Server`] (and, through the same helpers, on every member of an
//! [`Ensemble`](crate::Ensemble)): request rules and per-session network faults.

use std::sync::Arc;

use super::Server;
use crate::core::{FaultRule, RuleId, SessionFaults};
use crate::net::{now_ms, Ctx};

/// Installs `rule` on every core of `ctxs` under one fresh id.
pub(crate) fn add<'a>(ctxs: impl Iterator<Item = &'a Arc<Ctx>>, rule: FaultRule) -> RuleId {
    let id = RuleId::next();
    for c in ctxs {
        c.with_core(|core| core.add_fault(id, rule.clone()));
    }
    id
}

/// How often the rule fired, summed over the cores.
pub(crate) fn fired<'a>(ctxs: impl Iterator<Item = &'a Arc<Ctx>>, id: RuleId) -> u64 {
    ctxs.map(|c| c.lock().core.fault_fired(id).unwrap_or(0))
        .sum()
}

/// Removes the rule everywhere; whether any core had it.
pub(crate) fn remove<'a>(ctxs: impl Iterator<Item = &'a Arc<Ctx>>, id: RuleId) -> bool {
    // Every core is asked (no short cut): count those that had it.
    ctxs.filter(|c| c.with_core(|core| core.remove_fault(id)))
        .count()
        > 0
}

/// Removes every rule everywhere.
pub(crate) fn clear<'a>(ctxs: impl Iterator<Item = &'a Arc<Ctx>>) {
    for c in ctxs {
        c.with_core(|core| core.clear_faults());
    }
}

/// Sets a session's network faults everywhere.
pub(crate) fn session<'a>(ctxs: impl Iterator<Item = &'a Arc<Ctx>>, id: i64, f: SessionFaults) {
    for c in ctxs {
        c.with_core(|core| core.set_session_faults(id, f, now_ms()));
    }
}

impl Server {
    /// Installs a fault rule: the requests it picks are failed, dropped, or applied with
    /// their reply delayed or replaced by a disconnect ([`crate::FaultAction`]). Rules last
    /// until removed or the server restarts.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), zkit_testkit::Error> {
    /// use zkit_testkit::{FaultAction, FaultRule, OpCode, Server};
    /// let server = Server::start().await?;
    /// // The next create under /locks is applied, but its client never hears of it.
    /// let rule = server.add_fault(
    ///     FaultRule::new(FaultAction::ApplyThenDisconnect)
    ///         .op(OpCode::Create)
    ///         .path_prefix("/locks")
    ///         .times(1),
    /// );
    /// // ... run the client ...
    /// assert_eq!(server.fault_fired(rule), 1);
    /// # Ok(()) }
    /// ```
    pub fn add_fault(&self, rule: FaultRule) -> RuleId {
        add(self.ctx().into_iter(), rule)
    }

    /// How often a rule fired (0 for an unknown rule).
    pub fn fault_fired(&self, id: RuleId) -> u64 {
        fired(self.ctx().into_iter(), id)
    }

    /// Removes a rule; false if there is none with this id.
    pub fn remove_fault(&self, id: RuleId) -> bool {
        remove(self.ctx().into_iter(), id)
    }

    /// Removes every rule.
    pub fn clear_faults(&self) {
        clear(self.ctx().into_iter())
    }

    /// Puts one session under network faults (delayed frames, held events, dropped pings,
    /// its connection cut every N ms) while every other session carries on;
    /// `SessionFaults::new()` lifts them (held events are sent then). To cut its connection
    /// once, see [`Server::close_session_connection`].
    pub fn set_session_faults(&self, session_id: i64, faults: SessionFaults) {
        session(self.ctx().into_iter(), session_id, faults)
    }
}
