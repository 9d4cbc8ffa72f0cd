//! One member of an ensemble whose members run in separate processes (or on separate hosts),
//! configured from ZooKeeper's own `zoo.cfg` and `myid` files: what `zkit-server --config`
//! runs. It is the same member as in an in-process [`Ensemble`](super::Ensemble) (client side,
//! replicated peer, apply task; see `node`), with its addresses and settings from the file.
//!
//! Session secret: a client's session moves between members, so every member must derive
//! session passwords from the same secret. Members of one ensemble name the same secret file
//! (`zkit.secretFile=PATH` in every `zoo.cfg`, or [`MemberConfig::secret_file`]); the first
//! member to start creates it, the others read it. Without one, each member keeps its own in
//! `dataDir/zkit-secret`, and a client whose server fails gets its session expired when it
//! reconnects elsewhere (the member says so in a warning at start).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::builder::{config_text, quorum_config, ConfigEntry};
use super::handle::{ServerHandle, ServerMode};
use super::node::{Node, Settings};
use super::zoocfg::{parse_myid, ConfigError, ConfigWarning, ZooCfg};
use crate::net::FourLetterWords;
use crate::persist::{secret, PersistOptions};
use crate::quorum::shell::Listeners;
use crate::quorum::Sid;
use crate::server::{self, fresh_secret, Error};

/// What one member needs: its `zoo.cfg` and its server id (from `dataDir/myid`).
///
/// ```no_run
/// # async fn f() -> Result<(), zkit_testkit::Error> {
/// use zkit_testkit::{Member, MemberConfig, ZooCfg};
/// let cfg = ZooCfg::load("/tmp/zk/s1/zoo.cfg".as_ref())?;
/// let member = Member::start(MemberConfig::from_zoo_cfg(cfg)?).await?;
/// println!("server.{} serves clients on {}", member.id(), member.client_addr());
/// member.stop().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct MemberConfig {
    cfg: ZooCfg,
    myid: Sid,
    secret_file: Option<PathBuf>,
    four_letter_words: FourLetterWords,
}

impl MemberConfig {
    /// The member `cfg` describes, whose id is in `dataDir/myid` (read here).
    pub fn from_zoo_cfg(cfg: ZooCfg) -> Result<MemberConfig, ConfigError> {
        let dir = cfg.data_dir.clone().unwrap_or_default();
        let path = dir.join("myid");
        let myid = match std::fs::read_to_string(&path) {
            Ok(text) => {
                parse_myid(&text).map_err(|r| ConfigError::new(None, "myid", r).in_file(&path))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let ids: Vec<String> = cfg.servers.iter().map(|s| s.id.to_string()).collect();
                return Err(ConfigError::new(
                    None,
                    "myid",
                    format!(
                        "missing: write this server's id (one of {}) into it",
                        ids.join(", ")
                    ),
                )
                .in_file(&path));
            }
            Err(e) => {
                return Err(
                    ConfigError::new(None, "myid", format!("cannot read it: {e}")).in_file(&path),
                )
            }
        };
        MemberConfig::with_myid(cfg, myid).map_err(|e| match e.key.as_str() {
            "myid" => e.in_file(&path),
            _ => e,
        })
    }

