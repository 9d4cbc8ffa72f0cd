//! Core unit tests driven through frames, without sockets, on a fake clock.

use bytes::{Bytes, BytesMut};
use zkit_proto::frame::{take_frame, write_record, write_request, Encodable};
use zkit_proto::*;

use super::*;

const T0: i64 = 1_700_000_000_000;

struct H {
    core: Core,
    now: i64,
    xid: i32,
    /// Every txn the core committed, from its [`Output::Committed`]s.
    txns: Vec<Txn>,
}

/// One decoded frame sent to a connection.
#[derive(Debug, Clone, PartialEq)]
enum Sent {
    Reply(ReplyHeader, Bytes),
    Event(WatcherEvent),
    Close,
}

impl H {
    fn new() -> H {
        H::with(Config::default())
    }

    fn with(cfg: Config) -> H {
        H {
            core: Core::new(cfg, T0),
            now: T0,
            xid: 0,
            txns: Vec::new(),
        }
    }

    /// The core's outputs for the shell: committed txns are kept in `txns`, the rest returned.
    fn output(&mut self) -> Vec<Output> {
        let mut rest = Vec::new();
        for o in self.core.take_output() {
            match o {
                Output::Committed(c) => self.txns.push(c.txn),
                o => rest.push(o),
            }
        }
        rest
    }

    /// The txns committed since the last call.
    fn drain_txns(&mut self) -> Vec<Txn> {
        std::mem::take(&mut self.txns)
    }

    fn addr() -> SocketAddr {
        "127.0.0.1:5555".parse().unwrap()
    }

    /// Opens `conn` and creates a session on it.
    fn session(&mut self, conn: ConnId, timeout: i32) -> ConnectResponse {
        self.core.conn_opened(conn, H::addr(), self.now);
        self.handshake(conn, 0, Bytes::from_static(&[0; 16]), timeout)
    }

    fn handshake(&mut self, conn: ConnId, id: i64, passwd: Bytes, timeout: i32) -> ConnectResponse {
        let req = ConnectRequest {
            timeout,
            session_id: id,
            passwd,
            read_only: Some(false),
            ..Default::default()
        };
        let mut b = BytesMut::new();
        write_record(&mut b, &req);
        let mut b = b;
        let frame = take_frame(&mut b, usize::MAX).unwrap().unwrap();
        self.core.receive(conn, frame, self.now);
        let out = self.output();
        match &out[0] {
            Output::Send(c, f) => {
                assert_eq!(*c, conn);
                ConnectResponse::from_bytes(f.to_bytes().slice(4..)).unwrap()
            }
            o => panic!("{o:?}"),
        }
    }

    /// Sends a request; returns everything sent to any connection, decoded, in order.
    fn send(
        &mut self,
        conn: ConnId,
        op: OpCode,
        body: Option<&dyn Encodable>,
    ) -> Vec<(ConnId, Sent)> {
        self.xid += 1;
        let mut b = BytesMut::new();
        write_request(&mut b, self.xid, op.code(), body);
        let frame = take_frame(&mut b, usize::MAX).unwrap().unwrap();
        self.core.receive(conn, frame, self.now);
        self.drain()
    }

    fn drain(&mut self) -> Vec<(ConnId, Sent)> {
        self.output()
            .into_iter()
            .map(|o| match o {
                Output::Send(c, f) => {
                    let mut r = Reader::new(f.to_bytes().slice(4..));
                    let h = ReplyHeader::decode(&mut r).unwrap();
                    if h.xid == -1 {
                        (c, Sent::Event(WatcherEvent::decode(&mut r).unwrap()))
                    } else {
                        (c, Sent::Reply(h, r.into_rest()))
                    }
                }
                Output::Close(c, _) => (c, Sent::Close),
                other => unreachable!("kept by output() or not standalone: {other:?}"),
            })
            .collect()
    }

    /// Sends a request and returns its reply header and body.
    fn call(
        &mut self,
        conn: ConnId,
        op: OpCode,
        body: Option<&dyn Encodable>,
    ) -> (ReplyHeader, Bytes) {
        let out = self.send(conn, op, body);
        out.into_iter()
            .find_map(|(c, s)| match s {
                Sent::Reply(h, b) if c == conn => Some((h, b)),
                _ => None,
            })
            .expect("a reply")
    }

