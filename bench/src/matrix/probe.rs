//! Per-request costs that do not depend on the machine's load: heap allocations (counted by the
//! binary's counting allocator) and user-space instructions (callgrind, when valgrind is
//! installed) per request.
//!
//! `zkit-bench probe` runs one client alone on a current-thread runtime, `window` requests in
//! flight, with no timing or latency bookkeeping, so what is counted is the client (and the
//! runtime it runs on). Instructions are the difference of two callgrind runs of different
//! lengths divided by the difference in requests: start-up, connection and shutdown cancel out.

use std::path::Path;
use std::process::Command;

use futures::stream::{FuturesUnordered, StreamExt};
use stats_alloc::Region;

use super::run::{Client, Clients, Op};
use crate::GLOBAL;

/// Options of `zkit-bench probe`.
struct ProbeArgs {
    connect: String,
    client: Client,
    op: Op,
    requests: usize,
    window: usize,
    warmup: usize,
}

/// `zkit-bench probe --connect A --client zkit|zookeeper-client --op get|set|createdel
/// --requests N [--window W] [--warmup N]`: prints `allocs_per_request X`.
pub fn main(argv: &[String]) -> ! {
    let args = match parse(argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("zkit-bench probe: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(probe(&args)) {
        Ok(allocs) => {
            println!("allocs_per_request {allocs:.3}");
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("zkit-bench probe: {e}");
            std::process::exit(1)
        }
    }
}

fn parse(argv: &[String]) -> Result<ProbeArgs, String> {
    let mut a = ProbeArgs {
        connect: String::new(),
        client: Client::Zkit,
        op: Op::Get,
        requests: 10_000,
        window: 256,
        warmup: 0,
    };
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<usize>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--connect" => a.connect = v.clone(),
            "--client" => a.client = super::parse_client(v)?,
            "--op" => a.op = super::parse_op(v)?,
            "--requests" => a.requests = num(v)?,
            "--window" => a.window = num(v)?.max(1),
            "--warmup" => a.warmup = num(v)?,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if a.connect.is_empty() {
        return Err("--connect is required".into());
    }
    Ok(a)
}

async fn probe(a: &ProbeArgs) -> Result<f64, String> {
    let value = vec![b'x'; 100];
    let c = Clients::connect(&a.connect, &value).await?;
    lean(&c, a, 0, a.warmup, &value).await?;
    let region = Region::new(GLOBAL);
    lean(&c, a, a.warmup, a.requests, &value).await?;
    let allocs = region.change().allocations as f64 / a.requests.max(1) as f64;
    c.close().await;
    Ok(allocs)
}

/// The loop without any bookkeeping but the count; request `first + i` for createdel.
async fn lean(
    c: &Clients,
    a: &ProbeArgs,
    first: usize,
    requests: usize,
    value: &[u8],
) -> Result<(), String> {
    let paths: Vec<String> = match a.op {
        Op::CreateDel => (first..first + requests)
            .map(|i| format!("{}/p{}", c.dir, i / 2))
            .collect(),
        _ => Vec::new(),
    };
    macro_rules! drive {
        ($issue:expr) => {{
            let mut inflight = FuturesUnordered::new();
            let mut issued = 0;
            let mut done = 0;
            while done < requests {
                while issued < requests && inflight.len() < a.window {
                    inflight.push($issue(issued));
                    issued += 1;
                }
                match inflight.next().await {
                    Some(Ok(())) => done += 1,
                    Some(Err(e)) => return Err(e),
                    None => return Err("no request in flight".to_owned()),
                }
            }
        }};
    }
    let node = c.node.as_str();
    let even = first & 1 == 0;
    match (a.client, a.op) {
        (Client::Zkit, Op::Get) => drive!(|_| {
            let f = c.zkit.get_data(node);
            async move { f.await.map(drop).map_err(|e| e.to_string()) }
        }),
        (Client::Zkit, Op::Set) => drive!(|_| {
            let f = c.zkit.set_data(node, value, None);
            async move { f.await.map(drop).map_err(|e| e.to_string()) }
        }),
        (Client::Zkit, Op::CreateDel) => {
            let opts = zkit::CreateOptions::persistent();
            drive!(|i: usize| {
                let p = &paths[i];
                let f = if (i & 1 == 0) == even {
                    futures::future::Either::Left(c.zkit.create(p, value, &opts))
                } else {
                    futures::future::Either::Right(async move {
                        c.zkit
                            .delete(p, None)
                            .await
                            .map(|()| (String::new(), Default::default()))
                    })
                };
                async move { f.await.map(drop).map_err(|e| e.to_string()) }
            })
        }
        (Client::Crate, Op::Get) => drive!(|_| {
            let f = c.zkc.get_data(node);
            async move { f.await.map(drop).map_err(|e| e.to_string()) }
        }),
        (Client::Crate, Op::Set) => drive!(|_| {
            let f = c.zkc.set_data(node, value, None);
            async move { f.await.map(drop).map_err(|e| e.to_string()) }
        }),
        (Client::Crate, Op::CreateDel) => {
            let opts = zookeeper_client::CreateMode::Persistent
                .with_acls(zookeeper_client::Acls::anyone_all());
            drive!(|i: usize| {
                let p = &paths[i];
                let create = (i & 1 == 0) == even;
                let cf = create.then(|| c.zkc.create(p, value, &opts));
                let df = (!create).then(|| c.zkc.delete(p, None));
                async move {
                    match (cf, df) {
                        (Some(f), _) => f.await.map(drop).map_err(|e| e.to_string()),
                        (_, Some(f)) => f.await.map_err(|e| e.to_string()),
                        _ => Ok(()),
                    }
                }
            })
        }
    }
    Ok(())
}

/// User-space instructions per request of `client` doing `op` against `connect`, by callgrind;
/// `None` when valgrind is missing or a run fails (the reason goes to stderr).
pub fn instructions(exe: &Path, connect: &str, client: Client, op: Op) -> Option<f64> {
    const SHORT: usize = 2_000;
    const LONG: usize = 12_000;
    let count = |n: usize| -> Option<f64> {
        let out = std::env::temp_dir().join(format!(
            "zkit-bench-callgrind-{}-{}-{n}.out",
            std::process::id(),
            client.name()
        ));
        let status = Command::new("valgrind")
            .arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg(exe)
            .args(["probe", "--connect", connect, "--client", client.name()])
            .args(["--op", op.name(), "--requests", &n.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let text = std::fs::read_to_string(&out).ok();
        let _ = std::fs::remove_file(&out);
        match status {
            Ok(s) if s.success() => {}
            other => {
                eprintln!("zkit-bench: callgrind run failed ({other:?})");
                return None;
            }
        }
        text?
            .lines()
            .find_map(|l| l.strip_prefix("totals:"))
            .and_then(|t| t.trim().parse::<f64>().ok())
    };
    let short = count(SHORT)?;
    let long = count(LONG)?;
    Some((long - short) / (LONG - SHORT) as f64)
}

/// Whether valgrind can be run.
pub fn have_valgrind() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Allocations per request of `client` doing `op` (the probe's own count, in a child process
/// so the count covers nothing else).
pub fn allocations(exe: &Path, connect: &str, client: Client, op: Op) -> Option<f64> {
    let out = Command::new(exe)
        .args(["probe", "--connect", connect, "--client", client.name()])
        .args(["--op", op.name(), "--requests", "20000", "--warmup", "4000"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("allocs_per_request "))
        .and_then(|v| v.trim().parse().ok())
}
