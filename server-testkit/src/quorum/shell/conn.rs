//! The per-connection tasks: they move bytes between a socket and the driver, and decide
//! nothing beyond framing. Each reads and writes at once (a full send buffer never stops
//! the reading side), and tells the driver when it ends.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{debug, trace};
use zkit_proto::quorum::{
    split_election_frame, ElectionHandshake, LearnerInfo, Notification, PacketType,
    ELECTION_PROTOCOL_V1,
};
use zkit_proto::Record;

use super::snapwire::{stream_to_file, StreamScanner};
use super::wire::{self, WireError};
use super::{ConnId, Input};
use crate::quorum::{Message, Sid};

/// Frames queued for one connection's writer; past this the driver treats the peer as
/// unable to keep up (election: the notification is dropped, it is resent anyway; ZAB: the
/// connection is closed, as a learner that falls this far behind must resync).
pub(super) const WRITE_QUEUE: usize = 4096;

/// Writes every queued frame, batching what is already there into one write.
async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Bytes>,
) -> Result<(), WireError> {
    let mut batch = BytesMut::new();
    while let Some(first) = rx.recv().await {
        batch.extend_from_slice(&first);
        while batch.len() < 256 * 1024 {
            match rx.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        wr.write_all(&batch).await?;
        batch.clear();
    }
    // The driver dropped the link: close our side.
    wr.shutdown().await?;
    Ok(())
}

/// Reads more bytes into `buf`; `false` at end of stream.
async fn fill(rd: &mut OwnedReadHalf, buf: &mut BytesMut) -> Result<bool, WireError> {
    buf.reserve(64 * 1024);
    Ok(rd.read_buf(buf).await? > 0)
}

/// The election handshake this server sends: 3.8's default protocol (version 1, one
/// address), as `QuorumCnxManager.startConnection` does without multi-address.
pub(super) fn our_handshake(sid: Sid, addr: SocketAddr) -> Bytes {
    ElectionHandshake::Versioned {
        protocol: ELECTION_PROTOCOL_V1,
        sid,
        addresses: vec![addr.to_string()],
    }
    .encode()
}

/// Connects to `sid`'s election port and introduces this server. ZooKeeper keeps only the
/// connection from the larger sid to the smaller: when `sid` is larger this connection is a
/// wake-up call, closed once sent, and `sid` connects back.
#[allow(clippy::too_many_arguments)]
pub(super) async fn election_connect(
    me: Sid,
    my_addr: SocketAddr,
    sid: Sid,
    addr: SocketAddr,
    conn: ConnId,
    timeout: Duration,
    inbox: mpsc::Sender<Input>,
) {
    let attempt = async {
        let mut s = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        s.set_nodelay(true)?;
        s.write_all(&our_handshake(me, my_addr)).await?;
        Ok::<_, std::io::Error>(s)
    };
    let stream = match attempt.await {
        Ok(s) => s,
        Err(e) => {
            debug!(sid, error = %e, "election connect failed");
            let _ = inbox.send(Input::ElectionAttemptOver { sid }).await;
            return;
        }
    };
    if sid > me {
        trace!(sid, "smaller sid: dropping our election connection");
        drop(stream);
        let _ = inbox.send(Input::ElectionAttemptOver { sid }).await;
        return;
    }
    let (tx, rx) = mpsc::channel(WRITE_QUEUE);
    if inbox
        .send(Input::ElectionUp { sid, conn, tx })
        .await
        .is_err()
    {
        return;
    }
    let _ = inbox.send(Input::ElectionAttemptOver { sid }).await;
    election_loop(stream, BytesMut::new(), sid, conn, rx, inbox).await;
}

/// Reads the handshake of an accepted election connection and hands it to the driver.
pub(super) async fn election_accept(
    mut stream: TcpStream,
    timeout: Duration,
    inbox: mpsc::Sender<Input>,
) {
    let read = async {
        let mut buf = BytesMut::new();
        loop {
            if let Some(h) = wire::split_handshake(&mut buf)? {
                return Ok::<_, WireError>((h, buf));
            }
            buf.reserve(256);
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
        }
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok((h, rest))) => {
            let _ = stream.set_nodelay(true);
            let _ = inbox
                .send(Input::ElectionInbound {
                    sid: h.sid(),
                    stream,
                    rest,
                })
                .await;
        }
        Ok(Err(e)) => debug!(error = %e, "bad election handshake"),
        Err(_) => debug!("election handshake timed out"),
    }
}

/// Moves notifications both ways on a kept election connection until either side ends.
pub(super) async fn election_loop(
    stream: TcpStream,
    mut buf: BytesMut,
    sid: Sid,
    conn: ConnId,
    rx: mpsc::Receiver<Bytes>,
    inbox: mpsc::Sender<Input>,
) {
    let (mut rd, wr) = stream.into_split();
    let reader = async {
        loop {
            while let Some(msg) = split_election_frame(&mut buf)? {
                let n = Notification::decode(msg)?;
                let m = Input::Message {
                    from: sid,
                    conn,
                    msg: Message::Election(n),
                };
                if inbox.send(m).await.is_err() {
                    return Ok(());
                }
            }
            if !fill(&mut rd, &mut buf).await? {
                return Ok::<_, WireError>(());
            }
        }
    };
    let r = tokio::select! {
        r = reader => r,
        r = write_loop(wr, rx) => r,
    };
    if let Err(e) = r {
        debug!(sid, error = %e, "election connection ended");
    }
    let _ = inbox.send(Input::ElectionDown { sid, conn }).await;
}

