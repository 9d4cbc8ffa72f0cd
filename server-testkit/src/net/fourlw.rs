//! Four-letter words on the client port, in the text format of a real 3.8 server: standalone,
//! or a member of an ensemble (its `Mode`, and a server that is not serving says so).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::{now_ms, Ctx, LearnerStats};
use crate::core::Mode;

/// What a server answers `srvr`, `stat` and `mntr` with while it is not serving (electing or
/// syncing), as ZooKeeper's `AbstractFourLetterCommand.ZK_NOT_SERVING`.
pub(crate) const NOT_SERVING: &str = "This ZooKeeper instance is not currently serving requests";

/// The version reported by `srvr`, `stat`, `mntr` and `envi` (`zookeeper.version=` is what kazoo
/// parses).
pub const VERSION: &str = concat!(
    "3.8.0-zkit-",
    env!("CARGO_PKG_VERSION"),
    ", built on 1970-01-01 00:00 UTC"
);

/// Every word a real server knows (`docs/protocol.md` §11).
pub const ALL_WORDS: &[&str] = &[
    "conf", "cons", "crst", "dirs", "dump", "envi", "gtmk", "ruok", "stmk", "srst", "srvr", "stat",
    "wchc", "wchp", "wchs", "mntr", "isro", "hash",
];

/// Which four-letter words are served (`4lw.commands.whitelist`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FourLetterWords {
    all: bool,
    words: BTreeSet<String>,
}

impl Default for FourLetterWords {
    /// Only `srvr`, like a real server.
    fn default() -> Self {
        FourLetterWords::parse("srvr")
    }
}

impl FourLetterWords {
    /// Every word.
    pub fn all() -> Self {
        FourLetterWords {
            all: true,
            words: BTreeSet::new(),
        }
    }

    /// A comma separated list, or `*` for all.
    pub fn parse(list: &str) -> Self {
        let words: BTreeSet<String> = list
            .split(',')
            .map(|w| w.trim().to_owned())
            .filter(|w| !w.is_empty())
            .collect();
        FourLetterWords {
            all: words.contains("*"),
            words,
        }
    }

    /// Whether `word` is enabled.
    pub fn allows(&self, word: &str) -> bool {
        self.all || self.words.contains(word)
    }
}

impl From<&str> for FourLetterWords {
    /// Same as [`FourLetterWords::parse`]: `"ruok,srvr"` or `"*"`.
    fn from(list: &str) -> Self {
        FourLetterWords::parse(list)
    }
}

/// One connection as `cons`, `stat` and `dump` list it.
#[derive(Debug)]
struct ConnRow {
    remote: std::net::SocketAddr,
    queued: usize,
    received: u64,
    sent: u64,
    session: Option<i64>,
    timeout: i32,
    last_op: &'static str,
    established: i64,
    last_cxid: i32,
    last_zxid: i64,
}

/// What a word needs from the core, copied under the lock. Copying is linear and cheap; the
/// sorting and formatting (which for `wchp` over 200k watches takes far longer) happens after
/// the lock is released, so clients never wait on a four-letter word.
#[derive(Debug, Default)]
struct Snapshot {
    node_count: usize,
    /// Client connections plus the one asking.
    conns: usize,
    received: u64,
    sent: u64,
    digest_checks: u64,
    digest_mismatches: u64,
    last_zxid: i64,
    tick_time: i32,
    min_session_timeout: i32,
    max_session_timeout: i32,
    ephemerals: usize,
    sessions: usize,
    watch_count: usize,
    data_size: usize,
    started: i64,
    rows: Vec<ConnRow>,
    /// (session, path) of each data-table watch (`wch*` only).
    watches: Vec<(i64, String)>,
    /// Session ids (`dump` only).
    session_ids: Vec<i64>,
    /// Ephemerals by session (`dump` only).
    ephemeral_paths: Vec<(i64, Vec<String>)>,
    /// How the server serves.
    mode: Option<Mode>,
    /// A leader's learners (`mntr` only).
    learners: LearnerStats,
    /// Whether it serves read-only clients now (`isro`).
    read_only: bool,
}

