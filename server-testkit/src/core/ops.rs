//! Request handling: the handshake, then one arm per opcode (`FinalRequestProcessor.java`).

use bytes::{Bytes, BytesMut};
use zkit_proto::frame::write_record;
use zkit_proto::txn::{CreateSessionTxn, ErrorTxn};
use zkit_proto::*;

use super::acl::{auth_order, check_acl, digest, mask_digests, user_name};
use std::collections::HashMap;

use super::db::ApplyResult;
use super::prep::{CreateArgs, Pending, Prep, Rec};
use super::replica::Mode;
use super::tree::DataTree;
use super::txn::{Txn, TxnBody};
use super::watch::{Fired, WatchKind};
use super::{reply_frame, ConnId, Core, FrameBuf};

fn decode<R: Record>(r: &mut Reader) -> Result<R, ErrorCode> {
    R::decode(r).map_err(|_| ErrorCode::MarshallingError)
}

impl Core {
    pub(super) fn handshake(&mut self, conn: ConnId, frame: Bytes, now: i64) {
        let req = match ConnectRequest::from_bytes(frame) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(conn, error = %e, "malformed ConnectRequest, closing");
                self.close(conn, "malformed ConnectRequest");
                return;
            }
        };
        if req.last_zxid_seen > self.db.last_zxid {
            tracing::info!(
                conn,
                client_zxid = req.last_zxid_seen,
                server_zxid = self.db.last_zxid,
                "client has seen a newer zxid than this server, closing"
            );
            self.close(conn, "client zxid ahead of server");
            return;
        }
        let timeout = req
            .timeout
            .clamp(self.cfg.min_session_timeout, self.cfg.max_session_timeout);
        let old_client = req.read_only.is_none();
        if let Some(c) = self.conns.get_mut(&conn) {
            c.old_client = old_client;
        }
        if self.replica.mode != Mode::Standalone {
            self.replica_handshake(conn, &req, timeout, now);
            return;
        }
        let renew = req.session_id != 0
            && self.cfg.renew_unknown_sessions
            && !self.db.sessions.contains_key(&req.session_id);
        let (session, valid) = if req.session_id == 0 || renew {
            let id = self.next_session;
            self.next_session += 1;
            let txn = Txn::new(
                id,
                0,
                self.next_zxid(),
                now,
                TxnBody::CreateSession(CreateSessionTxn { time_out: timeout }),
            );
            self.commit(&txn);
            tracing::info!(
                session_id = format_args!("0x{id:x}"),
                timeout,
                "session created"
            );
            (id, true)
        } else {
            let id = req.session_id;
            self.detach_previous(id, conn);
            let ok = self.db.sessions.contains_key(&id) && req.passwd == self.password(id);
            if ok {
                // Like ZooKeeper, the session is touched with the newly negotiated timeout from
                // now on; the replicated session table keeps the original one.
                self.timeouts.insert(id, timeout);
                tracing::info!(session_id = format_args!("0x{id:x}"), "session re-attached");
            } else {
                tracing::info!(
                    session_id = format_args!("0x{id:x}"),
                    "invalid session or password, answering expired"
                );
            }
            (id, ok)
        };
        self.finish_connect(conn, session, timeout, valid, now);
    }

    /// Like ZooKeeper, a session's previous connection is closed when it re-attaches.
    pub(super) fn detach_previous(&mut self, session: i64, conn: ConnId) {
        if let Some(old) = self.session_conn.get(&session).copied() {
            if old != conn {
                self.close(old, "client reconnect");
                self.session_conn.remove(&session);
            }
        }
    }

    /// Answers a handshake: the session (when `valid`) or "expired", which closes the
    /// connection.
    pub(super) fn finish_connect(
        &mut self,
        conn: ConnId,
        session: i64,
        timeout: i32,
        valid: bool,
        now: i64,
    ) {
        let Some((old_client, ro)) = self.conns.get(&conn).map(|c| (c.old_client, c.read_only))
        else {
            return;
        };
        let resp = ConnectResponse {
            protocol_version: 0,
            timeout: if valid { timeout } else { 0 },
            session_id: if valid { session } else { 0 },
            passwd: if valid {
                self.password(session)
            } else {
                Bytes::from_static(&[0; 16])
            },
            read_only: if old_client { None } else { Some(ro) },
        };
        let mut b = BytesMut::new();
        write_record(&mut b, &resp);
        self.send(conn, b.freeze().into());
        if valid {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.session = Some(session);
            }
            self.session_conn.insert(session, conn);
            self.touch(session, now);
        } else {
            self.close(conn, "session expired or bad password");
        }
    }

    pub(super) fn request(&mut self, conn: ConnId, frame: Bytes, now: i64) {
        // Strings decode like ZooKeeper's: invalid UTF-8 becomes U+FFFD, which path and ACL
        // validation then refuse with ZooKeeper's own codes.
        let mut r = Reader::new(frame.clone()).java_strings();
        let h = match RequestHeader::decode(&mut r) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(conn, error = %e, "malformed request header, closing");
                self.close(conn, "malformed request header");
                return;
            }
        };
        let Some(session) = self.conns.get(&conn).and_then(|c| c.session) else {
            return;
        };
        self.touch(session, now);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.last_cxid = h.xid;
            c.last_op = OpCode::from_code(h.op).map_or("NA", op_name);
        }
        tracing::debug!(conn, xid = h.xid, op = h.op, "request");
        let Ok(op) = OpCode::from_code(h.op) else {
            // Like ZooKeeper: Unimplemented, then the connection is closed.
            tracing::warn!(conn, op = h.op, "unknown opcode, closing");
            self.reply(conn, h.xid, ErrorCode::Unimplemented, None);
            self.close(conn, "unknown opcode");
            return;
        };
        if !self.faults.is_idle() && self.fault_request(conn, session, &h, op, &frame) {
            return;
        }
        if !self.sasl_enforced(conn, h.xid, op) {
            return;
        }
        if self.read_only_now() {
            self.ro_request(conn, session, h, op, &mut r, now);
            return;
        }
        if self.replica.mode != Mode::Standalone
            && self.replica_request(conn, session, &h, op, frame, now)
        {
            return;
        }
        self.serve(conn, session, h, op, &mut r, now);
    }

    /// Answers one request (after the replicated ordering let it through).
    pub(super) fn serve(
        &mut self,
        conn: ConnId,
        session: i64,
        h: RequestHeader,
        op: OpCode,
        r: &mut Reader,
        now: i64,
    ) {
        match op {
            OpCode::Ping => self.reply(conn, h.xid, ErrorCode::Ok, None),
            OpCode::Auth => self.auth(conn, h.xid, r),
            OpCode::Sasl => self.sasl(conn, h.xid, r),
            OpCode::SetWatches | OpCode::SetWatches2 => self.set_watches(conn, h, r),
            OpCode::CloseSession => {
                self.close_session(session, h.xid, now);
                self.session_conn.remove(&session);
                self.reply(conn, h.xid, ErrorCode::Ok, None);
                self.close(conn, "session closed by client");
            }
            OpCode::Create
            | OpCode::Create2
            | OpCode::CreateContainer
            | OpCode::CreateTtl
            | OpCode::Delete
            | OpCode::SetData
            | OpCode::SetAcl
            | OpCode::Check
            | OpCode::Multi
            | OpCode::Reconfig => self.write(conn, session, h, op, r, now),
            _ => {
                // The reply is built in place; getData's data is referenced, not copied.
                let mut body = FrameBuf::new();
                let err = match self.read(conn, session, op, r, &mut body) {
                    Ok(()) => ErrorCode::Ok,
                    Err(e) => e,
                };
                self.reply_with(conn, h.xid, err, body);
            }
        }
    }

    fn auth(&mut self, conn: ConnId, xid: i32, r: &mut Reader) {
        // Decoded by hand: a null scheme or credential is answered AuthFailed like on
        // ZooKeeper, where a typed AuthPacket would not even decode.
        let (Ok(_), Ok(scheme), Ok(cred)) =
            (r.read_i32(), r.read_opt_string(), r.read_opt_buffer())
        else {
            self.close(conn, "malformed auth packet");
            return;
        };
        let scheme = scheme.unwrap_or_default();
        let super_digest = self.cfg.super_digest.clone();
        let ok = match (scheme.as_str(), cred) {
            // A null credential fails in ZooKeeper's digest provider.
            ("digest", None) => false,
            ("digest", Some(cred)) => {
                let d = digest(&String::from_utf8_lossy(&cred));
                if let Some(c) = self.conns.get_mut(&conn) {
                    if super_digest.as_deref() == Some(d.as_str()) {
                        push_id(&mut c.auth, "super", "");
                    }
                    push_id(&mut c.auth, "digest", &d);
                }
                true
            }
            ("ip", _) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    let ip = c.remote.ip().to_string();
                    push_id(&mut c.auth, "ip", &ip);
                }
                true
            }
            _ => false,
        };
        // The auth reply carries zxid 0 on a real server.
        let err = if ok {
            ErrorCode::Ok
        } else {
            ErrorCode::AuthFailed
        };
        let header = ReplyHeader {
            xid,
            zxid: 0,
            err: err.code(),
        };
        self.send(conn, reply_frame(header, None));
        if !ok {
            tracing::warn!(conn, scheme = %scheme, "authentication failed");
            self.close(conn, "authentication failed");
        }
    }

    fn set_watches(&mut self, conn: ConnId, h: RequestHeader, r: &mut Reader) {
        let sw = if h.op == OpCode::SetWatches.code() {
            SetWatches::decode(r).map(|s| SetWatches2 {
                relative_zxid: s.relative_zxid,
                data_watches: s.data_watches,
                exist_watches: s.exist_watches,
                child_watches: s.child_watches,
                ..Default::default()
            })
        } else {
            SetWatches2::decode(r)
        };
        let Ok(sw) = sw else {
            self.reply(conn, h.xid, ErrorCode::MarshallingError, None);
            return;
        };
        let rel = sw.relative_zxid;
        let mut fired = Vec::new();
        let fire = |fired: &mut Vec<Fired>, event, path: &String| {
            fired.push(Fired {
                conn,
                event,
                path: path.clone(),
                acl: Vec::new(),
            })
        };
        for p in &sw.data_watches {
            match self.db.tree.get(p) {
                None => fire(&mut fired, EventType::NodeDeleted, p),
                Some(n) if n.stat.mzxid > rel => fire(&mut fired, EventType::NodeDataChanged, p),
                Some(_) => self.watches.add(conn, p, WatchKind::Data),
            }
        }
        for p in &sw.exist_watches {
            match self.db.tree.get(p) {
                Some(_) => fire(&mut fired, EventType::NodeCreated, p),
                None => self.watches.add(conn, p, WatchKind::Data),
            }
        }
        for p in &sw.child_watches {
            match self.db.tree.get(p) {
                None => fire(&mut fired, EventType::NodeDeleted, p),
                Some(n) if n.stat.pzxid > rel => {
                    fire(&mut fired, EventType::NodeChildrenChanged, p)
                }
                Some(_) => self.watches.add(conn, p, WatchKind::Child),
            }
        }
        for p in &sw.persistent_watches {
            self.watches.add(conn, p, WatchKind::Persistent);
        }
        for p in &sw.persistent_recursive_watches {
            self.watches.add(conn, p, WatchKind::PersistentRecursive);
        }
        self.notify(fired);
        self.reply(conn, h.xid, ErrorCode::Ok, None);
    }

    fn write(
        &mut self,
        conn: ConnId,
        session: i64,
        h: RequestHeader,
        op: OpCode,
        r: &mut Reader,
        now: i64,
    ) {
        let zxid = self.next_zxid();
        let ids = self
            .conns
            .get(&conn)
            .map(|c| c.auth.clone())
            .unwrap_or_default();
        let (body, _) = prepare(&self.db.tree, None, session, &ids, op, r, zxid, now);
        let txn = Txn::new(session, h.xid, zxid, now, body);
        let rc = self.commit(&txn);
        self.reply_write(conn, h.xid, op, rc);
    }

    /// The reply to a write, from the result of applying its txn.
    pub(super) fn reply_write(&mut self, conn: ConnId, xid: i32, op: OpCode, rc: ApplyResult) {
        if op == OpCode::Multi && rc.txn_type == OpCode::Multi {
            let results = rc
                .multi
                .iter()
                .map(|s| match s.txn_type {
                    // A 3.8 server answers create2 inside a multi with a plain create result.
                    OpCode::Create | OpCode::Create2 => MultiResult::Create(s.path.clone()),
                    OpCode::CreateContainer | OpCode::CreateTtl => {
                        MultiResult::Create2(Create2Response {
                            path: s.path.clone(),
                            stat: s.stat.clone().unwrap_or_default(),
                        })
                    }
                    OpCode::Delete | OpCode::DeleteContainer => MultiResult::Delete,
                    OpCode::SetData => MultiResult::SetData(s.stat.clone().unwrap_or_default()),
                    OpCode::Check => MultiResult::Check,
                    _ => MultiResult::Error(s.err.code()),
                })
                .collect();
            let resp = MultiResponse { results };
            // The header's err is 0 even when the multi aborted.
            self.reply(
                conn,
                xid,
                ErrorCode::Ok,
                Some(&|b: &mut BytesMut| resp.encode(b)),
            );
            return;
        }
        if !rc.err.is_ok() {
            self.reply(conn, xid, rc.err, None);
            return;
        }
        let stat = rc.stat.clone().unwrap_or_default();
        let mut body = BytesMut::new();
        match op {
            OpCode::Create => PathResponse { path: rc.path }.encode(&mut body),
            OpCode::Create2 | OpCode::CreateContainer | OpCode::CreateTtl => Create2Response {
                path: rc.path,
                stat,
            }
            .encode(&mut body),
            OpCode::SetData | OpCode::SetAcl | OpCode::Check => stat.encode(&mut body),
            _ => {}
        }
        self.reply(
            conn,
            xid,
            ErrorCode::Ok,
            Some(&|b: &mut BytesMut| b.extend_from_slice(&body)),
        );
    }

    /// Reads: answered from the tree; the response body goes to `out` (discarded on error).
    fn read(
        &mut self,
        conn: ConnId,
        session: i64,
        op: OpCode,
        r: &mut Reader,
        out: &mut FrameBuf,
    ) -> Result<(), ErrorCode> {
        let ids = self
            .conns
            .get(&conn)
            .map(|c| c.auth.clone())
            .unwrap_or_default();
        match op {
            OpCode::Exists => {
                let q: PathWatchRequest = decode(r)?;
                if q.path.contains('\0') {
                    return Err(ErrorCode::BadArguments);
                }
                // No ACL check: a 3.8 server answers exists for anyone.
                if q.watch {
                    self.watches.add(conn, &q.path, WatchKind::Data);
                }
                self.db
                    .tree
                    .stat(&q.path)
                    .ok_or(ErrorCode::NoNode)?
                    .encode(out.buf());
            }
            OpCode::GetData => {
                let q: PathWatchRequest = decode(r)?;
                let d = self.get_data(conn, &q, &ids)?;
                put_get_data(out, &d);
            }
            OpCode::GetChildren | OpCode::GetChildren2 => {
                let q: PathWatchRequest = decode(r)?;
                let (children, stat) = self.get_children(conn, &q, &ids)?;
                if op == OpCode::GetChildren {
                    GetChildrenResponse { children }.encode(out.buf());
                } else {
                    GetChildren2Response { children, stat }.encode(out.buf());
                }
            }
            OpCode::GetAcl => {
                let q: PathRequest = decode(r)?;
                let n = self.db.tree.get(&q.path).ok_or(ErrorCode::NoNode)?;
                check_acl(&n.acl, perms::READ | perms::ADMIN, &ids)?;
                let stat = n.client_stat(self.cfg.extended_types);
                let acl = if check_acl(&n.acl, perms::ADMIN, &ids).is_ok() {
                    n.acl.to_vec()
                } else {
                    mask_digests(&n.acl)
                };
                GetAclResponse { acl, stat }.encode(out.buf());
            }
            OpCode::Sync => {
                let q: PathRequest = decode(r)?;
                q.encode(out.buf());
            }
            OpCode::GetEphemerals => {
                let q: PathRequest = decode(r)?;
                let prefix = q.path.trim();
                let all = self.db.tree.ephemerals_of(session);
                let children = all
                    .into_iter()
                    .filter(|p| prefix.is_empty() || prefix == "/" || p.starts_with(&q.path))
                    .collect();
                GetChildrenResponse { children }.encode(out.buf());
            }
            OpCode::GetAllChildrenNumber => {
                let q: PathRequest = decode(r)?;
                let n = self.db.tree.get(&q.path).ok_or(ErrorCode::NoNode)?;
                check_acl(&n.acl, perms::READ, &ids)?;
                IntResponse {
                    value: self.db.tree.all_children_number(&q.path),
                }
                .encode(out.buf());
            }
            OpCode::MultiRead => {
                let m: MultiRequest = decode(r)?;
                // Encoded as `MultiResponse` encodes, result by result, so that each getData's
                // data is referenced rather than copied.
                for op in &m.ops {
                    match op {
                        MultiOp::GetData(q) => match self.get_data(conn, q, &ids) {
                            Ok(d) => {
                                multi_header(out.buf(), OpCode::GetData, 0);
                                put_get_data(out, &d);
                            }
                            Err(e) => multi_error(out.buf(), e),
                        },
                        MultiOp::GetChildren(q) => match self.get_children(conn, q, &ids) {
                            Ok((c, _)) => {
                                multi_header(out.buf(), OpCode::GetChildren, 0);
                                c.encode(out.buf());
                            }
                            Err(e) => multi_error(out.buf(), e),
                        },
                        _ => return Err(ErrorCode::MarshallingError),
                    }
                }
                MultiHeader {
                    op: -1,
                    done: true,
                    err: -1,
                }
                .encode(out.buf());
            }
            OpCode::WhoAmI => {
                let client_info = auth_order(&ids)
                    .into_iter()
                    .map(|i| ClientInfo {
                        auth_scheme: i.scheme.clone(),
                        user: user_name(i),
                    })
                    .collect();
                WhoAmIResponse { client_info }.encode(out.buf());
            }
            OpCode::CheckWatches | OpCode::RemoveWatches => {
                let q: WatchesRequest = decode(r)?;
                // 3.8 knows only Children, Data and Any here; others fail to decode.
                let watcher_type = match WatcherType::from_code(q.watcher_type) {
                    Ok(t @ (WatcherType::Children | WatcherType::Data | WatcherType::Any)) => t,
                    _ => return Err(ErrorCode::MarshallingError),
                };
                let found = if op == OpCode::CheckWatches {
                    self.watches.contains(conn, &q.path, watcher_type)
                } else {
                    self.watches.remove(conn, &q.path, watcher_type)
                };
                if !found {
                    return Err(ErrorCode::NoWatcher);
                }
            }
            OpCode::AddWatch => {
                let q: AddWatchRequest = decode(r)?;
                let kind = match AddWatchMode::from_code(q.mode) {
                    Ok(AddWatchMode::Persistent) => WatchKind::Persistent,
                    Ok(AddWatchMode::PersistentRecursive) => WatchKind::PersistentRecursive,
                    _ => return Err(ErrorCode::BadArguments),
                };
                self.watches.add(conn, &q.path, kind);
                IntResponse { value: 0 }.encode(out.buf());
            }
            _ => return Err(ErrorCode::Unimplemented),
        }
        Ok(())
    }

    fn get_data(
        &mut self,
        conn: ConnId,
        q: &PathWatchRequest,
        ids: &[Id],
    ) -> Result<GetDataResponse, ErrorCode> {
        let n = self.db.tree.get(&q.path).ok_or(ErrorCode::NoNode)?;
        check_acl(&n.acl, perms::READ, ids)?;
        let resp = GetDataResponse {
            data: n.data.clone(),
            stat: n.client_stat(self.cfg.extended_types),
        };
        if q.watch {
            self.watches.add(conn, &q.path, WatchKind::Data);
        }
        Ok(resp)
    }

    fn get_children(
        &mut self,
        conn: ConnId,
        q: &PathWatchRequest,
        ids: &[Id],
    ) -> Result<(Vec<String>, Stat), ErrorCode> {
        let n = self.db.tree.get(&q.path).ok_or(ErrorCode::NoNode)?;
        check_acl(&n.acl, perms::READ, ids)?;
        let children = n.children.iter_order();
        let stat = n.client_stat(self.cfg.extended_types);
        if q.watch {
            self.watches.add(conn, &q.path, WatchKind::Child);
        }
        Ok((children, stat))
    }
}

