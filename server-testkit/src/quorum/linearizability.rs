//! A linearizability checker for client histories over a few registers, in the style of
//! Knossos and Porcupine: Wing & Gong's search for a legal sequential order that respects
//! real time, with memoisation of (linearized set, register state) and the history split per
//! register (linearizability is compositional, so each register is checked on its own).
//!
//! A register is a znode's data and version. Operations are reads, blind writes (`setData`
//! with version -1) and compare-and-set (`setData` with an expected version). Each has an
//! invoke time and, when the client got an answer, a return time and a result. An operation
//! without an answer (a timeout, a connection loss) is *indeterminate*: it may have taken
//! effect at any point after its invoke, or never.
//!
//! Cost: the search only looks at operations overlapping the earliest pending return, but
//! an indeterminate write stays a candidate until the end of its register's history, so
//! many of them on one register (hundreds, in histories of thousands of operations) can
//! exhaust the step budget; the checker then says [`CheckError::TooHard`], never a verdict
//! it did not reach. Keep histories to a few hundred operations per register.
//!
//! Record only what a client can vouch for: a failed read tells nothing and is left out; a
//! write that failed with a definite error other than a version mismatch never happened and
//! is left out too; a connection loss during a write is an indeterminate write.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use bytes::Bytes;

/// A register's state: a znode's data and its data version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct Register {
    /// The data.
    pub data: Bytes,
    /// The data version (`Stat.version`).
    pub version: i32,
}

/// What a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Call {
    /// `getData` (after a `sync` when the history is of sync reads).
    Read,
    /// `setData(path, data, -1)`.
    Write(Bytes),
    /// `setData(path, data, expected)`.
    Cas {
        /// The version the client expects.
        expected: i32,
        /// The new data.
        data: Bytes,
    },
}

/// What the client got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ret {
    /// A read's answer.
    Read(Register),
    /// A write or a successful compare-and-set; the new version when the reply carried a
    /// `Stat` (`None` leaves it unchecked).
    Written(Option<i32>),
    /// A compare-and-set refused with `BadVersion`.
    CasFailed,
}

/// One operation of a history.
#[derive(Debug, Clone)]
pub(crate) struct Op {
    /// Who issued it (for the explanation only).
    pub client: u64,
    /// The register (a znode path).
    pub key: String,
    /// The request.
    pub call: Call,
    /// When it was invoked, on any clock shared by all clients.
    pub invoke: u64,
    /// When it returned and what it returned; `None` for an indeterminate operation.
    pub ret: Option<(u64, Ret)>,
}

/// Index of an operation in its [`History`].
pub(crate) type OpId = usize;

/// A concurrent history, recorded as clients invoke and complete operations.
#[derive(Debug, Clone, Default)]
pub(crate) struct History {
    ops: Vec<Op>,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        History::default()
    }

    /// Records an invocation; complete it with [`History::complete`] or leave it open
    /// (indeterminate).
    pub fn invoke(&mut self, client: u64, key: &str, call: Call, at: u64) -> OpId {
        self.ops.push(Op {
            client,
            key: key.to_owned(),
            call,
            invoke: at,
            ret: None,
        });
        self.ops.len() - 1
    }

    /// Records the answer to operation `id`.
    pub fn complete(&mut self, id: OpId, at: u64, ret: Ret) {
        if let Some(op) = self.ops.get_mut(id) {
            op.ret = Some((at, ret));
        }
    }

    /// Drops operation `id` from the history (it failed in a way that proves it had no effect).
    pub fn forget(&mut self, id: OpId) {
        if let Some(op) = self.ops.get_mut(id) {
            // A read that never returns constrains nothing; it is skipped by the checker.
            op.call = Call::Read;
            op.ret = None;
        }
    }

    /// The operations recorded so far.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Adds a complete operation at once (for histories built by hand).
    pub fn push(&mut self, op: Op) -> OpId {
        self.ops.push(op);
        self.ops.len() - 1
    }
}

/// Why a history was not shown linearizable.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum CheckError {
    /// No legal order exists.
    #[error("{0}")]
    NotLinearizable(Box<Violation>),
    /// The search gave up after this many steps on one register.
    #[error("register {key}: search abandoned after {steps} steps")]
    TooHard {
        /// The register.
        key: String,
        /// Steps taken.
        steps: u64,
    },
}

