//! ZooKeeper's path rules (`PathUtils.validatePath`), shared by client and server.

/// Why a path is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid path {path:?}: {reason}")]
pub struct PathError {
    /// The path.
    pub path: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Checks `path` like ZooKeeper does; a sequential create may end in `/` (the suffix follows).
///
/// ```
/// use zkit_proto::path::validate_path;
/// assert!(validate_path("/a/b", false).is_ok());
/// assert!(validate_path("/a/", false).is_err());
/// assert!(validate_path("/a/", true).is_ok());
/// assert!(validate_path("/a/../b", false).is_err());
/// ```
pub fn validate_path(path: &str, sequential: bool) -> Result<(), PathError> {
    if sequential {
        // ZooKeeper checks a sequential path as if its suffix were already there.
        return validate(&format!("{path}1")).map_err(|reason| PathError {
            path: path.to_owned(),
            reason,
        });
    }
    validate(path).map_err(|reason| PathError {
        path: path.to_owned(),
        reason,
    })
}

fn validate(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("path must not be empty");
    }
    if !path.starts_with('/') {
        return Err("path must start with /");
    }
    if path.len() == 1 {
        return Ok(());
    }
    if path.ends_with('/') {
        return Err("path must not end with /");
    }
    for seg in path[1..].split('/') {
        if seg.is_empty() {
            return Err("empty path segment");
        }
        if seg == "." || seg == ".." {
            return Err("relative path segment");
        }
    }
    for c in path.chars() {
        let u = c as u32;
        if u == 0 {
            return Err("null character");
        }
        if (0x1..=0x1f).contains(&u)
            || (0x7f..=0x9f).contains(&u)
            || (0xd800..=0xf8ff).contains(&u)
            || (0xfff0..=0xffff).contains(&u)
            // Java walks UTF-16 units: outside the BMP is a surrogate pair, in D800..F8FF.
            || u > 0xffff
        {
            return Err("invalid character");
        }
    }
    Ok(())
}

/// The parent of a valid non-root path (`/a/b` → `/a`, `/a` → `/`).
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// The last segment of a path (`/a/b` → `b`).
pub fn basename(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zookeeper_rules() {
        for ok in ["/", "/a", "/a/b", "/a.b", "/..a", "/zookeeper/quota", "/ü"] {
            assert!(validate_path(ok, false).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a",
            "//",
            "/a//b",
            "/a/",
            "/.",
            "/a/..",
            "/a\0b",
            "/a\u{1}",
            "/\u{7f}",
            "/\u{e000}",
            "/\u{fff5}",
            "/\u{1F600}",
        ] {
            assert!(validate_path(bad, false).is_err(), "{bad:?}");
        }
        assert!(validate_path("/a/", true).is_ok());
        assert!(validate_path("/a//", true).is_err());
    }

    #[test]
    fn parents() {
        assert_eq!(parent("/a/b"), "/a");
        assert_eq!(parent("/a"), "/");
        assert_eq!(basename("/a/b"), "b");
    }
}
