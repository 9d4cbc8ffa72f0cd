//! Shared helpers for the zkit examples: pick a server (an embedded testkit unless `--connect`
//! or `ZK_CONNECT` names one) and print a readable narrative with timings.

use std::time::Instant;

pub mod demos;
pub mod lock_compare;

/// Where an example runs: an embedded testkit server it owns, or an external ensemble.
pub struct Target {
    /// Connect string (no chroot).
    pub connect: String,
    /// The embedded 3-server ensemble, when the example started one.
    pub embedded: Option<zkit_testkit::Ensemble>,
}

impl Target {
    /// `--connect HOST:PORT` or `ZK_CONNECT`, else a fresh embedded 3-server testkit ensemble.
    pub async fn from_args() -> Target {
        let mut args = std::env::args().skip(1);
        let mut connect = std::env::var("ZK_CONNECT").ok();
        while let Some(a) = args.next() {
            if a == "--connect" {
                connect = args.next();
            }
        }
        match connect {
            Some(c) => {
                step(&format!("using the ensemble at {c}"));
                Target {
                    connect: c,
                    embedded: None,
                }
            }
            None => {
                let t = Instant::now();
                let ens = zkit_testkit::Ensemble::builder()
                    .servers(3)
                    .start()
                    .await
                    .expect("start an embedded testkit ensemble");
                let leader = ens.wait_for_leader().await.expect("a leader");
                step(&format!(
                    "started an embedded 3-server zkit-testkit ensemble on {} in {:.2} ms \
                     (server {leader} leads)",
                    ens.connect_string(),
                    t.elapsed().as_secs_f64() * 1e3
                ));
                Target {
                    connect: ens.connect_string(),
                    embedded: Some(ens),
                }
            }
        }
    }
}

impl Target {
    /// Creates a fresh namespace `/<name>-<random>` and returns a connect string chrooted to it.
    pub async fn namespace(&self, name: &str) -> Result<String, zkit::Error> {
        let ns = format!("/{name}-{:08x}", nonce());
        let root = zkit::Client::connect(&self.connect).await?;
        root.create(&ns, b"", &zkit::CreateOptions::persistent())
            .await?;
        root.close().await?;
        Ok(format!("{}{ns}", self.connect))
    }
}

/// A number that differs between runs (for namespace names).
pub fn nonce() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
        .unwrap_or(0)
}

/// Milliseconds since `t`.
pub fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Prints one narrative line.
pub fn step(msg: &str) {
    println!("  • {msg}");
}

/// Prints a section title.
pub fn section(title: &str) {
    println!("\n── {title} ──");
}

/// Installs a compact tracing subscriber when `RUST_LOG` is set.
pub fn init_tracing() {
    if std::env::var("RUST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
}
