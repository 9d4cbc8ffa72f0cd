//! The secure client port: TLS (rustls, `ring` provider) in front of the same connection
//! handling as the plain port, like ZooKeeper's `secureClientPort`.

use std::fmt;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// TLS settings of the testkit's secure client port: the server's certificate chain and key
/// (PEM), and optionally a CA whose signed client certificate every client must present
/// (ZooKeeper's `ssl.clientAuth=need`).
///
/// ```
/// let tls = zkit_testkit::ServerTls::new("-----BEGIN CERTIFICATE-----...", "-----BEGIN PRIVATE KEY-----...");
/// let builder = zkit_testkit::Server::builder().tls(tls);
/// # let _ = builder;
/// ```
#[derive(Clone)]
pub struct ServerTls {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    client_ca_pem: Option<Vec<u8>>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("ServerTls")
            .field("client_auth", &self.client_ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// The server's certificate chain (PEM, leaf first) and private key (PEM).
    pub fn new(cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        ServerTls {
            cert_pem: cert_pem.into(),
            key_pem: key_pem.into(),
            client_ca_pem: None,
        }
    }

    /// Requires every client to present a certificate signed by one of these CAs (PEM).
    pub fn client_ca(mut self, ca_pem: impl Into<Vec<u8>>) -> Self {
        self.client_ca_pem = Some(ca_pem.into());
        self
    }

    /// Builds the acceptor; the error says which input is wrong.
    pub(crate) fn acceptor(&self) -> Result<TlsAcceptor, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("TLS certificate: {e}"))?;
        if chain.is_empty() {
            return Err("TLS certificate: no PEM certificate found".into());
        }
        let key =
            PrivateKeyDer::from_pem_slice(&self.key_pem).map_err(|e| format!("TLS key: {e}"))?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = match &self.client_ca_pem {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(ca) {
                    let c = c.map_err(|e| format!("TLS client CA: {e}"))?;
                    roots.add(c).map_err(|e| format!("TLS client CA: {e}"))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| format!("TLS client CA: {e}"))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder
            .with_single_cert(chain, key)
            .map_err(|e| format!("TLS certificate/key: {e}"))?;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}
