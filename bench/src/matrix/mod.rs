//! `zkit-bench all`: every figure of the client and server performance goals, side by side, in
//! one run: zkit vs the `zookeeper-client` crate on `zkit-server` and on real ZooKeeper, on a
//! current-thread and a 2-worker multi-thread runtime, for get / set / createdel at 1, 16 and
//! 256 requests in flight (medians of interleaved runs); heap allocations and (with valgrind)
//! user-space instructions per request; and the servers' RSS holding 100k and 1M znodes.
//!
//! `zkit-bench probe` and `zkit-bench rss` are the parts on their own (see `--help`).

mod probe;
mod run;
mod servers;

use std::path::PathBuf;

use run::{Client, Clients, Op, Run};
use servers::Server;

const USAGE: &str = "\
zkit-bench all: the whole performance matrix in one run

USAGE: zkit-bench all [OPTIONS]
       zkit-bench rss [--nodes N[,N...]] [--servers ...]   server RSS only
       zkit-bench probe ...                                 one client alone (used by `all`)

  --runs R              measured runs per cell, interleaved (median shown)   [3]
  --servers S[,S...]    zkit (zkit-server), real (Apache ZooKeeper)           [zkit,real]
  --runtimes R[,R...]   current, multi (2 workers)                            [current,multi]
  --ops O[,O...]        get, set, createdel                                   [get,set,createdel]
  --windows W[,W...]    requests in flight                                    [1,16,256]
  --scale F             multiply every run's request count by F               [1]
  --rss-nodes N[,N...]  znodes of 100 B for the RSS table, empty = skip       [100000,1000000]
  --no-probe            skip allocation and callgrind counts
  --zkit-server PATH    the zkit-server binary       [next to this binary]
  --zk-script PATH      scripts/zookeeper.sh         [this repository's]
";

#[derive(Debug, Clone)]
struct Args {
    runs: usize,
    servers: Vec<Kind>,
    runtimes: Vec<Runtime>,
    ops: Vec<Op>,
    windows: Vec<usize>,
    scale: f64,
    rss_nodes: Vec<usize>,
    probe: bool,
    zkit_server: PathBuf,
    zk_script: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Zkit,
    Real,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Zkit => "zkit-server",
            Kind::Real => "ZooKeeper 3.8",
        }
    }
    fn start(self, a: &Args) -> Result<Server, String> {
        match self {
            Kind::Zkit => Server::zkit(&a.zkit_server),
            Kind::Real => Server::real(&a.zk_script),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runtime {
    Current,
    Multi,
}

impl Runtime {
    fn name(self) -> &'static str {
        match self {
            Runtime::Current => "current-thread",
            Runtime::Multi => "multi-thread (2 workers)",
        }
    }
    fn build(self) -> tokio::runtime::Runtime {
        match self {
            Runtime::Current => tokio::runtime::Builder::new_current_thread(),
            Runtime::Multi => {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(2);
                b
            }
        }
        .enable_all()
        .build()
        .expect("tokio runtime")
    }
}

fn parse_client(v: &str) -> Result<Client, String> {
    match v {
        "zkit" => Ok(Client::Zkit),
        "zookeeper-client" => Ok(Client::Crate),
        o => Err(format!("unknown client {o}")),
    }
}

fn parse_op(v: &str) -> Result<Op, String> {
    match v {
        "get" => Ok(Op::Get),
        "set" => Ok(Op::Set),
        "createdel" => Ok(Op::CreateDel),
        o => Err(format!("unknown op {o}")),
    }
}

fn list<T>(v: &str, f: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>, String> {
    v.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| f(s.trim()))
        .collect()
}

fn num(v: &str) -> Result<usize, String> {
    v.replace('_', "").parse().map_err(|e| format!("{v}: {e}"))
}

fn parse(argv: &[String]) -> Result<Args, String> {
    let mut a = Args {
        runs: 3,
        servers: vec![Kind::Zkit, Kind::Real],
        runtimes: vec![Runtime::Current, Runtime::Multi],
        ops: vec![Op::Get, Op::Set, Op::CreateDel],
        windows: vec![1, 16, 256],
        scale: 1.0,
        rss_nodes: vec![100_000, 1_000_000],
        probe: true,
        zkit_server: servers::default_zkit_server(),
        zk_script: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/zookeeper.sh"),
    };
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "--no-probe" => {
                a.probe = false;
                continue;
            }
            _ => {}
        }
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--runs" => a.runs = num(v)?.max(1),
            "--servers" => {
                a.servers = list(v, |s| match s {
                    "zkit" => Ok(Kind::Zkit),
                    "real" => Ok(Kind::Real),
                    o => Err(format!("unknown server {o}")),
                })?
            }
            "--runtimes" => {
                a.runtimes = list(v, |s| match s {
                    "current" => Ok(Runtime::Current),
                    "multi" => Ok(Runtime::Multi),
                    o => Err(format!("unknown runtime {o}")),
                })?
            }
            "--ops" => a.ops = list(v, parse_op)?,
            "--windows" => a.windows = list(v, |w| num(w).map(|n| n.max(1)))?,
            "--scale" => a.scale = v.parse().map_err(|e| format!("--scale {v}: {e}"))?,
            "--rss-nodes" | "--nodes" => a.rss_nodes = list(v, num)?,
            "--zkit-server" => a.zkit_server = PathBuf::from(v),
            "--zk-script" => a.zk_script = PathBuf::from(v),
            _ => return Err(format!("unknown option {flag}\n\n{USAGE}")),
        }
    }
    Ok(a)
}

