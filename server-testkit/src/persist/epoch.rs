//! The two ZAB epoch files, as ZooKeeper's `QuorumPeer` keeps them: `version-2/acceptedEpoch`
//! and `version-2/currentEpoch` (in the snapshot directory), each the epoch as decimal ASCII
//! with no newline, written atomically (`AtomicFileOutputStream`: `<name>.tmp`, fsync, rename).
//!
//! Standalone servers never read or write them. A damaged file is refused with an error naming
//! it — never read as 0 — because a server that forgets an epoch it promised could acknowledge
//! a proposal of a leader the ensemble has moved past. Absent files get ZooKeeper's defaults
//! (`QuorumPeer.loadDataBase`): the epoch of the last zxid, written out at once.
//!
//! Used by `quorum::disklog`, which is not wired into the server yet (hence `dead_code`).
#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::Path;

use super::PersistError;

/// `QuorumPeer.ACCEPTED_EPOCH_FILENAME`.
pub const ACCEPTED_EPOCH_FILE: &str = "acceptedEpoch";
/// `QuorumPeer.CURRENT_EPOCH_FILENAME`.
pub const CURRENT_EPOCH_FILE: &str = "currentEpoch";
/// `AtomicFileOutputStream.TMP_EXTENSION`.
pub const TMP_EXTENSION: &str = ".tmp";

/// Longest content accepted: a `long` in decimal with its sign is at most 20 characters.
const MAX_LEN: usize = 20;

/// Writes `value` to `dir/name` atomically: `dir/name.tmp`, fsync, rename, fsync of `dir`
/// (ZooKeeper's `writeLongToFile`). A crash leaves the old file or the new one, never a mix.
pub fn write_long(dir: &Path, name: &str, value: i64) -> Result<(), PersistError> {
    std::fs::create_dir_all(dir).map_err(|e| PersistError::io(dir, e))?;
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}{TMP_EXTENSION}"));
    let io = |e| PersistError::io(&tmp, e);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(value.to_string().as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(|e| PersistError::io(&path, e))?;
    super::sync_dir(dir)
}

/// Reads `dir/name` (ZooKeeper's `readLongFromFile`: the first line, parsed as a decimal
/// `long`). `Ok(None)` when the file does not exist; an error naming the file when it exists
/// but does not hold a number.
pub fn read_long(dir: &Path, name: &str) -> Result<Option<i64>, PersistError> {
    let path = dir.join(name);
    let mut f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(PersistError::io(&path, e)),
    };
    let mut raw = Vec::with_capacity(MAX_LEN + 2);
    // One byte more than a valid file can hold (plus a line end) tells "too long" apart.
    (&mut f)
        .take(MAX_LEN as u64 + 3)
        .read_to_end(&mut raw)
        .map_err(|e| PersistError::io(&path, e))?;
    parse_long(&raw)
        .map(Some)
        .map_err(|reason| PersistError::Corrupt {
            file: path,
            offset: 0,
            reason,
        })
}

/// The first line of `raw` as a decimal `long`, the way Java's `Long.parseLong` takes it.
fn parse_long(raw: &[u8]) -> Result<i64, String> {
    let line = match raw.iter().position(|b| *b == b'\n' || *b == b'\r') {
        Some(i) => &raw[..i],
        None if raw.len() > MAX_LEN => {
            return Err(format!("{} bytes without a line end", raw.len()))
        }
        None => raw,
    };
    let text = std::str::from_utf8(line).map_err(|_| "not text".to_owned())?;
    if text.is_empty() {
        return Err("empty (an epoch file holds a decimal number)".into());
    }
    // `Long.parseLong` takes an optional sign and digits only (no spaces).
    if !text
        .strip_prefix(['-', '+'])
        .unwrap_or(text)
        .bytes()
        .all(|b| b.is_ascii_digit())
    {
        return Err(format!("found {text:?}, not a decimal number"));
    }
    text.parse::<i64>()
        .map_err(|e| format!("found {text:?}: {e}"))
}

/// Reads an epoch file: `Ok(None)` when absent, an error when damaged or out of the 32-bit
/// range a zxid's epoch has.
pub fn read_epoch(dir: &Path, name: &str) -> Result<Option<u32>, PersistError> {
    match read_long(dir, name)? {
        None => Ok(None),
        Some(v) => u32::try_from(v)
            .map(Some)
            .map_err(|_| PersistError::Corrupt {
                file: dir.join(name),
                offset: 0,
                reason: format!("epoch {v} is outside 0..=4294967295"),
            }),
    }
}

/// Writes an epoch file atomically.
pub fn write_epoch(dir: &Path, name: &str, epoch: u32) -> Result<(), PersistError> {
    write_long(dir, name, i64::from(epoch))
}

/// The two epochs of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epochs {
    /// The epoch of the last NEWEPOCH/LEADERINFO this server accepted.
    pub accepted: u32,
    /// The epoch of the last leader this server acknowledged NEWLEADER to.
    pub current: u32,
}

