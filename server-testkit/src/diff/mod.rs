//! The differential checker's generator: the same seeded random sessions (two clients, every
//! opcode of 3.8, watches, multi, re-attach with SetWatches2, closed sessions; several addAuth
//! per session with arbitrary `digest` credentials, `ip` and unknown schemes; random ACL lists
//! over every scheme on create, multi create and setACL: see [`auth_gen`]) against
//! any server, as a normalised transcript (zxids relative to the run's start, session ids by
//! order of creation, children in the server's order) that two servers must agree on line
//! for line. Used by `tests/differential.rs` and the `zkit-diff` binary.

pub mod auth_gen;
pub mod raw;

use bytes::Bytes;
use fastrand::Rng;
use zkit_proto::*;

use raw::{open_acl, RawClient, Reply};

/// One step's observable outcome, normalised.
fn normalise(frames: Vec<Reply>, base: i64, sessions: &[i64]) -> Vec<String> {
    let z = |x: i64| if x > base { x - base } else { x.min(0) };
    let st = |s: &Stat| {
        format!(
            "czxid={} mzxid={} pzxid={} v={} cv={} av={} owner={} len={} kids={}",
            z(s.czxid),
            z(s.mzxid),
            z(s.pzxid),
            s.version,
            s.cversion,
            s.aversion,
            match sessions.iter().position(|x| *x == s.ephemeral_owner) {
                Some(i) => format!("s{i}"),
                None => s.ephemeral_owner.to_string(),
            },
            s.data_length,
            s.num_children
        )
    };
    frames
        .into_iter()
        .map(|r| {
            if r.header.xid == -1 {
                let e = r.event();
                return format!("event {} {}", e.event_type, e.path);
            }
            let mut s = format!("reply err={} zxid={}", r.header.err, z(r.header.zxid));
            if r.header.err == 0 && !r.body.is_empty() {
                s.push(' ');
                s.push_str(&describe(&r, &st));
            }
            s
        })
        .collect()
}

thread_local! {
    static LAST_OP: std::cell::Cell<i32> = const { std::cell::Cell::new(0) };
}

fn describe(r: &Reply, st: &dyn Fn(&Stat) -> String) -> String {
    match LAST_OP.with(|c| c.get()) {
        1 => r.decode::<PathResponse>().path,
        15 => {
            let c: Create2Response = r.decode();
            format!("{} {}", c.path, st(&c.stat))
        }
        3 | 5 => st(&r.decode::<StatResponse>().stat),
        4 => {
            let g: GetDataResponse = r.decode();
            format!("{:?} {}", g.data, st(&g.stat))
        }
        12 => {
            let g: GetChildren2Response = r.decode();
            // Unsorted: the order is ZooKeeper's HashSet order.
            format!("{:?} {}", g.children, st(&g.stat))
        }
        14 => {
            let m: MultiResponse = r.decode();
            m.results
                .iter()
                .map(|x| match x {
                    MultiResult::Create(p) => format!("create {p}"),
                    MultiResult::SetData(s) => format!("set {}", st(s)),
                    other => format!("{other:?}"),
                })
                .collect::<Vec<_>>()
                .join("; ")
        }
        6 => {
            let g: GetAclResponse = r.decode();
            format!("{:?} {}", g.acl, st(&g.stat))
        }
        7 => st(&r.decode::<StatResponse>().stat),
        103 => format!("{:?}", r.decode::<GetChildrenResponse>().children),
        104 | 106 => format!("{}", r.decode::<IntResponse>().value),
        _ => format!("{:?}", r.body),
    }
}

