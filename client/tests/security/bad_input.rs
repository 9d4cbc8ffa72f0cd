//! Bad input on the secure port and in SASL: each gets a clean close, and the server keeps
//! serving.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zkit::SaslConfig;
use zkit_testkit::Server;

use crate::certs::Certs;
use crate::{builder, serves};

/// Writes `bytes` and expects the server to close the connection (EOF or reset) in time.
async fn closed_after(addr: std::net::SocketAddr, bytes: &[u8]) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut buf = vec![0u8; 4096];
    let closed = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), closed)
        .await
        .expect("the server closed the connection");
}

/// A raw sasl packet (opcode 102) after a handshake.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

fn connect_request() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(0i32.to_be_bytes()); // protocol version
    b.extend(0i64.to_be_bytes()); // last zxid
    b.extend(30000i32.to_be_bytes()); // timeout
    b.extend(0i64.to_be_bytes()); // session id
    b.extend(16i32.to_be_bytes());
    b.extend([0u8; 16]);
    b.push(0);
    frame(&b)
}

fn sasl_packet(token: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(1i32.to_be_bytes());
    b.extend(102i32.to_be_bytes());
    b.extend((token.len() as i32).to_be_bytes());
    b.extend_from_slice(token);
    frame(&b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_on_the_tls_port_and_in_sasl_is_closed_cleanly() {
    let certs = Certs::new();
    let server = Server::builder()
        .tls(certs.server_tls())
        .sasl_digest_users([("bob", "secret")])
        .max_packet(64 * 1024)
        .start()
        .await
        .unwrap();
    let secure = server.secure_addr().unwrap();
    // A TLS handshake of junk, and a plain-text client on the TLS port.
    closed_after(secure, &[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3, 4, 5]).await;
    closed_after(secure, &connect_request()).await;
    // Garbage SASL tokens, and one larger than any DIGEST-MD5 token.
    let plain = server.addr();
    for token in [
        b"\x00\xff garbage \x01".to_vec(),
        b"username=\"bob\",response=zz".to_vec(),
        vec![b'a'; 40 * 1024],
    ] {
        let mut all = connect_request();
        all.extend(sasl_packet(b""));
        all.extend(sasl_packet(&token));
        closed_after(plain, &all).await;
    }
    // The server still serves both ports.
    serves(
        builder(&format!("localhost:{}", secure.port()))
            .tls(certs.client_tls())
            .sasl(SaslConfig::digest_md5("bob", "secret")),
    )
    .await;
}

/// A connection on the TLS port that sends nothing, or half a TLS record, is closed at the
/// handshake timeout; a sasl packet to a server without SASL closes the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_or_half_tls_handshakes_and_unconfigured_sasl_are_closed() {
    let certs = Certs::new();
    let server = Server::builder()
        .tls(certs.server_tls())
        .handshake_timeout(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    let secure = server.secure_addr().unwrap();
    closed_after(secure, b"").await;
    // A handshake record header announcing 16 KiB, then nothing.
    closed_after(secure, &[0x16, 0x03, 0x01, 0x40, 0x00, 0x01]).await;
    let mut all = connect_request();
    all.extend(sasl_packet(b""));
    closed_after(server.addr(), &all).await;
}

/// A server that answers the client's SASL with garbage: the client fails with `AuthFailed`
/// (no panic, no hang).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_refuses_a_garbage_sasl_challenge() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        read_frame(&mut s).await; // ConnectRequest
        let mut resp = Vec::new();
        resp.extend(0i32.to_be_bytes()); // protocol version
        resp.extend(30000i32.to_be_bytes()); // timeout
        resp.extend(0x1234i64.to_be_bytes()); // session id
        resp.extend(16i32.to_be_bytes());
        resp.extend([7u8; 16]);
        resp.push(0); // read-only
        s.write_all(&frame(&resp)).await.unwrap();
        let sasl = read_frame(&mut s).await;
        let xid = i32::from_be_bytes(sasl[..4].try_into().unwrap());
        let mut reply = Vec::new();
        reply.extend(xid.to_be_bytes());
        reply.extend(0i64.to_be_bytes()); // zxid
        reply.extend(0i32.to_be_bytes()); // ok
        let garbage = b"\xff\x00realm=\"\",nonce,,qop=\"auth-conf-x\"\x01";
        reply.extend((garbage.len() as i32).to_be_bytes());
        reply.extend_from_slice(garbage);
        s.write_all(&frame(&reply)).await.unwrap();
        // Keep the socket open: the client must give up by itself.
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
    });
    let r = builder(&addr.to_string())
        .sasl(SaslConfig::digest_md5("bob", "secret"))
        .connect()
        .await;
    assert!(matches!(r, Err(zkit::Error::AuthFailed)), "{:?}", r.err());
    fake.abort();
}

async fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).await.unwrap();
    body
}

/// Connect time plain vs TLS vs TLS + SASL, in the same run, printed when `ZK_HANDSHAKE_COST`
/// is set (`cargo test -p zkit --test security handshake_cost -- --nocapture`). No timing is
/// asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_cost() {
    if std::env::var_os("ZK_HANDSHAKE_COST").is_none() {
        eprintln!("handshake_cost: skipped (set ZK_HANDSHAKE_COST=1)");
        return;
    }
    let certs = Certs::new();
    let server = Server::builder()
        .tls(certs.server_tls())
        .sasl_digest_users([("bob", "secret")])
        .start()
        .await
        .unwrap();
    let mut targets = vec![(
        "testkit",
        server.connect_string(),
        format!("localhost:{}", server.secure_addr().unwrap().port()),
    )];
    let _real = if crate::real::enabled("handshake_cost") {
        let d = tempfile::tempdir().unwrap();
        certs.write_zk_tls_dir(d.path());
        let jaas = crate::sasl::write_jaas(d.path());
        let env = vec![
            ("ZK_TLS_DIR", d.path().display().to_string()),
            ("ZK_JAAS_FILE", jaas.display().to_string()),
        ];
        let zk = crate::real::RealZk::start(&env);
        targets.push(("zookeeper", zk.connect.clone(), zk.secure_localhost()));
        Some((zk, d))
    } else {
        None
    };
    const N: u32 = 50;
    const WARMUP: u32 = 20;
    for (name, plain, secure) in targets {
        for (kind, connect, tls, sasl) in [
            ("plain", &plain, false, false),
            ("tls", &secure, true, false),
            ("tls+sasl", &secure, true, true),
        ] {
            let once = async || {
                let mut b = builder(connect);
                if tls {
                    b = b.tls(certs.client_tls());
                }
                if sasl {
                    b = b.sasl(SaslConfig::digest_md5("bob", "secret"));
                }
                let zk = b.connect().await.unwrap();
                zk.close().await.unwrap();
            };
            // Untimed rounds first: the JVM compiles its TLS and SASL code on first use.
            for _ in 0..WARMUP {
                once().await;
            }
            let start = Instant::now();
            for _ in 0..N {
                once().await;
            }
            println!(
                "handshake_cost {name} {kind}: {:?} per connect+close (mean of {N}, after {WARMUP})",
                start.elapsed() / N
            );
        }
    }
}
