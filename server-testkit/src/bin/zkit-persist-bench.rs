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

use bytes::Bytes;
use zkit::{Client, CreateOptions};
use zkit_proto::txn::CreateTxn;
use zkit_testkit::core::{Committed, Database, TreeDigest, Txn, TxnBody};
use zkit_testkit::persist::snapshot::write_db;
use zkit_testkit::persist::txnlog::LogWriter;
use zkit_testkit::persist::{recover, version_dir, PersistOptions};
use zkit_testkit::Server;

type Res<T> = Result<T, String>;

fn e<E: std::fmt::Display>(x: E) -> String {
    x.to_string()
}

fn open_acl() -> Vec<zkit::Acl> {
    zkit::Acl::open_unsafe()
}

/// N creates: 1000 parents `/p<k>`, then children `/p<k>/c<i>`.
fn gen(dir: &Path, n: u64) -> Res<()> {
    let v = version_dir(dir);
    std::fs::create_dir_all(&v).map_err(e)?;
    let mut db = Database::new(false);
    write_db(&v, &db, None).map_err(e)?;
    let mut digest = TreeDigest::of(&db.tree);
    let mut w = LogWriter::new(&v, 64 << 20);
    let t0 = Instant::now();
    let parents = 1000u64.min(n);
    let mut cversions = vec![0i32; parents as usize + 1];
    for z in 1..=n as i64 {
        let (path, parent_cv) = if (z as u64) <= parents {
            cversions[0] += 1;
            (format!("/p{z}"), cversions[0])
        } else {
            let k = (z as u64 % parents) as usize + 1;
            cversions[k] += 1;
            (format!("/p{k}/c{z}"), cversions[k])
        };
        let txn = Txn::new(
            0x100,
            z as i32,
            z,
            1_700_000_000_000 + z,
            TxnBody::Create(CreateTxn {
                path,
                data: Some(Bytes::from_static(b"0123456789abcdef")),
                acl: open_acl(),
                ephemeral: false,
                parent_cversion: parent_cv,
            }),
        );
        let pre = digest.before(&db.tree, &txn);
        db.apply(&txn, &mut Vec::new());
        digest.after(&db.tree, pre);
        w.append(&Committed {
            txn,
            digest: Some(digest.value()),
        });
        if z % 10_000 == 0 {
            w.commit(false).map_err(e)?;
        }
        if z % 100_000 == 0 {
            w.roll().map_err(e)?;
        }
    }
    w.roll().map_err(e)?;
    println!(
        "gen: {n} txns, {} nodes in {:.2}s",
        db.tree.node_count(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn recover_bench(dir: &Path) -> Res<()> {
    let t0 = Instant::now();
    let r = recover(dir, &PersistOptions::default(), false).map_err(e)?;
    let total = t0.elapsed();
    let v = version_dir(dir);
    let t1 = Instant::now();
    let p = write_db(&v, &r.db, Some((r.db.last_zxid, r.digest))).map_err(e)?;
    let snap = t1.elapsed();
    let size = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
    println!(
        "recover: {} txns replayed, {} nodes, {:.2}s (includes the closing snapshot, as ZooKeeper does)",
        r.report.txns_replayed,
        r.db.tree.node_count(),
        total.as_secs_f64()
    );
    println!(
        "snapshot: {} nodes, {} MB, {:.2}s",
        r.db.tree.node_count(),
        size / 1_000_000,
        snap.as_secs_f64()
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
