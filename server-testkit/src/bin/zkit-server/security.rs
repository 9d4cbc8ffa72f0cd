//! The standalone server's TLS and SASL flags: `--tls-cert/--tls-key/--tls-ca`,
//! `--secure-port`, `--secure-only`, `--sasl-users FILE`, `--sasl-super-user`, `--require-sasl`.

use std::path::Path;

use zkit_testkit::{Builder, ServerTls};

/// What the security flags asked for; applied to the builder once every flag is read.
#[derive(Default)]
pub struct SecurityArgs {
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub tls_ca: Option<String>,
    pub secure_port: Option<u16>,
    pub secure_only: bool,
    pub sasl_users: Option<String>,
    pub sasl_super_user: Option<String>,
    pub require_sasl: bool,
}

impl SecurityArgs {
    /// Applies the flags to `b` (the secure port listens on `host`); the error names the flag.
    pub fn apply(self, mut b: Builder, host: std::net::IpAddr) -> Result<Builder, String> {
        let tls_wanted = self.tls_cert.is_some()
            || self.tls_key.is_some()
            || self.tls_ca.is_some()
            || self.secure_port.is_some()
            || self.secure_only;
        if tls_wanted {
            let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
                return Err("a secure port needs both --tls-cert and --tls-key".into());
            };
            let mut tls = ServerTls::new(read(cert, "--tls-cert")?, read(key, "--tls-key")?);
            if let Some(ca) = &self.tls_ca {
                tls = tls.client_ca(read(ca, "--tls-ca")?);
            }
            let port = self.secure_port.unwrap_or(0);
            b = b
                .tls(tls)
                .secure_listen(std::net::SocketAddr::new(host, port))
                .secure_only(self.secure_only);
        }
        if let Some(file) = &self.sasl_users {
            let text = String::from_utf8(read(file, "--sasl-users")?)
                .map_err(|_| format!("--sasl-users {file}: not UTF-8"))?;
            let users = parse_users(&text).map_err(|e| format!("--sasl-users {file}: {e}"))?;
            if users.is_empty() {
                return Err(format!("--sasl-users {file}: no user in the file"));
            }
            b = b.sasl_digest_users(users);
        }
        if (self.sasl_super_user.is_some() || self.require_sasl) && self.sasl_users.is_none() {
            return Err("--sasl-super-user and --require-sasl need --sasl-users".into());
        }
        if let Some(u) = self.sasl_super_user {
            b = b.sasl_super_user(u);
        }
        Ok(b.require_sasl(self.require_sasl))
    }
}

fn read(path: &str, flag: &str) -> Result<Vec<u8>, String> {
    std::fs::read(Path::new(path)).map_err(|e| format!("{flag} {path}: {e}"))
}

/// The users of a `--sasl-users` file. Two formats:
/// - one `user=password` per line (the password is everything after the first `=`; blank lines
///   and lines starting with `#` are skipped; surrounding white space is trimmed);
/// - a JAAS file like real ZooKeeper's, recognised by `DigestLoginModule` in it: every
///   `user_NAME="PASSWORD"` option is a user (so one file serves both servers).
pub fn parse_users(text: &str) -> Result<Vec<(String, String)>, String> {
    if text.contains("DigestLoginModule") {
        return parse_jaas(text);
    }
    let mut users = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((u, p)) if !u.trim().is_empty() => {
                users.push((u.trim().to_owned(), p.trim().to_owned()))
            }
            _ => return Err(format!("line {}: expected user=password", n + 1)),
        }
    }
    Ok(users)
}

/// `user_NAME="PASSWORD"` options of a JAAS file (passwords without `"` or `\`).
fn parse_jaas(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut users = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("user_") {
        // Only at the start of a token (not inside another word).
        let start_ok = i == 0 || rest.as_bytes()[i - 1].is_ascii_whitespace();
        rest = &rest[i + "user_".len()..];
        if !start_ok {
            continue;
        }
        let Some((name, after)) = rest.split_once('=') else {
            return Err("user_ option without =".into());
        };
        let name = name.trim();
        let after = after.trim_start();
        let Some(quoted) = after.strip_prefix('"') else {
            return Err(format!(
                "user_{name}: the password must be in double quotes"
            ));
        };
        let Some(end) = quoted.find('"') else {
            return Err(format!("user_{name}: unterminated password"));
        };
        users.push((name.to_owned(), quoted[..end].to_owned()));
        rest = &quoted[end + 1..];
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::parse_users;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .collect()
    }

    #[test]
    fn simple_format_skips_comments_and_keeps_equals_in_passwords() {
        let text = "# users\n\nbob=secret\n alice = a=b=c \n";
        assert_eq!(
            parse_users(text).unwrap(),
            pairs(&[("bob", "secret"), ("alice", "a=b=c")])
        );
        assert!(parse_users("bob secret\n").unwrap_err().contains("line 1"));
        assert!(parse_users("=pw\n").is_err());
    }

    #[test]
    fn jaas_format_reads_the_user_options() {
        let text = "Server {\n  org.apache.zookeeper.server.auth.DigestLoginModule required\n  \
                    user_bob=\"secret\"\n  user_super = \"x y\";\n};\n";
        assert_eq!(
            parse_users(text).unwrap(),
            pairs(&[("bob", "secret"), ("super", "x y")])
        );
        let bad = "DigestLoginModule required user_bob=secret;";
        assert!(parse_users(bad).is_err());
    }
}
