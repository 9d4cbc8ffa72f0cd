//! Shared helpers for the zkit examples: pick a server (an embedded testkit unless `--connect`
//! or `ZK_CONNECT` names one) and print a readable narrative with timings.

use std::time::Instant;

/// Where an example runs: an embedded testkit server it owns, or an external ensemble.
pub struct Target {
    /// Connect string (no chroot).
    pub connect: String,
    /// The embedded server, when the example started one.
    pub embedded: Option<zkit_testkit::Server>,
}

impl Target {
    /// `--connect HOST:PORT` or `ZK_CONNECT`, else a fresh embedded testkit server.
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
                let server = zkit_testkit::Server::start()
                    .await
                    .expect("start embedded testkit server");
                step(&format!(
                    "started an embedded zkit-testkit server on {} in {:.2} ms",
                    server.connect_string(),
                    t.elapsed().as_secs_f64() * 1e3
                ));
                Target {
                    connect: server.connect_string(),
                    embedded: Some(server),
                }
            }
        }
    }
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
