//! `LeaderLatch` whose leader's server is cut off from the quorum.

use std::sync::{Arc, Mutex as StdMutex};

use tokio::task::JoinHandle;
use zkit_recipes::leader::{LeaderLatch, LeaderOptions, Leadership};
use zkit_recipes::state::LossReason;

use super::common::{bounded, eventually};
use super::{followers, partition_ensemble, pinned, SHORT_SESSION};

/// Every participant's latest term, and every moment two terms were current at once.
struct Terms {
    slots: StdMutex<Vec<Option<Leadership>>>,
    overlaps: StdMutex<Vec<(usize, usize)>>,
}

impl Terms {
    /// Records the terms of `latches`: whenever one gains leadership its term is stored and
    /// checked against the others'. A term only ever goes from current to lost, so "theirs is
    /// current, then ours still is" proves both were current at the first read.
    fn record(latches: &[Arc<LeaderLatch>]) -> (Arc<Terms>, Vec<JoinHandle<()>>) {
        let terms = Arc::new(Terms {
            slots: StdMutex::new(vec![None; latches.len()]),
            overlaps: StdMutex::default(),
        });
        let tasks = latches
            .iter()
            .enumerate()
            .map(|(j, latch)| {
                let (latch, terms) = (latch.clone(), terms.clone());
                tokio::spawn(async move {
                    while let Ok(term) = latch.leadership().await {
                        terms.gained(j, &term);
                        term.lost().await;
                    }
                })
            })
            .collect();
        (terms, tasks)
    }

    fn gained(&self, j: usize, term: &Leadership) {
        let mut slots = self.slots.lock().unwrap();
        slots[j] = Some(term.clone());
        for (k, other) in slots.iter().enumerate() {
            if k != j && other.as_ref().is_some_and(|t| t.is_current()) && term.is_current() {
                self.overlaps.lock().unwrap().push((k, j));
            }
        }
    }

    fn overlaps(&self) -> Vec<(usize, usize)> {
        self.overlaps.lock().unwrap().clone()
    }
}

async fn single_leader(latches: &[Arc<LeaderLatch>]) -> usize {
    let leaders = || -> Vec<usize> {
        (0..latches.len())
            .filter(|&i| latches[i].is_leader())
            .collect()
    };
    eventually("exactly one leader", || async { leaders().len() == 1 }).await;
    leaders()[0]
}

/// How a server is cut off from the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isolation {
    /// Its quorum links are cut: connections fail at once, as with a reset.
    Cut,
    /// Every frame to and from it is held back for twice the session timeout: nothing fails, it
    /// just goes silent and each side finds out by its timeouts (syncLimit), as in a partition
    /// that drops packets. (Frames already held arrive that late even after the heal, as TCP's
    /// retransmissions would deliver them.)
    Silent,
}

/// Three participants, participant `i` on a client that knows only server `i`; the latch leader
/// is on the ensemble's leader or on a follower. The latch leader's server is cut off from the
/// other two: it stops serving, so the latch leader is told (suspended) before its session can
/// expire on the majority, which then elects another participant. Never are two terms current
/// at once. After the heal the old leader rejoins on a new session, at the back of the queue.
async fn latch_leader_cut_off_with_its_server(on_ensemble_leader: bool, how: Isolation) {
    let mut e = partition_ensemble().await;
    let leader = e.wait_for_leader().await.expect("a leader");
    let p = if on_ensemble_leader {
        leader
    } else {
        followers(&e, leader)[0]
    };
    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(pinned(&e, i, SHORT_SESSION, true).await);
    }
    // Participant p joins first, so it leads.
    let mut slots: Vec<Option<Arc<LeaderLatch>>> = vec![None; 3];
    for i in std::iter::once(p).chain((0..3).filter(|&i| i != p)) {
        let l = LeaderLatch::start(
            &clients[i],
            "/election",
            LeaderOptions::new(format!("p{i}")),
        )
        .await
        .expect("join the election");
        if i == p {
            bounded("p leads", l.leadership()).await.expect("p leads");
        }
        slots[i] = Some(Arc::new(l));
    }
    let latches: Vec<Arc<LeaderLatch>> = slots
        .into_iter()
        .map(|l| l.expect("every participant"))
        .collect();
    let (terms, recorders) = Terms::record(&latches);
    assert_eq!(single_leader(&latches).await, p);
    let p_term = latches[p].leadership().await.expect("p leads");
    let p_session = clients[p].session_id();

    match how {
        Isolation::Cut => e.isolate(p).await,
        Isolation::Silent => {
            for other in followers(&e, p) {
                e.delay(p, other, 2 * SHORT_SESSION).await;
            }
        }
    }
    assert_eq!(
        bounded("the cut-off leader told", p_term.lost()).await,
        LossReason::Suspended
    );
    eventually("another participant leads", || async {
        (0..3).any(|i| i != p && latches[i].is_leader())
    })
    .await;
    let q = single_leader(&latches).await;
    assert_ne!(q, p);
    let q_term = latches[q].leadership().await.expect("q leads");
    // Q leads because P's node is gone from Q's server, which it left only with P's session:
    // that server (participant q's) applied the expiry. (Q may see it before the leader applies
    // it: a learner applies a commit as soon as it arrives.)
    assert!(
        e.server(q).sessions().iter().all(|s| s.id != p_session),
        "the old leader's session expired on the majority"
    );
    // (Not `wait_for_leader`: it waits for every server that has no cut link to the leader,
    // and a silent server has none.)
    e.wait_for("a leader on the majority side", |e| {
        e.leader().is_some_and(|l| l != p)
    })
    .await
    .expect("the majority's leader");

    e.heal().await;
    e.wait_for_leader().await.expect("healed");
    eventually("the old leader rejoins", || async {
        clients[p].session_id() != p_session
            && latches[q]
                .participants()
                .await
                .is_ok_and(|ps| ps.len() == 3)
    })
    .await;
    // Unless Q's term ended meanwhile (a spurious disconnect also re-queues a leader), the
    // queue is as the heal left it: Q first, P at the back.
    let ps = latches[q].participants().await.expect("participants");
    if q_term.is_current() {
        assert_eq!(ps[0].id, latches[q].id(), "{ps:?}");
        assert_eq!(ps[2].id, latches[p].id(), "rejoined at the back: {ps:?}");
        assert!(!latches[p].is_leader());
    }
    single_leader(&latches).await;
    assert!(
        terms.overlaps().is_empty(),
        "two leaders at once: {:?}",
        terms.overlaps()
    );
    for r in recorders {
        r.abort();
    }
    e.check_consistent().await.unwrap_or_else(|i| panic!("{i}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latch_leader_cut_off_with_the_ensemble_leader_is_told_before_another_is_elected() {
    latch_leader_cut_off_with_its_server(true, Isolation::Cut).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latch_leader_cut_off_with_its_follower_is_told_before_another_is_elected() {
    latch_leader_cut_off_with_its_server(false, Isolation::Cut).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latch_leader_on_a_silent_ensemble_leader_is_told_before_another_is_elected() {
    latch_leader_cut_off_with_its_server(true, Isolation::Silent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latch_leader_on_a_silent_follower_is_told_before_another_is_elected() {
    latch_leader_cut_off_with_its_server(false, Isolation::Silent).await;
}