/// The explanation of a violation: the furthest the search got on the register, and the
/// operations none of which could come next.
#[derive(Debug, Clone)]
pub(crate) struct Violation {
    /// The register.
    pub key: String,
    /// The longest legal prefix found (operations in linearization order).
    pub linearized: Vec<Op>,
    /// The register after that prefix.
    pub state: Register,
    /// The operations that had to come next (completed, overlapping the earliest pending
    /// return), none of which is consistent with `state`.
    pub stuck: Vec<Op>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "register {}: not linearizable after {} operations, state {}",
            self.key,
            self.linearized.len(),
            show_register(&self.state)
        )?;
        let skip = self.linearized.len().saturating_sub(5);
        for op in &self.linearized[skip..] {
            writeln!(f, "  linearized: {}", show_op(op))?;
        }
        for op in &self.stuck {
            writeln!(f, "  cannot follow: {}", show_op(op))?;
        }
        Ok(())
    }
}

fn show_data(d: &Bytes) -> String {
    match std::str::from_utf8(d) {
        Ok(s) => format!("{s:?}"),
        Err(_) => format!("{d:?}"),
    }
}

fn show_register(r: &Register) -> String {
    format!("{} v{}", show_data(&r.data), r.version)
}

fn show_op(op: &Op) -> String {
    let call = match &op.call {
        Call::Read => "read".to_owned(),
        Call::Write(d) => format!("write {}", show_data(d)),
        Call::Cas { expected, data } => format!("cas v{expected} -> {}", show_data(data)),
    };
    let ret = match &op.ret {
        None => "indeterminate".to_owned(),
        Some((t, Ret::Read(r))) => format!("-> {} at {t}", show_register(r)),
        Some((t, Ret::Written(Some(v)))) => format!("-> ok v{v} at {t}"),
        Some((t, Ret::Written(None))) => format!("-> ok at {t}"),
        Some((t, Ret::CasFailed)) => format!("-> bad version at {t}"),
    };
    format!("client {} {call} invoked at {} {ret}", op.client, op.invoke)
}

/// The sequential specification: the register after `op`, or `None` when `op` (with its
/// recorded result) cannot happen in state `s`. An indeterminate operation is only ever
/// linearized for its effect (leaving it out covers "it never happened").
fn step(s: &Register, op: &Op) -> Option<Register> {
    let bump = |data: &Bytes| Register {
        data: data.clone(),
        version: s.version.wrapping_add(1),
    };
    match (&op.call, op.ret.as_ref().map(|r| &r.1)) {
        (Call::Read, Some(Ret::Read(r))) => (r == s).then(|| s.clone()),
        (Call::Write(d), None) => Some(bump(d)),
        (Call::Write(d), Some(Ret::Written(v))) => {
            let n = bump(d);
            v.is_none_or(|v| v == n.version).then_some(n)
        }
        (Call::Cas { expected, data }, None) => (*expected == s.version).then(|| bump(data)),
        (Call::Cas { expected, data }, Some(Ret::Written(v))) => {
            let n = bump(data);
            (*expected == s.version && v.is_none_or(|v| v == n.version)).then_some(n)
        }
        (Call::Cas { expected, .. }, Some(Ret::CasFailed)) => {
            (*expected != s.version).then(|| s.clone())
        }
        // A result that does not fit the call (or a read without one) cannot be placed.
        _ => None,
    }
}

/// Default cap on search steps per register.
pub(crate) const DEFAULT_MAX_STEPS: u64 = 5_000_000;

/// Checks that `history` is linearizable, register by register, each starting from
/// `initial[key]` (an empty register at version 0 when absent).
pub(crate) fn check(
    history: &History,
    initial: &BTreeMap<String, Register>,
) -> Result<(), CheckError> {
    check_with_limit(history, initial, DEFAULT_MAX_STEPS)
}

/// [`check`] with an explicit cap on search steps per register.
pub(crate) fn check_with_limit(
    history: &History,
    initial: &BTreeMap<String, Register>,
    max_steps: u64,
) -> Result<(), CheckError> {
    let mut per_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in &history.ops {
        // An unanswered read constrains nothing.
        if op.ret.is_none() && op.call == Call::Read {
            continue;
        }
        per_key.entry(&op.key).or_default().push(op);
    }
    for (key, ops) in per_key {
        let init = initial.get(key).cloned().unwrap_or_default();
        check_register(key, &ops, init, max_steps)?;
    }
    Ok(())
}

