//! The differential generator's auth credentials and ACL lists: digest credentials with the
//! characters that trip encoders (`:` `+` `/` `=`, non-ASCII, empty user or password parts),
//! `ip` auth, and random ACL lists over the `world`, `auth`, `digest`, `ip` and `super` schemes
//! plus an unknown one, valid and malformed ids alike. The real server decides what is valid;
//! the testkit must answer the same.

use fastrand::Rng;
use zkit_proto::acl::digest_of_credential;
use zkit_proto::{perms, Acl};

/// Pieces of a user name: empty, base64-alphabet punctuation, non-ASCII.
const USERS: &[&str] = &["u", "", "a+b", "x/y=", "ü", "日本", "=", "user"];
/// Pieces of a password: the same, plus colons (only the first `:` splits a credential).
const PASSWORDS: &[&str] = &["p", "", "=+/", "a:b", "ß", ":", "pässwörd", "+Ir5sN1lGJ=="];

/// A random digest credential (`user:password`, sometimes without any `:`).
pub fn credential(rng: &mut Rng) -> String {
    let user = USERS[rng.usize(..USERS.len())];
    let password = PASSWORDS[rng.usize(..PASSWORDS.len())];
    match rng.usize(..8) {
        0 => user.to_owned(),
        // A kazoo-style credential whose password is itself a base64 digest.
        1 => format!("{user}:{}", digest_of_credential(password)),
        _ => format!("{user}:{password}"),
    }
}

/// The scheme and credential of an addAuth: mostly digest, sometimes `ip` (whose credential
/// ZooKeeper ignores: the id is the connection's address).
pub fn auth(rng: &mut Rng) -> (&'static str, Vec<u8>) {
    match rng.usize(..6) {
        0 => ("ip", credential(rng).into_bytes()),
        _ => ("digest", credential(rng).into_bytes()),
    }
}

/// Random permission bits: mostly meaningful sets, sometimes any value in 0..=31.
fn random_perms(rng: &mut Rng) -> i32 {
    match rng.usize(..5) {
        0 => perms::ALL,
        1 => perms::READ,
        2 => perms::ALL & !perms::DELETE & !perms::CREATE,
        _ => rng.i32(0..=31),
    }
}

/// One ACL entry over the world, auth, digest, ip and super schemes or an unknown one.
fn entry(rng: &mut Rng) -> Acl {
    let p = random_perms(rng);
    match rng.usize(..12) {
        0 | 1 => Acl::new(p, "world", "anyone"),
        2 => Acl::new(p, "world", ["nobody", "", "Anyone"][rng.usize(..3)]),
        3 | 4 => Acl::new(p, "auth", ["", "ignored", "u:p"][rng.usize(..3)]),
        5 | 6 => Acl::new(p, "digest", &digest_of_credential(&credential(rng))),
        7 => Acl::new(
            p,
            "digest",
            ["nocolon", "a:b:c", "u:", ":x", ""][rng.usize(..5)],
        ),
        8 | 9 => Acl::new(
            p,
            "ip",
            [
                "127.0.0.1",
                "127.0.0.0/8",
                "10.0.0.0/8",
                "127.0.0.1/0",
                "::1",
                "1.2.3.4/40",
                "abc",
                "127.0.0.1/-1",
            ][rng.usize(..8)],
        ),
        10 => Acl::new(p, "super", ["", "u:p"][rng.usize(..2)]),
        _ => Acl::new(p, "nosuchscheme", "x"),
    }
}

/// A random ACL list (empty now and then, duplicates possible).
pub fn acl_list(rng: &mut Rng) -> Vec<Acl> {
    match rng.usize(..10) {
        0 => vec![],
        1 => Acl::open_unsafe(),
        _ => {
            let mut v: Vec<Acl> = (0..1 + rng.usize(..3)).map(|_| entry(rng)).collect();
            if rng.usize(..6) == 0 {
                let dup = v[0].clone();
                v.push(dup);
            }
            v
        }
    }
}
