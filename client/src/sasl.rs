//! SASL authentication settings ([`SaslConfig`]) and the mechanisms behind them. The exchange
//! itself is run by the session (`session/sasl.rs`) on every connection, before any other
//! request.

use std::fmt;
use std::sync::Arc;

use zkit_proto::sasl::DigestMd5Client;

use crate::error::Error;

/// One SASL exchange in progress: fed the server's tokens, answering with the client's.
pub(crate) trait Mechanism: Send + fmt::Debug {
    /// The first token (empty when the mechanism has no initial response).
    fn initial(&mut self) -> Result<Vec<u8>, String>;
    /// The server's next token; `Some` is the answer to send.
    fn step(&mut self, token: &[u8]) -> Result<Option<Vec<u8>>, String>;
    /// Whether the client side is done.
    fn is_complete(&self) -> bool;
}

impl Mechanism for DigestMd5Client {
    fn initial(&mut self) -> Result<Vec<u8>, String> {
        Ok(self.initial_response())
    }
    fn step(&mut self, token: &[u8]) -> Result<Option<Vec<u8>>, String> {
        DigestMd5Client::step(self, token).map_err(|e| e.to_string())
    }
    fn is_complete(&self) -> bool {
        DigestMd5Client::is_complete(self)
    }
}

/// Starts a fresh exchange for one connection to the server of the given host name.
pub(crate) type Start = Arc<dyn Fn(&str) -> Result<Box<dyn Mechanism>, String> + Send + Sync>;

/// SASL authentication for a client: the exchange runs on every connection (the first and
/// every reconnect) before anything else is sent; a refusal moves the session to `AuthFailed`.
/// The authenticated name is the connection's `sasl` id: it shows in
/// [`Client::who_am_i`](crate::Client::who_am_i) and matches `sasl` ACL entries.
///
/// ```no_run
/// # async fn f() -> zkit::Result<()> {
/// let zk = zkit::Client::builder("127.0.0.1:2181")
///     .sasl(zkit::SaslConfig::digest_md5("bob", "secret"))
///     .connect()
///     .await?;
/// # let _ = zk; Ok(()) }
/// ```
#[derive(Clone)]
pub struct SaslConfig {
    pub(crate) name: &'static str,
    pub(crate) start: Start,
}

impl fmt::Debug for SaslConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslConfig")
            .field("mechanism", &self.name)
            .finish_non_exhaustive()
    }
}

impl SaslConfig {
    /// DIGEST-MD5 with a user and password from the server's JAAS `Server` section
    /// (`user_<name>="<password>"`), in ZooKeeper's realm `zk-sasl-md5`.
    pub fn digest_md5(user: impl Into<String>, password: impl Into<String>) -> Self {
        let (user, password) = (user.into(), password.into());
        SaslConfig {
            name: "DIGEST-MD5",
            start: Arc::new(move |_host: &str| {
                DigestMd5Client::with_random_nonce(&user, &password)
                    .map(|m| Box::new(m) as Box<dyn Mechanism>)
                    .map_err(|e| e.to_string())
            }),
        }
    }

    /// A mechanism given as its start function (GSSAPI uses this).
    #[cfg_attr(not(feature = "gssapi"), allow(dead_code))]
    pub(crate) fn custom(name: &'static str, start: Start) -> Self {
        SaslConfig { name, start }
    }

    /// The mechanism's name (`DIGEST-MD5`, `GSSAPI`).
    pub fn mechanism(&self) -> &str {
        self.name
    }

    pub(crate) fn begin(&self, host: &str) -> Result<Box<dyn Mechanism>, Error> {
        (self.start)(host).map_err(|e| {
            tracing::warn!(mechanism = self.name, error = %e, "SASL could not start");
            Error::AuthFailed
        })
    }
}
