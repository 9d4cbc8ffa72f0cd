//! Data-dir interop helper for `scripts/persistence-interop.sh`: writes a sample tree through a
//! client, dumps a live tree, loads a ZooKeeper data dir into the testkit.
//!
//! ```text
//! zkit-datadir sample ADDR OUT         run the sample ops against ADDR, dump the tree to OUT
//! zkit-datadir testkit-sample DIR OUT  same against an embedded testkit on data dir DIR, then stop
//! zkit-datadir dump ADDR OUT           dump the tree of a live server
//! zkit-datadir load-dir DIR OUT        start a testkit from a copy of data dir DIR, dump its tree
//! ```
//! Dumps list every node in path order: path, client Stat, data (hex) and ACL. Nodes under
//! `/zookeeper` are skipped. The sample leaves one session open so that ephemerals survive.
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use zkit::{Acl, Client, CreateMode, CreateOptions, Op};
use zkit_testkit::PersistOptions;
use zkit_testkit::Server;

type Res<T> = Result<T, String>;

fn e<E: std::fmt::Display>(x: E) -> String {
    x.to_string()
}

async fn connect(addr: &str) -> Res<Client> {
    Client::builder(addr)
        .session_timeout(Duration::from_secs(30))
        .auth("digest", "user:pass")
        .connect()
        .await
        .map_err(e)
}