    fn create(&mut self, conn: ConnId, path: &str, flags: i32) -> Result<String, i32> {
        let req = CreateRequest {
            path: path.into(),
            data: Some(Bytes::from_static(b"d")),
            acl: Acl::open_unsafe(),
            flags,
        };
        let (h, b) = self.call(conn, OpCode::Create, Some(&req));
        if h.err != 0 {
            return Err(h.err);
        }
        Ok(PathResponse::from_bytes(b).unwrap().path)
    }

    fn stat(&self, path: &str) -> Option<Stat> {
        self.core.db().tree.stat(path)
    }
}

#[test]
fn a_fresh_core_holds_the_four_system_nodes() {
    let core = Core::new(Config::default(), 1_000);
    assert_eq!(core.db().tree.node_count(), 4);
}

#[test]
fn zxids_advance_for_sessions_writes_and_failed_writes() {
    let mut h = H::new();
    h.session(1, 30000);
    assert_eq!(h.core.db().last_zxid, 1, "createSession is a txn");
    h.create(1, "/a", 0).unwrap();
    assert_eq!(h.stat("/a").unwrap().czxid, 2);
    assert_eq!(h.create(1, "/a", 0), Err(-110));
    assert_eq!(h.core.db().last_zxid, 3, "a failed write is an error txn");
    let txns = h.drain_txns();
    assert_eq!(
        txns.iter().map(|t| t.hdr.txn_type).collect::<Vec<_>>(),
        vec![-10, 1, -1]
    );
    assert_eq!(txns[1].hdr.cxid, 1);
}

#[test]
fn replaying_the_txns_rebuilds_the_same_tree() {
    let mut h = H::new();
    h.session(1, 30000);
    h.create(1, "/a", 0).unwrap();
    h.create(1, "/a/s-", 2).unwrap();
    h.create(1, "/a/e", 1).unwrap();
    let set = SetDataRequest {
        path: "/a".into(),
        data: None,
        version: 0,
    };
    h.call(1, OpCode::SetData, Some(&set));
    h.call(1, OpCode::CloseSession, None);
    let txns = h.drain_txns();
    let mut db = Database::new(false);
    for t in &txns {
        let t = Txn::from_bytes(t.to_bytes()).unwrap();
        db.apply(&t, &mut Vec::new());
    }
    assert_eq!(db.last_zxid, h.core.db().last_zxid);
    for p in ["/", "/a", "/a/s-0000000000", "/zookeeper"] {
        assert_eq!(db.tree.stat(p), h.stat(p), "{p}");
    }
    assert_eq!(
        db.tree.stat("/a/e"),
        None,
        "ephemeral gone with the session"
    );
}

#[test]
fn notifications_precede_the_reply_and_reach_other_connections() {
    let mut h = H::new();
    h.session(1, 30000);
    h.session(2, 30000);
    let w = PathWatchRequest {
        path: "/x".into(),
        watch: true,
    };
    let (hd, _) = h.call(2, OpCode::Exists, Some(&w));
    assert_eq!(hd.err, -101);
    let (hd, _) = h.call(1, OpCode::Exists, Some(&w));
    assert_eq!(hd.err, -101);
    let req = CreateRequest {
        path: "/x".into(),
        data: None,
        acl: Acl::open_unsafe(),
        flags: 0,
    };
    let out = h.send(1, OpCode::Create, Some(&req));
    let kinds: Vec<(ConnId, bool)> = out
        .iter()
        .map(|(c, s)| (*c, matches!(s, Sent::Event(_))))
        .collect();
    assert_eq!(kinds, vec![(1, true), (2, true), (1, false)]);
}

