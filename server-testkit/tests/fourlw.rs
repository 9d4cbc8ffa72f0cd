//! Four-letter words on the client port.

mod common;

use common::raw_exchange;
use zkit_testkit::FourLetterWords;
use zkit_testkit::Server;

async fn word(addr: &str, w: &str) -> String {
    String::from_utf8(raw_exchange(addr, w.as_bytes()).await).unwrap()
}

#[tokio::test]
async fn default_whitelist_is_srvr_only() {
    let s = Server::start().await.unwrap();
    let addr = s.connect_string();
    let srvr = word(&addr, "srvr").await;
    assert!(srvr.starts_with("Zookeeper version: 3.8.0-zkit"), "{srvr}");
    assert!(srvr.contains("\nMode: standalone\n"), "{srvr}");
    assert!(srvr.contains("\nNode count: 5\n"), "{srvr}");
    assert_eq!(
        word(&addr, "ruok").await,
        "ruok is not executed because it is not in the whitelist.\n"
    );
}

#[tokio::test]
async fn all_words_when_enabled() {
    let s = Server::builder()
        .four_letter_words(FourLetterWords::all())
        .start()
        .await
        .unwrap();
    let addr = s.connect_string();
    assert_eq!(word(&addr, "ruok").await, "imok");
    assert_eq!(word(&addr, "isro").await, "rw");
    let envi = word(&addr, "envi").await;
    assert!(envi.starts_with("Environment:\n"), "{envi}");
    let version = envi
        .lines()
        .find_map(|l| l.strip_prefix("zookeeper.version="))
        .expect("zookeeper.version line");
    assert!(version.starts_with("3.8.0-"), "{version}");
    let conf = word(&addr, "conf").await;
    assert!(
        conf.contains(&format!("clientPort={}\n", s.addr().port())),
        "{conf}"
    );
    assert!(conf.contains(
        "tickTime=2000\nmaxClientCnxns=60\nminSessionTimeout=4000\nmaxSessionTimeout=40000\n"
    ));
    assert_eq!(
        word(&addr, "wchs").await,
        "0 connections watching 0 paths\nTotal watches:0\n"
    );
    assert!(word(&addr, "mntr")
        .await
        .contains("zk_server_state\tstandalone\n"));
    assert!(word(&addr, "stat").await.contains("Clients:\n"));
    assert!(word(&addr, "dump")
        .await
        .starts_with("SessionTracker dump:\n"));
    assert_eq!(
        word(&addr, "dirs").await,
        "datadir_size: 0\nlogdir_size: 0\n"
    );
    assert_eq!(word(&addr, "wchc").await, "\n");
    assert_eq!(word(&addr, "wchp").await, "\n");
    assert!(word(&addr, "cons").await.ends_with("\n"));
}
