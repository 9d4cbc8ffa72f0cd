//! Options: connect strings, client options, create options and ACL helpers.

use std::time::Duration;

use crate::error::Error;
use zkit_proto::{Acl, CreateMode};

/// A parsed connect string: `host:port[,host:port...][/chroot]`.
///
/// IPv6 literals go in brackets (`[::1]:2181`); a host without a port gets 2181.
///
/// ```
/// use zkit::ConnectString;
/// let c: ConnectString = "zk1:2181,[::1]:2182,zk3/app".parse().unwrap();
/// assert_eq!(c.hosts, vec![("zk1".into(), 2181), ("::1".into(), 2182), ("zk3".into(), 2181)]);
/// assert_eq!(c.chroot.as_deref(), Some("/app"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectString {
    /// Hosts and ports, in the order given.
    pub hosts: Vec<(String, u16)>,
    /// The chroot, if any (never `/`).
    pub chroot: Option<String>,
}

impl std::str::FromStr for ConnectString {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::InvalidConnectString(format!("{s:?}: {why}"));
        let (hosts_part, chroot) = match s.find('/') {
            Some(i) => (&s[..i], Some(&s[i..])),
            None => (s, None),
        };
        let chroot = match chroot {
            None | Some("/") => None,
            Some(c) => {
                zkit_proto::path::validate_path(c, false)
                    .map_err(|e| bad(&format!("chroot: {}", e.reason)))?;
                Some(c.to_owned())
            }
        };
        let mut hosts = Vec::new();
        for part in hosts_part.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (host, port) = if let Some(rest) = part.strip_prefix('[') {
                let end = rest.find(']').ok_or_else(|| bad("unclosed ["))?;
                let host = &rest[..end];
                let after = &rest[end + 1..];
                let port = match after.strip_prefix(':') {
                    Some(p) => p.parse().map_err(|_| bad("bad port"))?,
                    None if after.is_empty() => 2181,
                    None => return Err(bad("junk after ]")),
                };
                (host.to_owned(), port)
            } else {
                match part.rsplit_once(':') {
                    Some((h, _)) if h.contains(':') => {
                        return Err(bad("IPv6 literals need brackets"))
                    }
                    Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| bad("bad port"))?),
                    None => (part.to_owned(), 2181),
                }
            };
            if host.is_empty() {
                return Err(bad("empty host"));
            }
            hosts.push((host, port));
        }
        if hosts.is_empty() {
            return Err(bad("no hosts"));
        }
        Ok(ConnectString { hosts, chroot })
    }
}

/// Hosts in a shuffled order, handed out round-robin.
#[derive(Debug, Clone)]
pub(crate) struct HostList {
    hosts: Vec<(String, u16)>,
    next: usize,
}

impl HostList {
    pub fn new(mut hosts: Vec<(String, u16)>) -> Self {
        fastrand::shuffle(&mut hosts);
        HostList { hosts, next: 0 }
    }
    pub fn next(&mut self) -> (String, u16) {
        let h = self.hosts[self.next % self.hosts.len()].clone();
        self.next = (self.next + 1) % self.hosts.len();
        h
    }
    pub fn len(&self) -> usize {
        self.hosts.len()
    }
}

/// Client options; build them with [`ClientBuilder`](crate::ClientBuilder).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// Requested session timeout (the server clamps it).
    pub session_timeout: Duration,
    /// How long `connect` waits for the first session before failing.
    pub connect_timeout: Duration,
    /// Per-request timeout (`None`: wait for the reply or the connection loss).
    pub request_timeout: Option<Duration>,
    /// Accept read-only servers.
    pub read_only: bool,
    /// After expiry, create a new session automatically (default: on, like Curator and kazoo).
    /// The state stream still shows `Expired`, then `Connecting` and `Connected` with the new
    /// session id; ephemerals of the old session are gone; watchers carry over to the new
    /// session (re-registered, with a [`WatchItem::Resync`](crate::WatchItem::Resync)).
    pub recreate_on_expiry: bool,
    /// Largest frame accepted from the server.
    pub max_packet: usize,
    /// First reconnect backoff step.
    pub backoff_base: Duration,
    /// Largest reconnect backoff.
    pub backoff_max: Duration,
    /// TLS for every connection (set by [`ClientBuilder::tls`](crate::ClientBuilder::tls)).
    pub(crate) tls: Option<crate::tls::Connector>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            session_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(30),
            request_timeout: None,
            read_only: false,
            recreate_on_expiry: true,
            max_packet: zkit_proto::frame::DEFAULT_MAX_PACKET,
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_secs(1),
            tls: None,
        }
    }
}

