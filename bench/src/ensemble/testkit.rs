//! The in-process replicated testkit ensemble (`zkit_testkit::Ensemble`) as a benchmark target,
//! built with the `ensemble` feature.
//!
//! The API used here: `Ensemble::builder().servers(3).data_dir(dir).start().await` (an error
//! that implements `Display`), `connect_string()` (the servers' `HOST:PORT`s joined by commas,
//! in server order), `leader()` (`Option<usize>`, the index of the current leader in that
//! order) and `kill(i).await` (stops server `i` at once, as a crash would).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use super::probe_create;
use super::zookeeper::PATIENCE;

/// A running testkit ensemble in its own data directory (removed on drop).
pub struct TkEnsemble {
    ens: Option<zkit_testkit::Ensemble>,
    dir: PathBuf,
}

impl TkEnsemble {
    /// Starts three servers with data directories under `dir`, and returns them with the time
    /// from the start call until a client could create a node.
    pub async fn start_timed(dir: &Path) -> Result<(TkEnsemble, Duration), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let t0 = Instant::now();
        let ens = zkit_testkit::Ensemble::builder()
            .servers(3)
            .data_dir(dir)
            .start()
            .await
            .map_err(|e| format!("testkit ensemble: {e}"))?;
        let tk = TkEnsemble {
            ens: Some(ens),
            dir: dir.to_owned(),
        };
        let probe = format!("/zkit-bench-ready-{}", std::process::id());
        let connect = tk.hosts().join(",");
        while probe_create(&connect, &probe, Duration::from_secs(3))
            .await
            .is_err()
        {
            if t0.elapsed() > PATIENCE {
                return Err("testkit ensemble not ready".into());
            }
        }
        Ok((tk, t0.elapsed()))
    }

    /// One `HOST:PORT` per server, in server order.
    pub fn hosts(&self) -> Vec<String> {
        self.ens
            .as_ref()
            .map(|e| e.connect_string())
            .unwrap_or_default()
            .split(',')
            .map(str::to_owned)
            .collect()
    }

    /// The index of the current leader, if there is one.
    pub async fn leader(&self) -> Option<usize> {
        self.ens.as_ref()?.leader()
    }

    /// Stops server `i` abruptly.
    pub async fn kill(&mut self, i: usize) -> Result<(), String> {
        match self.ens.as_mut() {
            Some(e) => {
                e.kill(i).await;
                Ok(())
            }
            None => Err("ensemble already stopped".into()),
        }
    }
}

impl Drop for TkEnsemble {
    fn drop(&mut self) {
        drop(self.ens.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
