//! Persistence benchmark (see `scripts/persistence-bench.sh`, which also measures a real
//! ZooKeeper on the same data).
//!
//! ```text
//! zkit-persist-bench gen DIR N            data dir with snapshot.0 + N create txns (logs rolled every 100k)
//! zkit-persist-bench recover DIR          time recovery (load + replay), then one snapshot of the result
//! zkit-persist-bench write ADDR N CONC    N creates from CONC pipelining clients against any server
//! zkit-persist-bench testkit-write N CONC fsync|nofsync   same against an embedded testkit on a temp dir
//! ```
#![forbid(unsafe_code)]

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use zkit::{Client, CreateOptions};
use zkit_testkit::bench;
use zkit_testkit::{PersistOptions, Server};

type Res<T> = Result<T, String>;

fn e<E: std::fmt::Display>(x: E) -> String {
    x.to_string()
}

/// N creates: 1000 parents `/p<k>`, then children `/p<k>/c<i>`.
fn gen(dir: &Path, n: u64) -> Res<()> {
    let g = bench::generate(dir, n).map_err(e)?;
    println!(
        "gen: {} txns, {} nodes in {:.2}s",
        g.txns,
        g.nodes,
        g.elapsed.as_secs_f64()
    );
    Ok(())
}

fn recover_bench(dir: &Path) -> Res<()> {
    let r = bench::recover_and_snapshot(dir).map_err(e)?;
    println!(
        "recover: {} txns replayed, {} nodes, {:.2}s (includes the closing snapshot, as ZooKeeper does)",
        r.txns_replayed,
        r.nodes,
        r.recover.as_secs_f64()
    );
    println!(
        "snapshot: {} nodes, {} MB, {:.2}s",
        r.nodes,
        r.snapshot_bytes / 1_000_000,
        r.snapshot.as_secs_f64()
    );
    Ok(())
}

async fn write(addr: &str, n: u64, conc: u64) -> Res<f64> {
    let mut clients = Vec::new();
    for _ in 0..conc {
        clients.push(Client::connect(addr).await.map_err(e)?);
    }
    let base = format!("/bench-{}", std::process::id());
    let _ = clients[0]
        .create(&base, b"", &CreateOptions::persistent())
        .await;
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for (w, c) in clients.into_iter().enumerate() {
        let base = base.clone();
        tasks.push(tokio::spawn(async move {
            // Up to 64 requests in flight per client.
            let per = n / conc;
            let mut i = 0;
            while i < per {
                let mut futs = Vec::new();
                for _ in 0..64.min(per - i) {
                    futs.push(c.create(
                        &format!("{base}/w{w}-{i}"),
                        b"0123456789abcdef",
                        &CreateOptions::persistent(),
                    ));
                    i += 1;
                }
                for f in futs {
                    f.await.map_err(e)?;
                }
            }
            let _ = c.close().await;
            Ok::<_, String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(e)??;
    }
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    println!("write {addr}: {n} creates, {conc} clients: {rate:.0} ops/s");
    Ok(rate)
}

async fn run(args: &[String]) -> Res<()> {
    let arg = |i: usize| {
        args.get(i)
            .cloned()
            .ok_or("missing argument (see the source header)")
    };
    let num = |i: usize| -> Res<u64> { arg(i)?.parse().map_err(e) };
    match args.first().map(String::as_str) {
        Some("gen") => gen(Path::new(&arg(1)?), num(2)?),
        Some("recover") => recover_bench(Path::new(&arg(1)?)),
        Some("write") => write(&arg(1)?, num(2)?, num(3)?).await.map(|_| ()),
        Some("testkit-write") => {
            let dir = std::env::temp_dir().join(format!("zkit-bench-{}", std::process::id()));
            let sync = arg(3)? != "nofsync";
            let mut s = Server::builder()
                .data_dir(&dir)
                .persist_options(PersistOptions::default().force_sync(sync))
                .start()
                .await
                .map_err(e)?;
            let r = write(&s.connect_string(), num(1)?, num(2)?).await;
            s.stop().await;
            let _ = std::fs::remove_dir_all(&dir);
            println!(
                "testkit forceSync={}: {:.0} ops/s",
                if sync { "yes" } else { "no" },
                r?
            );
            tokio::time::sleep(Duration::from_millis(0)).await;
            Ok(())
        }
        _ => Err("usage: zkit-persist-bench gen|recover|write|testkit-write ...".into()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("zkit-persist-bench: {err}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("zkit-persist-bench: {err}");
            ExitCode::FAILURE
        }
    }
}
