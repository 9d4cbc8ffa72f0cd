//! `ConfigWatch` on a follower that is partitioned away.

use std::sync::{Arc, Mutex as StdMutex};

use tokio::task::JoinHandle;
use zkit::{CreateOptions, SessionState};
use zkit_recipes::config::ConfigWatch;

use super::common::{bounded, eventually};
use super::{client_on, followers, partition_ensemble, pinned, SHORT_SESSION};

fn parse(b: Option<&[u8]>) -> Result<u32, String> {
    let b = b.ok_or("missing")?;
    std::str::from_utf8(b)
        .map_err(|e| e.to_string())?
        .parse()
        .map_err(|e: std::num::ParseIntError| e.to_string())
}

/// A `ConfigWatch` of `/cfg` decoded by `parse`, with default options.
async fn watch_cfg(client: &zkit::Client) -> ConfigWatch<u32> {
    ConfigWatch::start(
        client,
        "/cfg",
        zkit_recipes::cache::CacheOptions::default(),
        parse,
    )
    .await
    .expect("watch /cfg")
}

/// Every value a receiver sees, in order.
fn record_values(mut rx: zkit::Watched<u32>) -> (Arc<StdMutex<Vec<u32>>>, JoinHandle<()>) {
    let seen = Arc::new(StdMutex::new(vec![*rx.borrow_and_update()]));
    let s = seen.clone();
    let task = tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let v = *rx.borrow_and_update();
            s.lock().unwrap().push(v);
        }
    });
    (seen, task)
}

fn assert_monotonic(seen: &StdMutex<Vec<u32>>) {
    let seen = seen.lock().unwrap();
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "an older value after a newer one: {seen:?}"
    );
}

async fn until(rx: &mut zkit::Watched<u32>, want: u32) {
    bounded("the value", rx.wait_for(|v| *v == want))
        .await
        .expect("the watch is live");
}

/// A `ConfigWatch` on a client that knows only a follower, which is then partitioned away:
/// its server stops serving and can learn nothing the majority writes, so the value stays put
/// (held until the watcher's session expired, when `until_expired`). After the heal the watch
/// sees the last value (on a new session if the old one expired), never going back.
async fn config_watch_on_a_partitioned_follower(until_expired: bool) {
    let mut e = partition_ensemble().await;
    let leader = e.wait_for_leader().await.expect("a leader");
    let fs = followers(&e, leader);
    let (f, other) = (fs[0], fs[1]);
    let writer = pinned(&e, leader, SHORT_SESSION, false).await;
    writer
        .create("/cfg", b"1", &CreateOptions::persistent())
        .await
        .expect("create");
    let zk = pinned(&e, f, SHORT_SESSION, true).await;
    let old_session = zk.session_id();
    let cfg = watch_cfg(&zk).await;
    let mut rx = cfg.watched();
    let (seen, recorder) = record_values(cfg.watched());
    assert_eq!(*rx.borrow(), 1);

    let mut state = zk.state_watch();
    e.partition(&[&[leader, other], &[f]]).await;
    bounded(
        "the watcher disconnected",
        state.wait_for(|s| !s.is_connected()),
    )
    .await
    .unwrap();
    for v in 2..=6u32 {
        writer
            .set_data("/cfg", v.to_string(), None)
            .await
            .expect("write on the majority");
    }
    if until_expired {
        eventually("the watcher's session expired", || async {
            zk.session_id() != old_session || zk.state() == SessionState::Expired
        })
        .await;
    }
    assert_eq!(
        *rx.borrow(),
        1,
        "a server cut off from the quorum has nothing newer"
    );
    e.heal().await;
    e.wait_for_leader().await.expect("healed");
    until(&mut rx, 6).await;
    writer.set_data("/cfg", b"7", None).await.expect("write");
    until(&mut rx, 7).await;
    if until_expired {
        assert_ne!(zk.session_id(), old_session, "a new session");
    }
    assert!(cfg.is_live());
    recorder.abort();
    assert_monotonic(&seen);
    e.check_consistent().await.unwrap_or_else(|i| panic!("{i}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_watch_on_a_partitioned_follower_catches_up_after_heal() {
    config_watch_on_a_partitioned_follower(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_watch_on_a_partitioned_follower_catches_up_on_a_new_session_after_expiry() {
    config_watch_on_a_partitioned_follower(true).await;
}

/// The same, on a client that lists every server: it fails over to the majority side and sees
/// the last value while the partition still holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_watch_listing_every_server_fails_over_from_a_partitioned_follower() {
    let mut e = partition_ensemble().await;
    let leader = e.wait_for_leader().await.expect("a leader");
    let fs = followers(&e, leader);
    let (f, other) = (fs[0], fs[1]);
    let writer = pinned(&e, leader, SHORT_SESSION, false).await;
    writer
        .create("/cfg", b"1", &CreateOptions::persistent())
        .await
        .expect("create");
    let zk = client_on(&e, f, SHORT_SESSION, true).await;
    let cfg = watch_cfg(&zk).await;
    let mut rx = cfg.watched();
    let (seen, recorder) = record_values(cfg.watched());

    let cut_off = e.server(f).addr();
    e.partition(&[&[leader, other], &[f]]).await;
    for v in 2..=6u32 {
        writer
            .set_data("/cfg", v.to_string(), None)
            .await
            .expect("write on the majority");
    }
    until(&mut rx, 6).await;
    assert_ne!(
        zk.connected_server(),
        Some(cut_off),
        "served by the majority"
    );
    e.heal().await;
    e.wait_for_leader().await.expect("healed");
    writer.set_data("/cfg", b"7", None).await.expect("write");
    until(&mut rx, 7).await;
    recorder.abort();
    assert_monotonic(&seen);
    e.check_consistent().await.unwrap_or_else(|i| panic!("{i}"));
}
