//! Differential test: the same seeded random sequence of operations against the testkit and a
//! real ZooKeeper (`ZKIT_TEST_SERVER=host:port`, ideally otherwise idle); every reply and
//! notification must match after normalising zxids, times and session ids.
//! Seed: `ZKIT_DIFF_SEED`; length: `ZKIT_DIFF_OPS`. Skipped without a real server. Sessions left
//! behind by an aborted run expire within 30 s on the real server and shift its zxids: wait, or
//! use a fresh server. On failure both transcripts are written to the temp directory.

mod common;

use bytes::Bytes;
use common::*;
use fastrand::Rng;
use zkit_proto::*;
use zkit_testkit::Server;

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

/// Pieces of auth credentials and ids: the separators ZooKeeper splits on, base64 text (kazoo's
/// `make_digest_acl_credential` output), non-ASCII, empty parts.
const PARTS: [&str; 10] = [
    "u",
    "v",
    "",
    "+Ir5sN1lGJEEs8xBZhZXKvjLJ7c=",
    "a:b",
    "x/y=",
    "ü€",
    "smGaoVKd/cQkjm7b88GyorAUz20=",
    ":",
    "p",
];

fn part(rng: &mut Rng) -> &'static str {
    PARTS[rng.usize(..PARTS.len())]
}

/// A digest credential as a client sends it: usually `user:password`, sometimes without a `:`.
fn credential(rng: &mut Rng) -> String {
    match rng.usize(..5) {
        0 => part(rng).to_owned(),
        _ => format!("{}:{}", part(rng), part(rng)),
    }
}

fn acl_entry(rng: &mut Rng) -> Acl {
    let a = |perms, scheme: &str, id: &str| Acl {
        perms,
        id: Id {
            scheme: scheme.into(),
            id: id.into(),
        },
    };
    let p = match rng.usize(..4) {
        0 => perms::ALL,
        1 => perms::READ,
        2 => perms::ALL & !perms::DELETE & !perms::CREATE,
        _ => rng.i32(0..=32),
    };
    match rng.usize(..9) {
        0 => a(p, "world", "anyone"),
        1 => a(p, "world", part(rng)),
        2 => a(p, "auth", ["", "x", part(rng)][rng.usize(..3)]),
        3 => a(p, "digest", &digest_id(part(rng), part(rng))),
        4 => a(p, "digest", &format!("{}:{}", part(rng), part(rng))),
        5 => a(p, "digest", part(rng)),
        6 => a(
            p,
            "ip",
            ["127.0.0.1", "10.0.0.0/8", "127.0.0.1/33", "::1", "nope", ""][rng.usize(..6)],
        ),
        7 => a(p, "super", part(rng)),
        _ => a(p, part(rng), "anyone"),
    }
}

fn acl_variant(rng: &mut Rng) -> Vec<Acl> {
    match rng.usize(..4) {
        0 => open_acl(),
        1 => vec![],
        _ => (0..1 + rng.usize(..3)).map(|_| acl_entry(rng)).collect(),
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
                acl: acl_variant(rng),
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
            // Only schemes whose provider accepts the packet: a failed auth ends the session.
            let (scheme, cred) = match rng.usize(..6) {
                0 => ("ip", String::new()),
                _ => ("digest", credential(rng)),
            };
            (
                OpCode::Auth,
                Box::new(AuthPacket {
                    auth_type: 0,
                    scheme: scheme.into(),
                    auth: Bytes::from(cred.into_bytes()),
                }),
            )
        }
        14 => (
            OpCode::Create,
            Box::new(CreateRequest {
                path,
                data: None,
                acl: acl_variant(rng),
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
                            acl: open_acl(),
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
        OpCode::Multi | OpCode::Auth => String::new(),
        _ => String::from_bytes(b).unwrap_or_default(),
    }
}

async fn run(addr: &str, root: &str, seed: u64, n: usize) -> Vec<String> {
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
            for line in normalise(frames, base, &sessions) {
                out.push(format!(
                    "{i} c{who} {op:?}({req}) {}",
                    line.replace(root, "R")
                ));
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

#[tokio::test]
async fn random_operations_match_a_real_server() {
    let Ok(real) = std::env::var("ZKIT_TEST_SERVER") else {
        eprintln!("ZKIT_TEST_SERVER not set: differential test skipped");
        return;
    };
    let seed: u64 = std::env::var("ZKIT_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let n: usize = std::env::var("ZKIT_DIFF_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1500);
    eprintln!("differential seed {seed}, {n} ops");
    let ours = Server::start().await.unwrap();
    let root = unique("diff");
    let a = run(&real, &root, seed, n).await;
    let b = run(&ours.connect_string(), &root, seed, n).await;
    if let Some(i) = a.iter().zip(b.iter()).position(|(x, y)| x != y) {
        let dir = std::env::temp_dir();
        let _ = std::fs::write(dir.join("zkit-diff-real.txt"), a.join("\n"));
        let _ = std::fs::write(dir.join("zkit-diff-testkit.txt"), b.join("\n"));
        for line in &a[i.saturating_sub(40)..i] {
            eprintln!("  {line}");
        }
        panic!(
            "first difference, seed {seed}:\n  real:    {}\n  testkit: {}",
            a[i], b[i]
        );
    }
    assert_eq!(a.len(), b.len());
    let count = |pat: &str| a.iter().filter(|l| l.contains(pat)).count();
    eprintln!(
        "{} frames compared: {} events, {} errors, {} multi aborts",
        a.len(),
        count(" event "),
        a.iter().filter(|l| l.contains("reply err=-")).count(),
        count("Error(-2)") + count("Error(0)")
    );
}
