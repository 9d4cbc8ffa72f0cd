//! `zkit-bench`: pipelined getData throughput and latency on ONE connection against a real
//! Apache ZooKeeper server, for zkit and for the crates.io `zookeeper-client` crate in the same
//! run, with the throughput ratio.
//!
//! ```text
//! cargo build -p zkit-bench --release
//! target/release/zkit-bench                      # starts a standalone server itself
//! target/release/zkit-bench --connect 127.0.0.1:2181 --requests 100000 --windows 1000,1
//! ```
//!
//! `zkit-bench ensemble` measures 3-server ensembles instead (see [`ensemble`]).
//!
//! Each window size gets a warm-up (server JIT, both connections), then `--runs` measured runs
//! per client, interleaved zkit / zookeeper-client with the order flipped every round; the table
//! shows the median-throughput run of each.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod ensemble;
mod matrix;
mod server;
mod stats;
mod workload;

use std::path::PathBuf;
use std::time::Duration;

use stats::{median_run, RunStats};

/// Counts heap allocations (`zkit-bench probe` reports them per request); the count is two
/// relaxed atomic additions per allocation, the same for both clients.
#[global_allocator]
static GLOBAL: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;
use workload::{Clients, Params, Which};

/// Command-line options.
#[derive(Debug, Clone)]
struct Args {
    connect: Option<String>,
    requests: usize,
    serial_requests: usize,
    windows: Vec<usize>,
    runs: usize,
    value_size: usize,
    warmup: usize,
    threads: usize,
    clients: Vec<Which>,
    zk_script: PathBuf,
}

const USAGE: &str = "\
zkit-bench: pipelined getData on one connection, zkit vs zookeeper-client, real ZooKeeper

USAGE: zkit-bench [OPTIONS]
       zkit-bench all [OPTIONS]        the whole matrix: both servers, both runtimes, get/set/
                                       createdel x 1/16/256, allocations, callgrind, RSS
       zkit-bench rss [OPTIONS]        server RSS with 100k and 1M znodes
       zkit-bench ensemble [OPTIONS]   3-server ensembles (zkit-bench ensemble --help)

  --connect HOST:PORT     server to use (default: start a standalone server with
                          scripts/zookeeper.sh in a temporary directory, stop it at the end)
  --requests N            getData requests per run for windows > 1      [100000]
  --serial-requests N     getData requests per run for window 1         [20000]
  --windows W[,W...]      requests in flight (pipeline depth) to measure [1000,1]
  --runs R                measured runs per client and window (median shown) [5]
  --value-size BYTES      size of the node's value                      [100]
  --warmup N              warm-up requests per client and window        [30000]
  --threads T             tokio worker threads; 0 = current-thread runtime [2]
  --clients C[,C...]      which clients to run: zkit, zookeeper-client (both; one alone
                          is for profiling, there is no ratio then)
  --zk-script PATH        scripts/zookeeper.sh to start the server with
  -h, --help              this text
