//! `zkit-bench ensemble`: 3-server ensembles measured the same way, real Apache ZooKeeper
//! always and the in-process testkit ensemble when built with `--features ensemble`:
//!
//! 1. ready to serve: from starting a fresh ensemble until a client has created a node;
//! 2. failover: `kill -9` the leader, then the time until a survivor reports `leader` and until
//!    a `setData` through a session on the survivors succeeds;
//! 3. throughput: pipelined `setData` and `getData` over many connections spread across the
//!    three servers, for a fixed time after a warm-up.
//!
//! 1 and 2 run on `--trials` fresh ensembles (median shown); 3 on one more.

mod load;
mod target;
#[cfg(feature = "ensemble")]
mod testkit;
mod zookeeper;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::stats::{median_run, RunStats};
use load::{Conn, Op, Spec};
use target::{Ensemble, Kind};
use zookeeper::PATIENCE;

/// Options of the `ensemble` subcommand.
#[derive(Debug, Clone)]
struct Args {
    targets: Vec<Kind>,
    ready: bool,
    failover: bool,
    ops: Vec<Op>,
    trials: usize,
    connections: usize,
    window: usize,
    znodes: usize,
    seconds: Duration,
    warmup: Duration,
    runs: usize,
    value_size: usize,
    threads: usize,
    data_dir: Option<PathBuf>,
    zk_script: PathBuf,
}

const USAGE: &str = "\
zkit-bench ensemble: 3-server ensembles: ready-to-serve time, leader failover, pipelined
setData / getData throughput over many connections (real ZooKeeper; the testkit ensemble too
when built with --features ensemble)

USAGE: zkit-bench ensemble [OPTIONS]

  --targets T[,T...]      zookeeper, testkit (testkit needs --features ensemble) [all built]
  --measure M[,M...]      ready, failover, set, get                       [all]
  --trials N              fresh ensembles for ready and failover (median)  [3]
  --connections N         client sessions for the load, server i mod 3 each [8]
  --window W              requests in flight per connection               [64]
  --znodes K              znodes the load uses (connection i: i mod K)    [connections]
  --seconds S             length of a measured load run                   [10]
  --warmup-seconds S      load before the measured runs of each operation [5]
  --runs R                measured load runs per operation (median shown) [3]
  --value-size BYTES      znode value size                                [100]
  --threads T             tokio worker threads; 0 = current-thread runtime [2]
  --data-dir DIR          where the ensembles' data dirs go (fsync lands there) [temp dir]
  --zk-script PATH        scripts/zookeeper.sh
  -h, --help              this text
";

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let mut a = Args {
        targets: Kind::all(),
        ready: true,
        failover: true,
        ops: vec![Op::SetData, Op::GetData],
        trials: 3,
        connections: 8,
        window: 64,
        znodes: 0,
        seconds: Duration::from_secs(10),
        warmup: Duration::from_secs(5),
        runs: 3,
        value_size: 100,
        threads: 2,
        data_dir: None,
        zk_script: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/zookeeper.sh"),
    };
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            print!("{USAGE}");
            std::process::exit(0);
        }
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n.to_owned(), v.to_owned()),
            None => (
                flag.clone(),
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{flag} needs a value"))?,
            ),
        };
        let num = |v: &str| {
            v.replace('_', "")
                .parse::<usize>()
                .map_err(|e| format!("{name} {v}: {e}"))
        };
        let secs = |v: &str| match v.parse::<f64>() {
            Ok(s) if s.is_finite() && s >= 0.0 => Ok(Duration::from_secs_f64(s)),
            _ => Err(format!("{name} {v}: not a number of seconds")),
        };
        let list = |v: &str| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .collect::<Vec<_>>()
        };
        match name.as_str() {
            "--targets" => {
                a.targets = list(&value)
                    .iter()
                    .map(|t| Kind::parse(t))
                    .collect::<Result<_, _>>()?
            }
            "--measure" => {
                let m = list(&value);
                for x in &m {
                    if !["ready", "failover", "set", "get"].contains(&x.as_str()) {
                        return Err(format!("--measure: unknown measurement {x}"));
                    }
                }
                let has = |s: &str| m.iter().any(|x| x == s);
                a.ready = has("ready");
                a.failover = has("failover");
                a.ops = [(Op::SetData, "set"), (Op::GetData, "get")]
                    .into_iter()
                    .filter(|(_, s)| has(s))
                    .map(|(o, _)| o)
                    .collect();
            }
            "--trials" => a.trials = num(&value)?.max(1),
            "--connections" => a.connections = num(&value)?.max(1),
            "--window" => a.window = num(&value)?.max(1),
            "--znodes" => a.znodes = num(&value)?,
            "--seconds" => a.seconds = secs(&value)?,
            "--warmup-seconds" => a.warmup = secs(&value)?,
            "--runs" => a.runs = num(&value)?.max(1),
            "--value-size" => a.value_size = num(&value)?,
            "--threads" => a.threads = num(&value)?,
            "--data-dir" => a.data_dir = Some(PathBuf::from(value)),
            "--zk-script" => a.zk_script = PathBuf::from(value),
            _ => return Err(format!("unknown option {name}\n\n{USAGE}")),
        }
    }
    if a.znodes == 0 {
        a.znodes = a.connections;
    }
    Ok(a)
}