/// A set of operation indices, hashable for the memo.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Self {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn has(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    /// The lowest index not in the set.
    fn first_clear(&self) -> usize {
        self.0
            .iter()
            .position(|w| *w != u64::MAX)
            .map_or(self.0.len() * 64, |w| {
                w * 64 + self.0[w].trailing_ones() as usize
            })
    }
    fn with(&self, i: usize) -> Self {
        let mut b = self.clone();
        b.0[i / 64] |= 1 << (i % 64);
        b
    }
}

/// One level of the depth-first search.
struct Frame {
    done: Bits,
    state: Register,
    /// The operation linearized to reach this frame (`None` at the root).
    via: Option<usize>,
    candidates: Vec<usize>,
    next: usize,
    determinate_left: usize,
}

fn check_register(
    key: &str,
    ops: &[&Op],
    init: Register,
    max_steps: u64,
) -> Result<(), CheckError> {
    let mut ops: Vec<&Op> = ops.to_vec();
    ops.sort_by_key(|o| o.invoke);
    let ret_at = |o: &Op| o.ret.as_ref().map_or(u64::MAX, |r| r.0);
    let n = ops.len();
    let determinate = ops.iter().filter(|o| o.ret.is_some()).count();

    // The operations that may come next: those invoked no later than the earliest return
    // among the operations not yet linearized (an operation that returned before another
    // was invoked must precede it). Equal times count as overlapping. Scanning in invoke
    // order can stop at the first operation invoked after the earliest return seen so far:
    // every later one returns later still, so the window is all that is ever looked at.
    let candidates = |done: &Bits| -> Vec<usize> {
        let mut min_ret = u64::MAX;
        let mut out = Vec::new();
        for i in (done.first_clear()..n).filter(|&i| !done.has(i)) {
            if ops[i].invoke > min_ret {
                break;
            }
            min_ret = min_ret.min(ret_at(ops[i]));
            out.push(i);
        }
        out
    };

    let root_done = Bits::new(n);
    let mut memo: HashSet<(Bits, Register)> = HashSet::new();
    let mut stack = vec![Frame {
        candidates: candidates(&root_done),
        done: root_done,
        state: init,
        via: None,
        next: 0,
        determinate_left: determinate,
    }];
    let mut best: (Vec<usize>, Register, Vec<usize>) =
        (Vec::new(), Register::default(), Vec::new());
    let mut best_len = None;
    let mut steps = 0u64;

    while let Some(top) = stack.last_mut() {
        if top.determinate_left == 0 {
            return Ok(());
        }
        steps += 1;
        if steps > max_steps {
            return Err(CheckError::TooHard {
                key: key.to_owned(),
                steps,
            });
        }
        if top.next >= top.candidates.len() {
            let depth = stack.len() - 1;
            if best_len.is_none_or(|b| depth > b) {
                best_len = Some(depth);
                let path: Vec<usize> = stack.iter().filter_map(|f| f.via).collect();
                let f = stack.last().expect("non-empty");
                let stuck: Vec<usize> = f
                    .candidates
                    .iter()
                    .copied()
                    .filter(|&i| ops[i].ret.is_some())
                    .collect();
                best = (path, f.state.clone(), stuck);
            }
            stack.pop();
            continue;
        }
        let i = top.candidates[top.next];
        top.next += 1;
        let Some(state) = step(&top.state, ops[i]) else {
            continue;
        };
        let done = top.done.with(i);
        let determinate_left = top.determinate_left - usize::from(ops[i].ret.is_some());
        if !memo.insert((done.clone(), state.clone())) {
            continue;
        }
        stack.push(Frame {
            candidates: candidates(&done),
            done,
            state,
            via: Some(i),
            next: 0,
            determinate_left,
        });
    }
    let (path, state, stuck) = best;
    Err(CheckError::NotLinearizable(Box::new(Violation {
        key: key.to_owned(),
        linearized: path.into_iter().map(|i| ops[i].clone()).collect(),
        state,
        stuck: stuck.into_iter().map(|i| ops[i].clone()).collect(),
    })))
}

#[cfg(test)]
#[path = "linearizability_tests.rs"]
mod tests;
