//! The recipes on a replicated ensemble (`zkit_testkit::Ensemble`): a `Mutex` whose ensemble
//! leader dies while the lock is held and while contenders wait, a `LeaderLatch` whose leader's
//! server is cut off from the quorum, and a `ConfigWatch` on a follower that is partitioned away.
//!
//! Safety is checked throughout (never two holders, by what the clients believe and by a counter
//! written under the lock; never two leaders; never an older config after a newer one), liveness
//! after the fault (every contender gets its turn, a new leader is elected, the last config is
//! seen), and every server holds the same history at the end. Every wait is on a condition with a
//! generous bound; nothing is timed. One module per recipe (`ensemble/*.rs`); the ensembles and
//! clients they share are here.

mod common;
#[path = "ensemble/config.rs"]
mod config;
#[path = "ensemble/latch.rs"]
mod latch;
#[path = "ensemble/lock.rs"]
mod lock;

use std::time::Duration;

use zkit::Client;
use zkit_testkit::Ensemble;

/// Sessions of the failover tests: far longer than any failover or restart takes on a loaded
/// machine, so they test surviving a failover, not expiry.
const LONG_SESSION: Duration = Duration::from_secs(30);

/// Sessions of the partition tests: 20 ticks of 200 ms. A server cut off from its quorum stops
/// serving (and drops its clients) within syncLimit, 5 ticks: well before such a session can
/// expire, which is what lets a recipe tell its holder first.
const SHORT_SESSION: Duration = Duration::from_secs(4);

/// Three voters with ticks of 500 ms whose sessions may last [`LONG_SESSION`].
async fn failover_ensemble() -> Ensemble {
    let e = Ensemble::builder()
        .servers(3)
        .tick_time(Duration::from_millis(500))
        .max_session_timeout(LONG_SESSION)
        .start()
        .await
        .expect("start the ensemble");
    e.wait_for_leader().await.expect("a leader");
    e
}

/// Three voters with ticks of 200 ms, sessions up to [`SHORT_SESSION`].
async fn partition_ensemble() -> Ensemble {
    let e = Ensemble::builder()
        .servers(3)
        .tick_time(Duration::from_millis(200))
        .start()
        .await
        .expect("start the ensemble");
    e.wait_for_leader().await.expect("a leader");
    e
}

async fn connect(connect: &str, session: Duration, recreate: bool) -> Client {
    Client::builder(connect)
        .session_timeout(session)
        .connect_timeout(Duration::from_secs(60))
        .backoff(Duration::from_millis(10), Duration::from_millis(200))
        .recreate_on_expiry(recreate)
        .connect()
        .await
        .expect("connect to the ensemble")
}

/// A client that knows only server `i`: it can come back only when that server serves again.
async fn pinned(e: &Ensemble, i: usize, session: Duration, recreate: bool) -> Client {
    connect(&e.server(i).connect_string(), session, recreate).await
}

/// A client with every server in its connect string that happens to be connected to server `i`
/// (the client shuffles its hosts, so connect until one lands there).
async fn client_on(e: &Ensemble, i: usize, session: Duration, recreate: bool) -> Client {
    let want = e.server(i).addr();
    for _ in 0..200 {
        let zk = connect(&e.connect_string(), session, recreate).await;
        if zk.connected_server() == Some(want) {
            return zk;
        }
        zk.close().await.ok();
    }
    panic!("no client landed on server {i} in 200 attempts");
}

fn followers(e: &Ensemble, leader: usize) -> Vec<usize> {
    (0..e.len()).filter(|&i| i != leader).collect()
}
