//! TLS for the client's connections: [`TlsConfig`] (what the caller gives) and the connector the
//! driver uses on every connection, to every host, after every reconnect.
//!
//! rustls does the work (through tokio-rustls, with the `ring` provider), so no OpenSSL is needed
//! to build or run. The server's certificate chain is always verified against the configured CA
//! bundle; the certificate's name is checked against the host of the connect string unless the
//! caller opts out with [`TlsConfig::skip_hostname_verification`].

use std::fmt;
use std::io;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::error::Error;

/// TLS settings of a client: the CA bundle that signs the servers' certificates, an optional
/// client certificate (for servers that require mutual TLS), and whether the server's
/// certificate must name the host it was reached by (the default).
///
/// ```no_run
/// # async fn f() -> zkit::Result<()> {
/// let tls = zkit::TlsConfig::new(std::fs::read("ca.pem").unwrap())
///     .client_cert(std::fs::read("client.pem").unwrap(), std::fs::read("client-key.pem").unwrap());
/// let zk = zkit::Client::builder("zk1.example.com:2281").tls(tls).connect().await?;
/// # let _ = zk; Ok(()) }
/// ```
#[derive(Clone)]
pub struct TlsConfig {
    ca_pem: Vec<u8>,
    client: Option<(Vec<u8>, Vec<u8>)>,
    verify_hostname: bool,
    server_name: Option<String>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("TlsConfig")
            .field("client_cert", &self.client.is_some())
            .field("verify_hostname", &self.verify_hostname)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Trusts the CA certificates in `ca_pem` (one or more PEM `CERTIFICATE` blocks), and only
    /// those: the system's roots are not used.
    pub fn new(ca_pem: impl Into<Vec<u8>>) -> Self {
        TlsConfig {
            ca_pem: ca_pem.into(),
            client: None,
            verify_hostname: true,
            server_name: None,
        }
    }

    /// Presents this certificate chain (PEM, leaf first) and private key (PEM, PKCS#8, PKCS#1
    /// or SEC1) when the server asks for one.
    pub fn client_cert(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.client = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Checks every server's certificate against this name instead of the host in the connect
    /// string (and sends it as SNI). Useful when servers are reached by address but share one
    /// certificate name.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Accepts a server certificate whose names do not match the host (the chain is still
    /// verified against the CA bundle). For test setups reached by IP address whose
    /// certificates carry no IP names; never for production.
    pub fn skip_hostname_verification(mut self) -> Self {
        self.verify_hostname = false;
        self
    }

    /// Builds the connector: parses the PEM input and sets up rustls.
    pub(crate) fn connector(&self) -> Result<Connector, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&self.ca_pem) {
            let c = c.map_err(|e| Error::Tls(format!("CA bundle: {e}")))?;
            roots
                .add(c)
                .map_err(|e| Error::Tls(format!("CA bundle: {e}")))?;
        }
        if roots.is_empty() {
            return Err(Error::Tls("CA bundle: no PEM certificate found".into()));
        }
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| Error::Tls(format!("CA bundle: {e}")))?;
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?;
        let builder = if self.verify_hostname {
            builder.with_webpki_verifier(verifier)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyName {
                    inner: verifier,
                    provider,
                }))
        };
        let config = match &self.client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(cert)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| Error::Tls(format!("client certificate: {e}")))?;
                if chain.is_empty() {
                    return Err(Error::Tls(
                        "client certificate: no PEM certificate found".into(),
                    ));
                }
                let key = PrivateKeyDer::from_pem_slice(key)
                    .map_err(|e| Error::Tls(format!("client key: {e}")))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| Error::Tls(format!("client certificate: {e}")))?
            }
        };
        Ok(Connector {
            inner: TlsConnector::from(Arc::new(config)),
            server_name: self.server_name.clone(),
        })
    }
}

/// The driver's side of [`TlsConfig`]: one rustls configuration for all connections.
#[derive(Clone)]
pub(crate) struct Connector {
    inner: TlsConnector,
    server_name: Option<String>,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// Runs the TLS handshake on a connected socket to `host` (the connect string's name).
    /// Errors are worded for a person: which host, and what was wrong.
    pub async fn connect(
        &self,
        host: &str,
        tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, String> {
        let name = self.server_name.as_deref().unwrap_or(host);
        let name = ServerName::try_from(name.to_owned())
            .map_err(|e| format!("{name:?} is not a valid server name: {e}"))?;
        self.inner
            .connect(name, tcp)
            .await
            .map_err(|e| describe(&e, host))
    }
}

/// A TLS failure as a person should read it; `None` if `e` is not a TLS failure.
pub(crate) fn tls_failure(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

fn describe(e: &io::Error, host: &str) -> String {
    match tls_failure(e) {
        Some(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => format!(
            "handshake with {host}: the server's certificate is not signed by the configured CA"
        ),
        Some(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        )) => format!(
            "handshake with {host}: the server's certificate does not name {host:?} \
             (hostname verification; see TlsConfig::server_name)"
        ),
        Some(t) => format!("handshake with {host}: {t}"),
        None => format!("handshake with {host}: {e}"),
    }
}

/// Verifies the chain like webpki but accepts any name: the opt-out of hostname verification.
#[derive(Debug)]
struct AnyName {
    inner: Arc<WebPkiServerVerifier>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
