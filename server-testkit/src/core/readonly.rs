//! Read-only mode (ZooKeeper's `readonlymode.enabled`, `ReadOnlyZooKeeperServer`): a member
//! of an ensemble that is not serving (cut off from the quorum, electing) still accepts the
//! clients that asked for a read-only connection. It answers reads from the tree it has,
//! refuses writes (and `sync`) with `NotReadOnly`, and refuses clients that did not ask for
//! read-only. Its sessions are local: a new one is known to this server alone and never
//! reaches the quorum (a client that only ever saw read-only servers asks for a new session
//! once it finds a read-write one). A session of the quorum cannot re-attach here: its
//! client keeps looking for a read-write server, as with ZooKeeper.
//! Joining the quorum again closes every connection (like any change of role), and the
//! clients reconnect read-write.

use zkit_proto::{ConnectRequest, ErrorCode, OpCode, Reader, RequestHeader};

use super::replica::Mode;
use super::{ConnId, Core};

impl Core {
    /// Whether clients are served read-only now.
    pub fn read_only_now(&self) -> bool {
        self.cfg.read_only && self.replica.mode == Mode::NotServing
    }

    /// A handshake on a read-only server.
    pub(super) fn ro_handshake(
        &mut self,
        conn: ConnId,
        req: &ConnectRequest,
        timeout: i32,
        now: i64,
    ) {
        if req.read_only != Some(true) {
            tracing::info!(
                conn,
                "refusing a client that did not ask for read-only: not serving"
            );
            self.close(conn, "not serving (read-only mode, client not read-only)");
            return;
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.read_only = true;
        }
        let (id, valid) = if req.session_id == 0 {
            let id = self.next_session;
            self.next_session += 1;
            self.replica.ro_sessions.insert(id);
            tracing::info!(
                session_id = format_args!("0x{id:x}"),
                "read-only session created"
            );
            (id, true)
        } else {
            let id = req.session_id;
            if self.db.sessions.contains_key(&id) {
                // Like ZooKeeper's read-only server: a session of the quorum does not
                // re-attach here (its client waits for a read-write server).
                tracing::info!(
                    session_id = format_args!("0x{id:x}"),
                    "refusing a global session's reconnection in read-only mode"
                );
                self.close(conn, "global session in read-only mode");
                return;
            }
            let known = self.replica.ro_sessions.contains(&id);
            let ok = known && req.passwd == self.password(id);
            if ok {
                self.detach_previous(id, conn);
            }
            (id, ok)
        };
        self.finish_connect(conn, id, timeout, valid, now);
    }

    /// A request on a read-only server: writes and syncs fail with `NotReadOnly`, everything
    /// else is served from this server's tree.
    pub(super) fn ro_request(
        &mut self,
        conn: ConnId,
        session: i64,
        h: RequestHeader,
        op: OpCode,
        r: &mut Reader,
        now: i64,
    ) {
        match op {
            OpCode::Create
            | OpCode::Create2
            | OpCode::CreateContainer
            | OpCode::CreateTtl
            | OpCode::Delete
            | OpCode::DeleteContainer
            | OpCode::SetData
            | OpCode::SetAcl
            | OpCode::Check
            | OpCode::Multi
            | OpCode::Reconfig
            | OpCode::Sync => self.reply(conn, h.xid, ErrorCode::NotReadOnly, None),
            OpCode::CloseSession => {
                self.replica.ro_sessions.remove(&session);
                self.session_conn.remove(&session);
                self.reply(conn, h.xid, ErrorCode::Ok, None);
                self.close(conn, "session closed by client");
            }
            _ => self.serve(conn, session, h, op, r, now),
        }
    }
}
