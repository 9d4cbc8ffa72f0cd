//! ACLs and authentication like ZooKeeper's `checkACL`, `fixupACL` and its `ip` / `digest`
//! authentication providers (the only ones a default server registers).

use std::net::IpAddr;

use zkit_proto::{Acl, ErrorCode, Id};

use super::jhash::{concurrent_map_order, java_string_hash};

/// The id a `digest` credential `user:password` authenticates as:
/// `user:base64(sha1("user:password"))` (`DigestAuthenticationProvider.generateDigest`).
/// A credential without `:` is hashed as it is, like ZooKeeper does.
pub fn digest(user_password: &str) -> String {
    zkit_proto::acl::digest_of_credential(user_password)
}

/// Whether a scheme has an authentication provider (`ip`, `digest`, and `sasl`, which a real
/// server has only when SASL is configured).
pub fn has_provider(scheme: &str) -> bool {
    matches!(scheme, "ip" | "digest" | "sasl")
}

/// Whether ids of this scheme count as "authenticated" for the `auth` ACL scheme.
fn is_authenticated(scheme: &str) -> bool {
    matches!(scheme, "digest" | "sasl")
}

/// Whether `id` is a well-formed id of `scheme` (`AuthenticationProvider.isValid`).
pub fn is_valid(scheme: &str, id: &str) -> bool {
    match scheme {
        // Java's split(":") drops trailing empty strings: "a:" has one part.
        "digest" => {
            let parts: Vec<&str> = id.split(':').collect();
            let mut n = parts.len();
            while n > 0 && parts[n - 1].is_empty() {
                n -= 1;
            }
            n == 2
        }
        // ZooKeeper 3.8's IPAuthenticationProvider.isValid parses IPv4 only: `ip:::1` is an
        // InvalidACL there.
        "ip" => parse_ip_acl(id).is_some_and(|(ip, _)| ip.is_ipv4()),
        "sasl" => true,
        _ => false,
    }
}

fn parse_ip_acl(id: &str) -> Option<(IpAddr, u32)> {
    let (addr, bits) = match id.split_once('/') {
        Some((a, b)) => (a, Some(b.parse::<u32>().ok()?)),
        None => (id, None),
    };
    let ip: IpAddr = addr.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(max);
    if bits > max {
        return None;
    }
    Some((ip, bits))
}

fn ip_matches(acl_expr: &str, client: &str) -> bool {
    let Some((net, bits)) = parse_ip_acl(acl_expr) else {
        return false;
    };
    let Ok(ip) = client.parse::<IpAddr>() else {
        return false;
    };
    let (a, b, len) = match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(c)) => (n.octets().to_vec(), c.octets().to_vec(), 32),
        (IpAddr::V6(n), IpAddr::V6(c)) => (n.octets().to_vec(), c.octets().to_vec(), 128),
        _ => return false,
    };
    let bits = bits.min(len) as usize;
    for i in 0..bits {
        let (byte, bit) = (i / 8, 7 - (i % 8));
        if (a[byte] >> bit) & 1 != (b[byte] >> bit) & 1 {
            return false;
        }
    }
    true
}

/// `ZooKeeperServer.checkACL`: OK when the ACL is empty, the caller is super, or some entry with
/// one of `perm`'s bits matches one of the caller's ids.
pub fn check_acl(acl: &[Acl], perm: i32, ids: &[Id]) -> Result<(), ErrorCode> {
    if acl.is_empty() || ids.iter().any(|i| i.scheme == "super") {
        return Ok(());
    }
    for a in acl {
        if a.perms & perm == 0 {
            continue;
        }
        if a.id.scheme == "world" && a.id.id == "anyone" {
            return Ok(());
        }
        if !has_provider(&a.id.scheme) {
            continue;
        }
        for auth in ids {
            if auth.scheme != a.id.scheme {
                continue;
            }
            let ok = match a.id.scheme.as_str() {
                "ip" => ip_matches(&a.id.id, &auth.id),
                _ => a.id.id == auth.id,
            };
            if ok {
                return Ok(());
            }
        }
    }
    Err(ErrorCode::NoAuth)
}

/// `Id.hashCode()` as jute generates it.
fn java_id_hash(id: &Id) -> i32 {
    let h = 17i32
        .wrapping_mul(37)
        .wrapping_add(java_string_hash(&id.scheme));
    h.wrapping_mul(37).wrapping_add(java_string_hash(&id.id))
}

/// A connection's authenticated ids (given in the order they were added) in the order
/// ZooKeeper iterates them: it keeps them in a set backed by a `ConcurrentHashMap`.
pub fn auth_order(ids: &[Id]) -> Vec<&Id> {
    let hashes: Vec<i32> = ids.iter().map(java_id_hash).collect();
    concurrent_map_order(&hashes)
        .into_iter()
        .map(|i| &ids[i])
        .collect()
}

