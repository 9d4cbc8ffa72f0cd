//! Targeted faults on an [`Ensemble`]: each rule and session fault is installed on every
//! running member (a request meets it on the member its client is connected to).

use super::Ensemble;
use crate::core::{FaultRule, RuleId, SessionFaults};
use crate::server::targeted;

impl Ensemble {
    /// Installs a fault rule on every running member (see [`crate::Server::add_fault`]); a
    /// member restarted later does not have it. A rule limited to `n` fires may fire `n`
    /// times on each member.
    pub fn add_fault(&self, rule: FaultRule) -> RuleId {
        targeted::add(self.running().filter_map(|n| n.ctx()), rule)
    }

    /// How often a rule fired, over every running member.
    pub fn fault_fired(&self, id: RuleId) -> u64 {
        targeted::fired(self.running().filter_map(|n| n.ctx()), id)
    }

    /// Removes a rule everywhere; false if no member had it.
    pub fn remove_fault(&self, id: RuleId) -> bool {
        targeted::remove(self.running().filter_map(|n| n.ctx()), id)
    }

    /// Removes every rule.
    pub fn clear_faults(&self) {
        targeted::clear(self.running().filter_map(|n| n.ctx()))
    }

    /// Puts one session under network faults on every running member (see
    /// [`crate::Server::set_session_faults`]); with dropped pings neither its server nor the
    /// leader count its activity, so it alone expires.
    pub fn set_session_faults(&self, session_id: i64, faults: SessionFaults) {
        targeted::session(self.running().filter_map(|n| n.ctx()), session_id, faults)
    }

    /// Closes the connection a session has to its member (the session survives).
    pub fn close_session_connection(&self, session_id: i64) -> bool {
        self.running()
            .filter_map(|n| n.ctx())
            // Every member is asked (no short cut): count those that had it.
            .filter(|c| c.with_core(|core| core.close_session_connection(session_id)))
            .count()
            > 0
    }
}
