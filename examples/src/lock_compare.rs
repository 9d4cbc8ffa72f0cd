//! zkit's `Mutex`, kazoo's `Lock` and Curator's `InterProcessMutex` on the same real server,
//! interleaved: each round runs a batch of uncontended acquire/release pairs on each client in
//! turn (the order rotates every round), after a warm-up batch on each (the server's and the
//! JVM's JIT, connections). kazoo and Curator run as child processes driven over stdin
//! (`examples/kazoo_lock_bench.py`, `examples/CuratorLockBench.java`, compiled with `javac`
//! against `CURATOR_CLASSPATH`); a side whose tool is missing is left out with a note.

use std::process::Stdio;
use std::time::Instant;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use zkit::Client;
use zkit_recipes::{Mutex, MutexOptions};

use crate::demos::DemoResult;

/// Acquire and release samples of one client, in milliseconds.
#[derive(Debug, Default)]
pub struct Samples {
    /// Who was measured.
    pub name: String,
    /// Acquire latencies.
    pub acquire: Vec<f64>,
    /// Release latencies.
    pub release: Vec<f64>,
}

/// A lock benchmark in a child process, speaking "run N" / two lines of samples.
struct Foreign {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Foreign {
    async fn start(cmd: &mut tokio::process::Command) -> DemoResult<Foreign> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        let mut f = Foreign {
            child,
            stdin,
            lines,
        };
        match f.lines.next_line().await? {
            Some(l) if l == "READY" => Ok(f),
            other => Err(format!("bench process did not start: {other:?}").into()),
        }
    }

    async fn run(&mut self, n: usize) -> DemoResult<(Vec<f64>, Vec<f64>)> {
        self.stdin
            .write_all(format!("run {n}\n").as_bytes())
            .await?;
        self.stdin.flush().await?;
        let acq = self.samples().await?;
        let rel = self.samples().await?;
        Ok((acq, rel))
    }

    async fn samples(&mut self) -> DemoResult<Vec<f64>> {
        let l = self.lines.next_line().await?.ok_or("bench process ended")?;
        Ok(l.split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect())
    }

    async fn quit(mut self) {
        let _ = self.stdin.write_all(b"quit\n").await;
        let _ = self.stdin.flush().await;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), self.child.wait()).await;
    }
}

async fn zkit_batch(m: &Mutex, n: usize) -> DemoResult<(Vec<f64>, Vec<f64>)> {
    let (mut acq, mut rel) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let t = Instant::now();
        let g = m.acquire().await?;
        let t2 = Instant::now();
        g.release().await?;
        acq.push((t2 - t).as_secs_f64() * 1e3);
        rel.push(t2.elapsed().as_secs_f64() * 1e3);
    }
    Ok((acq, rel))
}

async fn kazoo(connect: &str) -> Option<Foreign> {
    let python = std::env::var("KAZOO_PYTHON").ok()?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/kazoo_lock_bench.py");
    match Foreign::start(tokio::process::Command::new(python).args([script, connect])).await {
        Ok(f) => Some(f),
        Err(e) => {
            eprintln!("kazoo left out: {e}");
            None
        }
    }
}

async fn curator(connect: &str) -> Option<Foreign> {
    let cp = std::env::var("CURATOR_CLASSPATH").ok()?;
    let dir = std::env::temp_dir().join(format!("zkit-curator-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/CuratorLockBench.java");
    let ok = std::process::Command::new("javac")
        .args(["-nowarn", "-d"])
        .arg(&dir)
        .args(["-cp", &cp, src])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("Curator left out: javac failed");
        return None;
    }
    let mut cmd = tokio::process::Command::new("java");
    cmd.arg("-cp")
        .arg(format!("{cp}:{}", dir.display()))
        .arg("CuratorLockBench")
        .arg(connect);
    let r = Foreign::start(&mut cmd).await;
    let _ = std::fs::remove_dir_all(&dir);
    match r {
        Ok(f) => Some(f),
        Err(e) => {
            eprintln!("Curator left out: {e}");
            None
        }
    }
}

/// Runs the interleaved comparison: `warmup` pairs per client first, then `rounds` rounds of
/// `batch` pairs per client. Returns zkit's samples first, then kazoo's and Curator's when
/// available.
pub async fn compare(
    connect: &str,
    warmup: usize,
    rounds: usize,
    batch: usize,
) -> DemoResult<Vec<Samples>> {
    let zk = Client::connect(connect).await?;
    let path = format!("/zkit-lock-bench-{:08x}", crate::nonce());
    let m = Mutex::new(&zk, &path, MutexOptions::default());
    let mut foreign: Vec<(String, Foreign)> = Vec::new();
    if let Some(k) = kazoo(connect).await {
        foreign.push(("kazoo Lock".into(), k));
    } else {
        eprintln!("(kazoo left out: set KAZOO_PYTHON to a python with kazoo)");
    }
    if let Some(c) = curator(connect).await {
        foreign.push(("Curator InterProcessMutex".into(), c));
    } else {
        eprintln!("(Curator left out: set CURATOR_CLASSPATH, see scripts/ci/curator.sh)");
    }
    let mut out = vec![Samples {
        name: "zkit Mutex".into(),
        ..Samples::default()
    }];
    for (name, _) in &foreign {
        out.push(Samples {
            name: name.clone(),
            ..Samples::default()
        });
    }
    zkit_batch(&m, warmup).await?;
    for (_, f) in foreign.iter_mut() {
        f.run(warmup).await?;
    }
    let sides = out.len();
    for round in 0..rounds {
        for k in 0..sides {
            let side = (round + k) % sides;
            let (acq, rel) = if side == 0 {
                zkit_batch(&m, batch).await?
            } else {
                foreign[side - 1].1.run(batch).await?
            };
            out[side].acquire.extend(acq);
            out[side].release.extend(rel);
        }
    }
    for (_, f) in foreign {
        f.quit().await;
    }
    let _ = zk.delete(&path, None).await;
    zk.close().await?;
    Ok(out)
}
