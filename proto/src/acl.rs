//! ACL constructors and ZooKeeper's digest id, written once for the client and the server.

use base64::Engine;
use sha1::{Digest, Sha1};

use crate::{perms, Acl, Id};

impl Acl {
    /// `world:anyone` with every permission (ZooKeeper's OPEN_ACL_UNSAFE).
    pub fn open_unsafe() -> Vec<Acl> {
        vec![Acl::new(perms::ALL, "world", "anyone")]
    }
    /// Every permission for the creator's authenticated ids (CREATOR_ALL_ACL).
    pub fn creator_all() -> Vec<Acl> {
        vec![Acl::new(perms::ALL, "auth", "")]
    }
    /// Read for anyone (READ_ACL_UNSAFE).
    pub fn read_unsafe() -> Vec<Acl> {
        vec![Acl::new(perms::READ, "world", "anyone")]
    }
    /// An entry for `scheme:id`.
    pub fn new(perms: i32, scheme: &str, id: &str) -> Acl {
        Acl {
            perms,
            id: Id {
                scheme: scheme.to_owned(),
                id: id.to_owned(),
            },
        }
    }
    /// A digest entry for `user` with `password` (hashed the way ZooKeeper stores it).
    pub fn digest(perms: i32, user: &str, password: &str) -> Acl {
        Acl::new(perms, "digest", &digest_id(user, password))
    }
}

/// ZooKeeper's digest id: `user:base64(sha1("user:password"))`.
///
/// ```
/// assert_eq!(zkit_proto::digest_id("super", "test"), "super:D/InIHSb7yEEbrWz8b9l71RjZJU=");
/// ```
pub fn digest_id(user: &str, password: &str) -> String {
    digest_of_credential(&format!("{user}:{password}"))
}

/// The id a `digest` auth credential authenticates as, the way ZooKeeper's
/// `DigestAuthenticationProvider.generateDigest` computes it: the SHA-1 of the whole credential,
/// prefixed by the part before its first `:` (a credential without `:` is hashed as it is).
///
/// ```
/// use zkit_proto::acl::digest_of_credential;
/// assert_eq!(digest_of_credential("super:test"), zkit_proto::digest_id("super", "test"));
/// assert!(digest_of_credential("alone").starts_with("alone:"));
/// ```
pub fn digest_of_credential(credential: &str) -> String {
    let user = credential.split_once(':').map_or(credential, |(u, _)| u);
    let hash = Sha1::digest(credential.as_bytes());
    format!(
        "{user}:{}",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}
