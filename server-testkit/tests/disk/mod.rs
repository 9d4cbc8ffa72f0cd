//! Helpers shared by the persistence tests: a temp dir removed on drop.
#![allow(dead_code)]

pub use tempfile::TempDir;

/// A fresh, empty directory named after `tag` (`zkit-it-<tag>-…` under the system temp dir),
/// removed when the returned value is dropped.
pub fn temp_dir(tag: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("zkit-it-{tag}-"))
        .tempdir()
        .expect("create temp dir")
}