/// Entry point of the subcommand; `argv` is what follows `ensemble`. Exits the process.
pub fn main(argv: &[String]) -> ! {
    let args = match parse_args(argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("zkit-bench ensemble: {e}");
            std::process::exit(2);
        }
    };
    let rt = if args.threads == 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let result = match rt {
        Ok(rt) => rt.block_on(bench(&args)),
        Err(e) => Err(format!("tokio runtime: {e}")),
    };
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("zkit-bench ensemble: {e}");
            std::process::exit(1);
        }
    }
}

/// Everything measured on one target.
struct Report {
    kind: Kind,
    about: String,
    ready: Vec<Duration>,
    elected: Vec<Duration>,
    written: Vec<Duration>,
    loads: Vec<(Op, Vec<RunStats>)>,
}

async fn bench(args: &Args) -> Result<(), String> {
    let base = args
        .data_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("zkit-bench-ensemble-{}", std::process::id()));
    let mut reports = Vec::new();
    let mut failed = None;
    for &kind in &args.targets {
        match measure(args, kind, &base).await {
            Ok(r) => reports.push(r),
            Err(e) => {
                failed = Some(format!("{}: {e}", kind.name()));
                break;
            }
        }
    }
    // Each ensemble removed its own dir when it was dropped (unless it could not be stopped).
    let _ = std::fs::remove_dir(&base);
    if let Some(e) = failed {
        return Err(e);
    }
    print_report(args, &base, &reports);
    Ok(())
}

async fn measure(args: &Args, kind: Kind, base: &std::path::Path) -> Result<Report, String> {
    let mut r = Report {
        kind,
        about: String::new(),
        ready: Vec::new(),
        elected: Vec::new(),
        written: Vec::new(),
        loads: Vec::new(),
    };
    if args.ready || args.failover {
        for trial in 1..=args.trials {
            let dir = base.join(format!("{}-{trial}", kind.name()));
            let (mut ens, ready) = kind.start_timed(&args.zk_script, &dir).await?;
            eprintln!(
                "{} trial {trial}: ready to serve in {ready:.2?}",
                kind.name()
            );
            r.ready.push(ready);
            r.about = ens.describe().await;
            if args.failover {
                let (elected, written) = failover(&mut ens).await?;
                eprintln!(
                    "{} trial {trial}: leader killed; new leader after {elected:.2?}, first write after {written:.2?}",
                    kind.name()
                );
                r.elected.push(elected);
                r.written.push(written);
            }
        }
    }
    if !args.ops.is_empty() {
        let dir = base.join(format!("{}-load", kind.name()));
        let (ens, _) = kind.start_timed(&args.zk_script, &dir).await?;
        r.about = ens.describe().await;
        r.loads = loads(args, &ens).await?;
    }
    Ok(r)
}

