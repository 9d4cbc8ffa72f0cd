//! Client TLS against the testkit's secure port and real ZooKeeper's `secureClientPort`.

use std::time::Duration;

use zkit::{CreateOptions, Error, EventType};
use zkit_testkit::Server;

use crate::certs::Certs;
use crate::real::{self, Env, RealZk};
use crate::{builder, serves, unique};

async fn testkit(certs: &Certs, client_auth: bool) -> Server {
    let mut tls = certs.server_tls();
    if client_auth {
        tls = tls.client_ca(certs.ca.clone());
    }
    Server::builder().tls(tls).start().await.unwrap()
}

fn localhost(addr: std::net::SocketAddr) -> String {
    format!("localhost:{}", addr.port())
}

/// Real ZooKeeper with a secure port; the env to restart it with, and the dir of its TLS files.
pub fn real_tls(certs: &Certs, client_auth: &str) -> (RealZk, Env, tempfile::TempDir) {
    let tls_dir = tempfile::tempdir().unwrap();
    certs.write_zk_tls_dir(tls_dir.path());
    let env = vec![
        ("ZK_TLS_DIR", tls_dir.path().display().to_string()),
        ("ZK_TLS_CLIENT_AUTH", client_auth.to_owned()),
    ];
    (RealZk::start(&env), env, tls_dir)
}

/// Asserts `r` is a TLS error whose message contains `what`.
fn assert_tls_error<T: std::fmt::Debug>(r: Result<T, Error>, what: &str) {
    match r {
        Err(Error::Tls(m)) => assert!(m.contains(what), "TLS error {m:?} lacks {what:?}"),
        other => panic!("expected a TLS error about {what:?}, got {other:?}"),
    }
}

