//! The ensembles the `ensemble` benchmark can measure, behind one enum: real Apache ZooKeeper
//! (three JVMs) always, the in-process testkit ensemble with the `ensemble` feature.

use std::path::Path;
use std::time::Duration;

#[cfg(feature = "ensemble")]
use super::testkit::TkEnsemble;
use super::zookeeper::ZkEnsemble;

/// Which implementation to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Apache ZooKeeper through `scripts/zookeeper.sh`.
    Zookeeper,
    /// `zkit_testkit::Ensemble`, in this process.
    #[cfg(feature = "ensemble")]
    Testkit,
}

impl Kind {
    /// Every kind this build can run, in the order they are measured.
    pub fn all() -> Vec<Kind> {
        vec![
            Kind::Zookeeper,
            #[cfg(feature = "ensemble")]
            Kind::Testkit,
        ]
    }

    /// Parses a `--targets` entry.
    pub fn parse(s: &str) -> Result<Kind, String> {
        match s {
            "zookeeper" => Ok(Kind::Zookeeper),
            #[cfg(feature = "ensemble")]
            "testkit" => Ok(Kind::Testkit),
            #[cfg(not(feature = "ensemble"))]
            "testkit" => Err("--targets testkit: build with --features ensemble".into()),
            other => Err(format!("--targets: unknown target {other}")),
        }
    }

    /// Name in the tables.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Zookeeper => "zookeeper",
            #[cfg(feature = "ensemble")]
            Kind::Testkit => "zkit-testkit",
        }
    }

    /// Starts a fresh 3-server ensemble with its data under `dir`; returns it with the time from
    /// starting it until a client could create a node.
    pub async fn start_timed(
        self,
        script: &Path,
        dir: &Path,
    ) -> Result<(Ensemble, Duration), String> {
        match self {
            Kind::Zookeeper => {
                let (e, t) = ZkEnsemble::start_timed(script, dir).await?;
                Ok((Ensemble::Zookeeper(e), t))
            }
            #[cfg(feature = "ensemble")]
            Kind::Testkit => {
                let (e, t) = TkEnsemble::start_timed(dir).await?;
                Ok((Ensemble::Testkit(e), t))
            }
        }
    }
}

/// A running 3-server ensemble of either kind; stopped on drop.
pub enum Ensemble {
    /// Real ZooKeeper.
    Zookeeper(ZkEnsemble),
    /// The testkit.
    #[cfg(feature = "ensemble")]
    Testkit(TkEnsemble),
}

impl Ensemble {
    /// One `HOST:PORT` per server, in server order (the order `leader` and `kill` use).
    pub fn hosts(&self) -> Vec<String> {
        match self {
            Ensemble::Zookeeper(e) => e.hosts(),
            #[cfg(feature = "ensemble")]
            Ensemble::Testkit(e) => e.hosts(),
        }
    }

    /// The index of the current leader, if one serves as leader now.
    pub async fn leader(&self) -> Option<usize> {
        match self {
            Ensemble::Zookeeper(e) => e.leader().await,
            #[cfg(feature = "ensemble")]
            Ensemble::Testkit(e) => e.leader().await,
        }
    }

    /// Crashes server `i` (`kill -9` for a JVM).
    pub async fn kill(&mut self, i: usize) -> Result<(), String> {
        match self {
            Ensemble::Zookeeper(e) => e.kill(i).await,
            #[cfg(feature = "ensemble")]
            Ensemble::Testkit(e) => e.kill(i).await,
        }
    }

    /// Pids whose CPU time is the servers' (none for the in-process testkit: its CPU is ours).
    pub fn server_pids(&self) -> Vec<u32> {
        match self {
            Ensemble::Zookeeper(e) => e.pids(),
            #[cfg(feature = "ensemble")]
            Ensemble::Testkit(_) => Vec::new(),
        }
    }

    /// What to call it in the header: the version for ZooKeeper.
    pub async fn describe(&self) -> String {
        match self {
            Ensemble::Zookeeper(e) => format!(
                "Apache ZooKeeper {} (3 JVMs, forceSync=yes, ZK_JAVA_OPTS={})",
                e.version().await.unwrap_or_else(|| "?".into()),
                std::env::var("ZK_JAVA_OPTS")
                    .unwrap_or_else(|_| crate::server::DEFAULT_JAVA_OPTS.into())
            ),
            #[cfg(feature = "ensemble")]
            Ensemble::Testkit(_) => "zkit-testkit Ensemble (3 servers in this process)".into(),
        }
    }
}