/// Requests of one run: enough for ~0.1-1 s on this machine, fewer for the slow cells.
fn requests(a: &Args, op: Op, window: usize) -> usize {
    let base: usize = match (op, window) {
        (Op::Get, 1) => 3_000,
        (Op::Get, w) if w < 64 => 20_000,
        (Op::Get, _) => 60_000,
        (_, 1) => 1_000,
        (_, w) if w < 64 => 8_000,
        (_, _) => 20_000,
    };
    ((base as f64 * a.scale) as usize).max(100)
}

/// One cell: both clients' runs, round by round.
struct Cell {
    server: Kind,
    runtime: Runtime,
    op: Op,
    window: usize,
    zkit: Vec<Run>,
    krate: Vec<Run>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[(v.len() - 1) / 2]
}

/// `zkit-bench all`.
pub fn main(argv: &[String]) -> ! {
    let a = match parse(argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("zkit-bench all: {e}");
            std::process::exit(2);
        }
    };
    let mut cells = Vec::new();
    let mut probes = Vec::new();
    for &kind in &a.servers {
        eprintln!("zkit-bench: starting {}", kind.name());
        let server = match kind.start(&a) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("zkit-bench: {}: {e}; skipped", kind.name());
                continue;
            }
        };
        for &rt in &a.runtimes {
            match rt.build().block_on(measure(&a, kind, rt, server.connect())) {
                Ok(c) => cells.extend(c),
                Err(e) => eprintln!("zkit-bench: {} / {}: {e}", kind.name(), rt.name()),
            }
        }
        if a.probe && kind == Kind::Zkit {
            probes = run_probes(&a, server.connect());
        }
    }
    let rss = if a.rss_nodes.is_empty() {
        Vec::new()
    } else {
        measure_rss(&a)
    };
    print_all(&a, &cells, &probes, &rss);
    std::process::exit(0)
}

/// `zkit-bench rss`.
pub fn rss_main(argv: &[String]) -> ! {
    let a = match parse(argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("zkit-bench rss: {e}");
            std::process::exit(2);
        }
    };
    let rss = measure_rss(&a);
    print_rss(&rss);
    std::process::exit(0)
}

/// `zkit-bench probe`.
pub use probe::main as probe_main;

async fn measure(a: &Args, kind: Kind, rt: Runtime, connect: &str) -> Result<Vec<Cell>, String> {
    let value = vec![b'x'; 100];
    let clients = Clients::connect(connect, &value).await?;
    let mut cells: Vec<Cell> = Vec::new();
    for &op in &a.ops {
        for &w in &a.windows {
            cells.push(Cell {
                server: kind,
                runtime: rt,
                op,
                window: w,
                zkit: Vec::new(),
                krate: Vec::new(),
            });
        }
    }
    // Warm-up: connections, allocator, the server's JIT.
    for c in &cells {
        for client in [Client::Zkit, Client::Crate] {
            let n = requests(a, c.op, c.window) / 4;
            run::run(&clients, client, c.op, c.window, n, &value).await?;
        }
    }
    for round in 0..a.runs {
        for c in cells.iter_mut() {
            // ABBA: neither client always runs right after the other.
            let order = if round % 2 == 0 {
                [Client::Zkit, Client::Crate]
            } else {
                [Client::Crate, Client::Zkit]
            };
            for client in order {
                let n = requests(a, c.op, c.window);
                let r = run::run(&clients, client, c.op, c.window, n, &value).await?;
                eprintln!(
                    "{} / {} / {} W={} {:<16} run {}: {:>9.0} ops/s",
                    kind.name(),
                    rt.name(),
                    c.op.name(),
                    c.window,
                    client.name(),
                    round + 1,
                    r.ops_per_sec
                );
                match client {
                    Client::Zkit => c.zkit.push(r),
                    Client::Crate => c.krate.push(r),
                }
            }
        }
    }
    clients.close().await;
    Ok(cells)
}

/// (op, client, allocations per request, instructions per request).
type Probe = (Op, Client, Option<f64>, Option<f64>);

