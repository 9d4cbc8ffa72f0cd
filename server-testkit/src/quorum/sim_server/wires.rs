//! The clients' side of the world: their TCP connections to the servers. Client-to-server
//! frames travel on a [`Wire`] (FIFO, at its own speed, and a close reaches the server only
//! after the frames before it); server-to-client frames arrive at once.

use std::collections::VecDeque;
use std::net::SocketAddr;

use bytes::Bytes;

use super::super::Sid;
use super::{shuffle, trace, World};
use crate::core::ConnId;

/// Frames from a client to a server in flight on one TCP connection.
pub(super) struct Wire {
    pub server: Sid,
    pub frames: VecDeque<Bytes>,
    /// The client closed its end: the server sees the close after the frames.
    pub closing: bool,
    /// The chance in percent that the next frame arrives in a step (some wires are slow, so
    /// requests of an abandoned connection can arrive after the session moved).
    pub speed: u64,
}

impl World {
    /// Client `i` drops its connection; the server sees the close after the frames still on
    /// the wire.
    pub(super) fn client_drop(&mut self, i: usize) {
        if let Some(c) = self.clients[i].conn.take() {
            trace(self.now, format_args!("client {i} drops conn {}", c.id));
            self.ledger.count("connections dropped by clients");
            self.conns.remove(&c.id);
            if let Some(w) = self.wires.get_mut(&c.id) {
                w.closing = true;
            }
        }
        self.clients[i].disconnected(self.now, &mut self.rng);
    }

    /// Client `i` connects to a random server (refused when it is down).
    pub(super) fn client_connect(&mut self, i: usize) {
        let all: Vec<Sid> = self.servers.keys().copied().collect();
        let sid = self.pick(&all).unwrap();
        let conn = self.next_conn;
        self.next_conn += 1;
        let frame = self.clients[i].connect(conn, sid, self.now);
        let session = self.clients[i].session;
        trace(
            self.now,
            format_args!("client {i} connects to {sid} on conn {conn} (session {session:#x})"),
        );
        let t = self.t();
        match self.servers.get_mut(&sid).unwrap().core.as_mut() {
            Some(core) => {
                let remote = SocketAddr::from(([10, 0, 0, i as u8 + 1], 40_000));
                core.conn_opened(conn, remote, t);
                self.conns.insert(conn, i);
                let wire = Wire {
                    server: sid,
                    frames: VecDeque::from([frame]),
                    closing: false,
                    speed: [5, 30, 70, 70][self.rng.below(4) as usize],
                };
                self.wires.insert(conn, wire);
            }
            None => {
                self.ledger.count("connections refused");
                self.clients[i].conn = None;
                self.clients[i].disconnected(self.now, &mut self.rng);
            }
        }
    }

    /// Client `i` sends frames on its connection.
    pub(super) fn client_send(&mut self, i: usize, frames: Vec<Bytes>) {
        let Some(conn) = self.clients[i].conn.as_ref().map(|c| c.id) else {
            return;
        };
        if let Some(w) = self.wires.get_mut(&conn) {
            w.frames.extend(frames);
        }
    }

    /// Every wire with frames may deliver its next one; a closed wire with nothing left is
    /// closed at the server.
    pub(super) fn client_network(&mut self) {
        let mut ids: Vec<ConnId> = self.wires.keys().copied().collect();
        shuffle(&mut self.rng, &mut ids);
        let t = self.t();
        for conn in ids {
            let w = self.wires.get_mut(&conn).unwrap();
            let go = self.rng.chance(w.speed);
            let w = self.wires.get_mut(&conn).unwrap();
            let sid = w.server;
            let Some(core) = self.servers.get_mut(&sid).and_then(|s| s.core.as_mut()) else {
                self.wires.remove(&conn);
                continue;
            };
            if w.frames.is_empty() && w.closing {
                core.conn_closed(conn);
                self.wires.remove(&conn);
            } else if go {
                if let Some(f) = w.frames.pop_front() {
                    trace(
                        self.now,
                        format_args!("conn {conn} frame reaches server {sid}"),
                    );
                    core.receive(conn, f, t);
                }
            }
        }
    }

    /// Every client: reconnect when due, ping when idle, give up on a silent server.
    pub(super) fn client_housekeeping(&mut self) {
        for i in 0..self.clients.len() {
            if self.clients[i].wants_connection(self.now) {
                self.client_connect(i);
                continue;
            }
            match self.clients[i].housekeeping(self.now) {
                Ok(Some(f)) => self.client_send(i, vec![f]),
                Ok(None) => {}
                Err(()) => {
                    self.ledger.count(if self.clients[i].connected() {
                        "client read timeouts"
                    } else {
                        "client handshake timeouts"
                    });
                    self.client_drop(i)
                }
            }
        }
    }
}