/// ZooKeeper's name of a serving mode (`Mode:` in `srvr`, `zk_server_state` in `mntr`).
fn mode_name(mode: Option<Mode>) -> &'static str {
    match mode {
        None | Some(Mode::Standalone) => "standalone",
        Some(Mode::Leader { .. }) => "leader",
        Some(Mode::Follower) => "follower",
        Some(Mode::Observer) => "observer",
        Some(Mode::NotServing) => "looking",
    }
}

impl Snapshot {
    fn take(word: &str, ctx: &Ctx) -> Snapshot {
        let g = ctx.lock();
        let core = &g.core;
        let db = core.db();
        let cfg = core.config();
        let counters = core.counters();
        let mut s = Snapshot {
            node_count: db.tree.node_count() + 1, // ZooKeeper counts "" and "/" separately.
            conns: core.connections().count() + 1, // this connection included, like ZooKeeper
            received: counters.received,
            sent: counters.sent,
            digest_checks: counters.digest_checks,
            digest_mismatches: counters.digest_mismatches,
            last_zxid: db.last_zxid,
            tick_time: cfg.tick_time,
            min_session_timeout: cfg.min_session_timeout,
            max_session_timeout: cfg.max_session_timeout,
            started: core.started(),
            mode: Some(core.mode()),
            read_only: core.read_only_now(),
            ..Snapshot::default()
        };
        match word {
            "mntr" => {
                if let (Some(Mode::Leader { .. }), Some(r)) = (s.mode, &g.replica) {
                    s.learners = (r.learners)();
                }
                s.ephemerals = db.tree.ephemeral_count();
                s.sessions = db.sessions.len();
                s.watch_count = core.watch_manager().count();
                s.data_size = db.tree.approximate_data_size();
            }
            "stat" | "cons" | "dump" => {
                s.rows = core
                    .connections()
                    .map(|(id, c)| ConnRow {
                        remote: c.remote,
                        queued: g.conns.get(id).map_or(0, |o| o.stats().frames),
                        received: c.received,
                        sent: c.sent,
                        session: c.session,
                        timeout: c
                            .session
                            .and_then(|sid| db.sessions.get(&sid).copied())
                            .unwrap_or(0),
                        last_op: c.last_op,
                        established: c.established,
                        last_cxid: c.last_cxid,
                        last_zxid: c.last_zxid,
                    })
                    .collect();
                if word == "dump" {
                    s.session_ids = db.sessions.keys().copied().collect();
                    s.ephemeral_paths = db.tree.all_ephemerals();
                }
            }
            "wchs" | "wchc" | "wchp" => {
                s.watches = core
                    .watch_manager()
                    .data_watches()
                    .map(|(conn, p)| (core.session_of(conn).unwrap_or(0), p.to_owned()))
                    .collect();
            }
            _ => {}
        }
        s
    }
}

/// The text answer to `word` (already known to be a four-letter word).
pub(crate) fn answer(word: &str, ctx: &Ctx, remote: std::net::SocketAddr) -> String {
    if !ctx.net.four_letter_words.allows(word) {
        return format!("{word} is not executed because it is not in the whitelist.\n");
    }
    let snap = Snapshot::take(word, ctx);
    if snap.mode == Some(Mode::NotServing) && matches!(word, "srvr" | "stat" | "mntr") {
        return format!("{NOT_SERVING}\n");
    }
    render(word, &snap, ctx, remote)
}