/// Loads both epoch files from the version dir `dir` with `QuorumPeer.loadDataBase`'s rules,
/// given the last zxid of the recovered data:
/// - an absent file is created with the epoch of `last_zxid` (0 for a fresh server);
/// - `currentEpoch` older than the last zxid's epoch is fatal, unless `currentEpoch.tmp`
///   holds the newer value (a crash between writing the temp file and renaming it): that
///   value is then taken and written;
/// - `acceptedEpoch` below `currentEpoch` is fatal.
pub fn load_epochs(dir: &Path, last_zxid: i64) -> Result<Epochs, PersistError> {
    let of_zxid = (last_zxid >> 32) as u32;
    let unrecoverable = |reason: String| PersistError::Unrecoverable {
        dir: dir.to_owned(),
        reason,
    };
    let mut current = match read_epoch(dir, CURRENT_EPOCH_FILE)? {
        Some(e) => e,
        None => {
            tracing::info!(
                epoch = of_zxid,
                "currentEpoch not found; creating it from the last zxid"
            );
            write_epoch(dir, CURRENT_EPOCH_FILE, of_zxid)?;
            of_zxid
        }
    };
    if of_zxid > current {
        let tmp = format!("{CURRENT_EPOCH_FILE}{TMP_EXTENSION}");
        match read_epoch(dir, &tmp)? {
            Some(e) => {
                tracing::info!(epoch = e, "currentEpoch.tmp found; taking its epoch");
                write_epoch(dir, CURRENT_EPOCH_FILE, e)?;
                current = e;
            }
            None => {
                return Err(unrecoverable(format!(
                    "the current epoch, {current}, is older than the last zxid, 0x{last_zxid:x}"
                )))
            }
        }
    }
    let accepted = match read_epoch(dir, ACCEPTED_EPOCH_FILE)? {
        Some(e) => e,
        None => {
            tracing::info!(
                epoch = of_zxid,
                "acceptedEpoch not found; creating it from the last zxid"
            );
            write_epoch(dir, ACCEPTED_EPOCH_FILE, of_zxid)?;
            of_zxid
        }
    };
    if accepted < current {
        return Err(unrecoverable(format!(
            "the accepted epoch, {accepted}, is less than the current epoch, {current}"
        )));
    }
    Ok(Epochs { accepted, current })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tempfile::TempDir;

    #[test]
    fn written_like_zookeeper_and_read_back() {
        let d = TempDir::new().unwrap();
        write_epoch(d.path(), CURRENT_EPOCH_FILE, 1).unwrap();
        // ZooKeeper writes `Long.toString(epoch)`: one byte "1", no newline.
        assert_eq!(std::fs::read(d.path().join("currentEpoch")).unwrap(), b"1");
        assert!(!d.path().join("currentEpoch.tmp").exists());
        write_epoch(d.path(), CURRENT_EPOCH_FILE, u32::MAX).unwrap();
        assert_eq!(
            read_epoch(d.path(), CURRENT_EPOCH_FILE).unwrap(),
            Some(u32::MAX)
        );
        assert_eq!(read_epoch(d.path(), ACCEPTED_EPOCH_FILE).unwrap(), None);
    }

    #[test]
    fn a_line_end_is_tolerated_like_readline() {
        let d = TempDir::new().unwrap();
        std::fs::write(d.path().join(ACCEPTED_EPOCH_FILE), b"7\n").unwrap();
        assert_eq!(read_epoch(d.path(), ACCEPTED_EPOCH_FILE).unwrap(), Some(7));
    }

    #[test]
    fn damaged_files_are_refused_never_read_as_zero() {
        let d = TempDir::new().unwrap();
        for bad in [
            &b""[..],
            b"\n",
            b"x1",
            b" 1",
            b"1 ",
            b"\xff\xfe",
            b"-1",
            b"4294967296",
            b"99999999999999999999999",
            &[b'1'; 64],
        ] {
            std::fs::write(d.path().join(CURRENT_EPOCH_FILE), bad).unwrap();
            let e = read_epoch(d.path(), CURRENT_EPOCH_FILE).unwrap_err();
            assert!(
                matches!(&e, PersistError::Corrupt { file, .. } if file.ends_with("currentEpoch")),
                "{bad:?}: {e}"
            );
            assert!(load_epochs(d.path(), 0).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn fresh_server_starts_at_epoch_zero_and_writes_the_files() {
        let d = TempDir::new().unwrap();
        let e = load_epochs(d.path(), 0).unwrap();
        assert_eq!(
            e,
            Epochs {
                accepted: 0,
                current: 0
            }
        );
        assert_eq!(std::fs::read(d.path().join("acceptedEpoch")).unwrap(), b"0");
        assert_eq!(std::fs::read(d.path().join("currentEpoch")).unwrap(), b"0");
    }

    #[test]
    fn absent_files_take_the_epoch_of_the_last_zxid() {
        let d = TempDir::new().unwrap();
        let e = load_epochs(d.path(), 0x3_0000_0005).unwrap();
        assert_eq!(
            e,
            Epochs {
                accepted: 3,
                current: 3
            }
        );
    }

    #[test]
    fn zookeepers_start_up_checks_are_enforced() {
        let d = TempDir::new().unwrap();
        write_epoch(d.path(), CURRENT_EPOCH_FILE, 2).unwrap();
        write_epoch(d.path(), ACCEPTED_EPOCH_FILE, 2).unwrap();
        // The log holds a zxid of epoch 3 but currentEpoch says 2: refused.
        let e = load_epochs(d.path(), 0x3_0000_0001).unwrap_err();
        assert!(e.to_string().contains("older than the last zxid"), "{e}");
        // ... unless the interrupted write of 3 left its temp file.
        std::fs::write(d.path().join("currentEpoch.tmp"), b"3").unwrap();
        write_epoch(d.path(), ACCEPTED_EPOCH_FILE, 3).unwrap();
        let e = load_epochs(d.path(), 0x3_0000_0001).unwrap();
        assert_eq!(e.current, 3);
        assert_eq!(read_epoch(d.path(), CURRENT_EPOCH_FILE).unwrap(), Some(3));
        // acceptedEpoch below currentEpoch: refused.
        write_epoch(d.path(), ACCEPTED_EPOCH_FILE, 2).unwrap();
        let e = load_epochs(d.path(), 0x3_0000_0001).unwrap_err();
        assert!(e.to_string().contains("accepted epoch, 2"), "{e}");
    }
}
