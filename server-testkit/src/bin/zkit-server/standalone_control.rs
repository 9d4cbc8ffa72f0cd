//! `zkit-server --control-port PORT` on a standalone server: the fault commands of the
//! control protocol (and `expire`, `status`, `help`), served like the ensemble's.

use std::io::Write as _;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use zkit_testkit::Server;

use crate::control::{self, Command};
use crate::control_faults;
use crate::ensemble_mode::connection;

/// Serves the control port until `terminated`. Prints, like `--ensemble`, the server's
/// address, `connect ADDR` and `control 127.0.0.1:PORT` on stdout.
pub async fn serve(
    server: &Server,
    port: u16,
    terminated: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("--control-port: cannot listen on {addr}: {e}"))?;
    let control = listener.local_addr().unwrap_or(addr);
    {
        let mut stdout = std::io::stdout().lock();
        let addr = server.connect_string();
        let _ = writeln!(stdout, "{addr}\nconnect {addr}\ncontrol {control}");
        let _ = stdout.flush();
    }
    eprintln!("zkit-server: control port {control}");
    let (tx, mut rx) = mpsc::channel::<(Command, oneshot::Sender<String>)>(64);
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
                let answer = match execute(server, cmd) {
                    Ok(t) => control::one_line(true, &t),
                    Err(t) => control::one_line(false, &t),
                };
                let _ = reply.send(answer);
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.shutdown().await;
    Ok(())
}

fn execute(s: &Server, cmd: Command) -> Result<String, String> {
    match cmd {
        Command::Expire(id) => {
            if s.expire_session(id) {
                Ok(format!("expired 0x{id:x}"))
            } else {
                Err(format!("no session 0x{id:x}"))
            }
        }
        Command::Status => Ok("0=standalone".into()),
        Command::Help => Ok(format!("{}{}", control::HELP, control_faults::HELP)),
        other => control_faults::execute(s, &other)
            .unwrap_or_else(|| Err("not available on a standalone server".into())),
    }
}