/// A learner's connection to its leader's quorum port.
pub(super) async fn zab_connect(
    sid: Sid,
    addr: SocketAddr,
    conn: ConnId,
    timeout: Duration,
    zk_stream: bool,
    inbox: mpsc::Sender<Input>,
) {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            debug!(sid, error = %e, "cannot reach the leader");
            let _ = inbox.send(Input::ZabDown { sid, conn }).await;
            return;
        }
        Err(_) => {
            debug!(sid, "connecting to the leader timed out");
            let _ = inbox.send(Input::ZabDown { sid, conn }).await;
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let (tx, rx) = mpsc::channel(WRITE_QUEUE);
    if inbox.send(Input::ZabUp { sid, conn, tx }).await.is_err() {
        return;
    }
    let snapshots = if zk_stream {
        SnapshotWire::ZooKeeper
    } else {
        SnapshotWire::Buffer
    };
    zab_loop(
        stream,
        BytesMut::new(),
        sid,
        conn,
        rx,
        Some(snapshots),
        inbox,
    )
    .await;
}

/// A connection accepted on the quorum port: the learner names itself in its first packet
/// (FOLLOWERINFO / OBSERVERINFO carry a `LearnerInfo`), as `LearnerHandler.run` expects.
pub(super) async fn zab_accept(
    mut stream: TcpStream,
    conn: ConnId,
    timeout: Duration,
    inbox: mpsc::Sender<Input>,
) {
    let read = async {
        let mut buf = BytesMut::new();
        loop {
            if let Some(p) = wire::split_packet(&mut buf)? {
                return Ok::<_, WireError>((p, buf));
            }
            buf.reserve(4096);
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
        }
    };
    let (first, rest) = match tokio::time::timeout(timeout, read).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return debug!(error = %e, "bad first packet from a learner"),
        Err(_) => return debug!("learner introduction timed out"),
    };
    let sid = match first.kind {
        PacketType::FollowerInfo | PacketType::ObserverInfo => first
            .data
            .clone()
            .ok_or(WireError::NoIntroduction)
            .and_then(|d| Ok(LearnerInfo::from_bytes(d)?.server_id)),
        _ => Err(WireError::NoIntroduction),
    };
    let sid = match sid {
        Ok(s) => s,
        Err(e) => return debug!(error = %e, "learner refused"),
    };
    let _ = stream.set_nodelay(true);
    let (tx, rx) = mpsc::channel(WRITE_QUEUE);
    if inbox.send(Input::ZabUp { sid, conn, tx }).await.is_err() {
        return;
    }
    let m = Input::Message {
        from: sid,
        conn,
        msg: Message::Zab(first),
    };
    if inbox.send(m).await.is_err() {
        return;
    }
    zab_loop(stream, rest, sid, conn, rx, None, inbox).await;
}

/// How a learner reads the snapshot after SNAP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SnapshotWire {
    /// ZooKeeper's stream (`snapwire`), turned into a snapshot file for the disk.
    ZooKeeper,
    /// The disk's opaque bytes in one jute buffer (in-memory disks).
    Buffer,
}

/// Moves quorum packets both ways until either side ends. On the learner's side
/// (`snapshots` given) a SNAP packet is followed by the snapshot.
async fn zab_loop(
    stream: TcpStream,
    mut buf: BytesMut,
    sid: Sid,
    conn: ConnId,
    rx: mpsc::Receiver<Bytes>,
    snapshots: Option<SnapshotWire>,
    inbox: mpsc::Sender<Input>,
) {
    let (mut rd, wr) = stream.into_split();
    let reader = async {
        let mut snapshot_next: Option<StreamScanner> = None;
        loop {
            loop {
                let msg = if let Some(scan) = snapshot_next.as_mut() {
                    let got = if snapshots == Some(SnapshotWire::ZooKeeper) {
                        scan.advance(&buf)?.map(|n| {
                            let body = buf.split_to(n);
                            stream_to_file(&body[..scan.body_len()])
                        })
                    } else {
                        wire::split_snapshot(&mut buf)?
                    };
                    match got {
                        Some(s) => {
                            snapshot_next = None;
                            Message::Snapshot(s)
                        }
                        None => break,
                    }
                } else {
                    match wire::split_packet(&mut buf)? {
                        Some(p) => {
                            if snapshots.is_some() && p.kind == PacketType::Snap {
                                snapshot_next = Some(StreamScanner::new());
                            }
                            Message::Zab(p)
                        }
                        None => break,
                    }
                };
                let m = Input::Message {
                    from: sid,
                    conn,
                    msg,
                };
                if inbox.send(m).await.is_err() {
                    return Ok(());
                }
            }
            if !fill(&mut rd, &mut buf).await? {
                return Ok::<_, WireError>(());
            }
        }
    };
    let r = tokio::select! {
        r = reader => r,
        r = write_loop(wr, rx) => r,
    };
    if let Err(e) = r {
        debug!(sid, error = %e, "quorum connection ended");
    }
    let _ = inbox.send(Input::ZabDown { sid, conn }).await;
}