";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        connect: None,
        requests: 100_000,
        serial_requests: 20_000,
        windows: vec![1000, 1],
        runs: 5,
        value_size: 100,
        warmup: 30_000,
        threads: 2,
        clients: vec![Which::Zkit, Which::ZookeeperClient],
        zk_script: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/zookeeper.sh"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            print!("{USAGE}");
            std::process::exit(0);
        }
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => (flag.clone(), None),
        };
        let value = match inline {
            Some(v) => v,
            None => it.next().ok_or_else(|| format!("{name} needs a value"))?,
        };
        let num = |v: &str| {
            v.replace('_', "")
                .parse::<usize>()
                .map_err(|e| format!("{name} {v}: {e}"))
        };
        match name.as_str() {
            "--connect" => a.connect = Some(value),
            "--requests" => a.requests = num(&value)?,
            "--serial-requests" => a.serial_requests = num(&value)?,
            "--windows" => {
                a.windows = value
                    .split(',')
                    .map(|w| num(w.trim()))
                    .collect::<Result<_, _>>()?
            }
            "--runs" => a.runs = num(&value)?.max(1),
            "--value-size" => a.value_size = num(&value)?,
            "--warmup" => a.warmup = num(&value)?,
            "--threads" => a.threads = num(&value)?,
            "--zk-script" => a.zk_script = PathBuf::from(value),
            "--clients" => {
                a.clients = value
                    .split(',')
                    .map(|c| match c.trim() {
                        "zkit" => Ok(Which::Zkit),
                        "zookeeper-client" => Ok(Which::ZookeeperClient),
                        other => Err(format!("--clients: unknown client {other}")),
                    })
                    .collect::<Result<_, _>>()?
            }
            _ => return Err(format!("unknown option {name}\n\n{USAGE}")),
        }
    }
    if a.windows.contains(&0) {
        return Err("--windows: a window must be at least 1".into());
    }
    Ok(a)
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match argv.first().map(String::as_str) {
        Some("ensemble") => ensemble::main(&argv[1..]),
        Some("all") => matrix::main(&argv[1..]),
        Some("rss") => matrix::rss_main(&argv[1..]),
        Some("probe") => matrix::probe_main(&argv[1..]),
        _ => {}
    }
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("zkit-bench: {e}");
            std::process::exit(2);
        }
    };
    let server = match &args.connect {
        Some(_) => None,
        None => {
            eprintln!(
                "zkit-bench: starting a standalone server with {}",
                args.zk_script.display()
            );
            match server::ZkServer::start(&args.zk_script) {
                Ok(s) => Some(s),
                Err(e) => {
                    eprintln!("zkit-bench: {e}");
                    std::process::exit(1);
                }
            }
        }
    };
    let connect = match (&args.connect, &server) {
        (Some(c), _) => c.clone(),
        (None, Some(s)) => s.connect_string().to_owned(),
        (None, None) => unreachable!("a server was started when no --connect was given"),
    };
    let server_pid = server.as_ref().and_then(|s| s.pid());
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
        Ok(rt) => rt.block_on(bench(&args, &connect, server_pid)),
        Err(e) => Err(format!("tokio runtime: {e}")),
    };
    // The server (if ours) is stopped here, before the exit code is decided.
    drop(server);
    if let Err(e) = result {
        eprintln!("zkit-bench: {e}");
        std::process::exit(1);
    }
}

/// One (client, window) cell of the table: every run, in order.
struct Cell {
    which: Which,
    window: usize,
    runs: Vec<RunStats>,
}

async fn bench(args: &Args, connect: &str, server_pid: Option<u32>) -> Result<(), String> {
    let zkit = zkit::Client::builder(connect)
        .session_timeout(Duration::from_secs(30))
        .connect()
        .await
        .map_err(|e| format!("zkit connect {connect}: {e}"))?;
    let zkc = zookeeper_client::Client::connector()
        .with_session_timeout(Duration::from_secs(30))
        .connect(connect)
        .await
        .map_err(|e| format!("zookeeper-client connect {connect}: {e}"))?;
    let clients = Clients { zkit, zkc };

    let path = format!("/zkit-bench-{}", std::process::id());
    let value = vec![b'x'; args.value_size];
    let _ = clients.zkit.delete(&path, None).await;
    clients
        .zkit
        .create(&path, &value, &zkit::CreateOptions::persistent())
        .await
        .map_err(|e| format!("create {path}: {e}"))?;

    println!("# zkit-bench: pipelined getData on one connection per client");
    println!();
    println!(
        "server {connect} ({}), node {path} with a {}-byte value, tokio {}, {} measured runs per cell (median shown), interleaved",
        if server_pid.is_some() {
            format!(
                "standalone, started by the bench, ZK_JAVA_OPTS={}",
                std::env::var("ZK_JAVA_OPTS").unwrap_or_else(|_| server::DEFAULT_JAVA_OPTS.into())
            )
        } else {
            "given by --connect".to_owned()
        },
        args.value_size,
        if args.threads == 0 {
            "current-thread runtime".to_owned()
        } else {
            format!("multi-thread runtime with {} workers", args.threads)
        },
        args.runs,
    );
    println!();

    let result = measure(args, &clients, &path, server_pid).await;
    let _ = clients.zkit.delete(&path, None).await;
    let cells = result?;
    print_table(&cells);
    drop(clients.zkc);
    let _ = clients.zkit.close().await;
    Ok(())
}