    /// The member of `cfg` whose server id is `myid`.
    pub fn with_myid(mut cfg: ZooCfg, myid: i64) -> Result<MemberConfig, ConfigError> {
        if !cfg.is_quorum() {
            return Err(cfg.error(
                "server.N",
                "this file describes a standalone server, not an ensemble member",
            ));
        }
        if let Some(line) = cfg.line_of("secureClientPort") {
            cfg.warn(
                line,
                "secureClientPort",
                "served by a standalone zkit-server only, not by an ensemble member: ignored"
                    .into(),
            );
        }
        let Some(me) = cfg.servers.iter().find(|s| s.id == myid).cloned() else {
            let ids: Vec<String> = cfg.servers.iter().map(|s| s.id.to_string()).collect();
            return Err(ConfigError::new(
                None,
                "myid",
                format!(
                    "says {myid}, but there is no server.{myid} line (servers: {})",
                    ids.join(", ")
                ),
            ));
        };
        let key = format!("server.{myid}");
        match (me.client.as_ref().map(|c| c.1), cfg.client_port) {
            (None, None) => {
                return Err(cfg.error(
                    "clientPort",
                    format!("is not set, and {key} names no client port (`;PORT`)"),
                ))
            }
            (Some(a), Some(b)) if a != b => {
                return Err(cfg.error_at(
                    Some(me.line),
                    &key,
                    format!(
                        "client port {a} differs from clientPort={b} (line {})",
                        cfg.line_of("clientPort").unwrap_or(0)
                    ),
                ))
            }
            _ => {}
        }
        if let Some(t) = &cfg.peer_type {
            let mine = if me.observer {
                "observer"
            } else {
                "participant"
            };
            if t != mine {
                let line = cfg.line_of("peerType");
                cfg.warnings.push(ConfigWarning {
                    file: cfg.file.clone(),
                    line,
                    key: "peerType".into(),
                    message: format!("says {t}, but {key} is a {mine}: the server line counts"),
                });
            }
        }
        let words = FourLetterWords::parse(cfg.four_letter_words.as_deref().unwrap_or("srvr"));
        let secret_file = cfg.secret_file.clone();
        Ok(MemberConfig {
            cfg,
            myid,
            secret_file,
            four_letter_words: words,
        })
    }

    /// The session secret file every member of the ensemble shares (overrides
    /// `zkit.secretFile`).
    pub fn secret_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.secret_file = Some(path.into());
        self
    }

    /// The four-letter words served (default: `4lw.commands.whitelist`, else `srvr`).
    pub fn four_letter_words(mut self, words: impl Into<FourLetterWords>) -> Self {
        self.four_letter_words = words.into();
        self
    }

    /// The member's server id.
    pub fn id(&self) -> i64 {
        self.myid
    }

    /// The configuration.
    pub fn zoo_cfg(&self) -> &ZooCfg {
        &self.cfg
    }

    /// Whether members will share a secret file (sessions can move between them).
    pub fn shares_secret(&self) -> bool {
        self.secret_file.is_some()
    }
}

/// The client-side settings of `cfg` (standalone or member): timeouts, limits, words.
pub(crate) fn client_settings(cfg: &ZooCfg) -> server::Builder {
    let mut b = server::Builder::default()
        .tick_time(cfg.tick())
        .extended_types(cfg.extended_types)
        .four_letter_words(cfg.four_letter_words.as_deref().unwrap_or("srvr"));
    if let Some(d) = cfg.min_session_timeout {
        b = b.min_session_timeout(d);
    }
    if let Some(d) = cfg.max_session_timeout {
        b = b.max_session_timeout(d);
    }
    if let Some(n) = cfg.max_client_cnxns {
        b = b.max_client_cnxns(n);
    }
    if let Some(n) = cfg.max_packet {
        b = b.max_packet(n);
    }
    if let Some(d) = &cfg.super_digest {
        b = b.super_digest(d.clone());
    }
    b
}

impl server::Builder {
    /// A standalone server as `cfg` describes it (a `zoo.cfg` without an ensemble, see
    /// [`ZooCfg::is_quorum`]): its client address, data dir, timeouts, limits and
    /// four-letter words.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), zkit_testkit::Error> {
    /// let cfg = zkit_testkit::ZooCfg::load("/tmp/zk/zoo.cfg".as_ref())?;
    /// let server = zkit_testkit::Builder::from_zoo_cfg(&cfg)?.start().await?;
    /// # let _ = server;
    /// # Ok(()) }
    /// ```
    pub fn from_zoo_cfg(cfg: &ZooCfg) -> Result<server::Builder, ConfigError> {
        let line_client = cfg.servers.first().and_then(|s| s.client.clone());
        let Some(port) = cfg.client_port.or(line_client.as_ref().map(|c| c.1)) else {
            return Err(cfg.error("clientPort", "is not set (it is required)"));
        };
        let host = line_client
            .and_then(|c| c.0)
            .or_else(|| cfg.client_port_address.clone())
            .unwrap_or_else(|| "0.0.0.0".to_owned());
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| cfg.error("clientPortAddress", format!("cannot resolve {host}")))?;
        let mut b = client_settings(cfg)
            .listen(addr)
            .persist_options(persist_options(cfg));
        if let Some(d) = &cfg.data_dir {
            b = b.data_dir(d.clone());
        }
        super::zoocfg_tls::secure_port(cfg, b)
    }
}