/// The sample: every txn type the log can hold.
async fn sample(c: &Client) -> Res<()> {
    let p = CreateOptions::persistent();
    c.create("/a", b"x", &p).await.map_err(e)?;
    c.create("/a/b", b"", &p).await.map_err(e)?;
    for _ in 0..3 {
        c.create(
            "/a/seq-",
            b"s",
            &CreateOptions::new(CreateMode::PersistentSequential),
        )
        .await
        .map_err(e)?;
    }
    c.create("/a/eph", b"e", &CreateOptions::ephemeral())
        .await
        .map_err(e)?;
    c.create(
        "/a/eseq",
        b"",
        &CreateOptions::new(CreateMode::EphemeralSequential),
    )
    .await
    .map_err(e)?;
    c.create("/cont", b"c", &CreateOptions::new(CreateMode::Container))
        .await
        .map_err(e)?;
    c.create("/cont/child", b"k", &p).await.map_err(e)?;
    c.create(
        "/ttl",
        b"tdata",
        &CreateOptions::new(CreateMode::PersistentWithTtl).ttl(Duration::from_secs(600)),
    )
    .await
    .map_err(e)?;
    let acl = vec![
        Acl::digest(zkit::perms::ALL, "user", "pass"),
        Acl::new(zkit::perms::READ, "world", "anyone"),
    ];
    c.create("/acl", b"secret", &CreateOptions::persistent().acl(acl))
        .await
        .map_err(e)?;
    c.set_acl("/a", Acl::read_unsafe(), None).await.map_err(e)?;
    c.set_data("/a/b", b"v1", None).await.map_err(e)?;
    c.set_data("/a/b", b"v2", Some(1)).await.map_err(e)?;
    // Error txns: a failed create and a failed multi.
    let _ = c.create("/a", b"dup", &p).await;
    let _ = c
        .multi(vec![
            Op::create("/m1", b"m", &p),
            Op::create("/a", b"dup", &p),
        ])
        .await;
    c.multi(vec![
        Op::create("/m2", b"m", &p),
        Op::set_data("/m2", b"mm", None),
        Op::check("/a", 0),
    ])
    .await
    .map_err(e)?;
    c.create("/gone", b"", &p).await.map_err(e)?;
    c.delete("/gone", None).await.map_err(e)?;
    let mut futs = Vec::new();
    c.create("/bulk", b"", &p).await.map_err(e)?;
    for i in 0..300 {
        futs.push(c.create(&format!("/bulk/n{i}"), format!("data-{i}"), &p));
    }
    for f in futs {
        f.await.map_err(e)?;
    }
    // A session that ends: its ephemeral goes with a closeSession txn.
    let other = Client::connect(
        &c.connected_server()
            .map(|a| a.to_string())
            .unwrap_or_default(),
    )
    .await
    .map_err(e)?;
    other
        .create("/short", b"", &CreateOptions::ephemeral())
        .await
        .map_err(e)?;
    other.close().await.map_err(e)?;
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

async fn dump(c: &Client) -> Res<String> {
    let mut out = String::new();
    let mut stack = vec!["/".to_owned()];
    let mut lines = Vec::new();
    while let Some(p) = stack.pop() {
        if p.starts_with("/zookeeper") {
            continue;
        }
        let (data, st) = c.get_data(&p).await.map_err(e)?;
        let (acl, _) = c.get_acl(&p).await.map_err(e)?;
        let acl: Vec<String> = acl
            .iter()
            .map(|a| format!("{}:{}:{}", a.perms, a.id.scheme, a.id.id))
            .collect();
        lines.push(format!(
            "{p} czxid={:x} mzxid={:x} pzxid={:x} ctime={} mtime={} version={} cversion={} aversion={} owner={:x} len={} children={} data={} acl={}",
            st.czxid, st.mzxid, st.pzxid, st.ctime, st.mtime, st.version, st.cversion,
            st.aversion, st.ephemeral_owner, st.data_length, st.num_children, hex(&data), acl.join(",")
        ));
        for ch in c.get_children(&p).await.map_err(e)? {
            stack.push(if p == "/" {
                format!("/{ch}")
            } else {
                format!("{p}/{ch}")
            });
        }
    }
    lines.sort();
    for l in lines {
        out.push_str(&l);
        out.push('\n');
    }
    Ok(out)
}

async fn run(args: &[String]) -> Res<()> {
    let arg = |i: usize| {
        args.get(i)
            .cloned()
            .ok_or("missing argument (see the source header)")
    };
    match args.first().map(String::as_str) {
        Some("sample") => {
            let c = connect(&arg(1)?).await?;
            sample(&c).await?;
            std::fs::write(arg(2)?, dump(&c).await?).map_err(e)?;
            // Leave the session open (process exit): the server keeps it and its ephemerals.
            std::mem::forget(c);
        }
        Some("dump") => {
            let c = connect(&arg(1)?).await?;
            std::fs::write(arg(2)?, dump(&c).await?).map_err(e)?;
            c.close().await.map_err(e)?;
        }
        Some("testkit-sample") => {
            // A small snapCount: several logs and background (fuzzy) snapshots end up in DIR.
            let mut s = Server::builder()
                .data_dir(arg(1)?)
                .persist_options(PersistOptions::default().snap_count(60))
                .extended_types(true)
                .max_session_timeout(Duration::from_secs(60))
                .start()
                .await
                .map_err(e)?;
            let c = connect(&s.connect_string()).await?;
            sample(&c).await?;
            std::fs::write(arg(2)?, dump(&c).await?).map_err(e)?;
            s.stop().await;
            std::mem::forget(c);
        }
        Some("load-dir") => {
            let mut s = Server::builder()
                .restore_from(arg(1)?)
                .extended_types(true)
                .max_session_timeout(Duration::from_secs(60))
                .start()
                .await
                .map_err(e)?;
            if let Some(r) = s.recovery_report() {
                eprintln!(
                    "recovered: snapshot {:?}, {} txns replayed, last zxid 0x{:x}, digest mismatches {}, torn {:?}",
                    r.snapshot, r.txns_replayed, r.last_zxid, r.digest_mismatches, r.torn
                );
                if r.digest_mismatches > 0 {
                    return Err(format!(
                        "{} txn digests differ from ZooKeeper's",
                        r.digest_mismatches
                    ));
                }
            }
            let c = connect(&s.connect_string()).await?;
            std::fs::write(arg(2)?, dump(&c).await?).map_err(e)?;
            c.close().await.map_err(e)?;
            let dir = s.data_dir().map(|d| d.to_owned());
            s.stop().await;
            if let Some(d) = dir {
                let _ = std::fs::remove_dir_all(d);
            }
        }
        _ => return Err("usage: zkit-datadir sample|testkit-sample|dump|load-dir ...".into()),
    }
    Ok(())
}

fn main() -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("zkit-datadir: {err}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("zkit-datadir: {err}");
            ExitCode::FAILURE
        }
    }
}