#[test]
fn session_expiry_is_driven_by_tick() {
    let mut h = H::new();
    let r = h.session(1, 5000);
    assert_eq!(r.timeout, 5000);
    h.create(1, "/e", 1).unwrap();
    h.now += 4999;
    h.core.tick(h.now);
    assert!(h.stat("/e").is_some());
    // Any packet touches the session.
    h.call(1, OpCode::Ping, None);
    h.now += 4999;
    h.core.tick(h.now);
    assert!(h.stat("/e").is_some());
    h.now += 1;
    h.core.tick(h.now);
    assert!(h.stat("/e").is_none());
    assert_eq!(h.drain(), vec![(1, Sent::Close)]);
    assert!(h.core.sessions().is_empty());
}

#[test]
fn reattach_elsewhere_closes_the_old_connection() {
    let mut h = H::new();
    let r = h.session(1, 30000);
    h.core.conn_opened(2, H::addr(), h.now);
    // The close of the old connection is queued before the new connection's response.
    let req = ConnectRequest {
        timeout: 30000,
        session_id: r.session_id,
        passwd: r.passwd.clone(),
        read_only: Some(false),
        ..Default::default()
    };
    h.core.receive(2, req.to_bytes(), h.now);
    let out = h.output();
    assert_eq!(out[0], Output::Close(1, "client reconnect"));
    assert!(matches!(&out[1], Output::Send(2, _)));
    assert_eq!(h.core.session_of(2), Some(r.session_id));
    h.core.conn_closed(1);
    assert_eq!(h.core.sessions()[0].conn, Some(2));
}

#[test]
fn passwords_are_deterministic_per_secret() {
    let a = Core::new(Config::default(), T0);
    let b = Core::new(Config::default(), T0);
    assert_eq!(a.password(42), b.password(42));
    let c = Core::new(
        Config {
            secret: Secret::from_bytes([7; Secret::LEN]),
            ..Config::default()
        },
        T0,
    );
    assert_ne!(a.password(42), c.password(42));
}

#[test]
fn multi_sees_earlier_ops_and_rolls_back_on_failure() {
    let mut h = H::new();
    h.session(1, 30000);
    h.create(1, "/q", 0).unwrap();
    let mk = |p: &str, flags| MultiOp::Create {
        op: OpCode::Create,
        req: CreateRequest {
            path: p.into(),
            data: None,
            acl: Acl::open_unsafe(),
            flags,
        },
    };
    let m = MultiRequest {
        ops: vec![mk("/q/s-", 2), mk("/q/s-", 2), mk("/q/s-0000000001/c", 0)],
    };
    let (hd, b) = h.call(1, OpCode::Multi, Some(&m));
    assert_eq!(hd.err, 0);
    let r = MultiResponse::from_bytes(b).unwrap();
    assert_eq!(
        r.results,
        vec![
            MultiResult::Create("/q/s-0000000000".into()),
            MultiResult::Create("/q/s-0000000001".into()),
            MultiResult::Create("/q/s-0000000001/c".into()),
        ]
    );
    let before = h.stat("/q");
    let m = MultiRequest {
        ops: vec![mk("/q/new", 0), mk("/nope/x", 0), mk("/q/other", 0)],
    };
    let (_, b) = h.call(1, OpCode::Multi, Some(&m));
    let r = MultiResponse::from_bytes(b).unwrap();
    assert_eq!(
        r.results,
        vec![
            MultiResult::Error(0),
            MultiResult::Error(-101),
            MultiResult::Error(-2)
        ]
    );
    assert_eq!(h.stat("/q"), before);
    assert!(h.stat("/q/new").is_none());
}