/// Creates `path` (persistent, with `data`) unless it exists.
async fn ensure(c: &zkit::Client, path: &str, data: &[u8]) -> Result<(), zkit::Error> {
    match c
        .create(path, data, &zkit::CreateOptions::persistent())
        .await
    {
        Ok(_) | Err(zkit::Error::NodeExists) => Ok(()),
        Err(e) => Err(e),
    }
}

/// One attempt to open a session on `connect` and create `path`: the readiness probe.
pub(crate) async fn probe_create(
    connect: &str,
    path: &str,
    attempt: Duration,
) -> Result<(), zkit::Error> {
    let try_once = async {
        let c = zkit::Client::builder(connect)
            .connect_timeout(attempt)
            .backoff(Duration::from_millis(5), Duration::from_millis(50))
            .connect()
            .await?;
        let r = ensure(&c, path, b"").await;
        let _ = c.close().await;
        r
    };
    tokio::time::timeout(attempt, try_once)
        .await
        .unwrap_or(Err(zkit::Error::ConnectionLoss))
}

/// Kills the leader; returns the time until another server is leader and until a write through
/// a session on the survivors (opened before the kill) succeeds.
async fn failover(ens: &mut Ensemble) -> Result<(Duration, Duration), String> {
    let hosts = ens.hosts();
    let t = Instant::now();
    let old = loop {
        if let Some(l) = ens.leader().await {
            break l;
        }
        if t.elapsed() > PATIENCE {
            return Err("no leader".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let survivors: Vec<&str> = (0..hosts.len())
        .filter(|&i| i != old)
        .map(|i| hosts[i].as_str())
        .collect();
    let client = zkit::Client::builder(&survivors.join(","))
        .session_timeout(Duration::from_secs(30))
        .backoff(Duration::from_millis(5), Duration::from_millis(50))
        .connect()
        .await
        .map_err(|e| format!("connect to the followers: {e}"))?;
    let path = format!("/zkit-bench-failover-{}", std::process::id());
    ensure(&client, &path, b"before")
        .await
        .map_err(|e| format!("create {path}: {e}"))?;

    let t0 = Instant::now();
    ens.kill(old).await?;
    let ens = &*ens;
    let elected = async {
        loop {
            match ens.leader().await {
                Some(l) if l != old => return t0.elapsed(),
                _ => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    };
    let written = async {
        loop {
            match tokio::time::timeout(
                Duration::from_secs(5),
                client.set_data(&path, b"after", None),
            )
            .await
            {
                Ok(Ok(_)) => return Ok(t0.elapsed()),
                Ok(Err(e)) if e.is_retryable() => {
                    tokio::time::sleep(Duration::from_millis(2)).await
                }
                Ok(Err(e)) => return Err(format!("setData after the kill: {e}")),
                Err(_) => {}
            }
        }
    };
    let (elected, written) =
        tokio::time::timeout(PATIENCE, futures::future::join(elected, written))
            .await
            .map_err(|_| "no failover".to_owned())?;
    let written = written?;
    let _ = client.delete(&path, None).await;
    let _ = client.close().await;
    Ok((elected, written))
}

/// The throughput runs on one fresh ensemble.
async fn loads(args: &Args, ens: &Ensemble) -> Result<Vec<(Op, Vec<RunStats>)>, String> {
    let hosts = ens.hosts();
    let value = Bytes::from(vec![b'x'; args.value_size]);
    let admin = zkit::Client::builder(&hosts.join(","))
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let root = format!("/zkit-bench-ensemble-{}", std::process::id());
    ensure(&admin, &root, b"")
        .await
        .map_err(|e| format!("create {root}: {e}"))?;
    for k in 0..args.znodes {
        ensure(&admin, &format!("{root}/n{k}"), &value)
            .await
            .map_err(|e| format!("create {root}/n{k}: {e}"))?;
    }
    let mut conns = Vec::new();
    for i in 0..args.connections {
        let host = &hosts[i % hosts.len()];
        let client = zkit::Client::builder(host)
            .session_timeout(Duration::from_secs(30))
            .connect()
            .await
            .map_err(|e| format!("connect {host}: {e}"))?;
        conns.push(Conn {
            client,
            path: format!("{root}/n{}", i % args.znodes),
        });
    }
    let pids = ens.server_pids();
    let mut out = Vec::new();
    for &op in &args.ops {
        let mut spec = Spec {
            op,
            window: args.window,
            value: value.clone(),
            duration: args.warmup,
        };
        if !args.warmup.is_zero() {
            eprintln!("warm-up {} for {:.0?}", op.name(), args.warmup);
            load::run(&conns, &spec, &pids).await?;
        }
        spec.duration = args.seconds;
        let mut runs = Vec::new();
        for run in 1..=args.runs {
            let s = load::run(&conns, &spec, &pids).await?;
            eprintln!(
                "run {run}/{} {:<7} {:>9.0} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms",
                args.runs,
                op.name(),
                s.ops_per_sec(),
                ms(s.quantile(0.5)),
                ms(s.quantile(0.99)),
            );
            runs.push(s);
        }
        out.push((op, runs));
    }
    for c in conns {
        let _ = c.client.close().await;
    }
    let _ = admin.close().await;
    Ok(out)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Median (lower middle) of durations, in seconds, and every value.
fn median_secs(v: &[Duration]) -> (String, String) {
    if v.is_empty() {
        return ("-".into(), "-".into());
    }
    let mut s = v.to_vec();
    s.sort();
    let all: Vec<String> = v
        .iter()
        .map(|d| format!("{:.2}", d.as_secs_f64()))
        .collect();
    (
        format!("{:.2}", s[(s.len() - 1) / 2].as_secs_f64()),
        all.join(", "),
    )
}

fn print_report(args: &Args, base: &std::path::Path, reports: &[Report]) {
    println!("# zkit-bench ensemble: 3-server ensembles");
    println!();
    for r in reports {
        println!("- {}: {}", r.kind.name(), r.about);
    }
    println!("- data dirs under {} (removed afterwards)", base.display());
    println!(
        "- load: {} connections (connection i on server i mod 3), {} requests in flight each, {} znodes of {} bytes, {:.0?} warm-up, {} runs of {:.0?} per operation (median run shown), tokio {}",
        args.connections,
        args.window,
        args.znodes,
        args.value_size,
        args.warmup,
        args.runs,
        args.seconds,
        if args.threads == 0 {
            "current-thread runtime".to_owned()
        } else {
            format!("multi-thread runtime with {} workers", args.threads)
        },
    );
    println!();
    if args.ready || args.failover {
        println!("| target | ready to serve, s | failover: new leader, s | failover: first write, s | trials (ready; leader; write) |");
        println!("|---|---:|---:|---:|---|");
        for r in reports {
            let (ready, ready_all) = median_secs(&r.ready);
            let (el, el_all) = median_secs(&r.elected);
            let (wr, wr_all) = median_secs(&r.written);
            println!(
                "| {} | {ready} | {el} | {wr} | {ready_all}; {el_all}; {wr_all} |",
                r.kind.name()
            );
        }
        println!();
    }
    if !args.ops.is_empty() {
        println!("| target | operation | ops/s (median run) | p50 ms | p99 ms | max ms | server CPU µs/op | client CPU µs/op | all runs ops/s |");
        println!("|---|---|---:|---:|---:|---:|---:|---:|---|");
        for r in reports {
            for (op, runs) in &r.loads {
                let m = median_run(runs);
                let all: Vec<String> = runs
                    .iter()
                    .map(|s| format!("{:.0}", s.ops_per_sec()))
                    .collect();
                let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
                println!(
                    "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
                    r.kind.name(),
                    op.name(),
                    m.ops_per_sec(),
                    ms(m.quantile(0.5)),
                    ms(m.quantile(0.99)),
                    ms(m.quantile(1.0)),
                    opt(m.server_cpu_us_per_op()),
                    opt(m.client_cpu_us_per_op()),
                    all.join(", "),
                );
            }
        }
    }
}
