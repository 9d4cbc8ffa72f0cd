//! The recipes under the testkit's targeted faults, which no proxy can give: a write the
//! server applied but whose reply never came (the ambiguous write), and one session whose
//! pings are lost so that it alone expires while its connection stays up.

use std::time::Duration;

use zkit::Client;
use zkit_recipes::counter::SharedCounter;
use zkit_recipes::leader::{LeaderLatch, LeaderOptions};
use zkit_recipes::{Error, Mutex, MutexOptions};
use zkit_testkit::{FaultAction, FaultRule, OpCode, Server, SessionFaults};

/// Upper bound for anything awaited (a failure bound, never a pacing sleep).
const BOUND: Duration = Duration::from_secs(60);

async fn server() -> Server {
    Server::builder()
        .tick_time(Duration::from_millis(100))
        .min_session_timeout(Duration::from_millis(500))
        .start()
        .await
        .unwrap()
}

async fn client(s: &Server, timeout: Duration) -> Client {
    Client::builder(&s.connect_string())
        .session_timeout(timeout)
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_mutex_whose_create_is_applied_but_not_answered_finds_its_node() {
    let s = server().await;
    let a = client(&s, Duration::from_secs(10)).await;
    let b = client(&s, Duration::from_secs(10)).await;
    let rule = s.add_fault(
        FaultRule::new(FaultAction::ApplyThenDisconnect)
            .session(a.session_id())
            .op(OpCode::Create)
            .path_prefix("/locks/m/")
            .times(1),
    );
    let m = Mutex::new(&a, "/locks/m", MutexOptions::default());
    let guard = tokio::time::timeout(BOUND, m.acquire())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        s.fault_fired(rule),
        1,
        "the lock node's create lost its reply"
    );
    // The protected create found the node it made: one node, no orphan blocking others.
    let nodes = b.get_children("/locks/m").await.unwrap();
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    assert!(
        guard.node().ends_with(&nodes[0]),
        "{} {nodes:?}",
        guard.node()
    );
    let other = Mutex::new(&b, "/locks/m", MutexOptions::default());
    assert!(other.try_acquire().await.unwrap().is_none());
    guard.release().await.unwrap();
    let g = other
        .try_acquire()
        .await
        .unwrap()
        .expect("free once released");
    g.release().await.unwrap();
    assert!(b.get_children("/locks/m").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_leader_whose_session_alone_expires_learns_it_and_another_takes_over() {
    let s = server().await;
    let a = client(&s, Duration::from_millis(1500)).await;
    let b = client(&s, Duration::from_secs(10)).await;
    let la = LeaderLatch::start(&a, "/election", LeaderOptions::new("a"))
        .await
        .unwrap();
    let term = tokio::time::timeout(BOUND, la.leadership())
        .await
        .unwrap()
        .unwrap();
    let lb = LeaderLatch::start(&b, "/election", LeaderOptions::new("b"))
        .await
        .unwrap();
    // Only a's pings go unanswered; its connection stays open and b carries on.
    s.set_session_faults(a.session_id(), SessionFaults::new().drop_pings());
    let reason = tokio::time::timeout(BOUND, term.lost()).await.unwrap();
    eprintln!("a lost its leadership: {reason:?}");
    let term_b = tokio::time::timeout(BOUND, lb.leadership())
        .await
        .unwrap()
        .unwrap();
    assert!(!term.is_current());
    assert!(term_b.is_current());
    assert!(!la.is_leader(), "never two leaders");
    // And the server expires it (b's session lives on).
    let id = a.session_id();
    let deadline = tokio::time::Instant::now() + BOUND;
    while s.sessions().iter().any(|x| x.id == id) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a's session never expired"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(s.sessions().iter().any(|x| x.id == b.session_id()));
    assert!(!la.is_leader(), "never two leaders");
}

#[tokio::test]
async fn a_counter_add_whose_reply_is_lost_is_indeterminate_and_counted_once() {
    let s = server().await;
    let a = client(&s, Duration::from_secs(10)).await;
    let b = client(&s, Duration::from_secs(10)).await;
    let c = SharedCounter::new(
        &a,
        "/counters/c",
        zkit_recipes::counter::CounterOptions::default(),
    );
    assert_eq!(c.add(1).await.unwrap(), 1);
    let rule = s.add_fault(
        FaultRule::new(FaultAction::ApplyThenDisconnect)
            .session(a.session_id())
            .op(OpCode::SetData)
            .path_prefix("/counters/c")
            .times(1),
    );
    let r = c.add(1).await;
    assert!(matches!(r, Err(Error::Indeterminate(_))), "{r:?}");
    assert_eq!(s.fault_fired(rule), 1);
    // Applied once, never twice; the next add counts on from there.
    let seen = SharedCounter::new(
        &b,
        "/counters/c",
        zkit_recipes::counter::CounterOptions::default(),
    );
    assert_eq!(seen.get().await.unwrap().value, 2);
    assert_eq!(c.add(1).await.unwrap(), 3);
    assert_eq!(seen.get().await.unwrap().value, 3);
}