#[test]
fn super_digest_bypasses_acls_and_get_acl_masks_digests() {
    let mut h = H::with(Config {
        super_digest: Some(zkit_proto::digest_id("super", "secret")),
        ..Config::default()
    });
    h.session(1, 30000);
    h.session(2, 30000);
    let auth = |h: &mut H, conn, cred: &'static [u8]| {
        let p = AuthPacket {
            auth_type: 0,
            scheme: "digest".into(),
            auth: Bytes::from_static(cred),
        };
        h.call(conn, OpCode::Auth, Some(&p)).0
    };
    assert_eq!(auth(&mut h, 1, b"alice:pw").err, 0);
    let acl = vec![
        Acl {
            perms: perms::ALL,
            id: Id {
                scheme: "digest".into(),
                id: zkit_proto::digest_id("alice", "pw"),
            },
        },
        Acl {
            perms: perms::READ,
            id: Id {
                scheme: "world".into(),
                id: "anyone".into(),
            },
        },
    ];
    let req = CreateRequest {
        path: "/p".into(),
        data: None,
        acl,
        flags: 0,
    };
    assert_eq!(h.call(1, OpCode::Create, Some(&req)).0.err, 0);
    let (hd, b) = h.call(2, OpCode::GetAcl, Some(&PathRequest { path: "/p".into() }));
    assert_eq!(hd.err, 0);
    let acl = GetAclResponse::from_bytes(b).unwrap().acl;
    assert_eq!(acl[0].id.id, "alice:x", "digest masked without ADMIN");
    let del = DeleteRequest {
        path: "/p".into(),
        version: -1,
    };
    let set = SetDataRequest {
        path: "/p".into(),
        data: None,
        version: -1,
    };
    assert_eq!(h.call(2, OpCode::SetData, Some(&set)).0.err, -102);
    assert_eq!(auth(&mut h, 2, b"super:secret").err, 0);
    assert_eq!(h.call(2, OpCode::SetData, Some(&set)).0.err, 0);
    assert_eq!(h.call(2, OpCode::Delete, Some(&del)).0.err, 0);
    // An unknown scheme fails authentication and closes the connection.
    let p = AuthPacket {
        auth_type: 0,
        scheme: "kerberos".into(),
        auth: Bytes::new(),
    };
    let out = h.send(2, OpCode::Auth, Some(&p));
    assert!(matches!(&out[0], (2, Sent::Reply(hd, _)) if hd.err == -115 && hd.zxid == 0));
    assert_eq!(out[1], (2, Sent::Close));
}

#[test]
fn ttl_nodes_expire_from_their_mtime_and_containers_need_a_child_first() {
    let mut h = H::with(Config {
        extended_types: true,
        reap_interval: 10,
        ..Config::default()
    });
    h.session(1, 40000);
    let ttl = CreateTtlRequest {
        path: "/t".into(),
        data: None,
        acl: Acl::open_unsafe(),
        flags: 5,
        ttl: 1000,
    };
    assert_eq!(h.call(1, OpCode::CreateTtl, Some(&ttl)).0.err, 0);
    let c = CreateRequest {
        path: "/c".into(),
        data: None,
        acl: Acl::open_unsafe(),
        flags: 4,
    };
    assert_eq!(h.call(1, OpCode::CreateContainer, Some(&c)).0.err, 0);
    h.now += 900;
    let set = SetDataRequest {
        path: "/t".into(),
        data: None,
        version: -1,
    };
    h.call(1, OpCode::SetData, Some(&set));
    h.now += 900;
    h.core.tick(h.now);
    assert!(h.stat("/t").is_some(), "setData restarted the TTL");
    assert!(
        h.stat("/c").is_some(),
        "a container that never had a child stays"
    );
    h.now += 101;
    h.core.tick(h.now);
    assert!(h.stat("/t").is_none());
    h.create(1, "/c/k", 0).unwrap();
    let del = DeleteRequest {
        path: "/c/k".into(),
        version: -1,
    };
    h.call(1, OpCode::Delete, Some(&del));
    h.now += 10;
    h.core.tick(h.now);
    assert!(h.stat("/c").is_none());
}

#[test]
fn get_ephemerals_and_all_children_number() {
    let mut h = H::new();
    h.session(1, 30000);
    h.create(1, "/a", 0).unwrap();
    h.create(1, "/a/e1", 1).unwrap();
    h.create(1, "/b", 1).unwrap();
    let (_, b) = h.call(
        1,
        OpCode::GetEphemerals,
        Some(&PathRequest { path: "/a".into() }),
    );
    assert_eq!(
        GetChildrenResponse::from_bytes(b).unwrap().children,
        vec!["/a/e1"]
    );
    let (_, b) = h.call(
        1,
        OpCode::GetEphemerals,
        Some(&PathRequest { path: "/".into() }),
    );
    assert_eq!(
        GetChildrenResponse::from_bytes(b).unwrap().children.len(),
        2
    );
    let (_, b) = h.call(
        1,
        OpCode::GetAllChildrenNumber,
        Some(&PathRequest { path: "/a".into() }),
    );
    assert_eq!(IntResponse::from_bytes(b).unwrap().value, 1);
}