/// The data dir settings of `cfg`.
pub(crate) fn persist_options(cfg: &ZooCfg) -> PersistOptions {
    let mut o = PersistOptions::default();
    if let Some(f) = cfg.force_sync {
        o = o.force_sync(f);
    }
    if let Some(n) = cfg.snap_count {
        o = o.snap_count(n);
    }
    if let Some(k) = cfg.prealloc_kib {
        o = o.prealloc(k.saturating_mul(1024));
    }
    o.purge_keep(cfg.purge_keep)
}

/// The address `host:port` names (the first one the resolver gives).
async fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let mut addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("cannot resolve {host}: no address"))
}

/// One running member of a multi-process ensemble. Dropping it stops it at once (as a kill).
#[derive(Debug)]
pub struct Member {
    node: Node,
    progress: watch::Sender<u64>,
}

impl Member {
    /// Starts the member: recovers its data dir, listens on its client, quorum and election
    /// ports, and joins the election (clients are refused until it serves). A port in use, a
    /// host that does not resolve or a damaged data dir is an error naming the key or file.
    pub async fn start(mc: MemberConfig) -> Result<Member, Error> {
        let cfg = &mc.cfg;
        let sid = mc.myid;
        let key = format!("server.{sid}");
        let mut election_addrs = BTreeMap::new();
        let mut quorum_addrs = BTreeMap::new();
        let mut entries = Vec::new();
        for s in &cfg.servers {
            let k = format!("server.{}", s.id);
            let at = |r: String| cfg.error_at(Some(s.line), &k, r);
            election_addrs.insert(s.id, resolve(&s.host, s.election_port).await.map_err(at)?);
            quorum_addrs.insert(s.id, resolve(&s.host, s.quorum_port).await.map_err(at)?);
            entries.push(ConfigEntry {
                sid: s.id,
                host: s.host.clone(),
                quorum_port: s.quorum_port,
                election_port: s.election_port,
                observer: s.observer,
                client: s.client.as_ref().map(|(h, p)| match h {
                    Some(h) => format!("{h}:{p}"),
                    None => format!("0.0.0.0:{p}"),
                }),
            });
        }
        let Some(me) = cfg.servers.iter().find(|s| s.id == sid) else {
            return Err(cfg
                .error_at(None, "myid", format!("no server.{sid} line"))
                .into());
        };
        let (client_key, client_line) = match &me.client {
            Some(_) => (key.clone(), Some(me.line)),
            None => ("clientPort".to_owned(), cfg.line_of("clientPort")),
        };
        let client_host = me
            .client
            .as_ref()
            .and_then(|(h, _)| h.clone())
            .or_else(|| cfg.client_port_address.clone())
            .unwrap_or_else(|| "0.0.0.0".to_owned());
        let client_port = me.client.as_ref().map(|c| c.1).or(cfg.client_port);
        let client_addr = resolve(&client_host, client_port.unwrap_or(0))
            .await
            .map_err(|r| cfg.error_at(client_line, &client_key, r))?;

        let secret = member_secret(&mc).await?;
        let server = client_settings(cfg).four_letter_words(mc.four_letter_words.clone());
        let mut core = server.core_config(secret)?;
        core.session_passwords = cfg.session_passwords;
        core.proposal_digests = cfg.proposal_digests;
        let voters = cfg.voters().collect();
        let observers = cfg
            .servers
            .iter()
            .filter(|s| s.observer)
            .map(|s| s.id)
            .collect();
        let (peer, tick_interval) = quorum_config(
            voters,
            observers,
            cfg.tick(),
            cfg.init_limit.unwrap_or(10),
            cfg.sync_limit.unwrap_or(5),
            super::builder::DEFAULT_FINALIZE_WAIT,
        );
        let mut seed = [0u8; 8];
        getrandom::fill(&mut seed).map_err(|e| Error::Random(e.to_string()))?;
        let mut settings = Settings {
            server,
            core,
            peer,
            election_addrs,
            quorum_addrs,
            tick_interval,
            seed: u64::from_le_bytes(seed),
            persist: persist_options(cfg),
        };

        let any = |a: SocketAddr| match cfg.quorum_listen_on_all_ips {
            true => SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), a.port()),
            false => a,
        };
        let (e, q) = (
            any(settings.election_addrs[&sid]),
            any(settings.quorum_addrs[&sid]),
        );
        let listeners = match Listeners::bind(e, q).await {
            Ok(l) => l,
            Err(err) => {
                // Which of the two failed: try the election port alone.
                let which = match tokio::net::TcpListener::bind(e).await {
                    Ok(_) => format!("quorum port {q}"),
                    Err(_) => format!("election port {e}"),
                };
                return Err(cfg
                    .error_at(
                        Some(me.line),
                        &key,
                        format!("cannot listen on the {which}: {err}"),
                    )
                    .into());
            }
        };
        let data_dir = cfg.data_dir.clone().unwrap_or_default();
        let mut node = Node::new((sid - 1) as usize, sid, me.observer, Some(data_dir));
        node.client_addr = client_addr;
        let prepared = node.prepare(&settings).await.map_err(|e| match e {
            Error::Bind { addr, source } => Error::ZooCfg(cfg.error_at(
                client_line,
                &client_key,
                format!("cannot listen on {addr}: {source}"),
            )),
            other => other,
        })?;
        for entry in entries.iter_mut().filter(|en| en.sid == sid) {
            entry.client = Some(node.client_addr.to_string());
        }
        settings.peer.config = config_text(&entries);
        let progress = watch::channel(0u64).0;
        node.launch(&settings, listeners, prepared, &progress);
        Ok(Member { node, progress })
    }

    /// Its server id.
    pub fn id(&self) -> i64 {
        self.node.sid
    }

    /// Its client address (as bound: with `clientPort=0`, the port the system chose).
    pub fn client_addr(&self) -> SocketAddr {
        self.node.client_addr
    }

    /// A look at it: mode, role, tree, sessions. Its index is `id - 1`, and so are the
    /// leader indexes of its [`QuorumRole`](super::QuorumRole).
    pub fn server(&self) -> ServerHandle<'_> {
        ServerHandle { node: &self.node }
    }

    /// Waits until it serves clients (as leader, follower or observer) and returns how, or
    /// fails with [`Error::Timeout`] after `patience`.
    pub async fn wait_serving(&self, patience: Duration) -> Result<ServerMode, Error> {
        let mut rx = self.progress.subscribe();
        let deadline = Instant::now() + patience;
        loop {
            rx.borrow_and_update();
            let mode = self.server().mode();
            if mode.zookeeper_name().is_some() {
                return Ok(mode);
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(format!("server.{} to serve", self.id())));
            }
            let recheck = (Instant::now() + Duration::from_millis(250)).min(deadline);
            let _ = tokio::time::timeout_at(recheck, rx.changed()).await;
        }
    }

    /// Stops it cleanly: its disk is synced, its ports closed.
    pub async fn stop(mut self) {
        self.node.shut_down(false).await;
    }

    /// Stops it as a crash would (what was not synced yet may be lost).
    pub async fn kill(mut self) {
        self.node.shut_down(true).await;
    }
}

