//! Client-side backup and restore of a ZooKeeper subtree (`zkit_recipes::backup`), for any
//! ensemble, real Apache ZooKeeper included.
//!
//! ```sh
//! # round trip between two embedded testkit servers (no setup):
//! cargo run -p zkit-examples --bin backup
//! # against real ensembles:
//! cargo run -p zkit-examples --bin backup -- backup  --connect zk-a:2181 --path /app --out app.zkb \
//!     [--kind /app/queues/*=container] [--kind /app/leases=ttl:60000] [--auth user:password]
//! cargo run -p zkit-examples --bin backup -- restore --connect zk-b:2181 --in app.zkb \
//!     [--dry-run] [--existing skip|overwrite|fail] [--path-prefix /restored] [--auth user:password]
//! cargo run -p zkit-examples --bin backup -- verify --in app.zkb
//! ```
//!
//! `--kind` declares kinds a client cannot see (ZooKeeper reports containers and TTL nodes as
//! persistent); `--auth` authenticates with a digest identity first; `--window` sets how many
//! nodes are read or created at once (default 256).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use zkit::{perms, Acl, Client, CreateMode, CreateOptions};
use zkit_examples::{init_tracing, ms, section, step};
use zkit_recipes::backup::{self, Action, ExistingPolicy, ExportOptions, ImportOptions, Kind};

type Res<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const USAGE: &str = "usage:
  backup                                              embedded round-trip demo
  backup backup  --connect HOST:PORT --path /sub --out FILE [--kind PATH=container|ttl:MS|persistent]... [--auth USER:PASS] [--window N]
  backup restore --connect HOST:PORT --in FILE [--dry-run] [--existing skip|overwrite|fail] [--path-prefix /target] [--auth USER:PASS] [--window N]
  backup verify  --in FILE";

#[derive(Default)]
struct Args {
    connect: Option<String>,
    path: Option<String>,
    file: Option<String>,
    prefix: Option<String>,
    auth: Option<String>,
    existing: ExistingPolicy,
    dry_run: bool,
    kinds: Vec<(String, Kind)>,
    window: Option<usize>,
}

fn parse_kind(s: &str) -> Res<(String, Kind)> {
    let (path, kind) = s.split_once('=').ok_or("--kind wants PATH=KIND")?;
    let kind = match kind {
        "container" => Kind::Container,
        "persistent" => Kind::Persistent,
        k => match k.strip_prefix("ttl:") {
            Some(ms) => Kind::Ttl(Duration::from_millis(ms.parse()?)),
            None => return Err(format!("unknown kind {k:?}").into()),
        },
    };
    Ok((path.to_owned(), kind))
}

fn parse(args: &[String]) -> Res<Args> {
    let mut a = Args::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--connect" => a.connect = Some(value()?),
            "--path" => a.path = Some(value()?),
            "--out" | "--in" => a.file = Some(value()?),
            "--path-prefix" => a.prefix = Some(value()?),
            "--auth" => a.auth = Some(value()?),
            "--existing" => a.existing = value()?.parse()?,
            "--kind" => a.kinds.push(parse_kind(&value()?)?),
            "--window" => a.window = Some(value()?.parse()?),
            "--dry-run" => a.dry_run = true,
            other => return Err(format!("unknown argument {other:?}\n{USAGE}").into()),
        }
    }
    Ok(a)
}

async fn connect(a: &Args) -> Res<Client> {
    let c = a
        .connect
        .as_deref()
        .ok_or("--connect HOST:PORT is required")?;
    let mut b = Client::builder(c);
    if let Some(auth) = &a.auth {
        b = b.auth("digest", auth.clone().into_bytes());
    }
    Ok(b.connect().await?)
}

