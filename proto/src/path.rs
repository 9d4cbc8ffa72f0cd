//! ZooKeeper's path rules (`PathUtils.validatePath`) and the path helpers (join, parent, last
//! segment), written once for client, recipes and server.

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
    validate(path, sequential).map_err(|reason| PathError {
        path: path.to_owned(),
        reason,
    })
}

/// One pass over the bytes. A sequential path is checked as if its suffix were already there
/// (as ZooKeeper does): its last segment is then never empty, `.` or `..`.
fn validate(path: &str, sequential: bool) -> Result<(), &'static str> {
    let b = path.as_bytes();
    match b.first() {
        None => return Err("path must not be empty"),
        Some(&c) if c != b'/' => return Err("path must start with /"),
        Some(_) if b.len() == 1 => return Ok(()),
        Some(_) => {}
    }
    let rest = &path[1..];
    // Printable ASCII is the common case: one branch-free pass (vectorised), then the
    // segments through `split`'s memchr.
    let printable = rest
        .bytes()
        .fold(true, |ok, c| ok & (0x20..0x7f).contains(&c));
    let mut segs = rest.split('/').peekable();
    while let Some(seg) = segs.next() {
        let last = segs.peek().is_none();
        if !(last && sequential) {
            check_segment(seg.as_bytes(), last)?;
        }
    }
    if printable {
        return Ok(());
    }
    for c in path.chars() {
        let u = c as u32;
        if u == 0 {
            return Err("null character");
        }
        if u < 0x20
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

fn check_segment(seg: &[u8], last: bool) -> Result<(), &'static str> {
    match seg {
        [] if last => Err("path must not end with /"),
        [] => Err("empty path segment"),
        b"." | b".." => Err("relative path segment"),
        _ => Ok(()),
    }
}

/// `parent/child`, without doubling the root's slash (`/` and `a` → `/a`, `/x` and `a` →
/// `/x/a`). An empty parent counts as the root: ZooKeeper's data tree names the root `""`
/// internally.
///
/// ```
/// use zkit_proto::path::join;
/// assert_eq!(join("/", "a"), "/a");
/// assert_eq!(join("", "a"), "/a");
/// assert_eq!(join("/x/y", "a"), "/x/y/a");
/// ```
pub fn join(parent: &str, child: &str) -> String {
    if parent == "/" || parent.is_empty() {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

/// The parent of a path: everything before the last `/`, and `/` for a node directly under the
/// root (ZooKeeper's `path.substring(0, path.lastIndexOf('/'))`, with its internal root name
/// `""` written as `/`). The root is its own parent. A path with no `/` at all is not a
/// ZooKeeper path (the server refuses it with `BadArguments` before it looks for a parent);
/// it is answered like a name directly under the root, `/`, never with an empty string.
///
/// ```
/// use zkit_proto::path::parent;
/// assert_eq!(parent("/a/b"), "/a");
/// assert_eq!(parent("/a"), "/");
/// assert_eq!(parent("/"), "/");
/// assert_eq!(parent("a"), "/");
/// ```
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// The last segment of a path, after its last `/` (`/a/b` → `b`, `/` → ``); a path with no `/`
/// is returned whole.
///
/// ```
/// use zkit_proto::path::basename;
/// assert_eq!(basename("/a/b"), "b");
/// assert_eq!(basename("/lock-0000000001"), "lock-0000000001");
/// assert_eq!(basename("name"), "name");
/// ```
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

    /// The rules stated segment by segment and character by character, as ZooKeeper's
    /// `PathUtils` states them: the one-pass check must agree with it on every short path.
    fn reference(path: &str) -> bool {
        if !path.starts_with('/') {
            return false;
        }
        if path == "/" {
            return true;
        }
        path[1..]
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
            && path.chars().all(|c| {
                let u = c as u32;
                !(u < 0x20
                    || (0x7f..=0x9f).contains(&u)
                    || (0xd800..=0xf8ff).contains(&u)
                    || (0xfff0..=0xffff).contains(&u))
                    && u <= 0xffff
            })
    }

    #[test]
    fn one_pass_check_agrees_with_the_rules_on_every_short_path() {
        let alphabet = ["/", ".", "a", "\0", "\u{1}", "ü", "\u{9f}", "\u{e000}"];
        let mut paths = vec![String::new()];
        for _ in 0..5 {
            let longer: Vec<String> = paths
                .iter()
                .flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}")))
                .collect();
            paths.extend(longer);
            paths.dedup();
        }
        for p in &paths {
            assert_eq!(validate_path(p, false).is_ok(), reference(p), "{p:?}");
            let with_suffix = format!("{p}1");
            assert_eq!(
                validate_path(p, true).is_ok(),
                reference(&with_suffix),
                "sequential {p:?}"
            );
        }
    }

    #[test]
    fn parents() {
        assert_eq!(parent("/a/b"), "/a");
        assert_eq!(parent("/a"), "/");
        assert_eq!(parent("/"), "/");
        assert_eq!(parent("no-slash"), "/");
        assert_eq!(basename("/a/b"), "b");
        assert_eq!(basename("/"), "");
        assert_eq!(basename("no-slash"), "no-slash");
    }

    #[test]
    fn joins() {
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
        assert_eq!(parent(&join("/a/b", "c")), "/a/b");
        assert_eq!(basename(&join("/a/b", "c")), "c");
    }
}