/// `PrepRequestProcessor.fixupACL`: de-duplicates, expands `auth` entries to the caller's
/// authenticated ids, rejects empty or invalid ACLs with InvalidACL (-114).
pub fn fixup_acl(acl: &[Acl], ids: &[Id]) -> Result<Vec<Acl>, ErrorCode> {
    let mut uniq: Vec<&Acl> = Vec::with_capacity(acl.len());
    for a in acl {
        if !uniq.contains(&a) {
            uniq.push(a);
        }
    }
    if uniq.is_empty() {
        return Err(ErrorCode::InvalidAcl);
    }
    let mut out = Vec::with_capacity(uniq.len());
    for a in uniq {
        if a.id.scheme == "world" && a.id.id == "anyone" {
            out.push(a.clone());
        } else if a.id.scheme == "auth" {
            let mut any = false;
            for cid in auth_order(ids) {
                if has_provider(&cid.scheme) && is_authenticated(&cid.scheme) {
                    any = true;
                    out.push(Acl {
                        perms: a.perms,
                        id: cid.clone(),
                    });
                }
            }
            if !any {
                return Err(ErrorCode::InvalidAcl);
            }
        } else {
            if !has_provider(&a.id.scheme) || !is_valid(&a.id.scheme, &a.id.id) {
                return Err(ErrorCode::InvalidAcl);
            }
            out.push(a.clone());
        }
    }
    Ok(out)
}

/// The user name whoAmI reports for an id (`AuthenticationProvider.getUserName`).
pub fn user_name(id: &Id) -> String {
    match id.scheme.as_str() {
        "digest" => id.id.split(':').next().unwrap_or("").to_owned(),
        "ip" | "sasl" => id.id.clone(),
        _ => String::new(),
    }
}

/// Masks digest hashes in an ACL (`getACL` without ADMIN permission shows `user:x`).
pub fn mask_digests(acl: &[Acl]) -> Vec<Acl> {
    acl.iter()
        .map(|a| {
            if a.id.scheme == "digest" {
                let user = a.id.id.split(':').next().unwrap_or("");
                Acl {
                    perms: a.perms,
                    id: Id {
                        scheme: "digest".into(),
                        id: format!("{user}:x"),
                    },
                }
            } else {
                a.clone()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use zkit_proto::perms;

    fn id(s: &str, i: &str) -> Id {
        Id {
            scheme: s.into(),
            id: i.into(),
        }
    }
    fn acl(p: i32, s: &str, i: &str) -> Acl {
        Acl {
            perms: p,
            id: id(s, i),
        }
    }

    #[test]
    fn digest_matches_zookeeper() {
        // Known value from ZooKeeper's documentation / DigestAuthenticationProvider.
        assert_eq!(digest("super:test"), "super:D/InIHSb7yEEbrWz8b9l71RjZJU=");
        // No colon: the whole credential is hashed (ZooKeeper's generateDigest).
        assert_eq!(digest("alone"), "alone:GwXWN/BAnMmbTdC1Aj5CHFLZt2Q=");
    }

    #[test]
    fn world_digest_ip_and_super() {
        let ids = vec![id("ip", "127.0.0.1"), id("digest", &digest("u:p"))];
        assert!(check_acl(&[acl(perms::READ, "world", "anyone")], perms::READ, &[]).is_ok());
        assert_eq!(
            check_acl(&[acl(perms::READ, "world", "anyone")], perms::WRITE, &[]),
            Err(ErrorCode::NoAuth)
        );
        assert!(check_acl(
            &[acl(perms::ALL, "digest", &digest("u:p"))],
            perms::READ,
            &ids
        )
        .is_ok());
        assert!(check_acl(
            &[acl(perms::ALL, "digest", &digest("u:q"))],
            perms::READ,
            &ids
        )
        .is_err());
        assert!(check_acl(&[acl(perms::ALL, "ip", "127.0.0.0/8")], perms::READ, &ids).is_ok());
        assert!(check_acl(&[acl(perms::ALL, "ip", "10.0.0.0/8")], perms::READ, &ids).is_err());
        assert!(check_acl(
            &[acl(0, "ip", "10.0.0.0/8")],
            perms::READ,
            &[id("super", "")]
        )
        .is_ok());
    }

    #[test]
    fn fixup_expands_auth_and_rejects_bad_acls() {
        let ip_only = vec![id("ip", "127.0.0.1")];
        assert_eq!(
            fixup_acl(&[acl(31, "auth", "")], &ip_only),
            Err(ErrorCode::InvalidAcl)
        );
        let ids = vec![id("ip", "127.0.0.1"), id("digest", "u:h")];
        assert_eq!(
            fixup_acl(&[acl(31, "auth", "")], &ids).unwrap(),
            vec![acl(31, "digest", "u:h")]
        );
        assert_eq!(fixup_acl(&[], &ids), Err(ErrorCode::InvalidAcl));
        assert_eq!(
            fixup_acl(&[acl(31, "digest", "nocolon")], &ids),
            Err(ErrorCode::InvalidAcl)
        );
        assert_eq!(
            fixup_acl(&[acl(31, "world", "someone")], &ids),
            Err(ErrorCode::InvalidAcl)
        );
        assert_eq!(
            fixup_acl(&[acl(31, "ip", "1.2.3.4/40")], &ids),
            Err(ErrorCode::InvalidAcl)
        );
        let dup = [acl(31, "world", "anyone"), acl(31, "world", "anyone")];
        assert_eq!(fixup_acl(&dup, &ids).unwrap().len(), 1);
    }
}
