//! ZooKeeper's configuration file, `zoo.cfg`, read the way `QuorumPeerConfig` reads it (a Java
//! properties file), sans-IO: [`ZooCfg::parse`] takes the text, [`ZooCfg::load`] reads a file.
//!
//! Every key a test ensemble needs is understood (see [`ZooCfg`]); keys zkit does not act on are
//! accepted with a warning ([`ZooCfg::warnings`]), as ZooKeeper accepts unknown keys (it turns
//! them into `zookeeper.*` system properties). What cannot be served faithfully (hierarchical
//! quorums, a dynamic config file, several addresses per server) is an error. Every error and
//! warning names the key and the line.

mod syntax;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::core::PasswordScheme;
pub use syntax::parse_myid;
use syntax::{boolean, millis, non_empty, number, port, properties, server_line, ticks};

/// ZooKeeper's default tickTime (`ZooKeeperServer.DEFAULT_TICK_TIME`), when the file sets none.
pub(crate) const DEFAULT_TICK_TIME: Duration = Duration::from_millis(3000);

/// Keys zkit reads and ignores without a word: they configure what a test server has no use for
/// (the admin server, metrics) or tune what zkit does its own way.
const QUIET_KEYS: &[&str] = &[
    "admin.enableServer",
    "admin.serverAddress",
    "admin.serverPort",
    "admin.commandURL",
    "admin.idleTimeout",
    "audit.enable",
    "cnxTimeout",
    "electionPortBindRetry",
    "globalOutstandingLimit",
    "syncEnabled",
    "electionAlg",
    // zkit's own networking serves the plain and the secure port alike.
    "serverCnxnFactory",
];

/// Keys of ZooKeeper features zkit does not have: accepted with a warning that they do nothing.
const UNSUPPORTED_KEYS: &[&str] = &[
    "reconfigEnabled",
    "localSessionsEnabled",
    "localSessionsUpgradingEnabled",
    "leaderServes",
    "skipACL",
    "sslQuorum",
    "portUnification",
    "multiAddress.enabled",
];

/// An error in a `zoo.cfg` (or its member's `myid` file): where, which key, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub struct ConfigError {
    /// The file, when it was read from one.
    pub file: Option<PathBuf>,
    /// The line (1-based), when one line is at fault.
    pub line: Option<usize>,
    /// The key (`clientPort`, `server.2`, `myid`, ...).
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

/// Something in a `zoo.cfg` that zkit accepted but that does not do what its author may expect
/// (an unknown key, an even number of voters, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigWarning {
    /// The file, when it was read from one.
    pub file: Option<PathBuf>,
    /// The line (1-based), when one line is concerned.
    pub line: Option<usize>,
    /// The key.
    pub key: String,
    /// What to know about it.
    pub message: String,
}

fn locate(
    f: &mut fmt::Formatter<'_>,
    file: &Option<PathBuf>,
    line: Option<usize>,
    key: &str,
) -> fmt::Result {
    match (file, line) {
        (Some(p), Some(l)) => write!(f, "{}:{l}: {key}: ", p.display()),
        (Some(p), None) => write!(f, "{}: {key}: ", p.display()),
        (None, Some(l)) => write!(f, "line {l}: {key}: "),
        (None, None) => write!(f, "{key}: "),
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        locate(f, &self.file, self.line, &self.key)?;
        f.write_str(&self.reason)
    }
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        locate(f, &self.file, self.line, &self.key)?;
        f.write_str(&self.message)
    }
}

