//! Connection limits and bookkeeping: `maxClientCnxns` per IP address with ZooKeeper's
//! semantics, and connections listed by `cons`/`mntr` from the moment they are accepted.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use zkit_testkit::FourLetterWords;
use zkit_testkit::Server;

async fn word(addr: &str, w: &str) -> String {
    String::from_utf8(raw_exchange(addr, w.as_bytes()).await).unwrap()
}

/// Waits until the server lists `n` client connections.
async fn until_connections(s: &Server, n: usize) {
    let give_up = tokio::time::Instant::now() + Duration::from_secs(30);
    while s.connections().len() != n {
        assert!(
            tokio::time::Instant::now() < give_up,
            "never saw {n} connections"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether the server closes `stream` (EOF or reset) before it answers anything.
async fn closed_at_once(stream: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(
        tokio::time::timeout(TIMEOUT, stream.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn connections_past_max_client_cnxns_from_one_ip_are_closed_at_once() {
    let s = Server::builder()
        .max_client_cnxns(3)
        .four_letter_words("conf")
        .start()
        .await
        .unwrap();
    let addr = s.connect_string();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(RawClient::connect(&addr).await);
    }
    let mut extra = TcpStream::connect(&addr).await.unwrap();
    assert!(
        closed_at_once(&mut extra).await,
        "the 4th connection is closed"
    );
    assert_eq!(s.connections().len(), 3);
    // The holders are unaffected, and a freed slot can be used again.
    held[0].ping().await;
    drop(held.pop());
    until_connections(&s, 2).await;
    let mut again = RawClient::connect(&addr).await;
    again.create(&unique("slot"), b"", 0).await.unwrap();
    // A four-letter word needs a slot too, like on ZooKeeper.
    drop(again);
    until_connections(&s, 2).await;
    assert!(word(&addr, "conf").await.contains("\nmaxClientCnxns=3\n"));
}

#[tokio::test]
async fn zero_max_client_cnxns_is_unlimited_and_conf_reports_the_default() {
    let s = Server::builder()
        .max_client_cnxns(0)
        .four_letter_words("conf")
        .start()
        .await
        .unwrap();
    let addr = s.connect_string();
    let mut held = Vec::new();
    for _ in 0..100 {
        held.push(TcpStream::connect(&addr).await.unwrap());
    }
    until_connections(&s, 100).await;
    let mut c = RawClient::connect(&addr).await;
    c.ping().await;
    assert!(word(&addr, "conf").await.contains("\nmaxClientCnxns=0\n"));
    drop(held);

    let d = Server::builder()
        .four_letter_words("conf")
        .start()
        .await
        .unwrap();
    let conf = word(&d.connect_string(), "conf").await;
    assert!(conf.contains("\nmaxClientCnxns=60\n"), "{conf}");
}

#[tokio::test]
async fn connections_that_sent_nothing_yet_are_listed_by_cons_and_mntr() {
    let s = Server::builder()
        .four_letter_words(FourLetterWords::parse("cons,mntr"))
        .start()
        .await
        .unwrap();
    let addr = s.connect_string();
    let silent = TcpStream::connect(&addr).await.unwrap();
    let local = silent.local_addr().unwrap();
    until_connections(&s, 1).await;
    let cons = word(&addr, "cons").await;
    assert!(
        cons.contains(&format!(" /{local}[1](queued=0,recved=0,sent=0)\n")),
        "{cons}"
    );
    let mntr = word(&addr, "mntr").await;
    // The silent connection plus the one asking.
    assert!(mntr.contains("zk_num_alive_connections\t2\n"), "{mntr}");
}
