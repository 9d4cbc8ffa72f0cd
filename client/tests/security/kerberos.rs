//! Kerberos (SASL GSSAPI, cargo feature `gssapi`) against real ZooKeeper whose JAAS `Server`
//! section logs in with `Krb5LoginModule` and a keytab, with a KDC from `scripts/kdc.sh`.
//! Runs when `ZK_KDC_DIR` names that KDC's directory and the Kerberos environment it printed
//! is set (`KRB5_CONFIG`, `KRB5_CLIENT_KTNAME`, `KRB5CCNAME`); scripts/ci/security.sh does both.

use zkit::{perms, Acl, CreateOptions, Error, GssapiOptions, Id, SaslConfig};

use crate::builder;
use crate::real::RealZk;

const REALM: &str = "ZKIT.TEST";

fn jaas(kdc: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let text = format!(
        "Server {{\n  com.sun.security.auth.module.Krb5LoginModule required\n  useKeyTab=true\n  \
         keyTab=\"{kdc}/zookeeper.keytab\"\n  storeKey=true\n  useTicketCache=false\n  \
         principal=\"zookeeper/localhost@{REALM}\";\n}};\n"
    );
    let path = dir.join("jaas-krb5.conf");
    std::fs::write(&path, text).unwrap();
    path
}

fn as_principal(name: &str) -> SaslConfig {
    SaslConfig::gssapi(GssapiOptions::new().principal(format!("{name}@{REALM}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kerberos_principal_is_the_sasl_id_and_a_sasl_acl_keeps_another_out_real() {
    let Ok(kdc) = std::env::var("ZK_KDC_DIR") else {
        eprintln!(
            "kerberos: skipped (run scripts/kdc.sh start DIR and set ZK_KDC_DIR and its env)"
        );
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let env = vec![
        ("ZK_JAAS_FILE", jaas(&kdc, d.path()).display().to_string()),
        (
            "ZK_JAVA_OPTS",
            format!("-Djava.security.krb5.conf={kdc}/krb5.conf"),
        ),
    ];
    let zk = RealZk::start(&env);
    // The service principal is zookeeper/localhost: connect by that name.
    let connect = zk.connect.replace("127.0.0.1", "localhost");
    let alice = builder(&connect)
        .sasl(as_principal("alice"))
        .connect()
        .await
        .unwrap();
    let who = alice.who_am_i().await.unwrap();
    let id = who
        .iter()
        .find(|c| c.auth_scheme == "sasl")
        .unwrap_or_else(|| panic!("no sasl id in {who:?}"))
        .user
        .clone();
    assert!(id.starts_with("alice"), "{who:?}");
    let p = crate::unique("krb-acl");
    let acl = vec![Acl {
        perms: perms::ALL,
        id: Id {
            scheme: "sasl".into(),
            id: id.clone(),
        },
    }];
    alice
        .create(&p, b"alice's", &CreateOptions::persistent().acl(acl))
        .await
        .unwrap();
    assert_eq!(alice.get_data(&p).await.unwrap().0, b"alice's"[..]);
    let bob = builder(&connect)
        .sasl(as_principal("bob"))
        .connect()
        .await
        .unwrap();
    let bob_who = bob.who_am_i().await.unwrap();
    assert!(
        bob_who
            .iter()
            .any(|c| c.auth_scheme == "sasl" && c.user.starts_with("bob")),
        "{bob_who:?}"
    );
    assert_eq!(bob.get_data(&p).await.unwrap_err(), Error::NoAuth);
    println!("kerberos: alice is sasl:{id}, bob refused");
    // Every connection authenticates again: after a server restart alice still reads it.
    let mut states = alice.state_changes();
    tokio::task::block_in_place(|| zk.restart(&env));
    crate::sasl::wait_reconnected(&mut states).await;
    assert_eq!(alice.get_data(&p).await.unwrap().0, b"alice's"[..]);
    // A principal without credentials: AuthFailed, nothing sent.
    let r = builder(&connect)
        .sasl(as_principal("nobody"))
        .connect()
        .await;
    assert!(matches!(r, Err(Error::AuthFailed)), "{:?}", r.err());
    for c in [alice, bob] {
        c.close().await.unwrap();
    }
    if std::env::var_os("ZK_HANDSHAKE_COST").is_some() {
        handshake_cost(&connect).await;
    }
}

/// Connect + close time with GSSAPI (a service ticket from the cache after the first), printed
/// beside `handshake_cost`'s plain / TLS / TLS + SASL rows. No timing is asserted.
async fn handshake_cost(connect: &str) {
    const N: u32 = 50;
    const WARMUP: u32 = 20;
    for kind in ["plain", "gssapi"] {
        let once = async || {
            let mut b = builder(connect);
            if kind == "gssapi" {
                b = b.sasl(as_principal("alice"));
            }
            b.connect().await.unwrap().close().await.unwrap();
        };
        for _ in 0..WARMUP {
            once().await;
        }
        let start = std::time::Instant::now();
        for _ in 0..N {
            once().await;
        }
        println!(
            "handshake_cost zookeeper-krb5 {kind}: {:?} per connect+close (mean of {N}, after {WARMUP})",
            start.elapsed() / N
        );
    }
}

/// A GSSAPI client against the testkit (which speaks DIGEST-MD5 only) fails with `AuthFailed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kerberos_client_against_a_digest_only_testkit_fails_cleanly() {
    if std::env::var_os("ZK_KDC_DIR").is_none() {
        eprintln!("kerberos: skipped (no ZK_KDC_DIR)");
        return;
    }
    let server = crate::sasl::testkit_sasl(false).await;
    let connect = format!("localhost:{}", server.addr().port());
    let r = builder(&connect)
        .sasl(as_principal("alice"))
        .connect()
        .await;
    assert!(matches!(r, Err(Error::AuthFailed)), "{:?}", r.err());
}
