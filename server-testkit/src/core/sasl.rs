//! SASL on the server side, like ZooKeeper's `processSasl` with a JAAS `Server` section of
//! DIGEST-MD5 users: the exchange runs per connection (opcode 102 packets), success adds the
//! connection's `sasl:<user>` id (and `super` for the configured SASL super user), a failure is
//! answered `AuthFailed` and the connection is closed. With `require_sasl`
//! (`zookeeper.sessionRequireClientSASLAuth`, or `enforce.auth.enabled` with scheme `sasl`) any
//! other request from a connection without a `sasl` id is answered
//! `SessionClosedRequireSaslAuth` and the connection closed.

use bytes::{BufMut, Bytes, BytesMut};
use sha1::{Digest, Sha1};
use zkit_proto::sasl::{DigestMd5Server, MAX_TOKEN};
use zkit_proto::{ErrorCode, OpCode, Reader};

use super::ops::push_id;
use super::{ConnId, Core};

impl Core {
    /// A sasl packet on `conn`.
    pub(super) fn sasl(&mut self, conn: ConnId, xid: i32, r: &mut Reader) {
        if self.cfg.sasl_users.is_empty() {
            // No SASL configured: a real server drops the connection.
            tracing::warn!(conn, "SASL requested but not configured, closing");
            self.close(conn, "SASL not configured");
            return;
        }
        let token = match r.read_opt_buffer() {
            Ok(t) => t.unwrap_or_default(),
            Err(_) => {
                self.close(conn, "malformed sasl packet");
                return;
            }
        };
        let nonce = self.sasl_nonce(conn);
        let users = &self.cfg.sasl_users;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let server = c
            .sasl
            .get_or_insert_with(|| Box::new(DigestMd5Server::new(&nonce)));
        let result = if token.len() > MAX_TOKEN {
            Err(format!("token of {} bytes", token.len()))
        } else {
            server
                .step(&token, |u| users.get(u).cloned())
                .map_err(|e| e.to_string())
        };
        match result {
            Ok(answer) => {
                if let Some(user) = server.authorization_id().map(str::to_owned) {
                    tracing::info!(conn, %user, "SASL authenticated");
                    push_id(&mut c.auth, "sasl", &user);
                    if self.cfg.sasl_super_user.as_deref() == Some(user.as_str()) {
                        push_id(&mut c.auth, "super", "");
                    }
                }
                self.sasl_reply(conn, xid, ErrorCode::Ok, Some(Bytes::from(answer)));
            }
            Err(why) => {
                tracing::warn!(conn, reason = %why, "SASL authentication failed, closing");
                let err = if self.cfg.require_sasl {
                    ErrorCode::SessionClosedRequireSaslAuth
                } else {
                    ErrorCode::AuthFailed
                };
                self.sasl_reply(conn, xid, err, None);
                self.close(conn, "SASL authentication failed");
            }
        }
    }

    /// With `require_sasl`: whether `op` may run on `conn`; if not, it was answered
    /// `SessionClosedRequireSaslAuth` and the connection is closing.
    pub(super) fn sasl_enforced(&mut self, conn: ConnId, xid: i32, op: OpCode) -> bool {
        if !self.cfg.require_sasl || matches!(op, OpCode::Auth | OpCode::Sasl) {
            return true;
        }
        let authed = self
            .conns
            .get(&conn)
            .is_some_and(|c| c.auth.iter().any(|i| i.scheme == "sasl"));
        if !authed {
            tracing::warn!(conn, ?op, "request before SASL authentication, closing");
            self.reply(conn, xid, ErrorCode::SessionClosedRequireSaslAuth, None);
            self.close(conn, "SASL authentication required");
        }
        authed
    }

    /// A sasl reply: the token as a jute buffer (null when there is none).
    fn sasl_reply(&mut self, conn: ConnId, xid: i32, err: ErrorCode, token: Option<Bytes>) {
        let body = move |b: &mut BytesMut| match &token {
            Some(t) => {
                b.put_i32(t.len() as i32);
                b.put_slice(t);
            }
            None => b.put_i32(-1),
        };
        // The body goes out whatever the code, like ZooKeeper's.
        let header = zkit_proto::ReplyHeader {
            xid,
            zxid: 0,
            err: err.code(),
        };
        let mut fb = super::FrameBuf::new();
        body(fb.buf());
        self.send(conn, fb.finish(header));
    }

    /// A nonce for `conn`'s exchange: derived from the server secret, the connection and a
    /// counter (the core draws no randomness of its own; the secret is random).
    fn sasl_nonce(&mut self, conn: ConnId) -> String {
        self.sasl_nonces += 1;
        let mut h = Sha1::new();
        h.update(b"sasl-nonce");
        h.update(self.cfg.secret.as_bytes());
        h.update(conn.to_be_bytes());
        h.update(self.sasl_nonces.to_be_bytes());
        h.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}
