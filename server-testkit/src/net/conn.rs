//! One task per connection. Its reader and writer run concurrently inside the task (`select!`),
//! and writes are batched: everything queued when the writer wakes goes out in one `write_all`.
//! The outbound queue is bounded (`outbox.rs`): while it is full the reader takes no more
//! requests, so a client that does not read its replies costs bounded memory.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};
use zkit_proto::frame::take_frame;

use super::outbox::{self, Inbox, Room};
use super::{fourlw, is_known_word, now_ms, Ctx, IpSlot, Msg};
use crate::core::ConnId;

/// Largest batch the writer assembles before writing.
const WRITE_BATCH: usize = 256 * 1024;

/// Serves one accepted connection until it closes or the server shuts down. `_slot` holds the
/// connection's place in the per-IP count until the task ends.
pub(crate) async fn serve(
    stream: TcpStream,
    remote: SocketAddr,
    ctx: Arc<Ctx>,
    mut shutdown: watch::Receiver<bool>,
    _slot: IpSlot,
) {
    let (mut rd, mut wr) = stream.into_split();
    let mut rbuf = BytesMut::with_capacity(4096);
    let deadline = Instant::now() + ctx.net.handshake_timeout;
    // Registered at once, so that `cons` and `mntr` list connections that sent nothing yet.
    let (outbox, mut inbox) = {
        let mut g = ctx.lock();
        let id = g.next_conn;
        g.next_conn += 1;
        let (tx, rx) = outbox::channel(id, ctx.net.max_queued_bytes);
        g.conns.insert(id, tx);
        g.core.conn_opened(id, remote, now_ms());
        (id, rx)
    };
    let conn = outbox;
    // The first four bytes decide: a four-letter word or the length of a ConnectRequest.
    while rbuf.len() < 4 {
        let early = tokio::select! {
            r = rd.read_buf(&mut rbuf) => match r {
                Ok(0) | Err(_) => Some("client closed the connection"),
                Ok(_) => None,
            },
            _ = sleep_until(deadline) => {
                tracing::info!(%remote, "connection sent nothing before the handshake timeout, closing");
                Some("handshake timeout")
            }
            _ = shutdown.changed() => Some("server shutdown"),
        };
        if let Some(reason) = early {
            unregister(&ctx, conn);
            tracing::debug!(conn, %remote, reason, "connection closed");
            return;
        }
    }
    if is_known_word(&rbuf[..4]) {
        // A four-letter word is not a client connection: the answer lists it on its own.
        unregister(&ctx, conn);
        let word = String::from_utf8_lossy(&rbuf[..4]).into_owned();
        // Off the runtime's worker threads: formatting `wchp` over 200k watches takes long
        // enough to starve the connections sharing a worker.
        let text = {
            let (word, ctx) = (word.clone(), ctx.clone());
            tokio::task::spawn_blocking(move || fourlw::answer(&word, &ctx, remote))
                .await
                .unwrap_or_default()
        };
        tracing::debug!(%remote, word = %word, "four-letter word");
        let _ = wr.write_all(text.as_bytes()).await;
        let _ = wr.shutdown().await;
        return;
    }

    tracing::debug!(conn, %remote, "connection opened");
    let paused = ctx.paused.subscribe();
    let room = inbox.room();
    let overflow = room.clone();
    let reason = {
        let (read, write) = (
            read_loop(conn, &mut rd, rbuf, &ctx, paused, deadline, room),
            write_loop(&mut wr, &mut inbox),
        );
        tokio::pin!(read, write);
        tokio::select! {
            r = &mut read => r,
            r = &mut write => r,
            // Ends a writer blocked on a client that does not read; the queue is dropped.
            _ = overflow.killed() => "outbound queue overflow (client not reading)",
            _ = shutdown.changed() => "server shutdown",
        }
    };
    unregister(&ctx, conn);
    tracing::info!(conn, %remote, reason, "connection closed");
}

/// Forgets a connection: its queue (and everything still in it) goes, the core is told.
fn unregister(ctx: &Ctx, conn: ConnId) {
    let mut g = ctx.lock();
    g.conns.remove(&conn);
    g.core.conn_closed(conn);
    g.dispatch();
}

async fn read_loop(
    conn: ConnId,
    rd: &mut OwnedReadHalf,
    mut rbuf: BytesMut,
    ctx: &Ctx,
    mut paused: watch::Receiver<bool>,
    handshake_deadline: Instant,
    room: Room,
) -> &'static str {
    let mut handshaken = false;
    loop {
        while *paused.borrow_and_update() {
            if paused.changed().await.is_err() {
                return "server shutdown";
            }
        }
        loop {
            // Backpressure: no request is taken while the replies already queued exceed the
            // bound; the socket is not read either, so the client's sends block in its kernel.
            room.wait().await;
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

async fn write_loop(wr: &mut OwnedWriteHalf, inbox: &mut Inbox) -> &'static str {
    let mut buf = BytesMut::new();
    loop {
        let Some(first) = inbox.recv().await else {
            return "connection dropped by the server";
        };
        let mut close = None;
        let mut next = Some(first);
        // Frames and bytes in `buf`, released from the queue's count once written.
        let mut batched = 0;
        while let Some(m) = next.take() {
            match m {
                Msg::Frame(f) if f.len() >= WRITE_BATCH => {
                    // A large frame (a big getData reply) is written as it is, not copied.
                    if !flush(wr, &mut buf, &mut batched, inbox).await {
                        return "write error";
                    }
                    if wr.write_all(&f).await.is_err() {
                        return "write error";
                    }
                    inbox.written(1, f.len());
                }
                Msg::Frame(f) => {
                    buf.extend_from_slice(&f);
                    batched += 1;
                }
                Msg::Close(r) => {
                    close = Some(r);
                    break;
                }
            }
            if buf.len() >= WRITE_BATCH && !flush(wr, &mut buf, &mut batched, inbox).await {
                return "write error";
            }
            next = inbox.try_recv();
        }
        if !flush(wr, &mut buf, &mut batched, inbox).await {
            return "write error";
        }
        if let Some(r) = close {
            let _ = wr.shutdown().await;
            return r;
        }
    }
}

/// Writes the batch and releases it from the queue's count; false on a write error.
async fn flush(
    wr: &mut OwnedWriteHalf,
    buf: &mut BytesMut,
    batched: &mut usize,
    inbox: &Inbox,
) -> bool {
    if buf.is_empty() {
        return true;
    }
    if wr.write_all(buf).await.is_err() {
        return false;
    }
    inbox.written(std::mem::take(batched), buf.len());
    buf.clear();
    true
}
