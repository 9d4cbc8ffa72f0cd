//! `zkit-diff`: checks a "ZooKeeper-compatible" server against a reference (a real ZooKeeper)
//! by running the same seeded random sessions against both and comparing every reply and
//! notification, normalised (zxids relative to the run's start, session ids by order of
//! creation). Prints the first divergence with the lines before it, and a summary.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::process::ExitCode;
use std::time::Instant;

use zkit_testkit::diff::{first_divergence, summary, transcript};

const HELP: &str = "\
zkit-diff: run the same seeded random ZooKeeper sessions against two servers and compare them

USAGE:
    zkit-diff --reference HOST:PORT --candidate HOST:PORT [--seed S] [--ops N] [--root PATH]
              [--context K] [--transcripts DIR]

    --reference HOST:PORT   the server taken as right (e.g. Apache ZooKeeper 3.8)
    --candidate HOST:PORT   the server under test
    --seed S                seed of the random sessions (default 7)
    --ops N                 steps to run (default 10000)
    --root PATH             the znode the run works under; must not exist on either server
                            (default /zkit-diff-SEED-TIME)
    --context K             lines shown before the first divergence (default 20)
    --transcripts DIR       also write both transcripts to DIR/reference.txt, candidate.txt

Each step is one request from one of two sessions (every opcode of 3.8: creates of every
mode, deletes, setData, reads with watches, ACLs, auth, multi, addWatch, removeWatches, ...),
now and then a re-attach with SetWatches2 or a closed session. A server that is otherwise
idle is best: other clients' writes shift its zxids. Exit status 0 when the transcripts
agree, 1 at a divergence, 2 on bad arguments.
";

struct Args {
    reference: String,
    candidate: String,
    seed: u64,
    ops: usize,
    root: Option<String>,
    context: usize,
    transcripts: Option<String>,
}

fn parse(args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let (mut reference, mut candidate) = (None, None);
    let mut a = Args {
        reference: String::new(),
        candidate: String::new(),
        seed: 7,
        ops: 10_000,
        root: None,
        context: 20,
        transcripts: None,
    };
    let mut it = args;
    while let Some(flag) = it.next() {
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (flag, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        let num = |v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag} expects a number, got {v:?}"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--reference" => reference = Some(value()?),
            "--candidate" => candidate = Some(value()?),
            "--seed" => a.seed = num(value()?)?,
            "--ops" => a.ops = num(value()?)? as usize,
            "--context" => a.context = num(value()?)? as usize,
            "--root" => a.root = Some(value()?),
            "--transcripts" => a.transcripts = Some(value()?),
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    a.reference = reference.ok_or("--reference HOST:PORT is required")?;
    a.candidate = candidate.ok_or("--candidate HOST:PORT is required")?;
    Ok(Some(a))
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("zkit-diff: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("zkit-diff: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(run(args))
}

async fn run(a: Args) -> ExitCode {
    let root = a.root.clone().unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        format!("/zkit-diff-{}-{t}", a.seed)
    });
    println!(
        "zkit-diff: seed {}, {} ops under {root}: reference {}, candidate {}",
        a.seed, a.ops, a.reference, a.candidate
    );
    let started = Instant::now();
    // The two servers are independent: both runs go at once.
    let (r, c) = tokio::join!(
        transcript(&a.reference, &root, a.seed, a.ops),
        transcript(&a.candidate, &root, a.seed, a.ops)
    );
    if let Some(dir) = &a.transcripts {
        let _ = std::fs::create_dir_all(dir);
        let _ = std::fs::write(format!("{dir}/reference.txt"), r.join("\n"));
        let _ = std::fs::write(format!("{dir}/candidate.txt"), c.join("\n"));
    }
    let secs = started.elapsed().as_secs_f64();
    match first_divergence(&r, &c) {
        None => {
            println!("{}", summary(&r));
            println!(
                "0 divergences over {} ops ({secs:.1} s, seed {})",
                a.ops, a.seed
            );
            ExitCode::SUCCESS
        }
        Some(i) => {
            println!(
                "DIVERGENCE at line {i} of {} (seed {}); the lines before it:",
                r.len(),
                a.seed
            );
            for l in &r[i.saturating_sub(a.context)..i] {
                println!("    {l}");
            }
            let line = |t: &[String]| t.get(i).cloned().unwrap_or_else(|| "(end)".into());
            println!("  reference: {}", line(&r));
            println!("  candidate: {}", line(&c));
            println!(
                "(step number, client, request(path ...), then the reply: error code, zxid \
                 relative to the run's start, body with the normalised Stat)"
            );
            println!("{}", summary(&r[..i.min(r.len())]));
            ExitCode::from(1)
        }
    }
}
