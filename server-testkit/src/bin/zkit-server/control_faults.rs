//! The fault commands of the control protocol, sans-IO: `fault`, `fired`, `unfault`,
//! `clear-faults`, `session` and `cut` (see [`crate::control::HELP`]).

use std::time::Duration;

use zkit_proto::{ErrorCode, OpCode};
use zkit_testkit::{FaultAction, FaultRule, RuleId, SessionFaults};

use crate::control::Command;

/// What `help` adds for the fault commands.
pub const HELP: &str = "fault [session=S] [op=NAME] [path=PREFIX] [times=N] \
                        disconnect|delay=MS|fail=ERROR|drop | fired RULE | unfault RULE | \
                        clear-faults | session S [delay=MS] [drop-pings] [hold-events] \
                        [cut-every=MS] (no option: lift) | cut S";

/// `fault ...`: the words after the verb.
pub fn rule(args: &[&str]) -> Result<FaultRule, String> {
    let mut action = None;
    let mut session = None;
    let mut op = None;
    let mut path = None;
    let mut times = None;
    for a in args {
        let (k, v) = match a.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
            None => (a.to_ascii_lowercase(), None),
        };
        let set = |slot: &mut Option<FaultAction>, act: FaultAction| match slot {
            Some(_) => Err("fault takes one action".to_owned()),
            None => {
                *slot = Some(act);
                Ok(())
            }
        };
        match (k.as_str(), v) {
            ("session", Some(v)) => session = Some(session_id(v)?),
            ("op", Some(v)) => op = Some(opcode(v)?),
            ("path", Some(v)) => path = Some(v.to_owned()),
            ("times", Some(v)) => {
                times = Some(
                    v.parse::<u64>()
                        .map_err(|_| format!("times={v}: not a count"))?,
                )
            }
            ("disconnect", None) => set(&mut action, FaultAction::ApplyThenDisconnect)?,
            ("drop", None) => set(&mut action, FaultAction::Drop)?,
            ("delay", Some(v)) => set(&mut action, FaultAction::ApplyThenDelay(millis(v)?))?,
            ("fail", Some(v)) => set(&mut action, FaultAction::Fail(error(v)?))?,
            _ => return Err(format!("fault: {a:?} is not understood (try help)")),
        }
    }
    let action = action.ok_or("fault needs an action: disconnect, delay=MS, fail=ERROR or drop")?;
    let mut r = FaultRule::new(action);
    if let Some(s) = session {
        r = r.session(s);
    }
    if let Some(o) = op {
        r = r.op(o);
    }
    if let Some(p) = path {
        r = r.path_prefix(p);
    }
    if let Some(n) = times {
        r = r.times(n);
    }
    Ok(r)
}

/// `session S ...`: the session and its faults.
pub fn session(args: &[&str]) -> Result<(i64, SessionFaults), String> {
    let Some((s, opts)) = args.split_first() else {
        return Err("session takes a session id, then its faults".into());
    };
    let mut f = SessionFaults::new();
    for a in opts {
        f = match a.split_once('=') {
            Some(("delay", v)) => f.delay(millis(v)?),
            Some(("cut-every", v)) => f.cut_every(millis(v)?.max(Duration::from_millis(1))),
            None if *a == "drop-pings" => f.drop_pings(),
            None if *a == "hold-events" => f.hold_events(),
            _ => return Err(format!("session: {a:?} is not understood (try help)")),
        };
    }
    Ok((session_id(s)?, f))
}

fn millis(v: &str) -> Result<Duration, String> {
    v.parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| format!("{v:?} is not a number of milliseconds"))
}

/// A session id: `0x` and hex digits, or decimal (negative too: ids with the high bit set).
pub fn session_id(s: &str) -> Result<i64, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).map(|v| v as i64).ok(),
        None => s.parse::<i64>().ok(),
    };
    parsed.ok_or_else(|| format!("{s:?} is not a session id (0x-hex or decimal)"))
}

/// An opcode by its name in ZooKeeper's `OpCode` (any case: `create`, `setData`, ...) or
/// number.
fn opcode(v: &str) -> Result<OpCode, String> {
    if let Ok(n) = v.parse::<i32>() {
        return OpCode::from_code(n).map_err(|_| format!("op={v}: no such opcode"));
    }
    let want = v.to_ascii_lowercase();
    (-11..=110)
        .filter_map(|c| OpCode::from_code(c).ok())
        .find(|o| format!("{o:?}").to_ascii_lowercase() == want)
        .ok_or_else(|| format!("op={v}: no such opcode (create, delete, setData, ...)"))
}

/// A ZooKeeper error by name (any case: `NodeExists`, `connectionloss`, ...) or code.
fn error(v: &str) -> Result<ErrorCode, String> {
    if let Ok(n) = v.parse::<i32>() {
        return ErrorCode::from_code(n).map_err(|_| format!("fail={v}: no such error code"));
    }
    let want = v.to_ascii_lowercase();
    (-130..=-1)
        .filter_map(|c| ErrorCode::from_code(c).ok())
        .find(|e| format!("{e:?}").to_ascii_lowercase() == want)
        .ok_or_else(|| format!("fail={v}: no such error (NodeExists, ConnectionLoss, ...)"))
}

