//! One task per connection. Its reader and writer run concurrently inside the task (`select!`),
//! and writes are batched: everything queued when the writer wakes goes out in one write. A
//! large frame (a getData reply referencing a big znode's data) is not copied into the batch:
//! the batch and the frame's parts go out together in vectored writes.
//! The outbound queue is bounded (`outbox.rs`): while it is full the reader takes no more
//! requests, so a client that does not read its replies costs bounded memory.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};
use zkit_proto::frame::take_frame;

use super::outbox::{self, Inbox, Room};
use super::{fourlw, is_known_word, now_ms, Ctx, IpSlot, Msg};
use crate::core::{ConnId, Frame};

/// Largest batch the writer assembles before writing.
const WRITE_BATCH: usize = 256 * 1024;

/// Serves one accepted connection (its read and write halves: a TCP socket's, or a TLS
/// stream's) until it closes or the server shuts down. `_slot` holds the connection's place in
/// the per-IP count until the task ends.
pub(crate) async fn serve<R, W>(
    (mut rd, mut wr): (R, W),
    remote: SocketAddr,
    ctx: Arc<Ctx>,
    mut shutdown: watch::Receiver<bool>,
    _slot: IpSlot,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
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

async fn read_loop<R: AsyncRead + Unpin>(
    conn: ConnId,
    rd: &mut R,
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

async fn write_loop<W: AsyncWrite + Unpin>(wr: &mut W, inbox: &mut Inbox) -> &'static str {
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
                    // A large frame (a big getData reply) is written as it is, not copied:
                    // the batch so far and the frame's parts in vectored writes.
                    if !write_with(wr, &mut buf, &mut batched, &f, inbox).await {
                        return "write error";
                    }
                }
                Msg::Frame(f) => {
                    for p in f.parts() {
                        buf.extend_from_slice(p);
                    }
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

/// Writes the batch, then `frame`, in vectored writes (no copy of the frame), and releases both
/// from the queue's count; false on a write error.
async fn write_with<W: AsyncWrite + Unpin>(
    wr: &mut W,
    buf: &mut BytesMut,
    batched: &mut usize,
    frame: &Frame,
    inbox: &Inbox,
) -> bool {
    let bytes = buf.len() + frame.len();
    let mut all = Parts::new(buf, frame);
    if wr.write_all_buf(&mut all).await.is_err() {
        return false;
    }
    buf.clear();
    inbox.written(std::mem::take(batched) + 1, bytes);
    true
}

/// Byte buffers written in order as one [`Buf`] (its `chunks_vectored` lists every part, so
/// the socket gets them in one `writev`).
struct Parts<'a> {
    parts: VecDeque<&'a [u8]>,
}

impl<'a> Parts<'a> {
    fn new(first: &'a [u8], frame: &'a Frame) -> Parts<'a> {
        let parts = std::iter::once(first)
            .chain(frame.parts().map(|p| &p[..]))
            .filter(|p| !p.is_empty())
            .collect();
        Parts { parts }
    }
}

impl Buf for Parts<'_> {
    fn remaining(&self) -> usize {
        self.parts.iter().map(|p| p.len()).sum()
    }

    fn chunk(&self) -> &[u8] {
        self.parts.front().copied().unwrap_or_default()
    }

    fn chunks_vectored<'b>(&'b self, dst: &mut [IoSlice<'b>]) -> usize {
        let mut n = 0;
        for (slot, p) in dst.iter_mut().zip(&self.parts) {
            *slot = IoSlice::new(p);
            n += 1;
        }
        n
    }

    fn advance(&mut self, mut cnt: usize) {
        while cnt > 0 {
            let Some(p) = self.parts.front_mut() else {
                return;
            };
            if cnt < p.len() {
                *p = &p[cnt..];
                return;
            }
            cnt -= p.len();
            self.parts.pop_front();
        }
    }
}

/// Writes the batch and releases it from the queue's count; false on a write error.
async fn flush<W: AsyncWrite + Unpin>(
    wr: &mut W,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::FrameBuf;
    use crate::net::Msg;
    use bytes::Bytes;
    use tokio::net::{TcpListener, TcpStream};
    use zkit_proto::ReplyHeader;

    /// A reply frame whose body is `data` as a jute buffer (shared when large).
    fn reply(xid: i32, data: &Bytes) -> Frame {
        let mut fb = FrameBuf::new();
        fb.put_opt_buffer(&Some(data.clone()));
        fb.buf().extend_from_slice(&[xid as u8; 68]);
        fb.finish(ReplyHeader {
            xid,
            zxid: 5,
            err: 0,
        })
    }

    #[tokio::test]
    async fn the_writer_sends_every_part_in_order_and_releases_the_count() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let (mut client, (server, _)) = (client.unwrap(), accepted.unwrap());
        let (_rd, mut wr) = server.into_split();

        let big = Bytes::from(
            (0..WRITE_BATCH as u32 * 2)
                .map(|i| i as u8)
                .collect::<Vec<_>>(),
        );
        let mid = Bytes::from(vec![3; 10_000]);
        let frames = [
            reply(1, &Bytes::from_static(b"small")),
            reply(2, &mid),
            reply(3, &big),
            reply(4, &Bytes::from_static(b"after")),
            reply(5, &big),
        ];
        assert!(frames[2].parts().any(|p| p.as_ptr() == big.as_ptr()));
        let expected: Vec<u8> = frames.iter().flat_map(|f| f.to_bytes().to_vec()).collect();
        let (out, mut inbox) = outbox::channel(1, usize::MAX / 4);
        for f in &frames {
            out.send(Msg::Frame(f.clone()));
        }
        out.send(Msg::Close("done"));
        assert_eq!(out.stats().bytes, expected.len());
        assert_eq!(out.stats().frames, frames.len());

        let (reason, got) = tokio::join!(write_loop(&mut wr, &mut inbox), async {
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        });
        assert_eq!(reason, "done");
        assert!(
            got == expected,
            "the bytes on the wire are the frames' bytes"
        );
        assert_eq!(out.stats().bytes, 0);
        assert_eq!(out.stats().frames, 0);
        assert_eq!(out.stats().peak, expected.len());
    }
}
