//! Test harness: every test runs against a target — the in-process testkit by default, or a real
//! Apache ZooKeeper when `ZK_TEST_CONNECT` is set — inside a fresh chroot of its own so tests can
//! share one real server.
#![allow(dead_code)]

use std::time::Duration;

use zkit::{Client, CreateOptions, Error};

/// Where the tests run.
pub struct Target {
    /// Connect string of the server (no chroot).
    pub connect: String,
    /// Whether this is real Apache ZooKeeper.
    pub real: bool,
}

impl Target {
    /// The target chosen by the environment.
    pub async fn new() -> Target {
        match std::env::var("ZK_TEST_CONNECT") {
            Ok(c) if !c.is_empty() => Target {
                connect: c,
                real: true,
            },
            _ => panic!("set ZK_TEST_CONNECT"),
        }
    }

    /// A fresh, empty namespace for one test: creates `/zkit-test-<random>` and returns a
    /// connect string chrooted there.
    pub async fn namespace(&self) -> String {
        let root = Client::connect(&self.connect).await.expect("connect");
        let name = format!("/zkit-test-{:016x}", fastrand::u64(..));
        match root.create(&name, b"", &CreateOptions::persistent()).await {
            Ok(_) | Err(Error::NodeExists) => {}
            Err(e) => panic!("create namespace: {e}"),
        }
        root.close().await.unwrap();
        format!("{}{}", self.connect, name)
    }

    /// A client in a fresh namespace.
    pub async fn client(&self) -> (Client, String) {
        let ns = self.namespace().await;
        let c = Client::builder(&ns)
            .session_timeout(Duration::from_secs(10))
            .connect()
            .await
            .expect("connect");
        (c, ns)
    }
}
