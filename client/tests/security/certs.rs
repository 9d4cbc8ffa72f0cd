//! Certificates made at test time (rcgen): a CA, a server certificate naming `localhost` only
//! (so `127.0.0.1` is a hostname mismatch), a client certificate, and an unrelated CA.

use std::path::Path;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

/// One CA's worth of PEM material.
pub struct Certs {
    pub ca: String,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
    /// A CA that signed nothing here.
    pub other_ca: String,
}

fn ca(name: &str) -> (Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    (p.self_signed(&key).unwrap(), key)
}

fn leaf(
    names: &[&str],
    cn: &str,
    usage: ExtendedKeyUsagePurpose,
    ca: &(Certificate, KeyPair),
) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut p = CertificateParams::new(names).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = vec![usage];
    let cert = p.signed_by(&key, &ca.0, &ca.1).unwrap();
    (cert.pem(), key.serialize_pem())
}

impl Certs {
    pub fn new() -> Certs {
        let root = ca("zkit test CA");
        let (server_cert, server_key) = leaf(
            &["localhost"],
            "localhost",
            ExtendedKeyUsagePurpose::ServerAuth,
            &root,
        );
        // The client certificate names the loopback address and localhost: a server that
        // checks its client's name (ZooKeeper can) finds it either way.
        let (client_cert, client_key) = leaf(
            &["localhost", "127.0.0.1"],
            "zkit-client",
            ExtendedKeyUsagePurpose::ClientAuth,
            &root,
        );
        Certs {
            ca: root.0.pem(),
            server_cert,
            server_key,
            client_cert,
            client_key,
            other_ca: ca("some other CA").0.pem(),
        }
    }

    /// The files `scripts/zookeeper.sh` reads from `ZK_TLS_DIR`.
    pub fn write_zk_tls_dir(&self, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        let keystore = format!("{}{}{}", self.server_key, self.server_cert, self.ca);
        std::fs::write(dir.join("server-keystore.pem"), keystore).unwrap();
        std::fs::write(dir.join("ca.pem"), &self.ca).unwrap();
    }

    pub fn client_tls(&self) -> zkit::TlsConfig {
        zkit::TlsConfig::new(self.ca.clone())
    }

    pub fn client_tls_with_cert(&self) -> zkit::TlsConfig {
        self.client_tls()
            .client_cert(self.client_cert.clone(), self.client_key.clone())
    }

    pub fn server_tls(&self) -> zkit_testkit::ServerTls {
        zkit_testkit::ServerTls::new(self.server_cert.clone(), self.server_key.clone())
    }
}