fn gen_step(rng: &mut Rng, root: &str, known: &[String]) -> (OpCode, Box<dyn frame::Encodable>) {
    let pick = |rng: &mut Rng| -> String {
        match rng.usize(..4) {
            0 => format!("{root}/n{}", rng.usize(..4)),
            _ => {
                let base = known[rng.usize(..known.len())].clone();
                // Never the root of the run itself: a sequential create there would make a
                // sibling whose name depends on everything else on the server.
                if rng.usize(..2) == 0 && base != root {
                    base
                } else {
                    format!("{base}/n{}", rng.usize(..3))
                }
            }
        }
    };
    let path = pick(rng);
    let data = Some(Bytes::from(vec![b'x'; rng.usize(..4)]));
    match rng.usize(..16) {
        0 | 1 => (
            OpCode::Create,
            Box::new(CreateRequest {
                path,
                data,
                acl: open_acl(),
                flags: rng.usize(..4) as i32,
            }),
        ),
        2 => (
            OpCode::Create2,
            Box::new(CreateRequest {
                path,
                data,
                acl: open_acl(),
                flags: rng.usize(..4) as i32,
            }),
        ),
        3 => (
            OpCode::Delete,
            Box::new(DeleteRequest {
                path,
                version: rng.usize(..3) as i32 - 1,
            }),
        ),
        4 => (
            OpCode::SetData,
            Box::new(SetDataRequest {
                path,
                data,
                version: rng.usize(..3) as i32 - 1,
            }),
        ),
        5 => (
            OpCode::Exists,
            Box::new(PathWatchRequest {
                path,
                watch: rng.usize(..2) == 0,
            }),
        ),
        6 => (
            OpCode::GetData,
            Box::new(PathWatchRequest {
                path,
                watch: rng.usize(..2) == 0,
            }),
        ),
        7 => (
            OpCode::GetChildren2,
            Box::new(PathWatchRequest {
                path,
                watch: rng.usize(..2) == 0,
            }),
        ),
        10 => (
            OpCode::SetAcl,
            Box::new(SetAclRequest {
                path,
                acl: auth_gen::acl_list(rng),
                version: rng.usize(..3) as i32 - 1,
            }),
        ),
        11 => match rng.usize(..3) {
            0 => (OpCode::GetAcl, Box::new(PathRequest { path })),
            1 => (OpCode::GetAllChildrenNumber, Box::new(PathRequest { path })),
            _ => (OpCode::GetEphemerals, Box::new(PathRequest { path })),
        },
        12 => match rng.usize(..3) {
            0 => (
                OpCode::AddWatch,
                Box::new(AddWatchRequest {
                    path,
                    mode: rng.usize(..2) as i32,
                }),
            ),
            1 => (
                OpCode::RemoveWatches,
                Box::new(WatchesRequest {
                    path,
                    watcher_type: 1 + rng.usize(..3) as i32,
                }),
            ),
            _ => (
                OpCode::CheckWatches,
                Box::new(WatchesRequest {
                    path,
                    watcher_type: 1 + rng.usize(..3) as i32,
                }),
            ),
        },
        13 => {
            // Now and then an unknown scheme: AuthFailed, and the server drops the connection.
            let (scheme, cred) = if rng.usize(..25) == 0 {
                ("nosuchscheme", b"x".to_vec())
            } else {
                auth_gen::auth(rng)
            };
            (
                OpCode::Auth,
                Box::new(AuthPacket {
                    auth_type: 0,
                    scheme: scheme.into(),
                    auth: Bytes::from(cred),
                }),
            )
        }
        14 => (
            OpCode::Create,
            Box::new(CreateRequest {
                path,
                data: None,
                acl: auth_gen::acl_list(rng),
                flags: rng.usize(..2) as i32,
            }),
        ),
        _ => {
            let mut ops = Vec::new();
            for _ in 0..=rng.usize(..3) {
                let p = pick(rng);
                ops.push(match rng.usize(..4) {
                    0 => MultiOp::Create {
                        op: OpCode::Create,
                        req: CreateRequest {
                            path: p,
                            data: None,
                            acl: if rng.usize(..3) == 0 {
                                auth_gen::acl_list(rng)
                            } else {
                                open_acl()
                            },
                            flags: rng.usize(..4) as i32,
                        },
                    },
                    1 => MultiOp::Delete(DeleteRequest {
                        path: p,
                        version: -1,
                    }),
                    2 => MultiOp::SetData(SetDataRequest {
                        path: p,
                        data: None,
                        version: rng.usize(..3) as i32 - 1,
                    }),
                    _ => MultiOp::Check(CheckVersionRequest {
                        path: p,
                        version: rng.usize(..2) as i32,
                    }),
                });
            }
            (OpCode::Multi, Box::new(MultiRequest { ops }))
        }
    }
}

/// The interesting request fields, for failure reports.
fn request_summary(op: OpCode, body: &dyn frame::Encodable) -> String {
    let mut b = bytes::BytesMut::new();
    body.encode_into(&mut b);
    let b = b.freeze();
    match op {
        OpCode::Exists | OpCode::GetData | OpCode::GetChildren2 => {
            let r = PathWatchRequest::from_bytes(b).unwrap();
            format!("{} watch={}", r.path, r.watch)
        }
        OpCode::CheckWatches | OpCode::RemoveWatches => {
            let r = WatchesRequest::from_bytes(b).unwrap();
            format!("{} type={}", r.path, r.watcher_type)
        }
        OpCode::AddWatch => {
            let r = AddWatchRequest::from_bytes(b).unwrap();
            format!("{} mode={}", r.path, r.mode)
        }
        OpCode::Auth => {
            let r = AuthPacket::from_bytes(b).unwrap();
            format!("{} {:?}", r.scheme, String::from_utf8_lossy(&r.auth))
        }
        OpCode::Multi => String::new(),
        _ => String::from_bytes(b).unwrap_or_default(),
    }
}

