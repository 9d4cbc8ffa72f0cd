//! SASL GSSAPI (Kerberos v5, RFC 4752) through the system's GSSAPI library (MIT krb5 via the
//! `libgssapi` crate), as ZooKeeper's Java client (`ZooKeeperSaslClient` over the JDK's
//! `GssKrb5Client`) runs it:
//!
//! 1. the client sends its first context token (the Kerberos AP-REQ) in the first sasl packet;
//! 2. the server answers with its token (AP-REP, mutual authentication); once the context is
//!    established the client answers with an empty token;
//! 3. the server sends a wrapped 4-byte message: the security layers it offers (bit 1: none)
//!    and its largest buffer; the client answers with a wrapped 4-byte message choosing "no
//!    security layer" (1, then a buffer size of 0); ZooKeeper wraps nothing afterwards;
//! 4. the server's reply to that carries no token: done. The connection's id is then
//!    `sasl:<name>`, the name the server makes of the principal (by default the short name and
//!    the realm, `alice@EXAMPLE.COM`).
//!
//! The client's credentials come from the usual Kerberos places: a ticket cache (`kinit`,
//! `KRB5CCNAME`) or a client keytab (`KRB5_CLIENT_KTNAME`), configured by `KRB5_CONFIG`.
//! Getting a service ticket talks to the KDC synchronously, inside the client's task, once per
//! connection.

use std::fmt;
use std::sync::Arc;

use libgssapi::context::{ClientCtx, CtxFlags, SecurityContext};
use libgssapi::credential::{Cred, CredUsage};
use libgssapi::name::Name;
use libgssapi::oid::{OidSet, GSS_MECH_KRB5, GSS_NT_HOSTBASED_SERVICE, GSS_NT_KRB5_PRINCIPAL};

use crate::sasl::{Mechanism, SaslConfig};

/// Settings of SASL GSSAPI (Kerberos) authentication; see [`SaslConfig::gssapi`].
///
/// ```no_run
/// let opts = zkit::GssapiOptions::new().principal("alice@EXAMPLE.COM");
/// let sasl = zkit::SaslConfig::gssapi(opts);
/// # let _ = sasl;
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GssapiOptions {
    /// The client principal (`alice@EXAMPLE.COM`); `None`: the default one of the ticket cache
    /// or client keytab.
    pub principal: Option<String>,
    /// The service part of the server's principal (default `zookeeper`, like the Java
    /// client's `zookeeper.sasl.client.username`).
    pub service: String,
    /// The host part of the server's principal; `None`: the host of the connect string the
    /// connection goes to (so `zookeeper/<host>@REALM`).
    pub server_host: Option<String>,
}

impl Default for GssapiOptions {
    fn default() -> Self {
        GssapiOptions {
            principal: None,
            service: "zookeeper".into(),
            server_host: None,
        }
    }
}

impl GssapiOptions {
    /// The defaults: default client principal, service `zookeeper`, host from the connect
    /// string.
    pub fn new() -> Self {
        Self::default()
    }
    /// Authenticates as this principal.
    pub fn principal(mut self, principal: impl Into<String>) -> Self {
        self.principal = Some(principal.into());
        self
    }
    /// The service name of the server's principal.
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = service.into();
        self
    }
    /// The host name of the server's principal, whatever host the connection goes to.
    pub fn server_host(mut self, host: impl Into<String>) -> Self {
        self.server_host = Some(host.into());
        self
    }
}

impl SaslConfig {
    /// Kerberos v5 through GSSAPI (cargo feature `gssapi`), like a Java client whose JAAS
    /// `Client` section uses `Krb5LoginModule`.
    pub fn gssapi(options: GssapiOptions) -> Self {
        let options = Arc::new(options);
        SaslConfig::custom(
            "GSSAPI",
            Arc::new(move |host: &str| {
                Gssapi::start(&options, host).map(|m| Box::new(m) as Box<dyn Mechanism>)
            }),
        )
    }
}

