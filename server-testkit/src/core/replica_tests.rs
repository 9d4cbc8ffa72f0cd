//! Replicated cores without sockets: three cores joined by a perfect, in-order replication
//! layer (proposals commit when the test says so), driven through client frames.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use zkit_proto::frame::{take_frame, write_record, write_request, Encodable};
use zkit_proto::quorum::SessionTouch;
use zkit_proto::*;

use super::*;

const T0: i64 = 1_700_000_000_000;
const EPOCH: u32 = 1;

/// Servers 1..=3; server 1 leads.
struct Ens {
    cores: Vec<Core>,
    now: i64,
    xid: i32,
    counter: i64,
    /// Proposals logged but not committed yet.
    proposed: VecDeque<Txn>,
    /// Commit proposals as soon as they are made.
    auto_commit: bool,
    /// Syncs waiting for the proposals before them: (server, proposals ahead).
    syncs: Vec<(usize, usize)>,
    /// Frames and closes per (server index, conn), decoded.
    sent: Vec<(usize, ConnId, Sent)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Sent {
    Connected(ConnectResponse),
    Reply(ReplyHeader, Bytes),
    Event(WatcherEvent),
    Close,
}

fn addr() -> SocketAddr {
    "127.0.0.1:5555".parse().unwrap()
}

impl Ens {
    fn new() -> Ens {
        let cfg = Config::default();
        let mut cores: Vec<Core> = (1..=3)
            .map(|sid| Core::replica(cfg.clone(), Database::new(false), T0, sid))
            .collect();
        cores[0].set_mode(Mode::Leader { epoch: EPOCH }, T0);
        cores[1].set_mode(Mode::Follower, T0);
        cores[2].set_mode(Mode::Follower, T0);
        Ens {
            cores,
            now: T0,
            xid: 0,
            counter: 0,
            proposed: VecDeque::new(),
            auto_commit: true,
            syncs: Vec::new(),
            sent: Vec::new(),
        }
    }