#[test]
fn get_config_reads_the_config_node() {
    let mut h = H::new();
    h.session(1, 30000);
    let q = PathWatchRequest {
        path: "/zookeeper/config".into(),
        watch: true,
    };
    let (hd, b) = h.call(1, OpCode::GetData, Some(&q));
    assert_eq!(hd.err, 0);
    let r = GetDataResponse::from_bytes(b).unwrap();
    assert_eq!(r.data.as_deref(), Some(&b""[..]));
    assert_eq!(r.stat.aversion, -1);
    let rc = ReconfigRequest {
        joining_servers: None,
        leaving_servers: None,
        new_members: Some("server.1=x".into()),
        cur_config_id: -1,
    };
    assert_eq!(h.call(1, OpCode::Reconfig, Some(&rc)).0.err, -123);
}

#[test]
fn remove_and_check_watches() {
    let mut h = H::new();
    h.session(1, 30000);
    h.create(1, "/w", 0).unwrap();
    let chk = |t| WatchesRequest {
        path: "/w".into(),
        watcher_type: t,
    };
    assert_eq!(h.call(1, OpCode::CheckWatches, Some(&chk(3))).0.err, -121);
    let q = PathWatchRequest {
        path: "/w".into(),
        watch: true,
    };
    h.call(1, OpCode::GetChildren, Some(&q));
    assert_eq!(h.call(1, OpCode::CheckWatches, Some(&chk(2))).0.err, -121);
    assert_eq!(h.call(1, OpCode::CheckWatches, Some(&chk(1))).0.err, 0);
    assert_eq!(h.call(1, OpCode::RemoveWatches, Some(&chk(3))).0.err, 0);
    assert_eq!(h.call(1, OpCode::RemoveWatches, Some(&chk(3))).0.err, -121);
    assert!(h.core.watch_manager().list().is_empty());
}

#[test]
fn stale_client_zxid_is_refused_without_an_answer() {
    let mut h = H::new();
    h.core.conn_opened(1, H::addr(), h.now);
    let req = ConnectRequest {
        last_zxid_seen: 99,
        timeout: 30000,
        passwd: Bytes::from_static(&[0; 16]),
        ..Default::default()
    };
    h.core.receive(1, req.to_bytes(), h.now);
    assert_eq!(
        h.output(),
        vec![Output::Close(1, "client zxid ahead of server")]
    );
}

#[test]
fn old_clients_get_no_read_only_byte() {
    let mut h = H::new();
    h.core.conn_opened(1, H::addr(), h.now);
    let req = ConnectRequest {
        timeout: 30000,
        passwd: Bytes::from_static(&[0; 16]),
        read_only: None,
        ..Default::default()
    };
    h.core.receive(1, req.to_bytes(), h.now);
    match &h.output()[0] {
        Output::Send(_, f) => assert_eq!(f.len(), 4 + 36),
        o => panic!("{o:?}"),
    }
}

