//! The control protocol of `zkit-server --ensemble`, sans-IO: one command per line (ASCII,
//! words separated by spaces), one answer line per command, `ok ...` or `error ...`. Parsing
//! here; [`crate::ensemble_mode`] carries the commands out on the ensemble.

use crate::control_faults;

/// Longest command line accepted; a longer one is answered with an error and the connection
/// closed.
pub const MAX_LINE: usize = 4096;

/// What `help` answers.
pub const HELP: &str = "commands: kill I | stop I | restart I | partition I,J|K | isolate I | \
                        heal | expire SESSION | leader | status | check | help \
                        (I: a server index from 0; SESSION: 0x-hex or decimal); faults: ";

/// A control command. Servers are named by index (0-based, voters first, then observers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Crash a server (`Ensemble::kill`).
    Kill(usize),
    /// Stop a server cleanly (`Ensemble::stop`).
    Stop(usize),
    /// Start a server again on its ports, from its disk (`Ensemble::restart`).
    Restart(usize),
    /// Cut the quorum links between the groups; a server in no group is cut off from all.
    Partition(Vec<Vec<usize>>),
    /// Cut one server off from every other.
    Isolate(usize),
    /// Lift every cut.
    Heal,
    /// Expire a session now.
    Expire(i64),
    /// Wait for a leader every reachable server follows; answer its index and address.
    Leader,
    /// Every server's mode.
    Status,
    /// Wait until the serving servers agree on their history; answer the zxid.
    Check,
    /// The list of commands.
    Help,
    /// Install a fault rule; answers its id.
    Fault(zkit_testkit::FaultRule),
    /// How often a rule fired.
    Fired(u64),
    /// Remove a rule.
    Unfault(u64),
    /// Remove every rule.
    ClearFaults,
    /// Set (or, with none, lift) a session's network faults.
    Session(i64, zkit_testkit::SessionFaults),
    /// Cut a session's connection now.
    Cut(i64),
}

/// Parses one line (without its newline). `Ok(None)` for a blank line (ignored, unanswered).
pub fn parse(line: &str) -> Result<Option<Command>, String> {
    let mut words = line.split_whitespace();
    let Some(verb) = words.next() else {
        return Ok(None);
    };
    let args: Vec<&str> = words.collect();
    let verb = verb.to_ascii_lowercase();
    let one = |args: &[&str]| -> Result<usize, String> {
        match args {
            [i] => index(i),
            _ => Err(format!("{verb} takes one server index, e.g. `{verb} 0`")),
        }
    };
    let none = |args: &[&str], cmd: Command| -> Result<Option<Command>, String> {
        match args {
            [] => Ok(Some(cmd)),
            _ => Err(format!("{verb} takes no argument")),
        }
    };
    match verb.as_str() {
        "kill" => Ok(Some(Command::Kill(one(&args)?))),
        "stop" => Ok(Some(Command::Stop(one(&args)?))),
        "restart" => Ok(Some(Command::Restart(one(&args)?))),
        "isolate" => Ok(Some(Command::Isolate(one(&args)?))),
        "partition" => match args.as_slice() {
            [spec] => partition(spec).map(|g| Some(Command::Partition(g))),
            _ => Err("partition takes groups like `0,1|2` (no spaces)".into()),
        },
        "expire" => match args.as_slice() {
            [s] => session(s).map(|id| Some(Command::Expire(id))),
            _ => Err("expire takes one session id, e.g. `expire 0x100000abc0000`".into()),
        },
        "heal" => none(&args, Command::Heal),
        "leader" => none(&args, Command::Leader),
        "status" => none(&args, Command::Status),
        "check" => none(&args, Command::Check),
        "help" => none(&args, Command::Help),
        "fault" => control_faults::rule(&args).map(|r| Some(Command::Fault(r))),
        "fired" | "unfault" => match args.as_slice() {
            [id] => {
                let id = id
                    .parse::<u64>()
                    .map_err(|_| format!("{id:?} is not a rule id"))?;
                Ok(Some(if verb == "fired" {
                    Command::Fired(id)
                } else {
                    Command::Unfault(id)
                }))
            }
            _ => Err(format!("{verb} takes one rule id, e.g. `{verb} 1`")),
        },
        "clear-faults" => none(&args, Command::ClearFaults),
        "session" => control_faults::session(&args).map(|(s, f)| Some(Command::Session(s, f))),
        "cut" => match args.as_slice() {
            [s] => session(s).map(|id| Some(Command::Cut(id))),
            _ => Err("cut takes one session id".into()),
        },
        _ => Err(format!("unknown command {verb:?} (try help)")),
    }
}

