//! SASL DIGEST-MD5 (RFC 2831) as ZooKeeper uses it, sans-IO: both sides of the exchange, fed
//! the peer's token and answering with the next one. Quality of protection `auth` only (no
//! integrity or confidentiality layer), realm [`ZK_REALM`], digest URI [`ZK_DIGEST_URI`].
//!
//! The exchange ZooKeeper runs (each token in a `sasl` packet, opcode 102):
//! 1. client → server: an empty token;
//! 2. server → client: the challenge (realm, nonce, qop, charset, algorithm);
//! 3. client → server: the digest response (user, nonces, digest URI, response hash);
//! 4. server → client: `rspauth=…`, proving the server knows the password too. Both sides are
//!    then done; the server has authenticated the user.
//!
//! MD5 comes from the `md-5` crate; nothing cryptographic is written here.
//!
//! ```
//! use zkit_proto::sasl::{DigestMd5Client, DigestMd5Server};
//! let mut client = DigestMd5Client::new("bob", "secret", "client-nonce");
//! let mut server = DigestMd5Server::new("server-nonce");
//! let users = |u: &str| (u == "bob").then(|| "secret".to_string());
//! let challenge = server.step(&client.initial_response(), users).unwrap();
//! let response = client.step(&challenge).unwrap().unwrap();
//! let rspauth = server.step(&response, users).unwrap();
//! assert!(client.step(&rspauth).unwrap().is_none());
//! assert!(client.is_complete() && server.is_complete());
//! assert_eq!(server.authorization_id(), Some("bob"));
//! ```

use md5::{Digest, Md5};

/// The realm ZooKeeper's DIGEST-MD5 server announces.
pub const ZK_REALM: &str = "zk-sasl-md5";
/// The digest URI ZooKeeper's client sends: service `zookeeper`, server name `zk-sasl-md5`.
pub const ZK_DIGEST_URI: &str = "zookeeper/zk-sasl-md5";
/// Largest token either side accepts (RFC 2831 caps a challenge at 2048 bytes and a response
/// at 4096).
pub const MAX_TOKEN: usize = 4096;

/// Why a DIGEST-MD5 exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SaslError {
    /// The peer's token does not parse or lacks a required directive.
    #[error("malformed DIGEST-MD5 token: {0}")]
    Malformed(String),
    /// The user is unknown or the password is wrong.
    #[error("DIGEST-MD5 authentication failed")]
    BadCredentials,
    /// The server's `rspauth` does not prove it knows the password.
    #[error("DIGEST-MD5: the server's rspauth is wrong")]
    BadServer,
    /// A token arrived after the exchange was over.
    #[error("DIGEST-MD5: unexpected token after completion")]
    Unexpected,
    /// The operating system's random generator failed.
    #[error("no randomness for the nonce: {0}")]
    Random(String),
}

fn malformed(why: impl Into<String>) -> SaslError {
    SaslError::Malformed(why.into())
}

/// Parses `key=value,key="quoted \" value",...` into pairs (keys lower-cased).
pub fn parse_directives(token: &[u8]) -> Result<Vec<(String, String)>, SaslError> {
    if token.len() > MAX_TOKEN {
        return Err(malformed(format!("token of {} bytes", token.len())));
    }
    let s = std::str::from_utf8(token).map_err(|_| malformed("not UTF-8"))?;
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(malformed(format!("directive {key:?} without a value")));
        }
        let key = key.trim().to_ascii_lowercase();
        if key.is_empty() {
            return Err(malformed("empty directive name"));
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(malformed("unterminated quoted string")),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err(malformed("unterminated escape")),
                    },
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
            value = value.trim().to_owned();
        }
        out.push((key, value));
    }
}

fn get<'a>(d: &'a [(String, String)], key: &str) -> Option<&'a str> {
    d.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn require<'a>(d: &'a [(String, String)], key: &str) -> Result<&'a str, SaslError> {
    get(d, key).ok_or_else(|| malformed(format!("no {key}")))
}

fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// Text as the digest hashes it under `charset=utf-8`: ISO 8859-1 when every character fits
/// (RFC 2831 §2.1.2.1), UTF-8 otherwise.
fn digest_bytes(s: &str) -> Vec<u8> {
    if s.chars().all(|c| (c as u32) < 0x100) {
        s.chars().map(|c| c as u8).collect()
    } else {
        s.as_bytes().to_vec()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The facts both sides hash.
struct Exchange<'a> {
    user: &'a str,
    realm: &'a str,
    password: &'a str,
    nonce: &'a str,
    cnonce: &'a str,
    nc: &'a str,
    authzid: Option<&'a str>,
    digest_uri: &'a str,
}

impl Exchange<'_> {
    /// `response` (for `AUTHENTICATE`) or `rspauth` (for the server's proof).
    fn digest(&self, authenticate: bool) -> String {
        let mut h = Md5::new();
        h.update(digest_bytes(self.user));
        h.update(b":");
        h.update(digest_bytes(self.realm));
        h.update(b":");
        h.update(digest_bytes(self.password));
        let secret = h.finalize();
        let mut a1 = Md5::new();
        a1.update(secret);
        a1.update(format!(":{}:{}", self.nonce, self.cnonce).as_bytes());
        if let Some(z) = self.authzid {
            a1.update(b":");
            a1.update(z.as_bytes());
        }
        let ha1 = hex(&a1.finalize());
        let a2 = if authenticate {
            format!("AUTHENTICATE:{}", self.digest_uri)
        } else {
            format!(":{}", self.digest_uri)
        };
        let ha2 = hex(&Md5::digest(a2.as_bytes()));
        let kd = format!(
            "{ha1}:{}:{}:{}:auth:{ha2}",
            self.nonce, self.nc, self.cnonce
        );
        hex(&Md5::digest(kd.as_bytes()))
    }
}

