//! `set_hosts`: the host list replaced at runtime is what the next connection uses (two
//! testkit servers; the session is unknown on the second, so the client re-creates it there).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::within;
use zkit::{Client, CreateOptions, Error};
use zkit_testkit::Server;

#[tokio::test]
async fn set_hosts_moves_the_next_connection_to_the_new_list() {
    let a = Server::start().await.unwrap();
    let b = Server::start().await.unwrap();
    let a_addr: SocketAddr = a.connect_string().parse().unwrap();
    let b_addr: SocketAddr = b.connect_string().parse().unwrap();
    // A server refuses a client that has seen a later zxid than its own: give b the later
    // history, so it answers the re-attach (with "expired": it does not know the session).
    let writer = Client::connect(&b.connect_string()).await.unwrap();
    for i in 0..20 {
        writer
            .create(&format!("/n{i}"), b"", &CreateOptions::persistent())
            .await
            .unwrap();
    }
    let zk = Client::connect(&a.connect_string()).await.unwrap();
    assert_eq!(zk.connected_server(), Some(a_addr));
    let mut states = zk.state_changes();
    zk.set_hosts(&b.connect_string()).unwrap();
    // The connection in use is kept.
    zk.exists("/").await.unwrap();
    assert_eq!(zk.connected_server(), Some(a_addr));
    // Once it is lost, the client reconnects to the new list only.
    a.close_all_connections();
    within(Duration::from_secs(30), "a connection to b", async {
        while !(zk.state().is_connected() && zk.connected_server() == Some(b_addr)) {
            states.next().await.expect("client alive");
        }
    })
    .await;
    zk.exists("/").await.unwrap();
}

#[tokio::test]
async fn set_hosts_refuses_a_chroot_and_garbage() {
    let a = Server::start().await.unwrap();
    let zk = Client::connect(&a.connect_string()).await.unwrap();
    let other = format!("{}/app", a.connect_string());
    assert!(matches!(zk.set_hosts(&other), Err(Error::BadArguments(_))));
    assert!(zk.set_hosts("").is_err());
    assert_eq!(zk.exists("/").await.map(|s| s.is_some()), Ok(true));
}