fn index(s: &str) -> Result<usize, String> {
    s.parse::<usize>()
        .map_err(|_| format!("{s:?} is not a server index (0, 1, ...)"))
}

/// `0,1|2`: groups separated by `|`, indexes by `,`; no index twice, no empty group.
fn partition(spec: &str) -> Result<Vec<Vec<usize>>, String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut groups = Vec::new();
    for g in spec.split('|') {
        if g.is_empty() {
            return Err(format!("partition {spec:?}: an empty group"));
        }
        let mut group = Vec::new();
        for i in g.split(',') {
            let i = index(i)?;
            if !seen.insert(i) {
                return Err(format!("partition {spec:?}: server {i} is in two groups"));
            }
            group.push(i);
        }
        groups.push(group);
    }
    Ok(groups)
}

/// A session id: `0x` and hex digits, or decimal.
fn session(s: &str) -> Result<i64, String> {
    control_faults::session_id(s)
}

/// The groups as the command wrote them: `0,1|2`.
pub fn groups_text(groups: &[Vec<usize>]) -> String {
    groups
        .iter()
        .map(|g| {
            g.iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect::<Vec<_>>()
        .join("|")
}

/// One answer line: newlines inside become `; ` so an answer is always one line.
pub fn one_line(ok: bool, text: &str) -> String {
    let body = text.trim().replace("\r\n", "; ").replace('\n', "; ");
    match (ok, body.is_empty()) {
        (true, true) => "ok\n".into(),
        (true, false) => format!("ok {body}\n"),
        (false, _) => format!("error {body}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        let ok = |l: &str| parse(l).unwrap().unwrap();
        assert_eq!(ok("kill 2"), Command::Kill(2));
        assert_eq!(ok("  RESTART   0 "), Command::Restart(0));
        assert_eq!(ok("stop 1"), Command::Stop(1));
        assert_eq!(ok("isolate 3"), Command::Isolate(3));
        assert_eq!(
            ok("partition 0,1|2"),
            Command::Partition(vec![vec![0, 1], vec![2]])
        );
        assert_eq!(ok("partition 1"), Command::Partition(vec![vec![1]]));
        assert_eq!(ok("heal"), Command::Heal);
        assert_eq!(ok("leader"), Command::Leader);
        assert_eq!(ok("status"), Command::Status);
        assert_eq!(ok("check"), Command::Check);
        assert_eq!(ok("help"), Command::Help);
        assert_eq!(ok("expire 0x1000a"), Command::Expire(0x1000a));
        assert_eq!(ok("expire 65546"), Command::Expire(65546));
        assert_eq!(
            ok("expire 0xff00000000000001"),
            Command::Expire(0xff00000000000001u64 as i64)
        );
        assert_eq!(ok("expire -3"), Command::Expire(-3));
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("   \t").unwrap(), None);
    }

    #[test]
    fn bad_commands_say_what_is_wrong() {
        let err = |l: &str| parse(l).unwrap_err();
        assert!(err("frobnicate").contains("unknown command"));
        assert!(err("kill").contains("one server index"));
        assert!(err("kill 1 2").contains("one server index"));
        assert!(err("kill x").contains("not a server index"));
        assert!(err("kill -1").contains("not a server index"));
        assert!(err("heal now").contains("no argument"));
        assert!(err("partition").contains("groups"));
        assert!(err("partition 0, 1|2").contains("groups"));
        assert!(err("partition 0,1|1").contains("two groups"));
        assert!(err("partition 0||1").contains("empty group"));
        assert!(err("partition 0,a").contains("not a server index"));
        assert!(err("expire").contains("one session id"));
        assert!(err("expire 0xzz").contains("not a session id"));
        assert!(err("expire 0x1ffffffffffffffff").contains("not a session id"));
    }

    #[test]
    fn answers_are_one_line() {
        assert_eq!(one_line(true, ""), "ok\n");
        assert_eq!(one_line(true, "killed 1"), "ok killed 1\n");
        assert_eq!(one_line(false, "a\nb\r\nc\n"), "error a; b; c\n");
        assert_eq!(groups_text(&[vec![0, 1], vec![2]]), "0,1|2");
    }
}
