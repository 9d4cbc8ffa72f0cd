//! A standalone server's secure client port from `zoo.cfg`: `secureClientPort`,
//! `secureClientPortAddress` and the PEM `ssl.keyStore` / `ssl.trustStore` / `ssl.clientAuth`
//! keys, as ZooKeeper's Netty connection factory reads them.

use crate::net::ServerTls;
use crate::server;

use super::zoocfg::{ConfigError, ZooCfg};

/// Adds the secure port `cfg` asks for to `b` (unchanged when there is none).
pub(crate) fn secure_port(
    cfg: &ZooCfg,
    b: server::Builder,
) -> Result<server::Builder, ConfigError> {
    let Some(port) = cfg.secure_client_port else {
        return Ok(b);
    };
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|e| cfg.error(key, format!("cannot read {}: {e}", path.display())))
    };
    let Some(key_store) = &cfg.ssl_key_store else {
        return Err(cfg.error(
            "ssl.keyStore.location",
            "is not set (secureClientPort needs the server's key and certificate)",
        ));
    };
    // One PEM file holds the key and the chain: each reader takes its own sections.
    let pem = read("ssl.keyStore.location", key_store)?;
    let mut tls = ServerTls::new(pem.clone(), pem);
    // ZooKeeper's default is `need`; `want` asks without requiring, which zkit does not do.
    let auth = cfg.ssl_client_auth.as_deref().unwrap_or("need");
    match (auth, &cfg.ssl_trust_store) {
        ("need", Some(trust)) => tls = tls.client_ca(read("ssl.trustStore.location", trust)?),
        ("need", None) => {
            return Err(cfg.error(
                "ssl.clientAuth",
                "need (the default) requires ssl.trustStore.location, or set it to none",
            ))
        }
        ("want", _) => {
            return Err(cfg.error(
                "ssl.clientAuth",
                "want is not supported by zkit: use need or none",
            ))
        }
        _ => {}
    }
    let host = cfg
        .secure_client_port_address
        .clone()
        .or_else(|| cfg.client_port_address.clone())
        .unwrap_or_else(|| "0.0.0.0".to_owned());
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| cfg.error("secureClientPortAddress", format!("cannot resolve {host}")))?;
    Ok(b.tls(tls).secure_listen(addr))
}