/// Wrong CA, hostname mismatch (and its two opt-outs), and a working connection.
async fn refusals_and_success(connect_by_name: &str, certs: &Certs) {
    let by_ip = connect_by_name.replace("localhost", "127.0.0.1");
    let r = builder(connect_by_name)
        .tls(zkit::TlsConfig::new(certs.other_ca.clone()))
        .connect()
        .await;
    assert_tls_error(r, "not signed by the configured CA");

    let r = builder(&by_ip).tls(certs.client_tls()).connect().await;
    assert_tls_error(r, "does not name");

    for tls in [
        certs.client_tls().skip_hostname_verification(),
        certs.client_tls().server_name("localhost"),
    ] {
        let zk = builder(&by_ip).tls(tls).connect().await.unwrap();
        zk.exists("/").await.unwrap();
        zk.close().await.unwrap();
    }
    let zk = builder(connect_by_name)
        .tls(certs.client_tls())
        .connect()
        .await
        .unwrap();
    let p = unique("tls");
    zk.create(&p, b"over tls", &CreateOptions::persistent())
        .await
        .unwrap();
    assert_eq!(zk.get_data(&p).await.unwrap().0, b"over tls"[..]);
    zk.delete(&p, None).await.unwrap();
    zk.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_refuses_a_wrong_ca_and_a_hostname_mismatch_testkit() {
    let certs = Certs::new();
    let server = testkit(&certs, false).await;
    refusals_and_success(&localhost(server.secure_addr().unwrap()), &certs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_refuses_a_wrong_ca_and_a_hostname_mismatch_real() {
    if !real::enabled("tls_refuses_a_wrong_ca_and_a_hostname_mismatch_real") {
        return;
    }
    let certs = Certs::new();
    let (zk, _env, _dir) = real_tls(&certs, "none");
    refusals_and_success(&zk.secure_localhost(), &certs).await;
}

/// Without a client certificate: a TLS error; with one: a session.
async fn client_cert_required(connect: &str, certs: &Certs) {
    let r = builder(connect).tls(certs.client_tls()).connect().await;
    assert!(matches!(r, Err(Error::Tls(_))), "{r:?}");
    serves(builder(connect).tls(certs.client_tls_with_cert())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_certificate_required_and_accepted_testkit() {
    let certs = Certs::new();
    let server = testkit(&certs, true).await;
    client_cert_required(&localhost(server.secure_addr().unwrap()), &certs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_certificate_required_and_accepted_real() {
    if !real::enabled("tls_client_certificate_required_and_accepted_real") {
        return;
    }
    let certs = Certs::new();
    let (zk, _env, _dir) = real_tls(&certs, "need");
    client_cert_required(&zk.secure_localhost(), &certs).await;
}

/// The zoo.cfg keys `scripts/zookeeper.sh` writes for real ZooKeeper's secure port
/// (`secureClientPort`, PEM `ssl.keyStore` / `ssl.trustStore`, `ssl.clientAuth=need`) give the
/// testkit (`zkit-server --config`) the same secure port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_from_zoo_cfg_keys_requires_and_accepts_a_client_certificate_testkit() {
    let certs = Certs::new();
    let d = tempfile::tempdir().unwrap();
    certs.write_zk_tls_dir(d.path());
    let dir = d.path().display();
    let text = format!(
        "dataDir={dir}/data\nclientPort=0\nclientPortAddress=127.0.0.1\nsecureClientPort=0\n\
         serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory\n\
         ssl.keyStore.location={dir}/server-keystore.pem\nssl.keyStore.type=PEM\n\
         ssl.trustStore.location={dir}/ca.pem\nssl.trustStore.type=PEM\nssl.clientAuth=need\n"
    );
    let cfg = zkit_testkit::ZooCfg::parse(&text).unwrap();
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    let mut server = zkit_testkit::Builder::from_zoo_cfg(&cfg)
        .unwrap()
        .start()
        .await
        .unwrap();
    client_cert_required(&localhost(server.secure_addr().unwrap()), &certs).await;
    server.stop().await;
    // Other store types, or clientAuth=need without a trust store, are refused by name.
    for (bad, key) in [
        (
            text.replace("trustStore.type=PEM", "trustStore.type=JKS"),
            "ssl.trustStore.type",
        ),
        (
            text.replace(&format!("ssl.trustStore.location={dir}/ca.pem\n"), ""),
            "ssl.clientAuth",
        ),
    ] {
        let e = zkit_testkit::ZooCfg::parse(&bad)
            .map_err(|e| e.to_string())
            .and_then(|c| zkit_testkit::Builder::from_zoo_cfg(&c).map_err(|e| e.to_string()))
            .map(|_| ())
            .unwrap_err();
        assert!(e.contains(key), "{e}");
    }
}

/// A watch set over TLS fires after the server went away and came back; the session (and its
/// ephemeral) survive.
async fn session_survives_restart(connect: &str, certs: &Certs, restart: impl AsyncFnOnce()) {
    let zk = builder(connect)
        .tls(certs.client_tls())
        .connect()
        .await
        .unwrap();
    let id = zk.session_id();
    let p = unique("tls-restart");
    zk.create(&p, b"", &CreateOptions::persistent())
        .await
        .unwrap();
    let eph = format!("{p}/eph");
    zk.create(&eph, b"", &CreateOptions::ephemeral())
        .await
        .unwrap();
    let (_, _, watch) = zk.get_data_and_watch(&p).await.unwrap();
    restart().await;
    // The client reconnects over TLS by itself; the watch was re-registered.
    let other = builder(connect)
        .tls(certs.client_tls())
        .connect()
        .await
        .unwrap();
    other.set_data(&p, b"changed", None).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(60), watch)
        .await
        .expect("watch fired")
        .unwrap();
    assert_eq!(ev.event_type, EventType::NodeDataChanged);
    assert_eq!(zk.session_id(), id);
    assert!(other.exists(&eph).await.unwrap().is_some());
    zk.delete(&eph, None).await.unwrap();
    zk.delete(&p, None).await.unwrap();
    zk.close().await.unwrap();
    other.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_session_survives_a_server_restart_testkit() {
    let certs = Certs::new();
    let mut server = testkit(&certs, false).await;
    let connect = localhost(server.secure_addr().unwrap());
    session_survives_restart(&connect, &certs, async || {
        server.restart().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_session_survives_a_server_restart_real() {
    if !real::enabled("tls_session_survives_a_server_restart_real") {
        return;
    }
    let certs = Certs::new();
    let (zk, env, _dir) = real_tls(&certs, "none");
    let connect = zk.secure_localhost();
    session_survives_restart(&connect, &certs, async || {
        tokio::task::block_in_place(|| zk.restart(&env));
    })
    .await;
}
