//! One task per connection. Its reader and writer run concurrently inside the task (`select!`),
//! so a client that does not read its replies never stops the server from reading its requests,
//! and writes are batched: everything queued when the writer wakes goes out in one `write_all`.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};
use zkit_proto::frame::take_frame;

use super::{fourlw, is_known_word, now_ms, Ctx, Msg};
use crate::core::ConnId;

/// Largest batch the writer assembles before writing.
const WRITE_BATCH: usize = 256 * 1024;

/// Serves one accepted connection until it closes or the server shuts down.
pub(crate) async fn serve(
    stream: TcpStream,
    remote: SocketAddr,
    ctx: Arc<Ctx>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let mut rbuf = BytesMut::with_capacity(4096);
    let deadline = Instant::now() + ctx.net.handshake_timeout;
    // The first four bytes decide: a four-letter word or the length of a ConnectRequest.
    while rbuf.len() < 4 {
        tokio::select! {
            r = rd.read_buf(&mut rbuf) => match r {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            _ = sleep_until(deadline) => {
                tracing::info!(%remote, "connection sent nothing before the handshake timeout, closing");
                return;
            }
            _ = shutdown.changed() => return,
        }
    }
    if is_known_word(&rbuf[..4]) {
        let word = String::from_utf8_lossy(&rbuf[..4]).into_owned();
        let text = fourlw::answer(&word, &ctx, remote);
        tracing::debug!(%remote, word = %word, "four-letter word");
        let _ = wr.write_all(text.as_bytes()).await;
        let _ = wr.shutdown().await;
        return;
    }

    let (tx, mut rx) = mpsc::unbounded_channel();
    let conn = {
        let mut g = ctx.lock();
        let id = g.next_conn;
        g.next_conn += 1;
        g.conns.insert(id, tx);
        g.core.conn_opened(id, remote, now_ms());
        id
    };
    tracing::debug!(conn, %remote, "connection opened");
    let paused = ctx.paused.subscribe();
    let reason = tokio::select! {
        r = read_loop(conn, &mut rd, rbuf, &ctx, paused, deadline) => r,
        r = write_loop(&mut wr, &mut rx) => r,
        _ = shutdown.changed() => "server shutdown",
    };
    {
        let mut g = ctx.lock();
        g.conns.remove(&conn);
        g.core.conn_closed(conn);
        g.dispatch();
    }
    tracing::info!(conn, %remote, reason, "connection closed");
}

async fn read_loop(
    conn: ConnId,
    rd: &mut OwnedReadHalf,
    mut rbuf: BytesMut,
    ctx: &Ctx,
    mut paused: watch::Receiver<bool>,
    handshake_deadline: Instant,
) -> &'static str {
    let mut handshaken = false;
    loop {
        while *paused.borrow_and_update() {
            if paused.changed().await.is_err() {
                return "server shutdown";
            }
        }
        loop {
            match take_frame(&mut rbuf, ctx.net.max_packet) {
                Ok(Some(frame)) => {
                    let now = now_ms();
                    let mut g = ctx.lock();
                    g.core.receive(conn, frame, now);
                    g.dispatch();
                    handshaken = handshaken || g.core.session_of(conn).is_some();
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(conn, error = %e, "invalid frame, closing connection");
                    return "invalid frame";
                }
            }
            if *paused.borrow() {
                break;
            }
        }
        tokio::select! {
            r = rd.read_buf(&mut rbuf) => match r {
                Ok(0) => return "client closed the connection",
                Err(e) => {
                    tracing::debug!(conn, error = %e, "read failed");
                    return "read error";
                }
                Ok(_) => {}
            },
            _ = sleep_until(handshake_deadline), if !handshaken => {
                tracing::warn!(conn, "no ConnectRequest before the handshake timeout, closing");
                return "handshake timeout";
            }
            _ = paused.changed() => {}
        }
    }
}

async fn write_loop(
    wr: &mut OwnedWriteHalf,
    rx: &mut mpsc::UnboundedReceiver<Msg>,
) -> &'static str {
    let mut buf = BytesMut::new();
    loop {
        let Some(first) = rx.recv().await else {
            return "connection dropped by the server";
        };
        let mut close = None;
        let mut next = Some(first);
        while let Some(m) = next.take() {
            match m {
                Msg::Frame(f) => buf.extend_from_slice(&f),
                Msg::Close(r) => {
                    close = Some(r);
                    break;
                }
            }
            if buf.len() < WRITE_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !buf.is_empty() {
            if wr.write_all(&buf).await.is_err() {
                return "write error";
            }
            buf.clear();
        }
        if let Some(r) = close {
            let _ = wr.shutdown().await;
            return r;
        }
    }
}
