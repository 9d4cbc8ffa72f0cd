//! `zkit-server --ensemble N`: an in-process ensemble, and its control port. One task owns
//! the ensemble and carries out the commands in the order they arrive (from any number of
//! control connections); each connection task reads lines and writes the answers.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use zkit_testkit::{Ensemble, FourLetterWords, ServerMode};

use crate::control::{self, Command};
use crate::control_faults;

/// Commands waiting for the ensemble's task (each connection has at most one in flight).
const QUEUE: usize = 64;

/// What `--ensemble` was given.
pub struct Args {
    builder: zkit_testkit::EnsembleBuilder,
    control_port: u16,
}

/// Parses the arguments of ensemble mode (`--ensemble` among them).
pub fn parse(args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut b = Ensemble::builder();
    let mut voters = None;
    let mut observers = 0usize;
    let mut control_port = 0u16;
    let mut words = "srvr".to_owned();
    let mut popts = zkit_testkit::PersistOptions::default();
    let mut it = args.peekable();
    let ms = |v: &str, flag: &str| {
        v.parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| format!("{flag} expects milliseconds, got {v:?}"))
    };
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
        let count = |v: String, flag: &str| {
            v.parse::<usize>()
                .map_err(|_| format!("{flag} expects a number, got {v:?}"))
        };
        match flag.as_str() {
            "--ensemble" => voters = Some(count(value()?, "--ensemble")?),
            "--observers" => observers = count(value()?, "--observers")?,
            "--control-port" => {
                let v = value()?;
                control_port = v
                    .parse()
                    .map_err(|_| format!("--control-port expects a port, got {v:?}"))?;
            }
            "--data-dir" => b = b.data_dir(value()?),
            "--tick-time" => b = b.tick_time(ms(&value()?, "--tick-time")?),
            "--min-session-timeout" => {
                b = b.min_session_timeout(ms(&value()?, "--min-session-timeout")?)
            }
            "--max-session-timeout" => {
                b = b.max_session_timeout(ms(&value()?, "--max-session-timeout")?)
            }
            "--extended-types" => b = b.extended_types(true),
            "--read-only" => b = b.read_only(true),
            "--four-letter-words" => words = value()?,
            "--no-fsync" => popts = popts.force_sync(false),
            "-h" | "--help" => return Err("--help takes no other argument".into()),
            other => {
                return Err(format!(
                    "{other} is not available with --ensemble (see --help)"
                ))
            }
        }
    }
    let Some(voters) = voters.filter(|&n| n > 0) else {
        return Err("--ensemble expects a number of servers (1 or more)".into());
    };
    b = b
        .servers(voters)
        .observers(observers)
        .four_letter_words(FourLetterWords::parse(&format!("{words},ruok")))
        .persist_options(popts);
    Ok(Args {
        builder: b,
        control_port,
    })
}

/// Runs the ensemble until SIGTERM or Ctrl-C.
pub async fn run(args: Args, terminated: impl std::future::Future<Output = ()>) -> ExitCode {
    let control_addr = SocketAddr::from(([127, 0, 0, 1], args.control_port));
    let listener = match TcpListener::bind(control_addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("zkit-server: --control-port: cannot listen on {control_addr}: {e}");
            return ExitCode::from(2);
        }
    };
    let mut ensemble = match args.builder.start().await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("zkit-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = ensemble.wait_for_leader().await {
        eprintln!("zkit-server: the ensemble did not elect a leader: {e}");
        return ExitCode::FAILURE;
    }
    let control = listener.local_addr().unwrap_or(control_addr);
    let mut out = String::new();
    for s in ensemble.servers() {
        out.push_str(&format!("{}\n", s.addr()));
    }
    out.push_str(&format!("connect {}\n", ensemble.connect_string()));
    out.push_str(&format!("control {control}\n"));
    // A reader that went away must not stop the ensemble: write errors are ignored.
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
    drop(stdout);
    eprintln!(
        "zkit-server: ensemble of {} serving on {}; control port {control}",
        ensemble.len(),
        ensemble.connect_string()
    );

    let (tx, mut rx) = mpsc::channel::<(Command, oneshot::Sender<String>)>(QUEUE);
    let mut conns = JoinSet::new();
    tokio::pin!(terminated);
    loop {
        tokio::select! {
            _ = &mut terminated => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    conns.spawn(connection(stream, tx.clone()));
                }
                Err(e) => tracing::warn!(error = %e, "control port: accept failed"),
            },
            Some((cmd, reply)) = rx.recv() => {
                let answer = execute(&mut ensemble, cmd).await;
                let _ = reply.send(answer);
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    tracing::info!("shutting down");
    conns.shutdown().await;
    for i in 0..ensemble.len() {
        ensemble.stop(i).await;
    }
    ExitCode::SUCCESS
}