/// One GSSAPI exchange.
struct Gssapi {
    ctx: ClientCtx,
    /// The security context is established (step 3 next).
    established: bool,
    /// The security layer is negotiated: nothing is left to send.
    complete: bool,
}

impl fmt::Debug for Gssapi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gssapi")
            .field("established", &self.established)
            .field("complete", &self.complete)
            .finish_non_exhaustive()
    }
}

/// Bit of "no security layer" in RFC 4752's security layer mask.
const NO_SECURITY_LAYER: u8 = 1;

impl Gssapi {
    fn start(options: &GssapiOptions, host: &str) -> Result<Gssapi, String> {
        let host = options.server_host.as_deref().unwrap_or(host);
        let target = format!("{}@{host}", options.service);
        let target = Name::new(target.as_bytes(), Some(GSS_NT_HOSTBASED_SERVICE))
            .and_then(|n| n.canonicalize(Some(GSS_MECH_KRB5)))
            .map_err(|e| format!("server principal {target}: {e}"))?;
        let mut mechs = OidSet::new();
        mechs
            .add(GSS_MECH_KRB5)
            .map_err(|e| format!("Kerberos mechanism: {e}"))?;
        let name = match &options.principal {
            Some(p) => Some(
                Name::new(p.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL))
                    .map_err(|e| format!("client principal {p}: {e}"))?,
            ),
            None => None,
        };
        let cred = Cred::acquire(name.as_ref(), None, CredUsage::Initiate, Some(&mechs))
            .map_err(|e| format!("Kerberos credentials: {e}"))?;
        let ctx = ClientCtx::new(
            Some(cred),
            target,
            CtxFlags::GSS_C_MUTUAL_FLAG,
            Some(GSS_MECH_KRB5),
        );
        Ok(Gssapi {
            ctx,
            established: false,
            complete: false,
        })
    }

    /// Step 3: the server's offer of security layers in, the client's choice out.
    fn negotiate_layer(&mut self, token: &[u8]) -> Result<Vec<u8>, String> {
        let offer = self
            .ctx
            .unwrap(token)
            .map_err(|e| format!("security layer offer: {e}"))?;
        if offer.len() != 4 {
            return Err(format!("security layer offer of {} bytes", offer.len()));
        }
        if offer[0] & NO_SECURITY_LAYER == 0 {
            return Err("the server requires a security layer".into());
        }
        // No security layer, so no buffer size; no authorization id (the server then uses
        // the authenticated principal).
        let answer = [NO_SECURITY_LAYER, 0, 0, 0];
        let wrapped = self
            .ctx
            .wrap(false, &answer)
            .map_err(|e| format!("security layer answer: {e}"))?;
        self.complete = true;
        Ok(wrapped.to_vec())
    }
}

impl Mechanism for Gssapi {
    fn initial(&mut self) -> Result<Vec<u8>, String> {
        match self.ctx.step(None, None) {
            Ok(Some(token)) => {
                self.established = self.ctx.is_complete();
                Ok(token.to_vec())
            }
            Ok(None) => Err("GSSAPI produced no initial token".into()),
            Err(e) => Err(format!("GSSAPI: {e}")),
        }
    }

    fn step(&mut self, token: &[u8]) -> Result<Option<Vec<u8>>, String> {
        if self.complete {
            return Ok(None);
        }
        if self.established {
            return self.negotiate_layer(token).map(Some);
        }
        let out = self
            .ctx
            .step(Some(token), None)
            .map_err(|e| format!("GSSAPI: {e}"))?;
        if self.ctx.is_complete() {
            self.established = true;
            // RFC 4752: once established, the client answers with what GSSAPI gave, or empty.
            return Ok(Some(out.map(|t| t.to_vec()).unwrap_or_default()));
        }
        match out {
            Some(t) => Ok(Some(t.to_vec())),
            None => Err("GSSAPI stopped before the context was established".into()),
        }
    }

    fn is_complete(&self) -> bool {
        self.complete
    }
}
