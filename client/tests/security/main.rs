//! TLS and SASL: the client against the testkit's secure port and SASL server, and against real
//! Apache ZooKeeper configured the same way (`ZK_SECURITY_TESTS=1`, see `real.rs`). Certificates
//! are made at test time.

mod bad_input;
mod certs;
#[cfg(feature = "gssapi")]
mod kerberos;
mod real;
mod sasl;
mod tls;

use std::time::Duration;

use zkit::{Client, ClientBuilder};

/// A builder with timeouts that suit a busy machine.
pub fn builder(connect: &str) -> ClientBuilder {
    Client::builder(connect)
        .connect_timeout(Duration::from_secs(20))
        .session_timeout(Duration::from_secs(30))
}

/// Connects with `builder`, reads `/` and closes: the server serves this client.
pub async fn serves(builder: ClientBuilder) {
    let zk = builder.connect().await.expect("connect");
    zk.exists("/").await.expect("exists /");
    zk.close().await.expect("close");
}

/// A unique path for one test run on a shared server.
pub fn unique(name: &str) -> String {
    format!("/{name}-{:x}", fastrand::u64(..))
}
