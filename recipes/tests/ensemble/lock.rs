//! `Mutex` on an ensemble whose leader dies while the lock is held and while contenders wait.

use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use zkit::path::basename;
use zkit::{Client, Error as ZkError, Op, RetryPolicy, WatcherType};
use zkit_recipes::lock::{Mutex, MutexOptions};
use zkit_recipes::state::{LossPolicy, LossReason, LossSignal};

use super::common::{self, bounded, eventually};
use super::{client_on, connect, failover_ensemble, followers, pinned, LONG_SESSION};

/// Who believes it holds the lock: a holder registers its loss signal once `acquire` returned
/// and leaves before it releases; one whose signal fired no longer believes. A holder that
/// arrives while another still believes is an overlap.
#[derive(Default)]
struct Holders {
    inner: StdMutex<HoldersInner>,
}

#[derive(Default)]
struct HoldersInner {
    current: Vec<(&'static str, LossSignal)>,
    overlaps: Vec<(&'static str, Vec<&'static str>)>,
    turns: Vec<&'static str>,
}

impl Holders {
    fn enter(&self, who: &'static str, signal: LossSignal) {
        let mut h = self.inner.lock().unwrap();
        h.current.retain(|(_, s)| !s.is_lost());
        if !h.current.is_empty() {
            let others = h.current.iter().map(|(n, _)| *n).collect();
            h.overlaps.push((who, others));
        }
        h.current.push((who, signal));
        h.turns.push(who);
    }

    fn leave(&self, who: &str) {
        self.inner
            .lock()
            .unwrap()
            .current
            .retain(|(n, _)| *n != who);
    }

    fn turns(&self) -> Vec<&'static str> {
        self.inner.lock().unwrap().turns.clone()
    }

    fn overlaps(&self) -> Vec<(&'static str, Vec<&'static str>)> {
        self.inner.lock().unwrap().overlaps.clone()
    }
}

/// One write under the lock: read the counter, then a multi that checks our lock node still
/// exists and sets the counter at the version read. A `BadVersion` on the counter proves that
/// someone else wrote while we held the lock: two holders at once.
async fn write_under_lock(zk: &Client, node: &str, who: &str) -> zkit::Result<()> {
    let (data, stat) = zk.get_data("/counter").await?;
    let n: u64 = std::str::from_utf8(&data).unwrap().parse().unwrap();
    let ops = vec![
        Op::check(node, 0),
        Op::set_data("/counter", (n + 1).to_string(), Some(stat.version)),
    ];
    match zk.multi(ops).await {
        Ok(_) => Ok(()),
        Err(ZkError::MultiAborted {
            index: 1, error, ..
        }) if *error == ZkError::BadVersion => {
            panic!("{who}: the counter changed under the lock: two holders")
        }
        Err(e) => Err(e),
    }
}

/// Retries reads across a connection loss (a client of the killed server may still be
/// failing over).
fn reads() -> RetryPolicy {
    RetryPolicy::exponential(Duration::from_millis(20), 1000).max_delay(Duration::from_millis(200))
}

/// Reads the counter as the leader has it: a server may lag behind (`sync` first, as any
/// client reading another's writes must).
async fn counter(zk: &Client) -> u64 {
    reads()
        .run(zkit::OpClass::Read, || zk.sync("/"))
        .await
        .expect("sync");
    let (data, _) = reads()
        .run(zkit::OpClass::Read, || zk.get_data("/counter"))
        .await
        .expect("read the counter");
    std::str::from_utf8(&data).unwrap().parse().unwrap()
}

/// Asserts that no lock node is left, as the leader has it.
async fn no_lock_node_left(zk: &Client) {
    reads()
        .run(zkit::OpClass::Read, || zk.sync("/"))
        .await
        .expect("sync");
    // The lock's parent is a container: it may be reaped once empty.
    let kids = match reads()
        .run(zkit::OpClass::Read, || zk.get_children("/lock"))
        .await
    {
        Ok(kids) => kids,
        Err(ZkError::NoNode) => Vec::new(),
        Err(e) => panic!("list the lock: {e}"),
    };
    assert!(kids.is_empty(), "left behind: {kids:?}");
}

