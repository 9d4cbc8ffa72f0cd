use std::collections::VecDeque;

use super::*;

fn cfg(id: Sid, voters: &[Sid], observers: &[Sid], finalize_wait: Millis) -> ElectionConfig {
    ElectionConfig {
        id,
        voters: voters.iter().copied().collect(),
        observers: observers.iter().copied().collect(),
        finalize_wait,
        max_notification_interval: 1_000,
        config: Bytes::from_static(b"version=0"),
    }
}

/// Runs elections with instant, lossless delivery among `up` servers until `until` ms.
fn run(elections: &mut BTreeMap<Sid, Election>, up: &[Sid], until: Millis) {
    let mut now = 0;
    let mut queue: VecDeque<(Sid, Sid, Notification)> = VecDeque::new();
    while now <= until {
        for (&sid, e) in elections.iter_mut() {
            e.tick(now);
            for (to, n) in e.poll() {
                queue.push_back((sid, to, n));
            }
        }
        while let Some((from, to, n)) = queue.pop_front() {
            if !up.contains(&to) || !up.contains(&from) {
                continue;
            }
            let e = elections.get_mut(&to).unwrap();
            e.step(from, n, now);
            for (to2, n2) in e.poll() {
                queue.push_back((to, to2, n2));
            }
        }
        now += 1;
    }
}

fn start_all(
    ids: &[Sid],
    voters: &[Sid],
    observers: &[Sid],
    state: &[(i64, i64)],
) -> BTreeMap<Sid, Election> {
    ids.iter()
        .zip(state)
        .map(|(&id, &(zxid, epoch))| {
            let mut e = Election::new(cfg(id, voters, observers, 5));
            e.start(zxid, epoch, 0);
            (id, e)
        })
        .collect()
}

#[test]
fn highest_sid_wins_among_equal_servers() {
    let mut es = start_all(&[1, 2, 3], &[1, 2, 3], &[], &[(0, 0); 3]);
    run(&mut es, &[1, 2, 3], 50);
    assert_eq!(es[&3].outcome(), Some(Outcome::Leading));
    assert_eq!(es[&1].outcome(), Some(Outcome::Following(3)));
    assert_eq!(es[&2].outcome(), Some(Outcome::Following(3)));
}

#[test]
fn epoch_then_zxid_beat_sid() {
    // Server 1 has the newest epoch, server 2 the longest log of an older epoch.
    let state = [(0x1_0000_0001, 1), (0x0_0000_0009, 0), (0x1_0000_0000, 1)];
    let mut es = start_all(&[1, 2, 3], &[1, 2, 3], &[], &state);
    run(&mut es, &[1, 2, 3], 50);
    assert_eq!(es[&1].outcome(), Some(Outcome::Leading));
    assert_eq!(es[&3].outcome(), Some(Outcome::Following(1)));
}

#[test]
fn a_majority_elects_without_the_best_server() {
    let mut es = start_all(&[1, 2, 3], &[1, 2, 3], &[], &[(0, 0); 3]);
    run(&mut es, &[1, 2], 50);
    assert_eq!(es[&2].outcome(), Some(Outcome::Leading));
    assert_eq!(es[&1].outcome(), Some(Outcome::Following(2)));
    assert_eq!(es[&3].outcome(), None);
}

#[test]
fn a_minority_never_elects() {
    let mut es = start_all(&[1, 2, 3, 4, 5], &[1, 2, 3, 4, 5], &[], &[(0, 0); 5]);
    run(&mut es, &[1, 2], 200);
    assert!(es.values().all(|e| e.outcome().is_none()));
}

#[test]
fn observers_do_not_vote_but_learn_the_leader() {
    // The observer (9) has the longest log; it must not become, or choose, the leader.
    let state = [(0, 0), (0, 0), (0, 0), (0x5_0000_0000, 5)];
    let mut es = start_all(&[1, 2, 3, 9], &[1, 2, 3], &[9], &state);
    run(&mut es, &[1, 2, 3, 9], 50);
    assert_eq!(es[&3].outcome(), Some(Outcome::Leading));
    assert_eq!(es[&9].outcome(), Some(Outcome::Observing(3)));
}