    /// Routes every output until nothing moves.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..self.cores.len() {
                for o in self.cores[i].take_output() {
                    moved = true;
                    self.route(i, o);
                }
            }
            if self.auto_commit && !self.proposed.is_empty() {
                self.commit(usize::MAX);
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    fn route(&mut self, i: usize, o: Output) {
        let sid = i as i64 + 1;
        let now = self.now;
        match o {
            Output::Committed(_) => panic!("a replica logs nothing itself"),
            Output::Send(c, f) => {
                let b = f.to_bytes().slice(4..);
                let mut r = Reader::new(b.clone());
                let sent = match ReplyHeader::decode(&mut r) {
                    _ if self.is_handshake(i, c) => {
                        Sent::Connected(ConnectResponse::from_bytes(b).unwrap())
                    }
                    Ok(h) if h.xid == -1 => Sent::Event(WatcherEvent::decode(&mut r).unwrap()),
                    Ok(h) => Sent::Reply(h, r.into_rest()),
                    Err(e) => panic!("{e}"),
                };
                self.sent.push((i, c, sent));
            }
            Output::Close(c, _) => self.sent.push((i, c, Sent::Close)),
            Output::Propose(mut txn, _) => {
                assert_eq!(i, 0, "only the leader proposes");
                self.counter += 1;
                txn.hdr.zxid = ((EPOCH as i64) << 32) | self.counter;
                self.proposed.push_back(*txn);
            }
            Output::Forward { request, authinfo } => {
                assert_ne!(i, 0);
                self.cores[0].learner_request(sid, request, authinfo, now)
            }
            Output::Revalidate { session, timeout } => {
                self.cores[0].revalidate(sid, session, timeout, now)
            }
            Output::RevalidateReply { to, session, valid } => {
                self.cores[to as usize - 1].revalidated(session, valid, now)
            }
            Output::Touch { session, timeout } => self.cores[0].touches(
                sid,
                &[SessionTouch {
                    session_id: session,
                    timeout,
                }],
                now,
            ),
            Output::SyncFor(to) => {
                let ahead = self.proposed.len();
                self.syncs.push((to as usize - 1, ahead));
                self.finish_syncs();
            }
        }
    }

    fn finish_syncs(&mut self) {
        let now = self.now;
        let (done, rest): (Vec<_>, Vec<_>) = self.syncs.drain(..).partition(|(_, a)| *a == 0);
        self.syncs = rest;
        for (i, _) in done {
            self.cores[i].synced(now);
        }
    }

    /// Commits up to `n` proposals on every server, in order.
    fn commit(&mut self, n: usize) {
        let now = self.now;
        for _ in 0..n {
            let Some(txn) = self.proposed.pop_front() else {
                break;
            };
            for c in &mut self.cores {
                c.deliver(&txn, now);
            }
            for s in &mut self.syncs {
                s.1 = s.1.saturating_sub(1);
            }
            self.finish_syncs();
        }
    }

    fn is_handshake(&self, i: usize, c: ConnId) -> bool {
        // A connection's first frame is its ConnectResponse.
        !self.sent.iter().any(|(j, d, _)| *j == i && *d == c)
    }

    fn connect(&mut self, i: usize, conn: ConnId, id: i64, passwd: Bytes) -> ConnectResponse {
        self.cores[i].conn_opened(conn, addr(), self.now);
        let req = ConnectRequest {
            timeout: 10_000,
            session_id: id,
            passwd,
            read_only: Some(false),
            ..Default::default()
        };
        let mut b = BytesMut::new();
        write_record(&mut b, &req);
        let frame = take_frame(&mut b, usize::MAX).unwrap().unwrap();
        self.cores[i].receive(conn, frame, self.now);
        self.pump();
        self.sent
            .iter()
            .rev()
            .find_map(|(j, c, s)| match s {
                Sent::Connected(r) if *j == i && *c == conn => Some(r.clone()),
                _ => None,
            })
            .expect("a ConnectResponse")
    }

    fn session(&mut self, i: usize, conn: ConnId) -> ConnectResponse {
        self.connect(i, conn, 0, Bytes::from_static(&[0; 16]))
    }

    /// Sends a request without routing anything.
    fn request(&mut self, i: usize, conn: ConnId, op: OpCode, body: &dyn Encodable) -> i32 {
        self.xid += 1;
        let mut b = BytesMut::new();
        write_request(&mut b, self.xid, op.code(), Some(body));
        let frame = take_frame(&mut b, usize::MAX).unwrap().unwrap();
        self.cores[i].receive(conn, frame, self.now);
        self.xid
    }

    /// The reply to `xid` on (server `i`, `conn`).
    fn reply(&self, i: usize, conn: ConnId, xid: i32) -> Option<(ReplyHeader, Bytes)> {
        self.sent.iter().find_map(|(j, c, s)| match s {
            Sent::Reply(h, b) if *j == i && *c == conn && h.xid == xid => {
                Some((h.clone(), b.clone()))
            }
            _ => None,
        })
    }

    fn create(&mut self, i: usize, conn: ConnId, path: &str, flags: i32) -> (i32, String) {
        let xid = self.request(
            i,
            conn,
            OpCode::Create,
            &CreateRequest {
                path: path.into(),
                data: Some(Bytes::from_static(b"d")),
                acl: Acl::open_unsafe(),
                flags,
            },
        );
        self.pump();
        let (h, b) = self.reply(i, conn, xid).expect("create answered");
        if h.err != 0 {
            return (h.err, String::new());
        }
        let p = PathResponse::decode(&mut Reader::new(b)).unwrap();
        (0, p.path)
    }

    fn closed(&self, i: usize, conn: ConnId) -> bool {
        self.sent
            .iter()
            .any(|(j, c, s)| *j == i && *c == conn && *s == Sent::Close)
    }

    fn assert_consistent(&self) {
        let d = self.cores[0].digest();
        for c in &self.cores {
            assert_eq!(c.digest(), d);
            assert_eq!(c.db().last_zxid, self.cores[0].db().last_zxid);
            assert_eq!(c.db().sessions, self.cores[0].db().sessions);
        }
    }
}

#[test]
fn sessions_are_global_and_carry_the_server_id() {
    let mut e = Ens::new();
    let r = e.session(1, 7);
    assert_eq!(r.session_id >> 56, 2, "high byte is the server id");
    assert!(e
        .cores
        .iter()
        .all(|c| c.db().sessions.contains_key(&r.session_id)));
    let r0 = e.session(0, 8);
    assert_eq!(r0.session_id >> 56, 1);
    e.assert_consistent();
}

#[test]
fn a_write_on_a_follower_is_forwarded_and_applied_everywhere() {
    let mut e = Ens::new();
    e.session(2, 1);
    assert_eq!(e.create(2, 1, "/a", 0), (0, "/a".into()));
    assert!(e.cores.iter().all(|c| c.db().tree.get("/a").is_some()));
    e.assert_consistent();
}

#[test]
fn a_read_waits_behind_its_sessions_write() {
    let mut e = Ens::new();
    e.session(1, 1);
    e.pump();
    e.auto_commit = false;
    let w = e.request(
        1,
        1,
        OpCode::Create,
        &CreateRequest {
            path: "/rw".into(),
            data: None,
            acl: Acl::open_unsafe(),
            flags: 0,
        },
    );
    let r = e.request(
        1,
        1,
        OpCode::Exists,
        &PathWatchRequest {
            path: "/rw".into(),
            watch: false,
        },
    );
    e.pump();
    assert!(e.reply(1, 1, r).is_none(), "the read waits for the write");
    e.commit(usize::MAX);
    e.pump();
    let (wh, _) = e.reply(1, 1, w).unwrap();
    let (rh, _) = e.reply(1, 1, r).unwrap();
    assert_eq!((wh.err, rh.err), (0, 0), "the read sees the write");
    let order: Vec<i32> = e
        .sent
        .iter()
        .filter_map(|(j, c, s)| match s {
            Sent::Reply(h, _) if *j == 1 && *c == 1 => Some(h.xid),
            _ => None,
        })
        .collect();
    assert_eq!(order, vec![w, r]);
}

#[test]
fn sequential_names_and_conflicts_see_outstanding_proposals() {
    let mut e = Ens::new();
    e.session(1, 1);
    e.session(2, 2);
    e.create(1, 1, "/q", 0);
    e.auto_commit = false;
    let seq = CreateMode::PersistentSequential.code();
    let a = e.request(
        1,
        1,
        OpCode::Create,
        &CreateRequest {
            path: "/q/n-".into(),
            data: None,
            acl: Acl::open_unsafe(),
            flags: seq,
        },
    );
    let b = e.request(
        2,
        2,
        OpCode::Create,
        &CreateRequest {
            path: "/q/n-".into(),
            data: None,
            acl: Acl::open_unsafe(),
            flags: seq,
        },
    );
    let dup = e.request(
        2,
        2,
        OpCode::Create,
        &CreateRequest {
            path: "/q/n-0000000000".into(),
            data: None,
            acl: Acl::open_unsafe(),
            flags: 0,
        },
    );
    e.pump();
    assert_eq!(e.proposed.len(), 3);
    e.commit(usize::MAX);
    e.pump();
    let path = |h: (ReplyHeader, Bytes)| PathResponse::decode(&mut Reader::new(h.1)).unwrap().path;
    assert_eq!(path(e.reply(1, 1, a).unwrap()), "/q/n-0000000000");
    assert_eq!(path(e.reply(2, 2, b).unwrap()), "/q/n-0000000001");
    assert_eq!(
        e.reply(2, 2, dup).unwrap().0.err,
        ErrorCode::NodeExists.code()
    );
    e.assert_consistent();
}

#[test]
fn expiry_is_the_leaders_and_removes_pending_ephemerals_everywhere() {
    let mut e = Ens::new();
    let s = e.session(1, 1).session_id;
    e.create(1, 1, "/e1", CreateMode::Ephemeral.code());
    e.auto_commit = false;
    e.request(
        1,
        1,
        OpCode::Create,
        &CreateRequest {
            path: "/e2".into(),
            data: None,
            acl: Acl::open_unsafe(),
            flags: CreateMode::Ephemeral.code(),
        },
    );
    e.pump();
    // The leader expires the session while its second ephemeral is still a proposal.
    assert!(e.cores[0].expire_session(s, e.now));
    e.pump();
    e.commit(usize::MAX);
    e.pump();
    for c in &e.cores {
        assert!(c.db().tree.get("/e1").is_none());
        assert!(
            c.db().tree.get("/e2").is_none(),
            "the pending ephemeral went too"
        );
        assert!(!c.db().sessions.contains_key(&s));
    }
    assert!(
        e.closed(1, 1),
        "the session's connection is closed where it lives"
    );
    assert!(
        !e.cores[1].expire_session(s, e.now),
        "only a leader expires"
    );
    e.assert_consistent();
}

#[test]
fn only_the_leader_expires_and_learner_touches_keep_sessions_alive() {
    let mut e = Ens::new();
    let s = e.session(1, 1).session_id;
    for _ in 0..5 {
        e.now += 4_000;
        // The client pings its follower; the follower reports the touch on its tick.
        e.request(
            1,
            1,
            OpCode::Ping,
            &PathRequest {
                path: String::new(),
            },
        );
        for c in &mut e.cores {
            c.tick(e.now);
        }
        e.pump();
    }
    assert!(e.cores[0].db().sessions.contains_key(&s), "touched: alive");
    e.now += 20_000;
    for i in [1, 2] {
        e.cores[i].tick(e.now);
    }
    e.pump();
    assert!(
        e.cores[1].db().sessions.contains_key(&s),
        "learners never expire"
    );
    e.cores[0].tick(e.now);
    e.pump();
    assert!(e.cores.iter().all(|c| !c.db().sessions.contains_key(&s)));
    assert!(e.closed(1, 1));
}

#[test]
fn a_session_moves_by_revalidation_and_its_old_server_gets_session_moved() {
    let mut e = Ens::new();
    let r = e.session(1, 1);
    let moved = e.connect(2, 5, r.session_id, r.passwd.clone());
    assert_eq!(moved.session_id, r.session_id, "revalidated by the leader");
    // The old connection (on server 2) writes: the leader says the session moved.
    let xid = e.request(
        1,
        1,
        OpCode::SetData,
        &SetDataRequest {
            path: "/".into(),
            data: None,
            version: -1,
        },
    );
    e.pump();
    assert_eq!(
        e.reply(1, 1, xid).unwrap().0.err,
        ErrorCode::SessionMoved.code()
    );
    // The new one works.
    assert_eq!(e.create(2, 5, "/m", 0).0, 0);
    // A wrong password is refused without asking the leader.
    let bad = e.connect(2, 6, r.session_id, Bytes::from_static(&[1; 16]));
    assert_eq!(bad.session_id, 0);
}

#[test]
fn sync_on_a_follower_answers_after_earlier_proposals_commit() {
    let mut e = Ens::new();
    e.session(2, 1);
    e.session(1, 2);
    e.auto_commit = false;
    e.request(
        1,
        2,
        OpCode::Create,
        &CreateRequest {
            path: "/s".into(),
            data: None,
            acl: Acl::open_unsafe(),
            flags: 0,
        },
    );
    let x = e.request(2, 1, OpCode::Sync, &PathRequest { path: "/s".into() });
    e.pump();
    assert!(e.reply(2, 1, x).is_none(), "the sync waits for the create");
    e.commit(usize::MAX);
    e.pump();
    let (h, _) = e.reply(2, 1, x).unwrap();
    assert_eq!(h.err, 0);
    assert!(e.cores[2].db().tree.get("/s").is_some());
}

#[test]
fn role_changes_close_clients_and_a_server_not_serving_refuses_them() {
    let mut e = Ens::new();
    e.session(1, 1);
    e.cores[1].set_mode(Mode::NotServing, e.now);
    e.pump();
    assert!(e.closed(1, 1));
    e.cores[1].conn_opened(9, addr(), e.now);
    let mut b = BytesMut::new();
    write_record(&mut b, &ConnectRequest::default());
    let frame = take_frame(&mut b, usize::MAX).unwrap().unwrap();
    e.cores[1].receive(9, frame, e.now);
    e.pump();
    assert!(e.closed(1, 9));
}

#[test]
fn a_client_close_on_a_follower_is_answered_then_the_connection_closes() {
    let mut e = Ens::new();
    let s = e.session(2, 1).session_id;
    e.create(2, 1, "/eph", CreateMode::Ephemeral.code());
    let x = e.request(
        2,
        1,
        OpCode::CloseSession,
        &PathRequest {
            path: String::new(),
        },
    );
    e.pump();
    assert_eq!(e.reply(2, 1, x).unwrap().0.err, 0);
    assert!(e.closed(2, 1));
    assert!(e.cores.iter().all(|c| c.db().tree.get("/eph").is_none()));
    assert!(e.cores.iter().all(|c| !c.db().sessions.contains_key(&s)));
    e.assert_consistent();
}

#[test]
fn the_config_node_shows_the_ensemble_and_survives_a_reset() {
    let mut e = Ens::new();
    let text = Bytes::from_static(b"server.1=127.0.0.1:1:2:participant\nversion=0");
    e.cores[1].set_config(text.clone(), e.now);
    let d = e.cores[1].digest();
    let n = e.cores[1].db().tree.get("/zookeeper/config").unwrap();
    assert_eq!(n.data.as_ref(), Some(&text));
    assert_eq!((n.stat.version, n.stat.mtime), (-1, e.now));
    assert_eq!(d, e.cores[0].digest(), "outside the digest");
    e.cores[1].reset(Database::new(false), e.now);
    let n = e.cores[1].db().tree.get("/zookeeper/config").unwrap();
    assert_eq!(n.data.as_ref(), Some(&text));
}

#[test]
fn a_session_reattaching_behind_its_old_connections_write_is_answered() {
    let mut e = Ens::new();
    let r = e.session(1, 1);
    e.auto_commit = false;
    // The old connection's write is still a proposal when the client comes back on a new
    // connection to the same follower.
    let w = e.request(
        1,
        1,
        OpCode::Create,
        &CreateRequest {
            path: "/w".into(),
            data: None,
            acl: Acl::open_unsafe(),
            flags: 0,
        },
    );
    e.pump();
    let back = e.connect(1, 2, r.session_id, r.passwd.clone());
    assert_eq!(back.session_id, r.session_id, "revalidated at once");
    // A read on the new connection still waits behind the old connection's write.
    let x = e.request(
        1,
        2,
        OpCode::Exists,
        &PathWatchRequest {
            path: "/w".into(),
            watch: false,
        },
    );
    e.pump();
    assert!(e.reply(1, 2, x).is_none());
    e.commit(usize::MAX);
    e.pump();
    assert!(e.reply(1, 1, w).is_none(), "the old connection was closed");
    assert_eq!(
        e.reply(1, 2, x).unwrap().0.err,
        0,
        "the read sees the write"
    );
}

#[test]
fn a_sync_answer_never_overtakes_an_earlier_write_of_its_session() {
    let mut e = Ens::new();
    e.session(1, 1);
    e.auto_commit = false;
    let w = e.request(
        1,
        1,
        OpCode::SetData,
        &SetDataRequest {
            path: "/".into(),
            data: None,
            version: -1,
        },
    );
    let s = e.request(1, 1, OpCode::Sync, &PathRequest { path: "/".into() });
    e.pump();
    // The replication layer answers the sync while the write's txn is still on its way.
    e.cores[1].synced(e.now);
    e.syncs.clear();
    e.pump();
    assert!(
        e.reply(1, 1, s).is_none(),
        "the sync waits behind the write"
    );
    e.commit(usize::MAX);
    e.pump();
    let order: Vec<i32> = e
        .sent
        .iter()
        .filter_map(|(j, c, x)| match x {
            Sent::Reply(h, _) if *j == 1 && *c == 1 => Some(h.xid),
            _ => None,
        })
        .collect();
    assert_eq!(order, vec![w, s]);
}

#[test]
fn a_handshake_whose_connection_is_gone_leaves_the_live_one_attached() {
    let mut e = Ens::new();
    let r = e.session(1, 1);
    // A stale connection's handshake reaches the follower, which asks the leader; that
    // connection closes before the answer comes.
    e.cores[1].conn_opened(2, addr(), e.now);
    let req = ConnectRequest {
        timeout: 10_000,
        session_id: r.session_id,
        passwd: r.passwd.clone(),
        read_only: Some(false),
        ..Default::default()
    };
    let mut b = BytesMut::new();
    write_record(&mut b, &req);
    let frame = take_frame(&mut b, usize::MAX).unwrap().unwrap();
    e.cores[1].receive(2, frame, e.now);
    e.cores[1].conn_closed(2);
    e.pump();
    assert!(!e.closed(1, 1), "the live connection stays");
    assert_eq!(e.cores[1].session_of(1), Some(r.session_id));
}

#[test]
fn a_handshake_waiting_for_the_leader_learns_of_its_sessions_close() {
    let mut e = Ens::new();
    let r = e.session(1, 1);
    // The client re-attaches through server 3; its REVALIDATE is still on the way when the
    // leader expires the session and the close commits.
    e.cores[2].conn_opened(5, addr(), e.now);
    let req = ConnectRequest {
        timeout: 10_000,
        session_id: r.session_id,
        passwd: r.passwd.clone(),
        read_only: Some(false),
        ..Default::default()
    };
    let mut b = BytesMut::new();
    write_record(&mut b, &req);
    let frame = take_frame(&mut b, usize::MAX).unwrap().unwrap();
    e.cores[2].receive(5, frame, e.now);
    let held = e.cores[2].take_output();
    assert!(e.cores[0].expire_session(r.session_id, e.now));
    e.pump();
    for o in held {
        e.route(2, o);
    }
    e.pump();
    let answered = e.sent.iter().any(|(j, c, s)| {
        *j == 2 && *c == 5 && matches!(s, Sent::Connected(c) if c.session_id == 0)
    });
    assert!(answered, "told the session expired");
    assert!(e.closed(2, 5));
}