/// One turn at the lock (default loss policy): acquire however long it takes, write under it,
/// release.
fn take_turn(zk: Client, who: &'static str, holders: Arc<Holders>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let m = Mutex::new(&zk, "/lock", MutexOptions::default().data(who));
        let g = m
            .acquire()
            .await
            .unwrap_or_else(|e| panic!("{who}: acquire failed: {e}"));
        holders.enter(who, g.loss_signal());
        write_under_lock(&zk, g.node(), who)
            .await
            .unwrap_or_else(|e| panic!("{who}: write under the lock failed: {e}"));
        holders.leave(who);
        g.release()
            .await
            .unwrap_or_else(|e| panic!("{who}: release failed: {e}"));
    })
}

/// Waits until the lock at `/lock` has `n` contenders.
async fn queued(m: &Mutex, n: usize) {
    eventually("contenders queued", || async {
        m.contenders().await.unwrap().len() == n
    })
    .await;
}

/// A holds the lock (on the leader's server, every host listed, `LossPolicy::Lost`) while B and
/// C wait; the leader dies. A's session survives the failover, so A still holds the lock (its
/// node exists, it writes under it) and nobody else got it; once A releases, B and C each take
/// their turn. Had A's session expired instead (these timeouts leave it no reason to), A must be
/// told so with a session-gone reason; under `LossPolicy::Lost` it may learn that only after
/// another took the lock, the risk that policy documents, so only then is an overlap with A
/// excused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutex_holder_keeps_the_lock_across_a_leader_failover_and_waiters_get_their_turns() {
    let mut e = failover_ensemble().await;
    let leader = e.wait_for_leader().await.expect("a leader");
    let admin = connect(&e.connect_string(), LONG_SESSION, false).await;
    common::put(&admin, "/counter", b"0").await;
    let holders = Arc::new(Holders::default());

    let a = client_on(&e, leader, LONG_SESSION, false).await;
    let a_session = a.session_id();
    let opts = MutexOptions::default().loss_policy(LossPolicy::Lost);
    let ma = Mutex::new(&a, "/lock", opts.data("a"));
    let ga = ma.acquire().await.expect("A acquires");
    holders.enter("a", ga.loss_signal());
    write_under_lock(&a, ga.node(), "a")
        .await
        .expect("A writes");
    let mut waiters = Vec::new();
    for (k, who) in ["b", "c"].into_iter().enumerate() {
        let zk = connect(&e.connect_string(), LONG_SESSION, false).await;
        waiters.push(take_turn(zk, who, holders.clone()));
        queued(&ma, k + 2).await;
    }

    let killed = e.server(leader).addr();
    e.kill(leader).await;
    let new_leader = e.wait_for_leader().await.expect("a new leader");
    assert_ne!(new_leader, leader);
    eventually("A on a surviving server, or its session gone", || async {
        a.state().is_terminal()
            || (a.state().is_connected() && a.connected_server().is_some_and(|s| s != killed))
    })
    .await;
    let kept = a.session_id() == a_session && !a.state().is_terminal();
    eprintln!("A's session survived the failover: {kept}");
    let mut writes = 1;
    if kept {
        assert!(ga.is_held(), "a failover the session survives is no loss");
        let queue = ma.contenders().await.expect("contenders");
        assert_eq!(queue.len(), 3, "{queue:?}");
        assert_eq!(queue[0], basename(ga.node()), "A still heads the queue");
        assert_eq!(holders.turns(), ["a"], "nobody else got the lock");
        write_under_lock(&a, ga.node(), "a")
            .await
            .expect("A writes under the lock after the failover");
        writes += 1;
    } else {
        let r = bounded("A told its session is gone", ga.lost()).await;
        assert!(r.is_session_gone(), "A lost the lock for {r:?}");
    }
    holders.leave("a");
    ga.release().await.expect("A releases");

    for w in waiters {
        bounded("B and C take their turns", w).await.unwrap();
    }
    assert_eq!(holders.turns(), ["a", "b", "c"], "queue order");
    for (who, others) in holders.overlaps() {
        // Under LossPolicy::Lost a holder may believe for a while after its session expired.
        assert!(
            !kept && others == ["a"],
            "{who} acquired while {others:?} still held the lock"
        );
    }
    assert_eq!(counter(&admin).await, writes + 2, "every write landed once");
    no_lock_node_left(&admin).await;
    e.check_consistent().await.unwrap_or_else(|i| panic!("{i}"));
}