#[test]
fn a_late_server_joins_the_established_leader() {
    let mut es = start_all(&[1, 2, 3], &[1, 2, 3], &[], &[(0, 0); 3]);
    run(&mut es, &[1, 2], 50);
    assert_eq!(es[&2].outcome(), Some(Outcome::Leading));
    // Server 3 comes back with a log no better than the leader's and an older round.
    let mut e3 = Election::new(cfg(3, &[1, 2, 3], &[], 5));
    e3.start(0, 0, 0);
    es.insert(3, e3);
    run(&mut es, &[1, 2, 3], 100);
    assert_eq!(es[&3].outcome(), Some(Outcome::Following(2)));
    assert_eq!(es[&2].outcome(), Some(Outcome::Leading));
}

#[test]
fn finalize_wait_lets_a_better_vote_in() {
    // 1 and 2 agree quickly; 3 (best) speaks only after they have a quorum, within the wait.
    let mut es = start_all(&[1, 2], &[1, 2, 3], &[], &[(0, 0); 2]);
    let mut e3 = Election::new(cfg(3, &[1, 2, 3], &[], 5));
    e3.start(0, 0, 0);
    let first = e3.poll();
    for (&sid, e) in es.iter_mut() {
        let _ = (sid, e.poll());
    }
    // 1 hears 2's vote (quorum for 2), then 3's within finalize_wait.
    let n2 = es[&2].notification(es[&2].proposal(), 1);
    let e1 = es.get_mut(&1).unwrap();
    e1.step(2, n2, 0);
    e1.tick(2);
    assert_eq!(e1.outcome(), None);
    let to1 = first.into_iter().find(|(to, _)| *to == 1).unwrap().1;
    e1.step(3, to1, 3);
    e1.tick(100);
    assert_eq!(e1.proposal().leader, 3);
}

#[test]
fn replies_carry_the_decided_leader() {
    let mut es = start_all(&[1, 2, 3], &[1, 2, 3], &[], &[(0, 0); 3]);
    run(&mut es, &[1, 2, 3], 50);
    let mut fresh = Election::new(cfg(1, &[1, 2, 3], &[], 5));
    fresh.start(0, 0, 0);
    let probe = fresh.poll().remove(0).1;
    let leader = es.get_mut(&3).unwrap();
    leader.step(1, probe, 60);
    let reply = leader.poll();
    assert_eq!(reply.len(), 1);
    assert_eq!(reply[0].1.state, ServerState::Leading);
    assert_eq!(reply[0].1.leader, 3);
}

#[test]
fn a_lone_voter_elects_itself_and_its_observer_observes_it() {
    let mut es = start_all(&[1, 2], &[1], &[2], &[(0, 0); 2]);
    run(&mut es, &[1, 2], 50);
    assert_eq!(es[&1].outcome(), Some(Outcome::Leading));
    assert_eq!(es[&2].outcome(), Some(Outcome::Observing(1)));
}

#[test]
fn a_new_connection_brings_back_the_notification_lost_with_the_old_one() {
    // 2 and 3 start while the link between them is down: their first notifications are lost.
    let mut es = start_all(&[2, 3], &[1, 2, 3], &[], &[(0, 0); 2]);
    for e in es.values_mut() {
        e.poll();
    }
    // Server 1 (a worse vote, same round) writes to both just before either would resend, so
    // neither ever does: a looking server resends only after a silence.
    let one = Notification {
        state: ServerState::Looking,
        leader: 1,
        zxid: 0,
        election_epoch: 1,
        peer_epoch: 0,
        version: NOTIFICATION_VERSION,
        config: Bytes::from_static(b"version=0"),
    };
    for now in (4..200).step_by(4) {
        for e in es.values_mut() {
            e.step(1, one.clone(), now);
            e.tick(now);
            assert!(e.poll().iter().all(|(to, _)| *to == 1), "no resend");
        }
    }
    assert!(es.values().all(|e| e.outcome().is_none()));
    // The link is back: each end sends again what it last had for the other.
    es.get_mut(&2).unwrap().connected(3);
    es.get_mut(&3).unwrap().connected(2);
    run(&mut es, &[2, 3], 50);
    assert_eq!(es[&3].outcome(), Some(Outcome::Leading));
    assert_eq!(es[&2].outcome(), Some(Outcome::Following(3)));
}