async fn measure(
    args: &Args,
    clients: &Clients,
    path: &str,
    server_pid: Option<u32>,
) -> Result<Vec<Cell>, String> {
    let mut cells = Vec::new();
    for &window in &args.windows {
        let requests = if window == 1 {
            args.serial_requests
        } else {
            args.requests
        };
        let params = Params {
            requests,
            window,
            value_size: args.value_size,
        };
        if args.warmup > 0 {
            let warm = Params {
                requests: args.warmup,
                ..params
            };
            for &which in &args.clients {
                eprintln!("warm-up   W={window:<5} {:<17}", which.name());
                workload::run(clients, which, path, warm, server_pid).await?;
            }
        }
        let mut zk = Cell {
            which: Which::Zkit,
            window,
            runs: Vec::new(),
        };
        let mut zc = Cell {
            which: Which::ZookeeperClient,
            window,
            runs: Vec::new(),
        };
        for round in 0..args.runs {
            // ABBA order: neither client always runs right after the other's garbage.
            let mut order = args.clients.clone();
            if round % 2 == 1 {
                order.reverse();
            }
            for which in order {
                let s = workload::run(clients, which, path, params, server_pid).await?;
                eprintln!(
                    "run {}/{} W={window:<5} {:<17} {:>9.0} ops/s  p50 {:>8.1} µs  p99 {:>8.1} µs",
                    round + 1,
                    args.runs,
                    which.name(),
                    s.ops_per_sec(),
                    us(s.quantile(0.5)),
                    us(s.quantile(0.99)),
                );
                match which {
                    Which::Zkit => zk.runs.push(s),
                    Which::ZookeeperClient => zc.runs.push(s),
                }
            }
        }
        cells.extend([zk, zc].into_iter().filter(|c| !c.runs.is_empty()));
    }
    Ok(cells)
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

fn print_table(cells: &[Cell]) {
    println!("| client | window | requests | ops/s (median run) | p50 µs | p99 µs | p99.9 µs | max µs | client CPU µs/op | server CPU µs/op | all runs ops/s |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for c in cells {
        let m = median_run(&c.runs);
        let all: Vec<String> = c
            .runs
            .iter()
            .map(|r| format!("{:.0}", r.ops_per_sec()))
            .collect();
        println!(
            "| {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {} |",
            c.which.name(),
            c.window,
            m.requests,
            m.ops_per_sec(),
            us(m.quantile(0.5)),
            us(m.quantile(0.99)),
            us(m.quantile(0.999)),
            us(m.quantile(1.0)),
            opt(m.client_cpu_us_per_op()),
            opt(m.server_cpu_us_per_op()),
            all.join(", "),
        );
    }
    println!();
    let mut windows: Vec<usize> = cells.iter().map(|c| c.window).collect();
    windows.dedup();
    for w in windows {
        let get = |which| {
            cells
                .iter()
                .find(|c| c.window == w && c.which == which)
                .map(|c| median_run(&c.runs))
        };
        if let (Some(a), Some(b)) = (get(Which::Zkit), get(Which::ZookeeperClient)) {
            println!(
                "- window {w}: zkit / zookeeper-client throughput = **{:.2}x** (median runs; p50 latency {:.2}x, p99 {:.2}x: below 1 is better for zkit)",
                a.ops_per_sec() / b.ops_per_sec(),
                us(a.quantile(0.5)) / us(b.quantile(0.5)),
                us(a.quantile(0.99)) / us(b.quantile(0.99)),
            );
        }
        // The same ratio round by round: both runs of a round share the machine's conditions, so
        // the median of these paired ratios is less sensitive to other load than the ratio of
        // medians.
        let runs = |which| {
            cells
                .iter()
                .find(|c| c.window == w && c.which == which)
                .map(|c| &c.runs)
        };
        if let (Some(a), Some(b)) = (runs(Which::Zkit), runs(Which::ZookeeperClient)) {
            let mut paired: Vec<f64> = a
                .iter()
                .zip(b)
                .map(|(x, y)| x.ops_per_sec() / y.ops_per_sec())
                .collect();
            paired.sort_by(f64::total_cmp);
            if let (Some(lo), Some(hi)) = (paired.first(), paired.last()) {
                println!(
                    "  paired per round: median **{:.2}x** (range {lo:.2}x .. {hi:.2}x over {} rounds)",
                    paired[(paired.len() - 1) / 2],
                    paired.len(),
                );
            }
        }
    }
}