/// The member's session secret: the shared file, else its own in its data dir.
async fn member_secret(mc: &MemberConfig) -> Result<crate::core::Secret, Error> {
    let fresh = fresh_secret()?;
    let (shared, dir) = (mc.secret_file.clone(), mc.cfg.data_dir.clone());
    let join = |e: tokio::task::JoinError| Error::Config(format!("secret task failed: {e}"));
    match shared {
        Some(path) => {
            let p = path.clone();
            tokio::task::spawn_blocking(move || secret::load_or_create_shared(&p, &fresh))
                .await
                .map_err(join)?
                .map_err(|e| {
                    let line = mc.cfg.line_of("zkit.secretFile");
                    mc.cfg
                        .error_at(line, "zkit.secretFile", e.to_string())
                        .into()
                })
        }
        None => {
            if mc.cfg.session_passwords != crate::core::PasswordScheme::ZooKeeper {
                tracing::warn!(
                    "no zkit.secretFile: this member keeps its own session secret, so a session \
                 cannot move to another member (its client gets SessionExpired there); give \
                 every member the same zkit.secretFile"
                );
            }
            let dir = dir.unwrap_or_default();
            Ok(
                tokio::task::spawn_blocking(move || secret::load_or_create(&dir, &fresh))
                    .await
                    .map_err(join)??,
            )
        }
    }
}