/// Feeds valid, mutated and truncated requests of every opcode into the core: it must never
/// panic. Seed from `ZKIT_FUZZ_SEED`, iterations from `ZKIT_FUZZ_ITERS`.
#[test]
fn random_and_mutated_frames_never_panic() {
    let seed: u64 = std::env::var("ZKIT_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1234);
    let iters: usize = std::env::var("ZKIT_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    eprintln!("fuzz seed {seed}, {iters} inputs");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut h = H::with(Config {
        extended_types: true,
        super_digest: Some(zkit_proto::digest_id("super", "s")),
        reap_interval: 1,
        ..Config::default()
    });
    let paths = [
        "/",
        "/a",
        "/a/b",
        "/zookeeper",
        "/zookeeper/config",
        "/a/",
        "a",
        "",
        "/a/b/c",
    ];
    let ops = [
        1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 100, 101, 102,
        103, 104, 105, 106, 107, -11, 10, 999,
    ];
    let mut conns: Vec<ConnId> = Vec::new();
    for i in 0..iters {
        if conns.is_empty() || rng.usize(..50) == 0 {
            let c = 1000 + i as ConnId;
            h.core.conn_opened(c, H::addr(), h.now);
            let mut b = BytesMut::new();
            let req = ConnectRequest {
                timeout: rng.usize(..100_000) as i32 - 10,
                session_id: if rng.usize(..4) == 0 {
                    rng.u64(..) as i64
                } else {
                    0
                },
                passwd: Bytes::from_static(&[0; 16]),
                read_only: Some(false),
                ..Default::default()
            };
            req.encode(&mut b);
            h.core.receive(c, b.freeze(), h.now);
            conns.push(c);
        }
        let conn = conns[rng.usize(..conns.len())];
        let path = paths[rng.usize(..paths.len())].to_owned();
        let op = ops[rng.usize(..ops.len())];
        let mut b = BytesMut::new();
        RequestHeader { xid: i as i32, op }.encode(&mut b);
        match op {
            1 | 15 | 19 => CreateRequest {
                path,
                data: None,
                acl: if rng.usize(..5) == 0 {
                    vec![]
                } else {
                    Acl::open_unsafe()
                },
                flags: rng.usize(..8) as i32 - 1,
            }
            .encode(&mut b),
            21 => CreateTtlRequest {
                path,
                data: None,
                acl: Acl::open_unsafe(),
                flags: rng.usize(..8) as i32,
                ttl: rng.usize(..3) as i64 - 1,
            }
            .encode(&mut b),
            2 | 13 => DeleteRequest {
                path,
                version: rng.usize(..3) as i32 - 1,
            }
            .encode(&mut b),
            5 => SetDataRequest {
                path,
                data: Some(Bytes::from_static(b"x")),
                version: -1,
            }
            .encode(&mut b),
            14 | 22 => MultiRequest {
                ops: vec![
                    MultiOp::Check(CheckVersionRequest {
                        path: path.clone(),
                        version: 0,
                    }),
                    MultiOp::GetData(PathWatchRequest { path, watch: true }),
                ],
            }
            .encode(&mut b),
            100 => AuthPacket {
                auth_type: 0,
                scheme: ["digest", "ip", "x"][rng.usize(..3)].into(),
                auth: Bytes::from_static(b"super:s"),
            }
            .encode(&mut b),
            101 | 105 => SetWatches2 {
                relative_zxid: rng.usize(..10) as i64,
                data_watches: vec![path.clone()],
                exist_watches: vec![path.clone()],
                child_watches: vec![path.clone()],
                persistent_watches: vec![path.clone()],
                persistent_recursive_watches: vec![path],
            }
            .encode(&mut b),
            17 | 18 | 106 => WatchesRequest {
                path,
                watcher_type: rng.usize(..7) as i32,
            }
            .encode(&mut b),
            _ => PathWatchRequest { path, watch: true }.encode(&mut b),
        }
        let mut bytes = b.to_vec();
        match rng.usize(..4) {
            0 => {
                let n = rng.usize(..bytes.len() + 1);
                bytes.truncate(n);
            }
            1 => {
                for _ in 0..=rng.usize(..4) {
                    let at = rng.usize(..bytes.len().max(1));
                    if let Some(x) = bytes.get_mut(at) {
                        *x = rng.u64(..) as u8;
                    }
                }
            }
            2 => bytes.extend((0..rng.usize(..16)).map(|_| rng.u64(..) as u8)),
            _ => {}
        }
        h.core.receive(conn, Bytes::from(bytes), h.now);
        for o in h.output() {
            if let Output::Close(c, _) = o {
                h.core.conn_closed(c);
                conns.retain(|x| *x != c);
            }
        }
        if rng.usize(..20) == 0 {
            h.now += rng.usize(..50_000) as i64;
            h.core.tick(h.now);
            for o in h.output() {
                if let Output::Close(c, _) = o {
                    h.core.conn_closed(c);
                    conns.retain(|x| *x != c);
                }
            }
        }
    }
}