/// What the fault commands act on: a server or an ensemble.
pub trait Target {
    /// See [`zkit_testkit::Server::add_fault`].
    fn add_fault(&self, rule: FaultRule) -> RuleId;
    /// See [`zkit_testkit::Server::fault_fired`].
    fn fault_fired(&self, id: RuleId) -> u64;
    /// See [`zkit_testkit::Server::remove_fault`].
    fn remove_fault(&self, id: RuleId) -> bool;
    /// See [`zkit_testkit::Server::clear_faults`].
    fn clear_faults(&self);
    /// See [`zkit_testkit::Server::set_session_faults`].
    fn set_session_faults(&self, session_id: i64, faults: SessionFaults);
    /// See [`zkit_testkit::Server::close_session_connection`].
    fn close_session_connection(&self, session_id: i64) -> bool;
}

macro_rules! target {
    ($t:ty) => {
        impl Target for $t {
            fn add_fault(&self, rule: FaultRule) -> RuleId {
                <$t>::add_fault(self, rule)
            }
            fn fault_fired(&self, id: RuleId) -> u64 {
                <$t>::fault_fired(self, id)
            }
            fn remove_fault(&self, id: RuleId) -> bool {
                <$t>::remove_fault(self, id)
            }
            fn clear_faults(&self) {
                <$t>::clear_faults(self)
            }
            fn set_session_faults(&self, session_id: i64, faults: SessionFaults) {
                <$t>::set_session_faults(self, session_id, faults)
            }
            fn close_session_connection(&self, session_id: i64) -> bool {
                <$t>::close_session_connection(self, session_id)
            }
        }
    };
}
target!(zkit_testkit::Server);
target!(zkit_testkit::Ensemble);

/// Carries out a fault command; None for a command that is not one.
pub fn execute(t: &impl Target, cmd: &Command) -> Option<Result<String, String>> {
    Some(match cmd {
        Command::Fault(rule) => Ok(format!("rule {}", t.add_fault(rule.clone()))),
        Command::Fired(id) => Ok(t.fault_fired(RuleId(*id)).to_string()),
        Command::Unfault(id) => {
            if t.remove_fault(RuleId(*id)) {
                Ok(format!("removed {id}"))
            } else {
                Err(format!("no rule {id}"))
            }
        }
        Command::ClearFaults => {
            t.clear_faults();
            Ok("cleared".into())
        }
        Command::Session(s, f) => {
            t.set_session_faults(*s, *f);
            Ok(format!("session 0x{s:x} {f:?}"))
        }
        Command::Cut(s) => {
            if t.close_session_connection(*s) {
                Ok(format!("cut 0x{s:x}"))
            } else {
                Err(format!("session 0x{s:x} has no connection"))
            }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_rules_parse() {
        assert_eq!(
            rule(&[
                "session=0x10",
                "op=create",
                "path=/locks",
                "times=1",
                "disconnect"
            ])
            .unwrap(),
            FaultRule::new(FaultAction::ApplyThenDisconnect)
                .session(16)
                .op(OpCode::Create)
                .path_prefix("/locks")
                .times(1)
        );
        assert_eq!(
            rule(&["op=setData", "delay=250"]).unwrap(),
            FaultRule::new(FaultAction::ApplyThenDelay(Duration::from_millis(250)))
                .op(OpCode::SetData)
        );
        assert_eq!(
            rule(&["fail=NodeExists"]).unwrap(),
            FaultRule::new(FaultAction::Fail(ErrorCode::NodeExists))
        );
        assert_eq!(
            rule(&["fail=-4", "op=14"]).unwrap(),
            FaultRule::new(FaultAction::Fail(ErrorCode::ConnectionLoss)).op(OpCode::Multi)
        );
        assert!(rule(&[]).unwrap_err().contains("needs an action"));
        assert!(rule(&["drop", "disconnect"])
            .unwrap_err()
            .contains("one action"));
        assert!(rule(&["fail=Nope"]).unwrap_err().contains("no such error"));
        assert!(rule(&["op=frob", "drop"])
            .unwrap_err()
            .contains("no such opcode"));
        assert!(rule(&["times=x", "drop"])
            .unwrap_err()
            .contains("not a count"));
        assert!(rule(&["what", "drop"])
            .unwrap_err()
            .contains("not understood"));
    }

    #[test]
    fn session_faults_parse() {
        assert_eq!(session(&["0x1f"]).unwrap(), (31, SessionFaults::new()));
        assert_eq!(
            session(&[
                "5",
                "delay=10",
                "drop-pings",
                "hold-events",
                "cut-every=100"
            ])
            .unwrap(),
            (
                5,
                SessionFaults::new()
                    .delay(Duration::from_millis(10))
                    .drop_pings()
                    .hold_events()
                    .cut_every(Duration::from_millis(100))
            )
        );
        assert!(session(&[]).is_err());
        assert!(session(&["1", "slow"])
            .unwrap_err()
            .contains("not understood"));
        assert!(session(&["zz"]).unwrap_err().contains("not a session id"));
    }
}