/// Formats `word`'s answer from a snapshot (no lock held).
fn render(word: &str, snap: &Snapshot, ctx: &Ctx, remote: std::net::SocketAddr) -> String {
    let mut s = String::new();
    let head = |s: &mut String| {
        let _ = writeln!(s, "Zookeeper version: {VERSION}");
    };
    let tail = |s: &mut String| {
        let _ = write!(
            s,
            "Latency min/avg/max: 0/0.0/0\nReceived: {}\nSent: {}\nConnections: {}\n\
             Outstanding: 0\nZxid: 0x{:x}\nMode: {}\nNode count: {}\n",
            snap.received,
            snap.sent,
            snap.conns,
            snap.last_zxid,
            mode_name(snap.mode),
            snap.node_count
        );
    };
    let cons = |s: &mut String| {
        for c in &snap.rows {
            let _ = write!(
                s,
                " /{}[1](queued={},recved={},sent={}",
                c.remote, c.queued, c.received, c.sent
            );
            if let Some(sid) = c.session {
                let _ = write!(
                    s,
                    ",sid=0x{sid:x},lop={},est={},to={},lcxid=0x{:x},lzxid=0x{:x},lresp={},\
                     llat=0,minlat=0,avglat=0,maxlat=0",
                    c.last_op,
                    c.established,
                    c.timeout,
                    c.last_cxid,
                    c.last_zxid,
                    now_ms()
                );
            }
            let _ = writeln!(s, ")");
        }
        // The connection asking is listed too, like on a real server.
        let _ = writeln!(s, " /{remote}[0](queued=0,recved=1,sent=0)");
    };
    // Like ZooKeeper's dumpWatches / getWatchesSummary: the data-watch table only (it also
    // holds persistent watches).
    let watch_tables = || {
        let mut by_session: BTreeMap<i64, BTreeSet<&str>> = BTreeMap::new();
        let mut by_path: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::new();
        for (sid, path) in &snap.watches {
            by_session.entry(*sid).or_default().insert(path);
            by_path.entry(path).or_default().insert(*sid);
        }
        (by_session, by_path)
    };
    match word {
        "ruok" => s.push_str("imok"),
        "isro" => s.push_str(if snap.read_only { "ro" } else { "rw" }),
        "srvr" => {
            head(&mut s);
            tail(&mut s);
        }
        "stat" => {
            head(&mut s);
            s.push_str("Clients:\n");
            cons(&mut s);
            s.push('\n');
            tail(&mut s);
        }
        "cons" => {
            cons(&mut s);
            s.push('\n');
        }
        "envi" => {
            let _ = write!(
                s,
                "Environment:\nzookeeper.version={VERSION}\nhost.name=localhost\n\
                 java.version=zkit\njava.vendor=zkit\njava.home=\njava.class.path=\n\
                 java.library.path=\njava.io.tmpdir={}\njava.compiler=<NA>\nos.name={}\n\
                 os.arch={}\nos.version=\nuser.name=\nuser.home=\nuser.dir=\n",
                std::env::temp_dir().display(),
                std::env::consts::OS,
                std::env::consts::ARCH
            );
        }
        "conf" => {
            let _ = write!(
                s,
                "clientPort={}\nsecureClientPort=-1\ndataDir=\ndataDirSize=0\ndataLogDir=\n\
                 dataLogSize=0\ntickTime={}\nmaxClientCnxns={}\nminSessionTimeout={}\n\
                 maxSessionTimeout={}\nclientPortListenBacklog=-1\nserverId=0\n",
                ctx.local_addr.port(),
                snap.tick_time,
                ctx.net.max_client_cnxns,
                snap.min_session_timeout,
                snap.max_session_timeout
            );
        }
        "mntr" => {
            let mut rows: Vec<(&str, String)> = vec![
                ("zk_version", VERSION.to_owned()),
                ("zk_server_state", mode_name(snap.mode).into()),
                ("zk_ephemerals_count", snap.ephemerals.to_string()),
                ("zk_num_alive_connections", snap.conns.to_string()),
                ("zk_avg_latency", "0.0".into()),
                ("zk_outstanding_requests", "0".into()),
                ("zk_znode_count", snap.node_count.to_string()),
                ("zk_global_sessions", snap.sessions.to_string()),
                ("zk_local_sessions", "0".into()),
                ("zk_watch_count", snap.watch_count.to_string()),
                ("zk_approximate_data_size", snap.data_size.to_string()),
                ("zk_packets_sent", snap.sent.to_string()),
                ("zk_packets_received", snap.received.to_string()),
                ("zk_min_latency", "0".into()),
                ("zk_max_latency", "0".into()),
                ("zk_uptime", (now_ms() - snap.started).to_string()),
                ("zk_auth_failed_count", "0".into()),
                (
                    "zk_digest_mismatches_count",
                    snap.digest_mismatches.to_string(),
                ),
                // zkit's own: how many txns came with a leader digest to compare.
                ("zkit_digest_checks_count", snap.digest_checks.to_string()),
            ];
            if let Some(Mode::Leader { .. }) = snap.mode {
                // 3.8's names (3.4 said zk_followers for what is now zk_learners).
                let l = snap.learners;
                rows.extend([
                    ("zk_learners", l.learners.to_string()),
                    ("zk_synced_followers", l.synced_followers.to_string()),
                    ("zk_synced_non_voting_followers", "0".into()),
                    ("zk_synced_observers", l.synced_observers.to_string()),
                    ("zk_pending_syncs", "0".into()),
                ]);
            }
            for (k, v) in rows {
                let _ = writeln!(s, "{k}\t{v}");
            }
        }
        "wchs" => {
            let (by_session, by_path) = watch_tables();
            let total: usize = by_path.values().map(|s| s.len()).sum();
            let _ = write!(
                s,
                "{} connections watching {} paths\nTotal watches:{total}\n",
                by_session.len(),
                by_path.len(),
            );
        }
        "wchc" => {
            for (sid, paths) in &watch_tables().0 {
                let _ = writeln!(s, "0x{sid:x}");
                for p in paths {
                    let _ = writeln!(s, "\t{p}");
                }
            }
            s.push('\n');
        }
        "wchp" => {
            for (p, sids) in &watch_tables().1 {
                let _ = writeln!(s, "{p}");
                for sid in sids {
                    let _ = writeln!(s, "\t0x{sid:x}");
                }
            }
            s.push('\n');
        }
        "dump" => {
            let n = snap.session_ids.len();
            let _ = writeln!(s, "SessionTracker dump:\nSession Sets ({n})/({n}):");
            for id in &snap.session_ids {
                let _ = writeln!(s, "1 expire at {}:\n\t0x{:x}", http_date(now_ms()), id);
            }
            let _ = writeln!(
                s,
                "ephemeral nodes dump:\nSessions with Ephemerals ({}):",
                snap.ephemeral_paths.len()
            );
            for (sid, paths) in &snap.ephemeral_paths {
                let _ = writeln!(s, "0x{sid:x}:");
                for p in paths {
                    let _ = writeln!(s, "\t{p}");
                }
            }
            let _ = writeln!(
                s,
                "Connections dump:\nConnections Sets ({n})/({n}):",
                n = snap.conns - 1
            );
            for c in &snap.rows {
                let _ = writeln!(
                    s,
                    "\tip: /{} sessionId: 0x{:x}",
                    c.remote,
                    c.session.unwrap_or(0)
                );
            }
        }
        "dirs" => s.push_str("datadir_size: 0\nlogdir_size: 0\n"),
        "crst" => s.push_str("Connection stats reset.\n"),
        "srst" => s.push_str("Server stats reset.\n"),
        "gtmk" | "stmk" => s.push_str("0\n"),
        _ => {}
    }
    s
}

/// `Mon Nov 23 18:14:09 UTC 2026`, Java's `Date.toString()` in UTC.
fn http_date(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    let (h, m, sec) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if mo <= 2 { 1 } else { 0 };
    let wd = (days + 4).rem_euclid(7); // 1970-01-01 was a Thursday
    const WD: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MO: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {} {:02} {:02}:{:02}:{:02} UTC {}",
        WD[wd as usize],
        MO[(mo - 1) as usize],
        d,
        h,
        m,
        sec,
        y
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_date_format() {
        assert_eq!(http_date(0), "Thu Jan 01 00:00:00 UTC 1970");
        assert_eq!(http_date(1_795_457_649_000), "Mon Nov 23 18:14:09 UTC 2026");
    }

    #[test]
    fn whitelist_parsing() {
        assert!(FourLetterWords::default().allows("srvr"));
        assert!(!FourLetterWords::default().allows("ruok"));
        assert!(FourLetterWords::parse("ruok, stat").allows("stat"));
        assert!(FourLetterWords::parse("*").allows("envi"));
    }
}
