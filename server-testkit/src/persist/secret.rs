//! The session secret file, `<dataDir>/zkit-secret`: the key of session passwords
//! ([`Secret`]), kept beside `version-2/` so that sessions restored from the data dir can be
//! resumed by their clients after the server process restarts.
//!
//! The file is created once (mode 0600, written to a temp file, fsynced, renamed into place, the
//! directory fsynced) and read on every start. It holds one line,
//! `zkit-session-secret v1 <64 hex digits>`. A file that does not parse is an error: replacing
//! it would silently expire every session, and a damaged file usually means something else in
//! the data dir is wrong too.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{sync_dir, PersistError};
use crate::core::Secret;

/// Name of the secret file inside the data dir.
pub const SECRET_FILE: &str = "zkit-secret";

/// Name of the temp file a new secret is written to before the rename.
const TEMP_FILE: &str = ".zkit-secret.tmp";

/// What the line starts with; `v1` names the format.
const HEADER: &str = "zkit-session-secret v1 ";

/// The path of the secret file of `data_dir`.
pub fn secret_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SECRET_FILE)
}

/// Reads the secret of `data_dir`; when there is none yet, stores `fresh` there and returns it.
/// A file that exists but does not hold a valid secret is [`PersistError::BadSecret`].
pub fn load_or_create(data_dir: &Path, fresh: &Secret) -> Result<Secret, PersistError> {
    let path = secret_path(data_dir);
    match std::fs::read(&path) {
        Ok(bytes) => {
            warn_if_readable_by_others(&path);
            decode(&bytes).map_err(|reason| PersistError::BadSecret { file: path, reason })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            create(data_dir, fresh)?;
            tracing::info!(file = %path.display(), "created the session secret");
            Ok(fresh.clone())
        }
        Err(e) => Err(PersistError::io(&path, e)),
    }
}

/// Reads the secret file at `path`, shared by the members of an ensemble that run in separate
/// processes; when there is none yet, stores `fresh` there and returns it. Members starting at
/// the same time agree: each writes its candidate to a temp file of its own and links it into
/// place only if no file is there yet (the first link wins; the others read the winner's).
pub fn load_or_create_shared(path: &Path, fresh: &Secret) -> Result<Secret, PersistError> {
    let read = |path: &Path| -> Result<Option<Secret>, PersistError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                warn_if_readable_by_others(path);
                decode(&bytes)
                    .map(Some)
                    .map_err(|reason| PersistError::BadSecret {
                        file: path.to_owned(),
                        reason,
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(PersistError::io(path, e)),
        }
    };
    if let Some(s) = read(path)? {
        return Ok(s);
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| SECRET_FILE.to_owned());
    // Unique per process and per call: members may also share a process.
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    write_private(&dir, &tmp, encode(fresh))?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_dir(&dir)?;
            tracing::info!(file = %path.display(), "created the shared session secret");
            Ok(fresh.clone())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read(path)?.ok_or_else(|| PersistError::BadSecret {
                file: path.to_owned(),
                reason: "vanished while being read".into(),
            })
        }
        Err(e) => Err(PersistError::io(path, e)),
    }
}