/// A nonce of 16 random bytes from the operating system, base64-encoded.
pub fn random_nonce() -> Result<String, SaslError> {
    use base64::Engine;
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| SaslError::Random(e.to_string()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(b))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ClientStep {
    /// Waiting for the challenge.
    Start,
    /// Response sent; the expected `rspauth`.
    Responded(String),
    Done,
}

/// The client side of DIGEST-MD5.
#[derive(Clone)]
pub struct DigestMd5Client {
    user: String,
    password: String,
    cnonce: String,
    digest_uri: String,
    step: ClientStep,
}

impl std::fmt::Debug for DigestMd5Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestMd5Client")
            .field("user", &self.user)
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

impl DigestMd5Client {
    /// A client for `user` with `password`; `cnonce` is its nonce (random and fresh for each
    /// exchange: see [`DigestMd5Client::with_random_nonce`]).
    pub fn new(user: &str, password: &str, cnonce: &str) -> Self {
        DigestMd5Client {
            user: user.to_owned(),
            password: password.to_owned(),
            cnonce: cnonce.to_owned(),
            digest_uri: ZK_DIGEST_URI.to_owned(),
            step: ClientStep::Start,
        }
    }

    /// A client with a fresh random nonce.
    pub fn with_random_nonce(user: &str, password: &str) -> Result<Self, SaslError> {
        Ok(Self::new(user, password, &random_nonce()?))
    }

    /// The first token: empty (DIGEST-MD5 has no initial response).
    pub fn initial_response(&self) -> Vec<u8> {
        Vec::new()
    }

    /// Whether the server proved itself and the exchange is over.
    pub fn is_complete(&self) -> bool {
        self.step == ClientStep::Done
    }

    /// Takes the server's token: the challenge (answered with the digest response) or the
    /// `rspauth` (checked; nothing more to send).
    pub fn step(&mut self, token: &[u8]) -> Result<Option<Vec<u8>>, SaslError> {
        let d = parse_directives(token)?;
        match std::mem::replace(&mut self.step, ClientStep::Done) {
            ClientStep::Start => {
                let nonce = require(&d, "nonce")?;
                let realm = get(&d, "realm").unwrap_or(ZK_REALM);
                if let Some(q) = get(&d, "qop") {
                    if !q.split(',').any(|q| q.trim() == "auth") {
                        return Err(malformed(format!("qop {q:?} does not offer auth")));
                    }
                }
                let nc = "00000001";
                let ex = Exchange {
                    user: &self.user,
                    realm,
                    password: &self.password,
                    nonce,
                    cnonce: &self.cnonce,
                    nc,
                    authzid: None,
                    digest_uri: &self.digest_uri,
                };
                let response = ex.digest(true);
                let rspauth = ex.digest(false);
                let mut t = String::new();
                if get(&d, "charset").is_some() {
                    t.push_str("charset=utf-8,");
                }
                t.push_str(&format!(
                    "username={},realm={},nonce={},nc={nc},cnonce={},digest-uri={},maxbuf=65536,response={response},qop=auth",
                    quote(&self.user),
                    quote(realm),
                    quote(nonce),
                    quote(&self.cnonce),
                    quote(&self.digest_uri),
                ));
                self.step = ClientStep::Responded(rspauth);
                Ok(Some(t.into_bytes()))
            }
            ClientStep::Responded(expected) => {
                if require(&d, "rspauth")? != expected {
                    return Err(SaslError::BadServer);
                }
                Ok(None)
            }
            ClientStep::Done => Err(SaslError::Unexpected),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ServerStep {
    Start,
    Challenged,
    Done(String),
    Failed,
}

/// The server side of DIGEST-MD5, for ZooKeeper's realm and digest URI.
#[derive(Debug, Clone)]
pub struct DigestMd5Server {
    nonce: String,
    step: ServerStep,
}

impl DigestMd5Server {
    /// A server exchange with this nonce (fresh and unpredictable for each exchange).
    pub fn new(nonce: &str) -> Self {
        DigestMd5Server {
            nonce: nonce.to_owned(),
            step: ServerStep::Start,
        }
    }

    /// Whether the client authenticated.
    pub fn is_complete(&self) -> bool {
        matches!(self.step, ServerStep::Done(_))
    }

    /// The authenticated user, once complete.
    pub fn authorization_id(&self) -> Option<&str> {
        match &self.step {
            ServerStep::Done(u) => Some(u),
            _ => None,
        }
    }

    /// Takes the client's token: the empty initial one (answered with the challenge), then
    /// the digest response (checked against `password_of(user)`; answered with `rspauth`).
    /// Any failure is final.
    pub fn step(
        &mut self,
        token: &[u8],
        password_of: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<u8>, SaslError> {
        let r = self.step_inner(token, password_of);
        if r.is_err() {
            self.step = ServerStep::Failed;
        }
        r
    }

    fn step_inner(
        &mut self,
        token: &[u8],
        password_of: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<u8>, SaslError> {
        match self.step {
            ServerStep::Start => {
                if !token.is_empty() {
                    return Err(malformed("DIGEST-MD5 takes no initial response"));
                }
                self.step = ServerStep::Challenged;
                Ok(format!(
                    "realm={},nonce={},qop=\"auth\",charset=utf-8,algorithm=md5-sess",
                    quote(ZK_REALM),
                    quote(&self.nonce)
                )
                .into_bytes())
            }
            ServerStep::Challenged => {
                let d = parse_directives(token)?;
                let user = require(&d, "username")?;
                let realm = get(&d, "realm").unwrap_or(ZK_REALM);
                let nc = require(&d, "nc")?;
                let cnonce = require(&d, "cnonce")?;
                let uri = require(&d, "digest-uri")?;
                let response = require(&d, "response")?;
                let authzid = get(&d, "authzid");
                if require(&d, "nonce")? != self.nonce {
                    return Err(malformed("nonce is not the one sent"));
                }
                if realm != ZK_REALM {
                    return Err(malformed(format!("realm {realm:?}")));
                }
                if get(&d, "qop").unwrap_or("auth") != "auth" {
                    return Err(malformed("only qop=auth is supported"));
                }
                if nc != "00000001" {
                    return Err(malformed(format!("nonce count {nc:?}")));
                }
                if uri != ZK_DIGEST_URI {
                    return Err(malformed(format!("digest-uri {uri:?}")));
                }
                let password = password_of(user).ok_or(SaslError::BadCredentials)?;
                let ex = Exchange {
                    user,
                    realm,
                    password: &password,
                    nonce: &self.nonce,
                    cnonce,
                    nc,
                    authzid,
                    digest_uri: uri,
                };
                if !ex.digest(true).eq_ignore_ascii_case(response) {
                    return Err(SaslError::BadCredentials);
                }
                if authzid.is_some_and(|z| z != user) {
                    return Err(SaslError::BadCredentials);
                }
                let rspauth = ex.digest(false);
                self.step = ServerStep::Done(user.to_owned());
                Ok(format!("rspauth={rspauth}").into_bytes())
            }
            ServerStep::Done(_) | ServerStep::Failed => Err(SaslError::Unexpected),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2831 §4's example (IMAP service, host elwood.innosoft.com, qop auth).
    #[test]
    fn the_rfc_example_digests() {
        let ex = Exchange {
            user: "chris",
            realm: "elwood.innosoft.com",
            password: "secret",
            nonce: "OA6MG9tEQGm2hh",
            cnonce: "OA6MHXh6VqTrRk",
            nc: "00000001",
            authzid: None,
            digest_uri: "imap/elwood.innosoft.com",
        };
        assert_eq!(ex.digest(true), "d388dad90d4bbd760a152321f2143af7");
        assert_eq!(ex.digest(false), "ea40f60335c427b5527b84dbabcdfffd");
    }

    fn users(u: &str) -> Option<String> {
        (u == "bob").then(|| "secret".into())
    }

    #[test]
    fn a_wrong_password_fails_and_stays_failed() {
        let mut c = DigestMd5Client::new("bob", "wrong", "cn");
        let mut s = DigestMd5Server::new("sn");
        let ch = s.step(b"", users).unwrap();
        let resp = c.step(&ch).unwrap().unwrap();
        assert_eq!(s.step(&resp, users), Err(SaslError::BadCredentials));
        assert_eq!(s.step(&resp, users), Err(SaslError::Unexpected));
        assert!(!s.is_complete());
    }

    #[test]
    fn an_unknown_user_fails() {
        let mut c = DigestMd5Client::new("eve", "secret", "cn");
        let mut s = DigestMd5Server::new("sn");
        let resp = c.step(&s.step(b"", users).unwrap()).unwrap().unwrap();
        assert_eq!(s.step(&resp, users), Err(SaslError::BadCredentials));
    }

    #[test]
    fn a_forged_rspauth_is_refused() {
        let mut c = DigestMd5Client::new("bob", "secret", "cn");
        c.step(b"nonce=\"x\",realm=\"zk-sasl-md5\",qop=\"auth\"")
            .unwrap();
        assert_eq!(c.step(b"rspauth=00"), Err(SaslError::BadServer));
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = fastrand::Rng::with_seed(7);
        for i in 0..2000 {
            let len = rng.usize(0..64);
            let mut t: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            if i % 3 == 0 {
                t = b"username=\"bob\",nonce=\"sn\",nc=00000001,cnonce=\"a\",digest-uri=\"zookeeper/zk-sasl-md5\",response=".to_vec();
                t.extend((0..len).map(|_| rng.u8(..)));
            }
            let mut s = DigestMd5Server::new("sn");
            let _ = s.step(b"", users);
            assert!(s.step(&t, users).is_err());
            let mut c = DigestMd5Client::new("bob", "secret", "cn");
            let _ = c.step(&t);
        }
        let huge = vec![b'a'; MAX_TOKEN + 1];
        assert!(matches!(
            parse_directives(&huge),
            Err(SaslError::Malformed(_))
        ));
    }

    #[test]
    fn quoted_values_with_escapes_parse() {
        let d = parse_directives(br#"a="x\"y,z", b=plain ,c="""#).unwrap();
        assert_eq!(get(&d, "a"), Some("x\"y,z"));
        assert_eq!(get(&d, "b"), Some("plain"));
        assert_eq!(get(&d, "c"), Some(""));
        assert!(parse_directives(b"a=\"open").is_err());
        assert!(parse_directives(b"novalue").is_err());
    }
}