/// Appends a getData response (data, then Stat), referencing large data instead of copying it.
/// Validates a write request of `session` (auth `ids`) against `tree` (and the changes of
/// proposals not committed yet, on a leader) and turns it into a txn body, with the changes it
/// makes; a request that fails becomes an error txn.
#[allow(clippy::too_many_arguments)]
pub(super) fn prepare(
    tree: &DataTree,
    pending: Option<&Pending>,
    session: i64,
    ids: &[Id],
    op: OpCode,
    r: &mut Reader,
    zxid: i64,
    now: i64,
) -> (TxnBody, HashMap<String, Option<Rec>>) {
    let mut prep = Prep::new(tree, session, ids, zxid, now);
    if let Some(p) = pending {
        prep = prep.over(p);
    }
    let body = {
        let res: Result<TxnBody, ErrorCode> = (|| match op {
            OpCode::Create | OpCode::Create2 | OpCode::CreateContainer => {
                let c: CreateRequest = decode(r)?;
                prep.create(
                    op,
                    CreateArgs {
                        path: c.path,
                        data: c.data,
                        acl: c.acl,
                        flags: c.flags,
                        ttl: -1,
                    },
                )
            }
            OpCode::CreateTtl => {
                let c: CreateTtlRequest = decode(r)?;
                prep.create(
                    op,
                    CreateArgs {
                        path: c.path,
                        data: c.data,
                        acl: c.acl,
                        flags: c.flags,
                        ttl: c.ttl,
                    },
                )
            }
            OpCode::Delete => {
                let d: DeleteRequest = decode(r)?;
                prep.delete(&d.path, d.version)
            }
            OpCode::SetData => {
                let s: SetDataRequest = decode(r)?;
                prep.set_data(&s.path, s.data, s.version)
            }
            OpCode::SetAcl => {
                let s: SetAclRequest = decode(r)?;
                prep.set_acl(&s.path, &s.acl, s.version)
            }
            OpCode::Check => {
                let c: CheckVersionRequest = decode(r)?;
                prep.check(&c.path, c.version)
            }
            OpCode::Multi => {
                let m: MultiRequest = decode(r)?;
                // A read op inside a write multi fails the whole request like 3.8 does.
                if m.ops
                    .iter()
                    .any(|o| matches!(o, MultiOp::GetData(_) | MultiOp::GetChildren(_)))
                {
                    return Err(ErrorCode::MarshallingError);
                }
                Ok(prep.multi(&m.ops))
            }
            OpCode::Reconfig => {
                let _: ReconfigRequest = decode(r)?;
                Err(ErrorCode::ReconfigDisabled)
            }
            _ => Err(ErrorCode::Unimplemented),
        })();
        res.unwrap_or_else(|err| TxnBody::Error(ErrorTxn { err: err.code() }))
    };
    let changes = match body {
        TxnBody::Error(_) => Default::default(),
        _ => prep.into_changes(),
    };
    (body, changes)
}