/// Writes `contents` to `tmp` (in `dir`, created if missing) with mode 0600 and fsyncs it.
fn write_private(dir: &Path, tmp: &Path, contents: String) -> Result<(), PersistError> {
    std::fs::create_dir_all(dir).map_err(|e| PersistError::io(dir, e))?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let io = |e| PersistError::io(tmp, e);
    let mut f = opts.open(tmp).map_err(io)?;
    // The mode above applies only when the file is new; a leftover temp file may have another.
    #[cfg(unix)]
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(io)?;
    f.write_all(contents.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Writes `secret` to a new secret file atomically: temp file (mode 0600), fsync, rename, fsync
/// of the directory. A temp file left by a crash is overwritten.
fn create(data_dir: &Path, secret: &Secret) -> Result<(), PersistError> {
    let tmp = data_dir.join(TEMP_FILE);
    write_private(data_dir, &tmp, encode(secret))?;
    let path = secret_path(data_dir);
    std::fs::rename(&tmp, &path).map_err(|e| PersistError::io(&path, e))?;
    sync_dir(data_dir)
}

/// The file's contents for `secret`.
fn encode(secret: &Secret) -> String {
    let mut s = String::with_capacity(HEADER.len() + 2 * Secret::LEN + 1);
    s.push_str(HEADER);
    for b in secret.as_bytes() {
        s.push(hex_digit(b >> 4));
        s.push(hex_digit(b & 0xf));
    }
    s.push('\n');
    s
}

fn hex_digit(v: u8) -> char {
    char::from_digit(u32::from(v), 16).unwrap_or('0')
}

/// Parses the file's contents; the error says what is wrong (never the secret itself).
fn decode(bytes: &[u8]) -> Result<Secret, String> {
    let expected = HEADER.len() + 2 * Secret::LEN + 1;
    if bytes.len() != expected {
        return Err(format!("{} bytes, expected {expected}", bytes.len()));
    }
    let rest = bytes
        .strip_prefix(HEADER.as_bytes())
        .ok_or_else(|| format!("does not start with {:?}", HEADER.trim_end()))?;
    let (hex, end) = rest.split_at(2 * Secret::LEN);
    if end != b"\n" {
        return Err("does not end with a newline after the key".into());
    }
    let mut out = [0u8; Secret::LEN];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        match (digit(pair[0]), digit(pair[1])) {
            (Some(hi), Some(lo)) => out[i] = hi << 4 | lo,
            _ => {
                return Err(format!(
                    "the key has a non-hex character near digit {}",
                    2 * i
                ))
            }
        }
    }
    Ok(Secret::from_bytes(out))
}

/// The secret is as good as its file's permissions: say so when others may read it.
fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path) {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    file = %path.display(),
                    mode = format_args!("{mode:o}"),
                    "the session secret is readable by other users: they can resume any session"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("zkit-secret-")
            .tempdir()
            .expect("create temp dir")
    }

    fn secret(b: u8) -> Secret {
        let mut bytes = [0u8; Secret::LEN];
        for (i, x) in bytes.iter_mut().enumerate() {
            *x = b.wrapping_add(i as u8).wrapping_mul(37);
        }
        Secret::from_bytes(bytes)
    }

    #[test]
    fn encode_decode_round_trip() {
        for b in [0u8, 1, 0x7f, 0xff] {
            let s = secret(b);
            let text = encode(&s);
            assert!(text.starts_with(HEADER) && text.ends_with('\n'));
            assert_eq!(decode(text.as_bytes()).unwrap(), s);
        }
    }

    #[test]
    fn created_once_with_mode_0600_then_reused() {
        let d = dir();
        let data_dir = d.path().join("data");
        let first = load_or_create(&data_dir, &secret(1)).unwrap();
        assert_eq!(first, secret(1));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(secret_path(&data_dir))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(
            !data_dir.join(TEMP_FILE).exists(),
            "the temp file was renamed"
        );
        // A later start keeps the stored secret whatever it drew.
        assert_eq!(load_or_create(&data_dir, &secret(2)).unwrap(), secret(1));
    }

    #[test]
    fn leftover_temp_file_is_overwritten() {
        let d = dir();
        std::fs::write(d.path().join(TEMP_FILE), b"half a secret").unwrap();
        assert_eq!(load_or_create(d.path(), &secret(3)).unwrap(), secret(3));
        assert_eq!(load_or_create(d.path(), &secret(4)).unwrap(), secret(3));
    }

    #[test]
    fn damaged_file_is_an_error_and_left_alone() {
        let good = encode(&secret(5));
        let mut bad_digit = good.clone().into_bytes();
        bad_digit[HEADER.len() + 7] = b'g';
        let cases: Vec<Vec<u8>> = vec![
            Vec::new(),
            good.as_bytes()[..good.len() - 10].to_vec(),
            format!("{good}\n").into_bytes(),
            good.trim_end().to_owned().into_bytes(),
            good.replace("v1", "v2").into_bytes(),
            bad_digit,
        ];
        for content in cases {
            let d = dir();
            let path = secret_path(d.path());
            std::fs::write(&path, &content).unwrap();
            match load_or_create(d.path(), &secret(6)) {
                Err(PersistError::BadSecret { file, .. }) => assert_eq!(file, path),
                other => panic!("{content:?}: expected BadSecret, got {other:?}"),
            }
            assert_eq!(std::fs::read(&path).unwrap(), content, "never replaced");
        }
    }

    #[test]
    fn a_shared_secret_file_is_created_once_and_read_by_every_member() {
        let d = dir();
        let path = d.path().join("ensemble").join("zkit-secret");
        // Members racing to create it: exactly one candidate wins, every one gets it.
        let got: Vec<Secret> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4u8)
                .map(|i| {
                    let path = &path;
                    s.spawn(move || load_or_create_shared(path, &secret(10 + i)).unwrap())
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(got.iter().all(|s| *s == got[0]), "one secret for all");
        assert_eq!(load_or_create_shared(&path, &secret(20)).unwrap(), got[0]);
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != "zkit-secret")
            .collect();
        assert!(leftovers.is_empty(), "temp files removed: {leftovers:?}");
        std::fs::write(&path, b"garbage").unwrap();
        assert!(matches!(
            load_or_create_shared(&path, &secret(21)),
            Err(PersistError::BadSecret { .. })
        ));
    }

    #[test]
    fn error_never_shows_the_secret() {
        let d = dir();
        let s = secret(8);
        let mut text = encode(&s);
        text.push('x');
        std::fs::write(secret_path(d.path()), &text).unwrap();
        let err = load_or_create(d.path(), &secret(9))
            .unwrap_err()
            .to_string();
        let hex = &encode(&s)[HEADER.len()..HEADER.len() + 2 * Secret::LEN];
        assert!(!err.contains(hex), "{err}");
        assert!(err.contains(SECRET_FILE), "{err}");
    }
}
