use std::collections::BTreeMap;

use bytes::Bytes;

use super::*;

fn reg(data: &str, version: i32) -> Register {
    Register {
        data: Bytes::copy_from_slice(data.as_bytes()),
        version,
    }
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn op(client: u64, key: &str, call: Call, invoke: u64, ret: Option<(u64, Ret)>) -> Op {
    Op {
        client,
        key: key.to_owned(),
        call,
        invoke,
        ret,
    }
}

fn read(client: u64, key: &str, inv: u64, ret: u64, data: &str, version: i32) -> Op {
    op(
        client,
        key,
        Call::Read,
        inv,
        Some((ret, Ret::Read(reg(data, version)))),
    )
}

fn write(client: u64, key: &str, inv: u64, ret: Option<u64>, data: &str, v: i32) -> Op {
    op(
        client,
        key,
        Call::Write(b(data)),
        inv,
        ret.map(|t| (t, Ret::Written(Some(v)))),
    )
}

fn history(ops: Vec<Op>) -> History {
    let mut h = History::new();
    for o in ops {
        h.push(o);
    }
    h
}

fn run(ops: Vec<Op>) -> Result<(), CheckError> {
    check(&history(ops), &BTreeMap::new())
}

fn violation(ops: Vec<Op>) -> Violation {
    match run(ops) {
        Err(CheckError::NotLinearizable(v)) => *v,
        other => panic!("expected a violation, got {other:?}"),
    }
}

#[test]
fn sequential_history_is_linearizable() {
    run(vec![
        write(1, "/a", 0, Some(1), "x", 1),
        read(1, "/a", 2, 3, "x", 1),
        write(2, "/a", 4, Some(5), "y", 2),
        read(1, "/a", 6, 7, "y", 2),
    ])
    .unwrap();
}

#[test]
fn reads_concurrent_with_a_write_may_see_either_side_once() {
    run(vec![
        write(1, "/a", 0, Some(100), "x", 1),
        read(2, "/a", 10, 20, "", 0),
        read(3, "/a", 30, 40, "x", 1),
        read(2, "/a", 50, 60, "x", 1),
    ])
    .unwrap();
    // ... but not new-then-old.
    let v = violation(vec![
        write(1, "/a", 0, Some(100), "x", 1),
        read(2, "/a", 10, 20, "x", 1),
        read(3, "/a", 30, 40, "", 0),
    ]);
    assert_eq!(v.key, "/a");
    assert!(v.stuck.iter().any(|o| o.client == 3), "{v}");
}

#[test]
fn concurrent_writes_take_either_order() {
    run(vec![
        op(
            1,
            "/a",
            Call::Write(b("x")),
            0,
            Some((50, Ret::Written(None))),
        ),
        op(
            2,
            "/a",
            Call::Write(b("y")),
            0,
            Some((50, Ret::Written(None))),
        ),
        read(3, "/a", 60, 70, "x", 2),
    ])
    .unwrap();
}

#[test]
fn indeterminate_write_may_land_late_or_never() {
    // It lands after the first read.
    run(vec![
        write(1, "/a", 0, None, "x", 0),
        read(2, "/a", 10, 20, "", 0),
        read(2, "/a", 30, 40, "x", 1),
    ])
    .unwrap();
    // It never lands.
    run(vec![
        write(1, "/a", 0, None, "x", 0),
        read(2, "/a", 10, 20, "", 0),
        read(2, "/a", 1000, 1001, "", 0),
    ])
    .unwrap();
    // Once seen it cannot be unseen.
    let v = violation(vec![
        write(1, "/a", 0, None, "x", 0),
        read(2, "/a", 30, 40, "x", 1),
        read(2, "/a", 50, 60, "", 0),
    ]);
    assert_eq!(v.linearized.len(), 2, "{v}");
}

#[test]
fn compare_and_set_follows_versions() {
    run(vec![
        write(1, "/a", 0, Some(1), "x", 1),
        op(
            2,
            "/a",
            Call::Cas {
                expected: 1,
                data: b("y"),
            },
            2,
            Some((3, Ret::Written(Some(2)))),
        ),
        op(
            3,
            "/a",
            Call::Cas {
                expected: 1,
                data: b("z"),
            },
            4,
            Some((5, Ret::CasFailed)),
        ),
        read(1, "/a", 6, 7, "y", 2),
    ])
    .unwrap();
}

#[test]
fn indeterminate_cas_applies_only_where_its_version_matches() {
    let cas = |inv| {
        op(
            1,
            "/a",
            Call::Cas {
                expected: 0,
                data: b("c"),
            },
            inv,
            None,
        )
    };
    run(vec![cas(0), read(2, "/a", 5, 6, "c", 1)]).unwrap();
    // After a completed write to version 1, an expected-version-0 CAS cannot apply.
    violation(vec![
        write(2, "/a", 0, Some(1), "x", 1),
        cas(2),
        read(2, "/a", 5, 6, "c", 2),
    ]);
}

#[test]
fn catches_a_stale_sync_read() {
    let v = violation(vec![
        write(1, "/a", 0, Some(10), "x", 1),
        read(2, "/a", 20, 30, "", 0),
    ]);
    assert_eq!(v.key, "/a");
    assert_eq!(v.state, reg("x", 1));
    assert_eq!(v.stuck.len(), 1);
    assert_eq!(v.stuck[0].client, 2);
    let text = v.to_string();
    assert!(text.contains("register /a"), "{text}");
    assert!(text.contains("cannot follow: client 2 read"), "{text}");
}

#[test]
fn catches_a_lost_acknowledged_write() {
    let v = violation(vec![
        write(1, "/a", 0, Some(10), "x", 1),
        write(1, "/a", 20, Some(30), "y", 2),
        read(2, "/a", 40, 50, "x", 1),
    ]);
    assert_eq!(v.state, reg("y", 2));
    assert_eq!(v.linearized.len(), 2);
}

#[test]
fn catches_a_cas_that_succeeded_against_a_stale_version() {
    let v = violation(vec![
        write(1, "/a", 0, Some(10), "x", 1),
        op(
            2,
            "/a",
            Call::Cas {
                expected: 0,
                data: b("z"),
            },
            20,
            Some((30, Ret::Written(Some(1)))),
        ),
    ]);
    assert_eq!(v.state, reg("x", 1));
    assert!(matches!(v.stuck[0].call, Call::Cas { expected: 0, .. }));
}

#[test]
fn registers_are_checked_apart_and_named() {
    let v = violation(vec![
        write(1, "/a", 0, Some(10), "x", 1),
        read(2, "/a", 20, 30, "x", 1),
        write(1, "/b", 0, Some(10), "x", 1),
        read(2, "/b", 20, 30, "", 0),
    ]);
    assert_eq!(v.key, "/b");
}

#[test]
fn initial_state_is_per_register() {
    let mut init = BTreeMap::new();
    init.insert("/a".to_owned(), reg("seed", 0));
    check(&history(vec![read(1, "/a", 0, 1, "seed", 0)]), &init).unwrap();
    assert!(check(&history(vec![read(1, "/a", 0, 1, "", 0)]), &init).is_err());
}

#[test]
fn gives_up_when_over_its_step_budget() {
    let mut ops: Vec<Op> = (0..20)
        .map(|i| {
            op(
                i,
                "/a",
                Call::Write(b(&format!("w{i}"))),
                0,
                Some((100, Ret::Written(None))),
            )
        })
        .collect();
    ops.push(read(99, "/a", 200, 201, "nope", 20));
    let r = check_with_limit(&history(ops), &BTreeMap::new(), 100);
    assert!(matches!(r, Err(CheckError::TooHard { .. })), "{r:?}");
}

/// A history from a real sequential execution of random operations on three registers, each
/// stretched to a random interval around its linearization point; about one in ten writes
/// loses its answer (and half of those never take effect).
fn random_history(seed: u64, n: usize) -> History {
    let mut rng = fastrand::Rng::with_seed(seed);
    let keys = ["/a", "/b", "/c"];
    let mut state: BTreeMap<&str, Register> = keys.iter().map(|k| (*k, reg("", 0))).collect();
    let mut h = History::new();
    for i in 0..n {
        let at = 1_000 + 10 * i as u64;
        let invoke = at - rng.u64(0..40);
        let ret_at = at + rng.u64(0..40);
        let key = keys[rng.usize(0..keys.len())];
        let client = rng.u64(0..8);
        let s = state.get_mut(key).expect("known key");
        let (call, ret) = match rng.u8(0..10) {
            0..=3 => (Call::Read, Some(Ret::Read(s.clone()))),
            4..=6 => {
                let data = b(&format!("{client}-{i}"));
                if rng.u8(0..20) == 0 {
                    // Lost answer, and the write never happened.
                    (Call::Write(data), None)
                } else {
                    *s = Register {
                        data: data.clone(),
                        version: s.version + 1,
                    };
                    let lost = rng.u8(0..20) == 0;
                    (
                        Call::Write(data),
                        (!lost).then_some(Ret::Written(Some(s.version))),
                    )
                }
            }
            _ => {
                let expected = s.version + rng.i32(-1..=1).min(0);
                let data = b(&format!("cas{client}-{i}"));
                if expected == s.version {
                    *s = Register {
                        data: data.clone(),
                        version: s.version + 1,
                    };
                    let ret = Ret::Written(Some(s.version));
                    (
                        Call::Cas { expected, data },
                        (rng.u8(0..10) != 0).then_some(ret),
                    )
                } else {
                    (Call::Cas { expected, data }, Some(Ret::CasFailed))
                }
            }
        };
        let id = h.invoke(client, key, call, invoke);
        if let Some(r) = ret {
            h.complete(id, ret_at, r);
        }
    }
    h
}

#[test]
fn random_sequential_executions_are_linearizable() {
    for seed in 0..60 {
        let h = random_history(seed, 150);
        if let Err(e) = check(&h, &BTreeMap::new()) {
            panic!("seed {seed}: {e}");
        }
    }
}

#[test]
fn random_executions_with_one_corrupted_read_are_caught() {
    for seed in 0..60 {
        let mut h = random_history(seed, 150);
        let reads: Vec<usize> = h
            .ops()
            .iter()
            .enumerate()
            .filter(|(_, o)| matches!(o.ret, Some((_, Ret::Read(_)))))
            .map(|(i, _)| i)
            .collect();
        let victim = reads[seed as usize % reads.len()];
        let (at, key) = {
            let o = &h.ops()[victim];
            (o.ret.as_ref().expect("a read").0, o.key.clone())
        };
        let Some((_, Ret::Read(r))) = &h.ops[victim].ret else {
            unreachable!("picked a completed read")
        };
        let corrupted = Register {
            data: b("never written"),
            version: r.version,
        };
        h.complete(victim, at, Ret::Read(corrupted));
        match check(&h, &BTreeMap::new()) {
            Err(CheckError::NotLinearizable(v)) => assert_eq!(v.key, key, "seed {seed}"),
            other => panic!("seed {seed}: corrupted read at op {victim} not caught: {other:?}"),
        }
    }
}

#[test]
fn random_executions_with_a_stale_read_after_a_write_are_caught() {
    // The victim read returns the value from before the last completed write to its
    // register that returned before the read was invoked.
    let mut caught = 0;
    for seed in 0..60 {
        let mut h = random_history(seed, 150);
        let ops = h.ops().to_vec();
        let pick = ops.iter().enumerate().find_map(|(i, o)| {
            let Some((at, Ret::Read(now))) = &o.ret else {
                return None;
            };
            // A completed write to this key, finished before the read began, that set the
            // very state the read saw: make the read return the state before it.
            let w = ops.iter().position(|w| {
                w.key == o.key
                    && matches!(w.ret, Some((t, Ret::Written(Some(v)))) if t < o.invoke && v == now.version)
                    && now.version > 1
            })?;
            Some((i, *at, w))
        });
        let Some((victim, at, w)) = pick else {
            continue;
        };
        let before = ops[..w].iter().rev().find_map(|p| match (&p.call, &p.ret) {
            (Call::Write(d) | Call::Cas { data: d, .. }, Some((_, Ret::Written(Some(v)))))
                if p.key == ops[victim].key && *v == ops[w].ret_version() - 1 =>
            {
                Some(Register {
                    data: d.clone(),
                    version: *v,
                })
            }
            _ => None,
        });
        let Some(stale) = before else { continue };
        h.complete(victim, at, Ret::Read(stale));
        assert!(
            matches!(
                check(&h, &BTreeMap::new()),
                Err(CheckError::NotLinearizable(_))
            ),
            "seed {seed}: stale read not caught"
        );
        caught += 1;
    }
    assert!(
        caught >= 20,
        "only {caught} seeds had a stale read to inject"
    );
}

impl Op {
    fn ret_version(&self) -> i32 {
        match &self.ret {
            Some((_, Ret::Written(Some(v)))) => *v,
            _ => 0,
        }
    }
}
