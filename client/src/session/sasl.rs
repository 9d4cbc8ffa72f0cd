//! The SASL exchange inside the session: after the ConnectResponse of every connection, sasl
//! packets (opcode 102) go back and forth before anything else is sent. The session stays
//! not-connected meanwhile, so requests queue; SetWatches, auth packets and the queued requests
//! follow once the server accepted. A refusal ends the session with `AuthFailed`.

use std::time::Instant;

use bytes::Bytes;
use zkit_proto::frame::{begin_frame, end_frame};
use zkit_proto::{xid, ErrorCode, OpCode, Reader, Record, ReplyHeader, RequestHeader};

use super::{Handles, Session, SessionState};
use crate::error::Error;
use crate::sasl::{Mechanism, SaslConfig};

/// SASL settings and the exchange of the current connection.
#[derive(Debug, Default)]
pub(super) struct Sasl {
    pub config: Option<SaslConfig>,
    run: Option<Run>,
    /// Host name of the server being connected to, as the connect string names it.
    host: String,
}

/// One exchange on one connection.
#[derive(Debug)]
struct Run {
    mech: Box<dyn Mechanism>,
    /// Whether the server granted a read-only session (published once the exchange is done).
    read_only: bool,
    /// The xid of the sasl packet awaiting its reply.
    xid: i32,
}

impl<H: Handles> Session<H> {
    /// Authenticates every connection with `config` before anything else is sent.
    pub fn set_sasl(&mut self, config: SaslConfig) {
        self.sasl.config = Some(config);
    }

    /// The host (from the connect string) of the server the next connection goes to: a
    /// mechanism that names the server (GSSAPI's `zookeeper/<host>`) uses it.
    pub fn set_server_host(&mut self, host: &str) {
        if self.sasl.host != host {
            self.sasl.host = host.to_owned();
        }
    }

    /// Whether a SASL exchange holds the connection.
    pub(super) fn sasl_in_progress(&self) -> bool {
        self.sasl.run.is_some()
    }

    /// Called once the ConnectResponse is in: starts the exchange if SASL is configured.
    /// Returns false when there is none (the session is connected at once).
    pub(super) fn begin_sasl(&mut self, read_only: bool) -> Result<bool, Error> {
        let Some(config) = &self.sasl.config else {
            return Ok(false);
        };
        tracing::debug!(mechanism = config.mechanism(), "SASL authentication");
        let mut mech = match config.begin(&self.sasl.host) {
            Ok(m) => m,
            Err(e) => return Err(self.sasl_failed(e)),
        };
        let first = match mech.initial() {
            Ok(t) => t,
            Err(why) => return Err(self.sasl_refused(&why)),
        };
        let xid = self.write_sasl(&first);
        self.sasl.run = Some(Run {
            mech,
            read_only,
            xid,
        });
        Ok(true)
    }

    /// The connection is gone: its exchange with it.
    pub(super) fn sasl_reset(&mut self) {
        self.sasl.run = None;
    }

    fn write_sasl(&mut self, token: &[u8]) -> i32 {
        let xid = self.next_xid;
        self.next_xid = if xid == i32::MAX { 1 } else { xid + 1 };
        let at = begin_frame(&mut self.out);
        RequestHeader {
            xid,
            op: OpCode::Sasl.code(),
        }
        .encode(&mut self.out);
        zkit_proto::SaslPacket {
            token: Bytes::copy_from_slice(token),
        }
        .encode(&mut self.out);
        end_frame(&mut self.out, at);
        xid
    }

    /// A frame while the exchange runs: the server's next token, or its refusal.
    pub(super) fn on_sasl_frame(&mut self, frame: Bytes, now: Instant) -> Result<(), Error> {
        let mut r = Reader::new(frame);
        let h = ReplyHeader::decode(&mut r)?;
        if h.xid == xid::PING || h.xid == xid::NOTIFICATION {
            return Ok(());
        }
        let Some(run) = self.sasl.run.as_mut() else {
            return Ok(());
        };
        if h.xid != run.xid {
            return Err(Error::Protocol(format!(
                "reply xid {} during SASL, expected {}",
                h.xid, run.xid
            )));
        }
        if h.err != 0 {
            tracing::warn!(code = h.err, "the server refused SASL authentication");
            let e = if h.err == ErrorCode::SessionClosedRequireSaslAuth.code() {
                Error::SessionClosedRequireSaslAuth
            } else {
                Error::AuthFailed
            };
            return Err(self.sasl_failed(e));
        }
        let token = r.read_opt_buffer()?.unwrap_or_default();
        let was_complete = run.mech.is_complete();
        let next = if was_complete {
            // The mechanism finished with our last token: this reply only confirms it.
            Ok(None)
        } else {
            run.mech.step(&token)
        };
        match next {
            Err(why) => Err(self.sasl_refused(&why)),
            Ok(Some(t)) => {
                let xid = self.write_sasl(&t);
                if let Some(run) = self.sasl.run.as_mut() {
                    run.xid = xid;
                }
                Ok(())
            }
            Ok(None) if !was_complete && !run.mech.is_complete() => {
                Err(self.sasl_refused("the mechanism stopped before completing"))
            }
            Ok(None) => {
                let read_only = run.read_only;
                self.sasl.run = None;
                tracing::info!("SASL authentication succeeded");
                self.last_recv = now;
                self.on_established(read_only);
                Ok(())
            }
        }
    }

    fn sasl_refused(&mut self, why: &str) -> Error {
        tracing::warn!(reason = why, "SASL authentication failed");
        self.sasl_failed(Error::AuthFailed)
    }

    /// Ends the session: the exchange failed for good.
    fn sasl_failed(&mut self, e: Error) -> Error {
        self.sasl.run = None;
        self.terminate(SessionState::AuthFailed);
        e
    }

    /// While the exchange runs, the server must answer within the read timeout.
    pub(super) fn sasl_deadline(&self) -> Option<Instant> {
        self.sasl
            .run
            .as_ref()
            .map(|_| self.last_recv + self.read_timeout())
    }
}