impl ClientOptions {
    /// Delay before the `failures`-th consecutive failed attempt: exponential with full jitter
    /// in its upper half.
    pub(crate) fn backoff_delay(&self, failures: u32) -> Duration {
        let exp = self
            .backoff_base
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16));
        let cap = exp.min(self.backoff_max);
        cap / 2 + cap.mul_f64(fastrand::f64() / 2.0)
    }

    /// TCP connect + handshake budget per host: session timeout / host count, like Java, using
    /// the negotiated timeout once there is one (the server may have granted far less).
    pub(crate) fn connect_timeout_per_host(&self, negotiated: Duration, hosts: usize) -> Duration {
        let timeout = if negotiated.is_zero() {
            self.session_timeout
        } else {
            negotiated
        };
        (timeout / hosts.max(1) as u32).max(Duration::from_millis(100))
    }
}

/// How to create a znode: mode, ACL and (for TTL modes) the TTL.
///
/// ```
/// use std::time::Duration;
/// use zkit::{Acl, CreateMode, CreateOptions};
/// let o = CreateOptions::new(CreateMode::EphemeralSequential).acl(Acl::creator_all());
/// let t = CreateOptions::new(CreateMode::PersistentWithTtl).ttl(Duration::from_secs(60));
/// assert_eq!(t.ttl, Some(Duration::from_secs(60)));
/// # let _ = o;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CreateOptions {
    /// Create mode.
    pub mode: CreateMode,
    /// ACL of the node (default: open).
    pub acl: Vec<Acl>,
    /// TTL, for the TTL modes only.
    pub ttl: Option<Duration>,
}

impl CreateOptions {
    /// Options with the given mode and the open ACL.
    pub fn new(mode: CreateMode) -> Self {
        CreateOptions {
            mode,
            acl: Acl::open_unsafe(),
            ttl: None,
        }
    }
    /// Persistent node, open ACL.
    pub fn persistent() -> Self {
        Self::new(CreateMode::Persistent)
    }
    /// Ephemeral node, open ACL.
    pub fn ephemeral() -> Self {
        Self::new(CreateMode::Ephemeral)
    }
    /// Sets the ACL.
    pub fn acl(mut self, acl: Vec<Acl>) -> Self {
        self.acl = acl;
        self
    }
    /// Sets the TTL (TTL modes only).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
}

impl Default for CreateOptions {
    fn default() -> Self {
        Self::persistent()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_strings() {
        let c: ConnectString = "127.0.0.1:1,127.0.0.2:2".parse().unwrap();
        assert_eq!(c.hosts.len(), 2);
        assert_eq!(c.chroot, None);
        let c: ConnectString = "h:1/".parse().unwrap();
        assert_eq!(c.chroot, None);
        for bad in [
            "",
            "/x",
            "h:notaport",
            "::1:2181",
            "[::1",
            "h:1/a/",
            "h:1/a//b",
        ] {
            assert!(bad.parse::<ConnectString>().is_err(), "{bad}");
        }
    }

    #[test]
    fn per_host_connect_budget_follows_the_negotiated_timeout() {
        let o = ClientOptions::default();
        assert_eq!(
            o.connect_timeout_per_host(Duration::ZERO, 3),
            Duration::from_secs(10)
        );
        assert_eq!(
            o.connect_timeout_per_host(Duration::from_secs(3), 3),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let o = ClientOptions::default();
        for f in 1..30 {
            let d = o.backoff_delay(f);
            assert!(d <= o.backoff_max, "{f}: {d:?}");
        }
        assert!(o.backoff_delay(1) <= Duration::from_millis(10));
        assert!(o.backoff_delay(20) >= Duration::from_millis(500));
    }
}
