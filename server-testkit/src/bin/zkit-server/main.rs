//! `zkit-server`: the zkit-testkit ZooKeeper server as a process: standalone (flags), one
//! member of a multi-process ensemble (`--config zoo.cfg`), or an in-process ensemble with a
//! control port (`--ensemble N`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config_mode;
mod control;
mod control_faults;
mod ensemble_mode;
mod security;
mod standalone_control;

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use zkit_testkit::FourLetterWords;
use zkit_testkit::Server;

const HELP: &str = "\
zkit-server: a wire-compatible Apache ZooKeeper 3.8 server (in memory unless --data-dir)

USAGE:
    zkit-server [OPTIONS]                       a standalone server
    zkit-server --config PATH/zoo.cfg [--secret-file PATH]
                                                one member of an ensemble whose members run as
                                                separate processes, from ZooKeeper's own config
    zkit-server --ensemble N [ENSEMBLE OPTIONS] N servers in this process, with a control port

OPTIONS (standalone):
    --host HOST                   address to listen on (default 127.0.0.1)
    --port PORT                   port to listen on, 0 for any free port (default 2181)
    --tick-time MS                tickTime in ms (default 2000)
    --min-session-timeout MS      lowest negotiable session timeout (default 2 x tickTime)
    --max-session-timeout MS      highest negotiable session timeout (default 20 x tickTime)
    --max-packet BYTES            largest accepted request (default 1048575)
    --max-queued-bytes BYTES      bound of each connection's outbound queue (default 4194304): past
                                  it the connection reads no more requests until the client reads
    --max-client-cnxns N          connections one IP may hold at once, 0 = unlimited (default 60,
                                  like maxClientCnxns)
    --super-digest USER:BASE64    superDigest: this digest user bypasses ACLs
    --extended-types              enable TTL nodes (zookeeper.extendedTypesEnabled)
    --four-letter-words LIST      comma separated whitelist, or * for all (default srvr, like
                                  4lw.commands.whitelist); ruok is always answered (readiness)
    --data-dir DIR                keep data in a ZooKeeper dataDir (DIR/version-2), recovered at start;
                                  sessions survive a restart (their key is kept in DIR/zkit-secret)
    --no-fsync                    do not fsync the txn log (forceSync=no)
    --snap-count N                txns between snapshots (default 100000)
    --purge-keep N                after each snapshot keep only the N newest (default: keep all)
    --log-read-limit BYTES        txn log records up to this size are read unchecked (default and
                                  minimum 2097150, ZooKeeper's); longer ones load once their
                                  checksum is right, so every record the server wrote reloads
    --truncate-corrupt            cut the log at a corrupt entry instead of refusing to start
    --control-port PORT           a control port on 127.0.0.1 (0: any free port; printed on stdout
                                  as `control 127.0.0.1:PORT`) taking the fault commands below
    -h, --help                    print this help

SECURITY (standalone):
    --tls-cert FILE               PEM certificate chain (leaf first) of a TLS secure client port
                                  (ZooKeeper's secureClientPort), beside the plain port
    --tls-key FILE                PEM private key of that certificate
    --tls-ca FILE                 PEM CAs: every TLS client must present a certificate signed by
                                  one of them (ssl.clientAuth=need); without it, no client
                                  certificate is asked for
    --secure-port PORT            port of the secure client port, 0 for any free port (default 0)
    --secure-only                 no plain client port, only the secure one
    --sasl-users FILE             accept SASL DIGEST-MD5 logins of these users (id sasl:USER);
                                  the file holds one `user=password` per line (the password is
                                  everything after the first `=`, blank and `#` lines skipped),
                                  or is a JAAS file like real ZooKeeper's whose Server section
                                  lists `user_NAME=\"PASSWORD\"` (recognised by DigestLoginModule)
    --sasl-super-user NAME        this SASL user bypasses ACLs (zookeeper.superUser)
    --require-sasl                refuse every request of a connection that has not done SASL
                                  (zookeeper.sessionRequireClientSASLAuth=true)

The bound address is printed on stderr as `zkit-server listening on HOST:PORT`, the secure port
after it as `zkit-server secure port on HOST:PORT` (with --secure-only both name the TLS port).

CONFIG MODE (--config PATH):
    Reads the zoo.cfg a real ZooKeeper would: dataDir, clientPort, clientPortAddress, tickTime,
    initLimit, syncLimit, minSessionTimeout, maxSessionTimeout, maxClientCnxns,
    4lw.commands.whitelist, extendedTypesEnabled, forceSync, snapCount, preAllocSize,
    autopurge.*, jute.maxbuffer, standaloneEnabled, quorumListenOnAllIPs, (standalone only)
    secureClientPort, secureClientPortAddress, ssl.keyStore.location, ssl.trustStore.location
    (PEM files: ssl.*.type PEM or a .pem name) and ssl.clientAuth (need, the default, or none),
        server.N=host:quorumPort:electionPort[:participant|:observer][;[clientHost:]clientPort]
    The member's id is in dataDir/myid. With no server.N line (or one) it is a standalone
    server. Unknown keys are warned about and ignored; an even number of voters is allowed with
    a warning. A bad file, a missing myid or a port in use is an error naming the key and the
    line (exit status 2).
    Session secret: every member of one ensemble must name the same secret file, with
    `zkit.secretFile=PATH` in each zoo.cfg (real ZooKeeper ignores the key) or --secret-file
    PATH; the first member to start creates it (mode 0600). Without one, each member keeps its
    own in dataDir/zkit-secret, and a session whose server fails expires instead of moving.

ENSEMBLE OPTIONS (--ensemble N):
    --ensemble N                  voting servers (ids 1..N; indexes 0..N-1)
    --observers M                 observers after them (default 0)
    --control-port PORT           control port on 127.0.0.1, 0 for any free port (default 0)
    --data-dir DIR                each server keeps a ZooKeeper dataDir in DIR/sINDEX (default:
                                  in memory); with --no-fsync, no fsync
    --read-only                   read-only mode (readonlymode.enabled): a server cut off from the
                                  quorum serves the clients that asked for read-only
    --tick-time, --min-session-timeout, --max-session-timeout, --extended-types and
    --four-letter-words as above
  Once a leader serves, stdout gets one `127.0.0.1:PORT` line per server (by index), then
  `connect HOST:PORT,HOST:PORT,...` and `control 127.0.0.1:PORT`. The control port takes one
  command per line and answers each with one line, `ok ...` or `error ...`:
    kill I          crash server I (its clients are disconnected)
    stop I          stop server I cleanly
    restart I       start server I again, same ports, from its disk
    partition 0,1|2 cut the quorum links between the groups (a server in none is cut off)
    isolate I       cut server I off from every other
    heal            lift every cut
    expire SESSION  expire a session now (0x-hex or decimal id)
    leader          wait (up to 60 s) for a leader every reachable server follows:
                    `ok INDEX 127.0.0.1:PORT`
    status          every server's mode: `ok 0=leader 1=follower 2=down`
    check           wait until the serving servers agree, compare their trees: `ok zxid 0x..`
    help            the list of commands
  Targeted faults (also on a standalone server with --control-port):
    fault [session=S] [op=NAME] [path=PREFIX] [times=N] ACTION
                    install a rule picking requests (every condition given must hold; op is
                    ZooKeeper's opcode name, create covering every create); ACTION is
                    disconnect (apply, then close the connection instead of replying),
                    delay=MS (apply, reply late), fail=ERROR (e.g. NodeExists, -110: not
                    applied) or drop (neither applied nor answered): `ok rule ID`
    fired ID        how often rule ID fired: `ok N`
    unfault ID      remove rule ID;  clear-faults: remove every rule
    session S [delay=MS] [drop-pings] [hold-events] [cut-every=MS]
                    network faults of one session: its frames delayed, its pings dropped (it
                    alone expires), its watch events held, its connection cut every MS; with
                    no option the faults are lifted (held events are sent)
    cut S           close session S's connection now (the session lives on)

Logging follows RUST_LOG (default info). Ctrl-C or SIGTERM stops the server(s).
";

/// Which of the three ways the process runs.
enum Mode {
    Standalone(Args),
    Config(config_mode::Args),
    Ensemble(ensemble_mode::Args),
}

/// Picks the mode from the arguments: `--config` or `--ensemble` anywhere selects it.
fn parse_mode(args: Vec<String>) -> Result<Option<Mode>, String> {
    let has = |name: &str| {
        args.iter()
            .any(|a| a == name || a.starts_with(&format!("{name}=")))
    };
    if args.iter().any(|a| a == "-h" || a == "--help") {
        return Ok(None);
    }
    match (has("--config"), has("--ensemble")) {
        (true, true) => Err("--config and --ensemble exclude each other".into()),
        (true, false) => config_mode::parse(args.into_iter()).map(|a| Some(Mode::Config(a))),
        (false, true) => ensemble_mode::parse(args.into_iter()).map(|a| Some(Mode::Ensemble(a))),
        (false, false) => Ok(parse(args.into_iter())?.map(Mode::Standalone)),
    }
}

struct Args {
    host: String,
    port: u16,
    control_port: Option<u16>,
    builder: zkit_testkit::Builder,
    security: security::SecurityArgs,
}

fn parse(args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut host = "127.0.0.1".to_owned();
    let mut port: u16 = 2181;
    let mut control_port = None;
    let mut b = Server::builder();
    let mut popts = zkit_testkit::PersistOptions::default();
    let mut words = "srvr".to_owned();
    let mut sec = security::SecurityArgs::default();
    let mut it = args.peekable();
    fn ms(v: &str, flag: &str) -> Result<Duration, String> {
        v.parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| format!("{flag} expects milliseconds, got {v:?}"))
    }
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (a.clone(), None),
        };
        let mut value = || -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--host" => host = value()?,
            "--port" => {
                let v = value()?;
                port = v
                    .parse()
                    .map_err(|_| format!("--port expects a port, got {v:?}"))?;
            }
            "--control-port" => {
                let v = value()?;
                control_port = Some(
                    v.parse()
                        .map_err(|_| format!("--control-port expects a port, got {v:?}"))?,
                );
            }
            "--tick-time" => b = b.tick_time(ms(&value()?, "--tick-time")?),
            "--min-session-timeout" => {
                b = b.min_session_timeout(ms(&value()?, "--min-session-timeout")?)
            }
            "--max-session-timeout" => {
                b = b.max_session_timeout(ms(&value()?, "--max-session-timeout")?)
            }
            "--max-packet" => {
                let v = value()?;
                b = b.max_packet(
                    v.parse()
                        .map_err(|_| format!("--max-packet expects bytes, got {v:?}"))?,
                );
            }
            "--max-queued-bytes" | "--max-client-cnxns" => {
                let v = value()?;
                let n: usize = v
                    .parse()
                    .map_err(|_| format!("{flag} expects a number, got {v:?}"))?;
                b = if flag == "--max-queued-bytes" {
                    b.max_queued_bytes(n)
                } else {
                    b.max_client_cnxns(n)
                };
            }
            "--super-digest" => {
                let v = value()?;
                if !v.contains(':') {
                    return Err(format!("--super-digest expects user:BASE64, got {v:?}"));
                }
                b = b.super_digest(v);
            }
            "--extended-types" => b = b.extended_types(true),
            "--four-letter-words" => words = value()?,
            "--data-dir" => b = b.data_dir(value()?),
            "--no-fsync" => popts = popts.force_sync(false),
            "--truncate-corrupt" => popts = popts.truncate_corrupt(true),
            "--log-read-limit" => {
                let v = value()?;
                popts = popts.read_limit(
                    v.parse()
                        .map_err(|_| format!("--log-read-limit expects bytes, got {v:?}"))?,
                );
            }
            "--snap-count" | "--purge-keep" => {
                let v = value()?;
                let n: u64 = v
                    .parse()
                    .map_err(|_| format!("{flag} expects a number, got {v:?}"))?;
                popts = if flag == "--snap-count" {
                    popts.snap_count(n)
                } else {
                    popts.purge_keep(Some(n as usize))
                };
            }
            "--tls-cert" => sec.tls_cert = Some(value()?),
            "--tls-key" => sec.tls_key = Some(value()?),
            "--tls-ca" => sec.tls_ca = Some(value()?),
            "--secure-port" => {
                let v = value()?;
                sec.secure_port = Some(
                    v.parse()
                        .map_err(|_| format!("--secure-port expects a port, got {v:?}"))?,
                );
            }
            "--secure-only" => sec.secure_only = true,
            "--sasl-users" => sec.sasl_users = Some(value()?),
            "--sasl-super-user" => sec.sasl_super_user = Some(value()?),
            "--require-sasl" => sec.require_sasl = true,
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    // `ruok` is always answered so scripts can poll for readiness; the rest follows the list.
    b = b.four_letter_words(FourLetterWords::parse(&format!("{words},ruok")));
    Ok(Some(Args {
        host,
        port,
        control_port,
        builder: b.persist_options(popts),
        security: sec,
    }))
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {host}"))
}

async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn main() -> ExitCode {
    let mode = match parse_mode(std::env::args().skip(1).collect()) {
        Ok(Some(m)) => m,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("zkit-server: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("zkit-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(async move {
        match mode {
            Mode::Standalone(args) => standalone(args).await,
            Mode::Config(args) => config_mode::run(args, terminated()).await,
            Mode::Ensemble(args) => ensemble_mode::run(args, terminated()).await,
        }
    });
    let t = std::time::Instant::now();
    rt.shutdown_timeout(Duration::from_secs(1));
    tracing::debug!(elapsed = ?t.elapsed(), "runtime shut down");
    code
}

/// The standalone server of the flags, until SIGTERM or Ctrl-C.
async fn standalone(args: Args) -> ExitCode {
    let addr = match resolve(&args.host, args.port) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("zkit-server: {e}");
            return ExitCode::from(2);
        }
    };
    let builder = match args.security.apply(args.builder.listen(addr), addr.ip()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("zkit-server: {e}");
            return ExitCode::from(2);
        }
    };
    let mut server = match builder.start().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("zkit-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("zkit-server listening on {}", server.connect_string());
    if let Some(secure) = server.secure_addr() {
        eprintln!("zkit-server secure port on {secure}");
    }
    match args.control_port {
        Some(port) => {
            if let Err(e) = standalone_control::serve(&server, port, terminated()).await {
                eprintln!("zkit-server: {e}");
                server.stop().await;
                return ExitCode::from(2);
            }
        }
        None => terminated().await,
    }
    tracing::info!("shutting down");
    server.stop().await;
    ExitCode::SUCCESS
}