impl ConfigError {
    pub(crate) fn new(line: Option<usize>, key: &str, reason: impl Into<String>) -> Self {
        ConfigError {
            file: None,
            line,
            key: key.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn in_file(mut self, file: &Path) -> Self {
        self.file = Some(file.to_owned());
        self
    }
}

/// One `server.N=host:quorumPort:electionPort[:participant|:observer][;[clientHost:]clientPort]`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerLine {
    /// The server id `N`.
    pub id: i64,
    /// The host (an IPv6 address without its brackets).
    pub host: String,
    /// The port learners connect to (the leader's quorum port).
    pub quorum_port: u16,
    /// The leader election port.
    pub election_port: u16,
    /// Whether it is an observer (`:observer`).
    pub observer: bool,
    /// The client address after `;`: an optional host and a port.
    pub client: Option<(Option<String>, u16)>,
    /// The line it is on.
    pub line: usize,
}

/// A parsed `zoo.cfg`. Unset keys are `None` (or ZooKeeper's default, as documented).
///
/// ```
/// let cfg = zkit_testkit::ZooCfg::parse(
///     "tickTime=200\ninitLimit=10\nsyncLimit=5\ndataDir=/tmp/zk/s1\nclientPort=2181\n\
///      server.1=127.0.0.1:2888:3888\nserver.2=127.0.0.1:2889:3889\nserver.3=127.0.0.1:2890:3890\n",
/// )?;
/// assert!(cfg.is_quorum());
/// assert_eq!(cfg.servers.len(), 3);
/// # Ok::<(), zkit_testkit::ConfigError>(())
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ZooCfg {
    /// The file it was read from.
    pub file: Option<PathBuf>,
    /// `dataDir` (required): snapshots, txn logs, `myid`.
    pub data_dir: Option<PathBuf>,
    /// `clientPort`.
    pub client_port: Option<u16>,
    /// `clientPortAddress` (ZooKeeper listens on every interface without it).
    pub client_port_address: Option<String>,
    /// `tickTime` (ZooKeeper's default, 3000 ms, when unset: see [`ZooCfg::tick`]).
    pub tick_time: Option<Duration>,
    /// `initLimit`, in ticks (required in an ensemble).
    pub init_limit: Option<u64>,
    /// `syncLimit`, in ticks (required in an ensemble).
    pub sync_limit: Option<u64>,
    /// `minSessionTimeout`.
    pub min_session_timeout: Option<Duration>,
    /// `maxSessionTimeout`.
    pub max_session_timeout: Option<Duration>,
    /// `maxClientCnxns` (0: unlimited).
    pub max_client_cnxns: Option<usize>,
    /// `4lw.commands.whitelist`, as written (ZooKeeper's default is `srvr`).
    pub four_letter_words: Option<String>,
    /// `extendedTypesEnabled` (or `zookeeper.extendedTypesEnabled`): TTL nodes.
    pub extended_types: bool,
    /// `DigestAuthenticationProvider.superDigest` (or with `zookeeper.` in front).
    pub super_digest: Option<String>,
    /// `jute.maxbuffer`: the largest request accepted.
    pub max_packet: Option<usize>,
    /// `forceSync` (`no` turns fsync of the txn log off).
    pub force_sync: Option<bool>,
    /// `snapCount`: txns between snapshots.
    pub snap_count: Option<u64>,
    /// `autopurge.snapRetainCount`, when `autopurge.purgeInterval` turns purging on.
    pub purge_keep: Option<usize>,
    /// `preAllocSize`, in KiB.
    pub prealloc_kib: Option<u64>,
    /// `standaloneEnabled` (default true): one listed server runs standalone.
    pub standalone_enabled: bool,
    /// `quorumListenOnAllIPs`: bind the quorum and election ports on every interface.
    pub quorum_listen_on_all_ips: bool,
    /// `peerType` (`observer` or `participant`), when set.
    pub peer_type: Option<String>,
    /// `zkit.secretFile`: the session secret every member of the ensemble shares (see
    /// [`MemberConfig`](super::MemberConfig)).
    pub secret_file: Option<PathBuf>,
    /// `zkit.sessionPasswords`: `zookeeper` derives session passwords as ZooKeeper does, so
    /// sessions move between real and zkit members of a mixed ensemble (guessable from the
    /// session id: see [`PasswordScheme::ZooKeeper`]); `keyed` (the default) is zkit's own.
    pub session_passwords: PasswordScheme,
    /// `zkit.proposalDigests`: as leader, attach the tree digest after each proposal as
    /// ZooKeeper does, so real followers of a mixed ensemble check zkit's apply (costs the
    /// leader a second copy of the tree).
    pub proposal_digests: bool,
    /// `secureClientPort`: a TLS client port (standalone only), with the `ssl.*` keys below.
    pub secure_client_port: Option<u16>,
    /// `secureClientPortAddress` (default: `clientPortAddress`, else every interface).
    pub secure_client_port_address: Option<String>,
    /// `ssl.keyStore.location`: a PEM file with the server's private key and certificate chain
    /// (`ssl.keyStore.type` must be PEM, or unset with a `.pem` name).
    pub ssl_key_store: Option<PathBuf>,
    /// `ssl.trustStore.location`: PEM CAs for client certificates (type as above).
    pub ssl_trust_store: Option<PathBuf>,
    /// `ssl.clientAuth`: `need` (ZooKeeper's default), `want` or `none`.
    pub ssl_client_auth: Option<String>,
    /// The `server.N` lines, in file order.
    pub servers: Vec<ServerLine>,
    /// What was accepted but deserves a word (unknown keys, an even number of voters, ...).
    pub warnings: Vec<ConfigWarning>,
    /// The line each key was (last) set on.
    lines: BTreeMap<String, usize>,
}

impl ZooCfg {
    /// Reads and parses `path`; errors and warnings name it.
    pub fn load(path: &Path) -> Result<ZooCfg, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(None, "zoo.cfg", format!("cannot read the file: {e}")).in_file(path)
        })?;
        let mut cfg = ZooCfg::parse(&text).map_err(|e| e.in_file(path))?;
        cfg.file = Some(path.to_owned());
        for w in &mut cfg.warnings {
            w.file = Some(path.to_owned());
        }
        Ok(cfg)
    }

    /// Parses the text of a `zoo.cfg` (Java properties: `key=value`, `key: value` or
    /// `key value`; `#` and `!` start comments; a trailing `\` continues a line).
    pub fn parse(text: &str) -> Result<ZooCfg, ConfigError> {
        let mut cfg = ZooCfg {
            standalone_enabled: true,
            ..ZooCfg::default()
        };
        let mut data_log_dir: Option<(PathBuf, usize)> = None;
        let mut purge_interval: u64 = 0;
        let mut retain: Option<usize> = None;
        let mut store_types: Vec<(String, String, usize)> = Vec::new();
        for (line, key, value) in properties(text) {
            let k = key.as_str();
            if let Some(prev) = cfg.lines.insert(key.clone(), line) {
                if !k.starts_with("server.") {
                    cfg.warn(
                        line,
                        k,
                        format!("set again (first on line {prev}); this value counts"),
                    );
                }
            }
            let v = value.as_str();
            let err = |reason: String| ConfigError::new(Some(line), k, reason);
            match k {
                "dataDir" => cfg.data_dir = Some(PathBuf::from(non_empty(v).map_err(err)?)),
                "dataLogDir" => data_log_dir = Some((PathBuf::from(v), line)),
                "clientPort" => cfg.client_port = Some(port(v, true).map_err(err)?),
                "clientPortAddress" => {
                    cfg.client_port_address = Some(non_empty(v).map_err(err)?.to_owned())
                }
                "tickTime" => {
                    let ms = number(v).map_err(err)?;
                    if ms == 0 {
                        return Err(err("must be at least 1 (milliseconds)".into()));
                    }
                    cfg.tick_time = Some(Duration::from_millis(ms));
                }
                "initLimit" => cfg.init_limit = Some(ticks(v).map_err(err)?),
                "syncLimit" => cfg.sync_limit = Some(ticks(v).map_err(err)?),
                "minSessionTimeout" => {
                    cfg.min_session_timeout = Some(millis(v).map_err(err)?);
                }
                "maxSessionTimeout" => {
                    cfg.max_session_timeout = Some(millis(v).map_err(err)?);
                }
                "maxClientCnxns" => cfg.max_client_cnxns = Some(number(v).map_err(err)? as usize),
                "4lw.commands.whitelist" => cfg.four_letter_words = Some(v.to_owned()),
                "extendedTypesEnabled" | "zookeeper.extendedTypesEnabled" => {
                    cfg.extended_types = boolean(v).map_err(err)?
                }
                "DigestAuthenticationProvider.superDigest"
                | "zookeeper.DigestAuthenticationProvider.superDigest" => {
                    if !v.contains(':') {
                        return Err(err(format!("expects user:BASE64, got {v:?}")));
                    }
                    cfg.super_digest = Some(v.to_owned());
                }
                "jute.maxbuffer" => cfg.max_packet = Some(number(v).map_err(err)? as usize),
                "forceSync" | "zookeeper.forceSync" => {
                    cfg.force_sync = Some(match v.to_ascii_lowercase().as_str() {
                        "yes" | "true" => true,
                        "no" | "false" => false,
                        _ => return Err(err(format!("expects yes or no, got {v:?}"))),
                    })
                }
                "snapCount" | "zookeeper.snapCount" => {
                    cfg.snap_count = Some(number(v).map_err(err)?.max(2))
                }
                "preAllocSize" | "zookeeper.preAllocSize" => {
                    cfg.prealloc_kib = Some(number(v).map_err(err)?)
                }
                "autopurge.purgeInterval" => purge_interval = number(v).map_err(err)?,
                "autopurge.snapRetainCount" => retain = Some(number(v).map_err(err)? as usize),
                "standaloneEnabled" => cfg.standalone_enabled = boolean(v).map_err(err)?,
                "quorumListenOnAllIPs" => cfg.quorum_listen_on_all_ips = boolean(v).map_err(err)?,
                "peerType" => match v {
                    "observer" | "participant" => cfg.peer_type = Some(v.to_owned()),
                    _ => return Err(err(format!("expects observer or participant, got {v:?}"))),
                },
                "zkit.sessionPasswords" => {
                    cfg.session_passwords = match v {
                        "zookeeper" => PasswordScheme::ZooKeeper,
                        "keyed" => PasswordScheme::Keyed,
                        _ => return Err(err(format!("expects zookeeper or keyed, got {v:?}"))),
                    }
                }
                "zkit.proposalDigests" => cfg.proposal_digests = boolean(v).map_err(err)?,
                "zkit.secretFile" => {
                    cfg.secret_file = Some(PathBuf::from(non_empty(v).map_err(err)?))
                }
                "dynamicConfigFile" => {
                    return Err(err(
                        "a dynamic config file is not supported: put the server.N lines in \
                         this file"
                            .into(),
                    ))
                }
                "secureClientPort" => cfg.secure_client_port = Some(port(v, true).map_err(err)?),
                "secureClientPortAddress" => {
                    cfg.secure_client_port_address = Some(non_empty(v).map_err(err)?.to_owned())
                }
                "ssl.keyStore.location" => {
                    cfg.ssl_key_store = Some(PathBuf::from(non_empty(v).map_err(err)?))
                }
                "ssl.trustStore.location" => {
                    cfg.ssl_trust_store = Some(PathBuf::from(non_empty(v).map_err(err)?))
                }
                "ssl.keyStore.type" | "ssl.trustStore.type" => {
                    store_types.push((k.to_owned(), v.to_owned(), line))
                }
                "ssl.clientAuth" => match v.to_ascii_lowercase().as_str() {
                    a @ ("need" | "want" | "none") => cfg.ssl_client_auth = Some(a.to_owned()),
                    _ => return Err(err(format!("expects need, want or none, got {v:?}"))),
                },
                _ if k.starts_with("server.") => {
                    let s = server_line(k, v, line)?;
                    if let Some(prev) = cfg.servers.iter().find(|p| p.id == s.id) {
                        return Err(err(format!(
                            "duplicate server id {} (also on line {})",
                            s.id, prev.line
                        )));
                    }
                    cfg.servers.push(s);
                }
                _ if k.starts_with("group.") || k.starts_with("weight.") => {
                    return Err(err(
                        "hierarchical quorums (group.N, weight.N) are not supported: zkit \
                         counts a majority of the voters"
                            .into(),
                    ))
                }
                _ if QUIET_KEYS.contains(&k)
                    || k.starts_with("metricsProvider.")
                    || k.starts_with("admin.") => {}
                _ if UNSUPPORTED_KEYS.contains(&k)
                    || k.starts_with("ssl.")
                    || k.starts_with("quorum.auth.")
                    || k.starts_with("authProvider.") =>
                {
                    cfg.warn(line, k, "not supported by zkit: ignored".into())
                }
                _ => cfg.warn(line, k, "unknown key: ignored".into()),
            }
        }
        for (key, ty, line) in store_types {
            if !ty.eq_ignore_ascii_case("PEM") {
                return Err(ConfigError::new(
                    Some(line),
                    &key,
                    format!("{ty} stores are not supported by zkit: use PEM files"),
                ));
            }
        }
        for (key, path) in [
            ("ssl.keyStore.location", &cfg.ssl_key_store),
            ("ssl.trustStore.location", &cfg.ssl_trust_store),
        ] {
            let typed = cfg.lines.contains_key(&key.replace("location", "type"));
            if let Some(p) = path
                .as_ref()
                .filter(|p| !typed && p.extension() != Some("pem".as_ref()))
            {
                return Err(ConfigError::new(
                    cfg.line_of(key),
                    key,
                    format!(
                        "{}: zkit reads PEM files only (set the type to PEM)",
                        p.display()
                    ),
                ));
            }
        }
        if let Some((dir, line)) = data_log_dir {
            if cfg.data_dir.as_ref() != Some(&dir) {
                return Err(ConfigError::new(
                    Some(line),
                    "dataLogDir",
                    "a txn log dir apart from dataDir is not supported: drop dataLogDir",
                ));
            }
        }
        // ZooKeeper purges every purgeInterval hours and keeps at least 3 snapshots; zkit
        // purges after each snapshot it writes.
        if purge_interval > 0 {
            cfg.purge_keep = Some(retain.map_or(3, |n| n.max(3)));
        }
        cfg.validate()?;
        Ok(cfg)
    }

    pub(crate) fn warn(&mut self, line: usize, key: &str, message: String) {
        self.warnings.push(ConfigWarning {
            file: None,
            line: Some(line),
            key: key.to_owned(),
            message,
        });
    }

    /// The line `key` was set on, if it was.
    pub fn line_of(&self, key: &str) -> Option<usize> {
        self.lines.get(key).copied()
    }

    pub(crate) fn error(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        self.error_at(self.line_of(key), key, reason)
    }

    /// An error at `line` of this file.
    pub(crate) fn error_at(
        &self,
        line: Option<usize>,
        key: &str,
        reason: impl Into<String>,
    ) -> ConfigError {
        let e = ConfigError::new(line, key, reason);
        match &self.file {
            Some(f) => e.in_file(f),
            None => e,
        }
    }

    /// Whether the file describes an ensemble (ZooKeeper's `QuorumPeerMain` runs a quorum
    /// peer): more than one server, an observer, or one server with `standaloneEnabled=false`.
    /// Otherwise it is a standalone server.
    pub fn is_quorum(&self) -> bool {
        self.servers.len() > 1 || (!self.servers.is_empty() && !self.standalone_enabled)
    }

    /// The voters' ids.
    pub fn voters(&self) -> impl Iterator<Item = i64> + '_ {
        self.servers.iter().filter(|s| !s.observer).map(|s| s.id)
    }

    /// The tickTime in force.
    pub fn tick(&self) -> Duration {
        self.tick_time.unwrap_or(DEFAULT_TICK_TIME)
    }

    fn validate(&mut self) -> Result<(), ConfigError> {
        if self.data_dir.is_none() {
            return Err(ConfigError::new(
                None,
                "dataDir",
                "is not set (it is required)",
            ));
        }
        if let (Some(min), Some(max)) = (self.min_session_timeout, self.max_session_timeout) {
            if min > max {
                return Err(self.error(
                    "minSessionTimeout",
                    format!(
                        "{} ms exceeds maxSessionTimeout ({} ms)",
                        min.as_millis(),
                        max.as_millis()
                    ),
                ));
            }
        }
        if !self.is_quorum() {
            if self.client_port.is_none() && self.servers.iter().all(|s| s.client.is_none()) {
                return Err(ConfigError::new(
                    None,
                    "clientPort",
                    "is not set (it is required)",
                ));
            }
            return Ok(());
        }
        for key in ["initLimit", "syncLimit"] {
            if self.line_of(key).is_none() {
                return Err(ConfigError::new(
                    None,
                    key,
                    "is not set (it is required with server.N lines)",
                ));
            }
        }
        let voters = self.voters().count();
        if voters == 0 {
            return Err(ConfigError::new(
                None,
                "server.N",
                "every server is an observer: an ensemble needs at least one participant",
            ));
        }
        // (`%`, not `is_multiple_of`: newer than the workspace's rust-version.)
        #[allow(clippy::manual_is_multiple_of)]
        let even = voters % 2 == 0;
        if even {
            let line = self.servers.iter().find(|s| !s.observer).map(|s| s.line);
            let tolerated = (voters - 1) / 2;
            self.warnings.push(ConfigWarning {
                file: None,
                line,
                key: "server.N".into(),
                message: format!(
                    "{voters} voters: an even number tolerates no more failures than \
                     {} would ({tolerated}); an odd number is advised",
                    voters - 1
                ),
            });
        }
        // Two members cannot listen on the same address.
        let mut seen: BTreeMap<(String, u16), (i64, usize)> = BTreeMap::new();
        for s in &self.servers {
            for p in [s.quorum_port, s.election_port] {
                if let Some((id, line)) = seen.insert((s.host.clone(), p), (s.id, s.line)) {
                    let what = if id == s.id {
                        "its quorum and election ports are the same".to_owned()
                    } else {
                        format!("{}:{p} is also server.{id}'s (line {line})", s.host)
                    };
                    return Err(ConfigError::new(
                        Some(s.line),
                        &format!("server.{}", s.id),
                        what,
                    ));
                }
            }
        }
        Ok(())
    }
}