fn put_get_data(out: &mut FrameBuf, d: &GetDataResponse) {
    out.put_opt_buffer(&d.data);
    d.stat.encode(out.buf());
}

/// Appends the header of one multiRead result.
fn multi_header(b: &mut BytesMut, op: OpCode, err: i32) {
    MultiHeader {
        op: op.code(),
        done: false,
        err,
    }
    .encode(b);
}

/// Appends one failed multiRead result: its header, then the error code again.
fn multi_error(b: &mut BytesMut, e: ErrorCode) {
    multi_header(b, OpCode::Error, e.code());
    e.code().encode(b);
}

pub(super) fn push_id(ids: &mut Vec<Id>, scheme: &str, id: &str) {
    let new = Id {
        scheme: scheme.into(),
        id: id.into(),
    };
    if !ids.contains(&new) {
        ids.push(new);
    }
}

/// The short operation names of `FinalRequestProcessor` (the `lop` field of `cons`).
fn op_name(op: OpCode) -> &'static str {
    match op {
        OpCode::Create | OpCode::Create2 | OpCode::CreateContainer | OpCode::CreateTtl => "CREA",
        OpCode::Delete | OpCode::DeleteContainer => "DELE",
        OpCode::Exists => "EXIS",
        OpCode::GetData => "GETD",
        OpCode::SetData => "SETD",
        OpCode::GetAcl => "GETA",
        OpCode::SetAcl => "SETA",
        OpCode::GetChildren | OpCode::GetChildren2 => "GETC",
        OpCode::Sync => "SYNC",
        OpCode::Ping => "PING",
        OpCode::Check => "CHEC",
        OpCode::Multi => "MULT",
        OpCode::Reconfig => "RECO",
        OpCode::CheckWatches => "CHKW",
        OpCode::RemoveWatches => "REMW",
        OpCode::MultiRead => "MLTR",
        OpCode::SetWatches => "SETW",
        OpCode::SetWatches2 => "STW2",
        OpCode::GetEphemerals => "GETE",
        OpCode::GetAllChildrenNumber => "GETACN",
        OpCode::AddWatch => "ADDW",
        OpCode::WhoAmI => "HOMI",
        OpCode::CloseSession => "CLOS",
        _ => "NA",
    }
}
