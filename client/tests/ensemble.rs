//! A 3-server ensemble: the client's server is stopped, the client moves to another member with
//! the same session, its watches survive and fire; then the member comes back.

mod common;

use std::time::Duration;

use common::{wait_state, within, Target};
use zkit::{Client, CreateOptions, EventType, SessionState};

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn killing_the_clients_server_moves_the_session_with_its_watches() {
    let t = Target::new().await;
    let Some(ens) = t.ensemble() else {
        eprintln!("skipped: no ensemble (set ZK_TEST_ENSEMBLE and ZK_TEST_ENSEMBLE_DIR)");
        return;
    };
    let _g = t.exclusive().await;
    let ns = Target::namespace_on(&ens.connect).await;
    let a = Client::builder(&ns)
        .session_timeout(Duration::from_secs(30))
        .connect()
        .await
        .unwrap();
    let sid = a.session_id();
    let first = a.connected_server().expect("connected");
    let member = ens.member_at(first);
    a.create("/n", b"0", &CreateOptions::persistent())
        .await
        .unwrap();
    a.create("/eph", b"", &CreateOptions::ephemeral())
        .await
        .unwrap();
    let (_, _, data_w) = a.get_data_and_watch("/n").await.unwrap();
    let (_, exist_w) = a.exists_and_watch("/later").await.unwrap();
    let mut pw = a.add_watch("/n", false).await.unwrap();
    let mut states = a.state_changes();

    ens.stop_member(member).await;
    // The disconnect first: when the script returns, the client may not have read the EOF yet
    // and still show Connected (to the stopped member).
    assert_eq!(
        within(LIMIT, "disconnect", states.next()).await,
        Some(SessionState::Disconnected)
    );
    wait_state(&a, LIMIT, SessionState::is_connected).await;
    let second = a.connected_server().expect("connected");
    assert_ne!(second, first, "moved to another member");
    assert_eq!(a.session_id(), sid, "same session");
    // Another client, on whichever member it picks, changes what A watches.
    let b = Client::connect(&ns).await.unwrap();
    assert_eq!(
        b.exists("/eph").await.unwrap().map(|s| s.ephemeral_owner),
        Some(sid)
    );
    b.set_data("/n", b"1", None).await.unwrap();
    b.create("/later", b"", &CreateOptions::persistent())
        .await
        .unwrap();
    let ev = within(LIMIT, "data watch", data_w).await.unwrap();
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeDataChanged, "/n")
    );
    let ev = within(LIMIT, "exists watch", exist_w).await.unwrap();
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeCreated, "/later")
    );
    let ev = within(LIMIT, "persistent watch", pw.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeDataChanged, "/n")
    );
    // A's own writes work on the new member, and sync brings it up to date.
    a.sync("/").await.unwrap();
    assert_eq!(&a.get_data("/n").await.unwrap().0[..], b"1");
    a.set_data("/n", b"2", None).await.unwrap();

    ens.start_member(member).await;
    // The restarted member serves again: a client pinned to it sees A's data.
    let c = Client::connect(&format!(
        "{first}{}",
        ns.strip_prefix(&ens.connect).unwrap()
    ))
    .await
    .unwrap();
    c.sync("/").await.unwrap();
    assert_eq!(&c.get_data("/n").await.unwrap().0[..], b"2");
    assert_eq!(
        c.exists("/eph").await.unwrap().map(|s| s.ephemeral_owner),
        Some(sid)
    );
    c.close().await.unwrap();
    b.close().await.unwrap();
    a.close().await.unwrap();
}