fn run_probes(a: &Args, connect: &str) -> Vec<Probe> {
    let Ok(exe) = std::env::current_exe() else {
        return Vec::new();
    };
    let valgrind = probe::have_valgrind();
    let mut out = Vec::new();
    for &op in &a.ops {
        for client in [Client::Zkit, Client::Crate] {
            eprintln!("zkit-bench: probing {} {}", client.name(), op.name());
            let allocs = probe::allocations(&exe, connect, client, op);
            let instr = if valgrind && op == Op::Get {
                probe::instructions(&exe, connect, client, op)
            } else {
                None
            };
            out.push((op, client, allocs, instr));
        }
    }
    out
}

/// (nodes, zkit-server (empty, full), real (empty, full)).
type Rss = (usize, Option<(f64, f64)>, Option<(f64, f64)>);

fn measure_rss(a: &Args) -> Vec<Rss> {
    let rt = Runtime::Current.build();
    let mut out = Vec::new();
    for &n in &a.rss_nodes {
        let mut row: Rss = (n, None, None);
        for &kind in &a.servers {
            eprintln!("zkit-bench: RSS of {} with {n} znodes", kind.name());
            let r = kind
                .start(a)
                .and_then(|s| rt.block_on(servers::rss_with_nodes(&s, n, 100)));
            match r {
                Ok(v) if kind == Kind::Zkit => row.1 = Some(v),
                Ok(v) => row.2 = Some(v),
                Err(e) => eprintln!("zkit-bench: RSS {}: {e}", kind.name()),
            }
        }
        out.push(row);
    }
    out
}

fn f0(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.0}"))
}

fn f2(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.2}"))
}

fn print_all(a: &Args, cells: &[Cell], probes: &[Probe], rss: &[Rss]) {
    println!("# zkit-bench all");
    println!();
    println!(
        "One connection per client, 100-byte values; {} measured runs per cell, the two clients \
         interleaved (ABBA) round by round; medians shown, `paired` is the median of the per-round \
         ratios, `spread` the zkit runs' range around their median.",
        a.runs
    );
    println!();
    println!("| server | runtime | op | in flight | zkit ops/s | zookeeper-client ops/s | ratio | paired | zkit spread | zkit CPU µs/op | crate CPU µs/op |");
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for c in cells {
        let z = median(c.zkit.iter().map(|r| r.ops_per_sec).collect());
        let k = median(c.krate.iter().map(|r| r.ops_per_sec).collect());
        let paired = median(
            c.zkit
                .iter()
                .zip(&c.krate)
                .map(|(x, y)| x.ops_per_sec / y.ops_per_sec)
                .collect(),
        );
        let lo = c
            .zkit
            .iter()
            .map(|r| r.ops_per_sec)
            .fold(f64::MAX, f64::min);
        let hi = c.zkit.iter().map(|r| r.ops_per_sec).fold(0.0, f64::max);
        let spread = ((hi - z).max(z - lo)) / z * 100.0;
        let cpu = |runs: &[Run]| {
            let v: Vec<f64> = runs.iter().filter_map(|r| r.cpu_us).collect();
            (!v.is_empty()).then(|| median(v))
        };
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.0} | **{:.2}×** | {:.2}× | ±{:.0} % | {} | {} |",
            c.server.name(),
            c.runtime.name(),
            c.op.name(),
            c.window,
            z,
            k,
            z / k,
            paired,
            spread,
            f2(cpu(&c.zkit)),
            f2(cpu(&c.krate)),
        );
    }
    println!();
    if !probes.is_empty() {
        println!("Per request, one client alone against zkit-server, current-thread runtime, 256 in flight:");
        println!();
        println!("| op | client | heap allocations / request | user-space instructions / request (callgrind) |");
        println!("|---|---|---:|---:|");
        for (op, client, allocs, instr) in probes {
            println!(
                "| {} | {} | {} | {} |",
                op.name(),
                client.name(),
                f2(*allocs),
                f0(*instr)
            );
        }
        println!();
    }
    print_rss(rss);
}

fn print_rss(rss: &[Rss]) {
    if rss.is_empty() {
        return;
    }
    println!("Server RSS holding N znodes of 100 B under one parent (created by one zkit client, 256 in flight):");
    println!();
    println!("| znodes | zkit-server MiB (empty) | ZooKeeper 3.8 MiB (empty) | zkit / ZooKeeper |");
    println!("|---:|---:|---:|---:|");
    for (n, z, r) in rss {
        let ratio = match (z, r) {
            (Some(z), Some(r)) => Some(z.1 / r.1),
            _ => None,
        };
        let cell = |v: &Option<(f64, f64)>| {
            v.map_or_else(|| "-".into(), |(e, f)| format!("{f:.1} ({e:.1})"))
        };
        println!("| {n} | {} | {} | {} |", cell(z), cell(r), f2(ratio));
    }
    println!();
}