fn progress(what: &'static str) -> impl Fn(backup::Progress) + Send + Sync + 'static {
    move |p| {
        if p.done {
            eprintln!("  {what}: {} nodes, {} bytes", p.nodes, p.bytes);
        } else {
            eprint!("\r  {what}: {} nodes, {} bytes", p.nodes, p.bytes);
        }
    }
}

async fn cmd_backup(a: &Args) -> Res {
    let zk = connect(a).await?;
    let path = a.path.as_deref().unwrap_or("/");
    let out = a.file.as_deref().ok_or("--out FILE is required")?;
    let mut opts = ExportOptions::new()
        .source(a.connect.clone().unwrap_or_default())
        .progress_every(5000)
        .progress(progress("exported"));
    for (p, k) in &a.kinds {
        opts = opts.declare_kind(p, *k);
    }
    if let Some(w) = a.window {
        opts = opts.window(w);
    }
    let r = backup::export_to_file(&zk, path, out, &opts).await?;
    println!(
        "{path} -> {out}: {} nodes, {} data bytes, {} file bytes, crc {:#010x}; {} ephemerals skipped, {} vanished, {} kinds declared, in {:.0} ms",
        r.nodes, r.data_bytes, r.file_bytes, r.file_crc, r.ephemerals_skipped, r.vanished,
        r.kinds_declared, r.elapsed.as_secs_f64() * 1e3
    );
    zk.close().await?;
    Ok(())
}

fn print_import(r: &backup::ImportReport) {
    let verb = if r.dry_run { "would be" } else { "were" };
    println!(
        "into {}: {} nodes; {} {verb} created, {} overwritten, {} skipped, {} conflicts ({:.0} ms)",
        r.target_root,
        r.nodes,
        r.created,
        r.overwritten,
        r.skipped,
        r.conflicts,
        r.elapsed.as_secs_f64() * 1e3
    );
    for (action, path) in r.samples.iter().filter(|(a, _)| *a != Action::Create) {
        println!("  {action:?}: {path}");
    }
}

async fn cmd_restore(a: &Args) -> Res {
    let zk = connect(a).await?;
    let file = a.file.as_deref().ok_or("--in FILE is required")?;
    let mut opts = ImportOptions::new()
        .existing(a.existing)
        .dry_run(a.dry_run)
        .progress_every(5000)
        .progress(progress("imported"));
    if let Some(p) = &a.prefix {
        opts = opts.path_prefix(p.clone());
    }
    if let Some(w) = a.window {
        opts = opts.window(w);
    }
    let r = backup::import_file(&zk, file, &opts).await?;
    print_import(&r);
    zk.close().await?;
    Ok(())
}

async fn cmd_verify(a: &Args) -> Res {
    let file = a.file.as_deref().ok_or("--in FILE is required")?;
    let (h, t) = backup::verify_file(file).await?;
    println!(
        "{file}: sound; root {}, source {:?}, {} nodes, {} data bytes, crc {:#010x}",
        h.root, h.source, t.nodes, t.data_bytes, t.file_crc
    );
    Ok(())
}

/// Two embedded servers: a tree of every kind on one, exported, verified, dry-run and restored
/// on the other, then restored again with each existing-node policy.
async fn demo() -> Res {
    println!("zkit-recipes: client-side backup and restore");
    section("two embedded zkit-testkit servers");
    let src = zkit_testkit::Server::builder()
        .extended_types(true)
        .start()
        .await?;
    let dst = zkit_testkit::Server::builder()
        .extended_types(true)
        .start()
        .await?;
    step(&format!(
        "source {}, target {}",
        src.connect_string(),
        dst.connect_string()
    ));
    let a = Client::connect(&src.connect_string()).await?;
    let t = Instant::now();
    a.create("/app", b"app", &CreateOptions::persistent())
        .await?;
    a.create("/app/jobs", b"", &CreateOptions::new(CreateMode::Container))
        .await?;
    let ttl = CreateOptions::new(CreateMode::PersistentWithTtl).ttl(Duration::from_secs(600));
    a.create("/app/lease", b"held", &ttl).await?;
    let ro = CreateOptions::persistent().acl(vec![Acl::new(perms::READ, "world", "anyone")]);
    a.create("/app/frozen", b"read-only", &ro).await?;
    a.create("/app/session", b"", &CreateOptions::ephemeral())
        .await?;
    let creates: Vec<_> = (0..2000)
        .map(|i| {
            a.create(
                &format!("/app/jobs/j{i:04}"),
                format!("job {i}"),
                &CreateOptions::persistent(),
            )
        })
        .collect();
    for c in creates {
        c.await?;
    }
    step(&format!(
        "built /app: 2 004 nodes of every kind plus an ephemeral in {:.0} ms",
        ms(t)
    ));

    section("backup");
    let file = std::env::temp_dir().join(format!("zkit-backup-demo-{}.zkb", std::process::id()));
    let opts = ExportOptions::new()
        .declare_kind("/app/jobs", Kind::Container)
        .declare_kind("/app/jobs/*", Kind::Persistent)
        .declare_kind("/app/lease", Kind::Ttl(Duration::from_secs(600)));
    let r = backup::export_to_file(&a, "/app", &file, &opts).await?;
    step(&format!(
        "{} nodes, {} bytes in {:.0} ms ({} ephemeral skipped, {} kinds declared)",
        r.nodes,
        r.file_bytes,
        r.elapsed.as_secs_f64() * 1e3,
        r.ephemerals_skipped,
        r.kinds_declared
    ));
    let (_, trailer) = backup::verify_file(&file).await?;
    step(&format!(
        "verified: {} nodes, crc {:#010x}",
        trailer.nodes, trailer.file_crc
    ));

    section("restore into the other server");
    let b = Client::connect(&dst.connect_string()).await?;
    b.create("/app", b"older", &CreateOptions::persistent())
        .await?;
    let dry = ImportOptions::new()
        .dry_run(true)
        .existing(ExistingPolicy::Overwrite);
    let plan = backup::import_file(&b, &file, &dry).await?;
    print_import(&plan);
    let done = backup::import_file(
        &b,
        &file,
        &ImportOptions::new().existing(ExistingPolicy::Overwrite),
    )
    .await?;
    print_import(&done);
    let n = b.get_all_children_number("/app").await?;
    let (data, _) = b.get_data("/app").await?;
    step(&format!(
        "target /app now has {n} descendants and data {:?}",
        String::from_utf8_lossy(&data)
    ));
    let again = ImportOptions::new().existing(ExistingPolicy::Fail);
    match backup::import_file(&b, &file, &again).await {
        Err(e) => step(&format!(
            "again with --existing fail: refused before writing ({e})"
        )),
        Ok(_) => return Err("a second import with Fail should be refused".into()),
    }
    let _ = std::fs::remove_file(&file);
    println!("\ndone.");
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    init_tracing();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        None | Some("demo") => demo().await,
        Some(cmd @ ("backup" | "restore" | "verify")) => match parse(&args[1..]) {
            Ok(a) if a.connect.is_none() && cmd != "verify" => {
                eprintln!("no --connect given: running the embedded demo instead");
                demo().await
            }
            Ok(a) => match cmd {
                "backup" => cmd_backup(&a).await,
                "restore" => cmd_restore(&a).await,
                _ => cmd_verify(&a).await,
            },
            Err(e) => Err(e),
        },
        Some("-h" | "--help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(format!("unknown command {other:?}\n{USAGE}").into()),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
