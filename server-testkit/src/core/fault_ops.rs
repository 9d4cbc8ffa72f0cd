//! The core's side of the targeted faults ([`super::faults`]): rules consulted on each
//! request, frames routed through the session faults, delayed frames released on `tick`.

use bytes::Bytes;
use zkit_proto::{OpCode, RequestHeader};

use super::faults::{request_path, FaultAction, FaultRule, ReplyFault, Route, RuleId};
use super::{ConnId, Core, Frame, Output, SessionFaults};

impl Core {
    /// Installs a fault rule under `id`.
    pub fn add_fault(&mut self, id: RuleId, rule: FaultRule) {
        tracing::info!(rule = %id, ?rule, "fault rule installed");
        self.faults.add(id, rule);
    }

    /// Removes a fault rule; false if there is none with this id.
    pub fn remove_fault(&mut self, id: RuleId) -> bool {
        self.faults.remove(id)
    }

    /// Removes every fault rule (session faults stay).
    pub fn clear_faults(&mut self) {
        self.faults.clear_rules();
    }

    /// How often a rule fired (None: no such rule).
    pub fn fault_fired(&self, id: RuleId) -> Option<u64> {
        self.faults.fired(id)
    }

    /// Sets a session's network faults (the default lifts them; held events are sent then).
    pub fn set_session_faults(&mut self, session: i64, f: SessionFaults, now: i64) {
        self.clock = now;
        let conn = self.session_conn.get(&session).copied();
        tracing::info!(
            session_id = format_args!("0x{session:x}"),
            faults = ?f,
            "session faults"
        );
        for frame in self.faults.set_session(session, f, conn, now) {
            if let Some(c) = conn {
                self.out.push(Output::Send(c, frame));
            }
        }
    }

    /// Whether activity keeps the session alive (not while its pings are dropped).
    pub(super) fn keeps_alive(&self, session: i64) -> bool {
        !self.faults.session(session).drops_pings()
    }

    /// Consults the rules on a request; true when the request is consumed here (failed or
    /// dropped), false when it goes on (possibly with its reply marked).
    pub(super) fn fault_request(
        &mut self,
        conn: ConnId,
        session: i64,
        h: &RequestHeader,
        op: OpCode,
        frame: &Bytes,
    ) -> bool {
        if op == OpCode::Ping && !self.keeps_alive(session) {
            tracing::debug!(
                session_id = format_args!("0x{session:x}"),
                "fault: ping dropped"
            );
            return true;
        }
        let path = request_path(op, frame.get(8..).unwrap_or_default());
        let Some(action) = self.faults.pick(session, op, path.as_deref()) else {
            return false;
        };
        tracing::info!(
            session_id = format_args!("0x{session:x}"),
            xid = h.xid,
            ?op,
            ?action,
            "fault rule fired"
        );
        match action {
            FaultAction::Fail(err) => {
                self.reply(conn, h.xid, err, None);
                true
            }
            FaultAction::Drop => true,
            FaultAction::ApplyThenDisconnect => {
                self.faults.mark_reply(conn, h.xid, ReplyFault::Disconnect);
                false
            }
            FaultAction::ApplyThenDelay(d) => {
                let ms = d.as_millis().min(i64::MAX as u128 / 2) as i64;
                self.faults.mark_reply(conn, h.xid, ReplyFault::Delay(ms));
                false
            }
        }
    }

    /// Sends, keeps or replaces by a close a frame, as the faults say.
    pub(super) fn route_faulted(
        &mut self,
        conn: ConnId,
        xid: Option<i32>,
        event: bool,
        frame: Frame,
    ) {
        let session = self.conns.get(&conn).and_then(|c| c.session);
        match self
            .faults
            .route(conn, session, xid, event, frame, self.clock)
        {
            Route::Now(f) => self.out.push(Output::Send(conn, f)),
            Route::Close => self.close(conn, "fault: connection dropped before the reply"),
            Route::Kept => {}
        }
    }

    /// Releases the delayed frames that are due and cuts the connections due to be cut.
    pub(super) fn fault_tick(&mut self, now: i64) {
        if self.faults.is_idle() {
            return;
        }
        for (conn, f) in self.faults.release(now) {
            if self.conns.get(&conn).is_some_and(|c| !c.closing) {
                self.out.push(Output::Send(conn, f));
            }
        }
        for session in self.faults.due_cuts(now) {
            if let Some(conn) = self.session_conn.get(&session).copied() {
                tracing::info!(
                    session_id = format_args!("0x{session:x}"),
                    "fault: connection cut"
                );
                self.close(conn, "fault: connection cut");
            }
        }
    }
}