/// A holds the lock (on a follower, default policy); B waits on a client that knows only the
/// leader's server, C on one that lists every server but is connected to the leader's. The
/// leader dies: A is told at once (a suspension is a loss by default). C fails over and its
/// watch is re-registered on its new server. A releases while B's server is still down: B's
/// session lives on, so C (behind B) still waits. When B's server is back, B's watch on A's
/// deleted node is re-registered there and fires, B takes the lock, then C.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutex_waiters_rewatch_on_new_servers_and_get_the_lock_released_during_a_failover() {
    let mut e = failover_ensemble().await;
    let leader = e.wait_for_leader().await.expect("a leader");
    let admin = connect(&e.connect_string(), LONG_SESSION, false).await;
    common::put(&admin, "/counter", b"0").await;
    let holders = Arc::new(Holders::default());

    let a = client_on(&e, followers(&e, leader)[0], LONG_SESSION, false).await;
    let ma = Mutex::new(&a, "/lock", MutexOptions::default().data("a"));
    let ga = ma.acquire().await.expect("A acquires");
    holders.enter("a", ga.loss_signal());
    write_under_lock(&a, ga.node(), "a")
        .await
        .expect("A writes");
    let b = pinned(&e, leader, LONG_SESSION, false).await;
    let c = client_on(&e, leader, LONG_SESSION, false).await;
    let b_session = b.session_id();
    let tb = take_turn(b.clone(), "b", holders.clone());
    queued(&ma, 2).await;
    let tc = take_turn(c.clone(), "c", holders.clone());
    queued(&ma, 3).await;
    let queue = ma.contenders().await.expect("contenders");
    let (a_node, b_node) = (format!("/lock/{}", queue[0]), format!("/lock/{}", queue[1]));
    eventually("B watches A's node", || async {
        b.check_watches(&a_node, WatcherType::Data).await.is_ok()
    })
    .await;
    eventually("C watches B's node", || async {
        c.check_watches(&b_node, WatcherType::Data).await.is_ok()
    })
    .await;

    let killed = e.server(leader).addr();
    e.kill(leader).await;
    e.wait_for_leader().await.expect("a new leader");
    assert_eq!(
        bounded("A told", ga.lost()).await,
        LossReason::Suspended,
        "a suspension is a loss under the default policy"
    );
    holders.leave("a");
    eventually("C on a surviving server", || async {
        c.state().is_connected() && c.connected_server().is_some_and(|s| s != killed)
    })
    .await;
    ga.release().await.expect("A releases once reconnected");
    eventually("C's watch re-registered on its new server", || async {
        c.check_watches(&b_node, WatcherType::Data).await.is_ok()
    })
    .await;
    assert_eq!(
        ma.contenders().await.expect("contenders"),
        queue[1..],
        "B's session outlives its server's death"
    );
    assert_eq!(holders.turns(), ["a"], "C waits behind B");

    e.restart(leader).await.expect("restart the old leader");
    e.wait_for_leader().await.expect("settled");
    bounded("B's turn", tb).await.unwrap();
    bounded("C's turn", tc).await.unwrap();
    assert_eq!(b.session_id(), b_session, "B kept its session");
    assert_eq!(holders.turns(), ["a", "b", "c"], "queue order");
    assert!(holders.overlaps().is_empty(), "{:?}", holders.overlaps());
    assert_eq!(counter(&admin).await, 3, "every write landed once");
    no_lock_node_left(&admin).await;
    e.check_consistent().await.unwrap_or_else(|i| panic!("{i}"));
}