/// One control connection: a line in, a line out, until it closes.
pub(crate) async fn connection(
    mut stream: TcpStream,
    tx: mpsc::Sender<(Command, oneshot::Sender<String>)>,
) {
    let mut buf = BytesMut::with_capacity(256);
    loop {
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line = buf.split_to(pos + 1);
            let text = String::from_utf8_lossy(&line[..pos]);
            let answer = match control::parse(text.trim_end_matches('\r')) {
                Ok(None) => continue,
                Ok(Some(cmd)) => {
                    let (reply, answer) = oneshot::channel();
                    if tx.send((cmd, reply)).await.is_err() {
                        return;
                    }
                    match answer.await {
                        Ok(a) => a,
                        Err(_) => return,
                    }
                }
                Err(e) => control::one_line(false, &e),
            };
            if stream.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
        }
        if buf.len() > control::MAX_LINE {
            let msg = control::one_line(false, "line too long");
            let _ = stream.write_all(msg.as_bytes()).await;
            return;
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// The index is a server's, or the answer says which indexes there are.
fn check_index(e: &Ensemble, i: usize) -> Result<(), String> {
    if i < e.len() {
        Ok(())
    } else {
        Err(format!(
            "no server {i}: servers are 0 to {}",
            e.len().saturating_sub(1)
        ))
    }
}

/// Carries out one command; the answer line.
async fn execute(e: &mut Ensemble, cmd: Command) -> String {
    let r = run_command(e, cmd).await;
    match r {
        Ok(text) => control::one_line(true, &text),
        Err(text) => control::one_line(false, &text),
    }
}

async fn run_command(e: &mut Ensemble, cmd: Command) -> Result<String, String> {
    match cmd {
        Command::Kill(i) => {
            check_index(e, i)?;
            e.kill(i).await;
            Ok(format!("killed {i}"))
        }
        Command::Stop(i) => {
            check_index(e, i)?;
            e.stop(i).await;
            Ok(format!("stopped {i}"))
        }
        Command::Restart(i) => {
            check_index(e, i)?;
            e.restart(i)
                .await
                .map_err(|err| format!("restart {i}: {err}"))?;
            Ok(format!("restarted {i}"))
        }
        Command::Partition(groups) => {
            for &i in groups.iter().flatten() {
                check_index(e, i)?;
            }
            let refs: Vec<&[usize]> = groups.iter().map(|g| g.as_slice()).collect();
            e.partition(&refs).await;
            Ok(format!("partitioned {}", control::groups_text(&groups)))
        }
        Command::Isolate(i) => {
            check_index(e, i)?;
            e.isolate(i).await;
            Ok(format!("isolated {i}"))
        }
        Command::Heal => {
            e.heal().await;
            Ok("healed".into())
        }
        Command::Expire(id) => {
            if e.expire_session(id) {
                Ok(format!("expired 0x{id:x}"))
            } else {
                Err(format!("no session 0x{id:x} (or no leader to expire it)"))
            }
        }
        Command::Leader => {
            let l = e.wait_for_leader().await.map_err(|err| err.to_string())?;
            Ok(format!("{l} {}", e.server(l).addr()))
        }
        Command::Status => Ok(e
            .servers()
            .map(|s| {
                let mode = match s.mode() {
                    ServerMode::Down => "down",
                    ServerMode::NotServing => "not-serving",
                    m => m.zookeeper_name().unwrap_or("unknown"),
                };
                format!("{}={mode}", s.index())
            })
            .collect::<Vec<_>>()
            .join(" ")),
        Command::Check => match e.check_consistent().await {
            Ok(zxid) => Ok(format!("zxid 0x{zxid:x}")),
            Err(inc) => Err(inc.to_string()),
        },
        Command::Help => Ok(format!("{}{}", control::HELP, control_faults::HELP)),
        other => control_faults::execute(e, &other)
            .unwrap_or_else(|| Err("not available with --ensemble".into())),
    }
}