/// Runs `n` seeded random steps against the server at `addr` under `root` (which must not
/// exist) and returns the normalised transcript: one line per reply and notification.
pub async fn transcript(addr: &str, root: &str, seed: u64, n: usize) -> Vec<String> {
    // Two clients; after each step the other one pings, so the notifications the step caused
    // are read at a deterministic point. Now and then a client closes its session (its
    // ephemerals go) and reconnects.
    let mut clients = vec![
        RawClient::connect(addr).await,
        RawClient::connect(addr).await,
    ];
    let mut sessions: Vec<i64> = clients.iter().map(|c| c.session_id).collect();
    let mut last_seen = [0i64; 2];
    let base = clients[0].ping().await.zxid;
    let mut out = Vec::new();
    let mut rng = Rng::with_seed(seed);
    clients[0].create(root, b"", 0).await.unwrap();
    let mut known = vec![root.to_string()];
    for i in 0..n {
        let who = rng.usize(..2);
        if rng.usize(..60) == 0 {
            // Drop the connection, re-attach the session elsewhere and re-register watches.
            let (id, pw) = (clients[who].session_id, clients[who].passwd.clone());
            let (mut c, resp) = RawClient::connect_with(addr, id, pw, 30000).await;
            out.push(format!("{i} c{who} reattach timeout={}", resp.timeout));
            let mut list = || -> Vec<String> {
                (0..rng.usize(..3))
                    .map(|_| {
                        let k = &known[rng.usize(..known.len())];
                        if rng.usize(..2) == 0 {
                            k.clone()
                        } else {
                            format!("{k}/n{}", rng.usize(..3))
                        }
                    })
                    .collect()
            };
            let sw = SetWatches2 {
                relative_zxid: last_seen[who],
                data_watches: list(),
                exist_watches: list(),
                child_watches: list(),
                persistent_watches: list(),
                persistent_recursive_watches: list(),
            };
            c.send_xid(-8, OpCode::SetWatches2, Some(&sw)).await;
            let mut frames = Vec::new();
            loop {
                let r = c.next().await.expect("open");
                let done = r.header.xid == -8;
                frames.push(r);
                if done {
                    break;
                }
            }
            LAST_OP.with(|c| c.set(105));
            for line in normalise(frames, base, &sessions) {
                out.push(format!(
                    "{i} c{who} SetWatches2 {}",
                    line.replace(root, "R")
                ));
            }
            clients[who] = c;
        } else if rng.usize(..100) == 0 {
            let h = clients[who].close_session().await;
            out.push(format!("{i} c{who} close err={}", h.err));
            clients[who] = RawClient::connect(addr).await;
            sessions.push(clients[who].session_id);
            last_seen[who] = 0;
        } else {
            let (op, body) = gen_step(&mut rng, root, &known);
            let req = request_summary(op, body.as_ref()).replace(root, "R");
            let c = &mut clients[who];
            let xid = c.send(op, Some(body.as_ref())).await;
            let mut frames = Vec::new();
            loop {
                let r = c.next().await.expect("open");
                let done = r.header.xid == xid;
                frames.push(r);
                if done {
                    break;
                }
            }
            LAST_OP.with(|c| c.set(op.code()));
            for f in &frames {
                last_seen[who] = last_seen[who].max(f.header.zxid);
            }
            if let Some(last) = frames.last() {
                if last.header.err == 0 && (op == OpCode::Create || op == OpCode::Create2) {
                    let p = if op == OpCode::Create {
                        last.decode::<PathResponse>().path
                    } else {
                        last.decode::<Create2Response>().path
                    };
                    known.push(p);
                }
            }
            let auth_failed = op == OpCode::Auth
                && frames.last().map(|f| f.header.err) == Some(ErrorCode::AuthFailed.code());
            for line in normalise(frames, base, &sessions) {
                out.push(format!(
                    "{i} c{who} {op:?}({req}) {}",
                    line.replace(root, "R")
                ));
            }
            if auth_failed {
                // The server drops the connection but keeps the session: re-attach it (its
                // auth ids and watches went with the connection).
                let closed = c.closed_by_server().await;
                let (id, pw) = (c.session_id, c.passwd.clone());
                let (fresh, resp) = RawClient::connect_with(addr, id, pw, 30000).await;
                out.push(format!(
                    "{i} c{who} closed={closed} reattach timeout={}",
                    resp.timeout
                ));
                clients[who] = fresh;
            }
        }
        let other = &mut clients[1 - who];
        other.send_xid(-2, OpCode::Ping, None).await;
        loop {
            let r = other.next().await.expect("open");
            if r.header.xid == -2 {
                last_seen[1 - who] = last_seen[1 - who].max(r.header.zxid);
                break;
            }
            for line in normalise(vec![r], base, &sessions) {
                out.push(format!("{i} c{} {}", 1 - who, line.replace(root, "R")));
            }
        }
    }
    // Leave no sessions behind to expire later (that would shift a real server's zxids).
    for c in &mut clients {
        c.close_session().await;
    }
    out
}

/// The index of the first line where the transcripts differ (a missing line counts).
pub fn first_divergence(a: &[String], b: &[String]) -> Option<usize> {
    a.iter()
        .zip(b.iter())
        .position(|(x, y)| x != y)
        .or_else(|| (a.len() != b.len()).then(|| a.len().min(b.len())))
}

/// Counts of what a transcript exercised: lines, events, errors, multi aborts.
pub fn summary(a: &[String]) -> String {
    let count = |pat: &str| a.iter().filter(|l| l.contains(pat)).count();
    format!(
        "{} frames compared: {} events, {} errors, {} multi aborts",
        a.len(),
        count(" event "),
        count("reply err=-"),
        count("Error(-2)") + count("Error(0)")
    )
}
