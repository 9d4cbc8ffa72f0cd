//! The txn log (`docs/disk-format.md` §4): `version-2/log.<first zxid>`, a 16-byte header, then
//! entries `long adler32 | int len | TxnHeader + body [+ TxnDigest] | 'B'`, zero-padded by
//! preallocation.
//!
//! The reader is stricter than ZooKeeper's: it reports *where* a file stops being valid and
//! whether anything non-zero follows, so that recovery can tell a torn final append (dropped) from
//! corruption before the end (refused), instead of silently skipping the rest of a file.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::{BufMut, Bytes, BytesMut};
use zkit_proto::txn::{CloseSessionTxn, CreateTxn, SetDataTxn, TxnDigest, TxnHeader};
use zkit_proto::{Acl, DecodeError, OpCode, Reader, Record};

use super::checksum::adler32;
use super::{file_name, PersistError, LOG_PREFIX};
use crate::core::{Committed, Txn, TxnBody, DIGEST_VERSION};

/// "ZKLG".
pub const LOG_MAGIC: i32 = 0x5A4B_4C47;
/// "ZKSN".
pub const SNAP_MAGIC: i32 = 0x5A4B_534E;
/// File format version.
pub const FORMAT_VERSION: i32 = 2;
/// Largest record a real ZooKeeper 3.8 reads back with default settings: its reader refuses a
/// length above `jute.maxbuffer` (0xfffff) + `zookeeper.jute.maxbuffer.extrasize` (defaults to
/// `jute.maxbuffer`) as "Unreasonable length" (`BinaryInputArchive.checkLength`).
pub const MAX_RECORD: i32 = 0xfffff + 0xfffff;
/// Default read limit of [`read_log_with`]: ZooKeeper's, [`MAX_RECORD`]. It is a plausibility
/// threshold, not a cap: a longer record is still accepted once it checks out (see there).
pub const DEFAULT_READ_LIMIT: u64 = MAX_RECORD as u64;
/// End-of-record marker.
pub const EOR: u8 = b'B';

/// The 16-byte file header.
pub fn file_header(magic: i32, dbid: i64) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[..4].copy_from_slice(&magic.to_be_bytes());
    h[4..8].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
    h[8..].copy_from_slice(&dbid.to_be_bytes());
    h
}

/// The payload of a log entry: `TxnHeader`, the txn record, and the `TxnDigest` when there is
/// one (`Util.marshallTxnEntry`; also the data of a ZAB PROPOSAL).
pub(crate) fn encode_payload(e: &Committed) -> BytesMut {
    let mut payload = BytesMut::with_capacity(128);
    e.txn.hdr.encode(&mut payload);
    e.txn.body.encode(&mut payload);
    if let Some(d) = e.digest {
        TxnDigest {
            version: DIGEST_VERSION,
            tree_digest: d,
        }
        .encode(&mut payload);
    }
    payload
}

/// Appends one framed entry for `e` to `buf`.
pub fn encode_entry(e: &Committed, buf: &mut BytesMut) {
    let payload = encode_payload(e);
    if payload.len() > MAX_RECORD as usize {
        // Interop only: zkit reads it back (see `read_log_with`), a real server would not.
        tracing::warn!(
            zxid = format_args!("0x{:x}", e.txn.hdr.zxid),
            txn_type = e.txn.hdr.txn_type,
            bytes = payload.len(),
            zookeeper_limit = MAX_RECORD,
            "txn log record larger than a real ZooKeeper reads with its default jute.maxbuffer; \
             a ZooKeeper server loading this dataDir needs -Djute.maxbuffer={} or more",
            payload.len().div_ceil(2)
        );
    }
    buf.put_i64(adler32(&payload) as i64);
    buf.put_i32(payload.len() as i32);
    buf.put_slice(&payload);
    buf.put_u8(EOR);
}

/// Decodes an entry payload: header, body, optional digest (tolerating the older shapes
/// ZooKeeper tolerates: closeSession without body, pre-3.3 create, reconfig as setData).
pub fn decode_payload(b: Bytes) -> Result<(Txn, Option<i64>), DecodeError> {
    let mut r = Reader::new(b);
    let hdr = TxnHeader::decode(&mut r)?;
    let body = match OpCode::from_code(hdr.txn_type) {
        Ok(OpCode::CloseSession) if r.is_empty() => {
            TxnBody::CloseSession(CloseSessionTxn::default())
        }
        Ok(OpCode::Reconfig) => TxnBody::SetData(SetDataTxn::decode(&mut r)?),
        Ok(op @ (OpCode::Create | OpCode::Create2)) => {
            let mut probe = r.clone();
            let t = match CreateTxn::decode(&mut probe) {
                Ok(t) => {
                    r = probe;
                    t
                }
                // CreateTxnV0: path, data, acl, ephemeral; parentCVersion = -1.
                Err(_) => CreateTxn {
                    path: r.read_string("path")?,
                    data: r.read_opt_buffer()?,
                    acl: Vec::<Acl>::decode(&mut r)?,
                    ephemeral: r.read_bool()?,
                    parent_cversion: -1,
                },
            };
            if op == OpCode::Create {
                TxnBody::Create(t)
            } else {
                TxnBody::Create2(t)
            }
        }
        _ => TxnBody::decode(hdr.txn_type, &mut r)?,
    };
    let digest = if r.remaining() >= 12 {
        Some(TxnDigest::decode(&mut r)?.tree_digest)
    } else {
        None
    };
    Ok((Txn { hdr, body }, digest))
}

/// The log file currently appended to.
#[derive(Debug)]
struct Current {
    file: File,
    path: PathBuf,
    /// Next write offset.
    pos: u64,
    /// File size after preallocation.
    size: u64,
    /// Bytes covered by the last fsync.
    durable: u64,
    txns: u64,
}

/// Appends entries to `log.*` files: buffered appends, one write + fsync per [`commit`](Self::commit)
/// (group commit), preallocation like `FilePadding`, a new file per process run and per roll.
#[derive(Debug)]
pub struct LogWriter {
    dir: PathBuf,
    prealloc: u64,
    cur: Option<Current>,
    buf: BytesMut,
    buffered: u64,
    first_zxid: Option<i64>,
    last_zxid: i64,
}

impl LogWriter {
    /// A writer for `version-2` directory `dir`.
    pub fn new(dir: &Path, prealloc: u64) -> LogWriter {
        LogWriter {
            dir: dir.to_owned(),
            prealloc,
            cur: None,
            buf: BytesMut::new(),
            buffered: 0,
            first_zxid: None,
            last_zxid: 0,
        }
    }

    /// Buffers one entry (written by the next commit).
    pub fn append(&mut self, e: &Committed) {
        if self.cur.is_none() && self.first_zxid.is_none() {
            self.first_zxid = Some(e.txn.hdr.zxid);
            self.buf.put_slice(&file_header(LOG_MAGIC, 0));
        }
        encode_entry(e, &mut self.buf);
        self.buffered += 1;
        self.last_zxid = e.txn.hdr.zxid;
    }

    /// Writes what was appended; fsyncs when `sync`. Returns the zxid of the last entry written.
    pub fn commit(&mut self, sync: bool) -> Result<i64, PersistError> {
        if self.buf.is_empty() {
            return Ok(self.last_zxid);
        }
        if self.cur.is_none() {
            let zxid = self.first_zxid.take().unwrap_or(self.last_zxid);
            let path = self.dir.join(file_name(LOG_PREFIX, zxid));
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| PersistError::io(&path, e))?;
            tracing::debug!(file = %path.display(), "new txn log");
            self.cur = Some(Current {
                file,
                path,
                pos: 0,
                size: 16,
                durable: 0,
                txns: 0,
            });
        }
        let Some(c) = self.cur.as_mut() else {
            return Ok(self.last_zxid);
        };
        let end = c.pos + self.buf.len() as u64;
        if self.prealloc > 0 && end + 4096 >= c.size {
            let mut size = c.size;
            while end + 4096 >= size {
                size += self.prealloc;
            }
            // ZooKeeper writes one zero byte at the new end; set_len gives the same sparse file.
            c.file
                .set_len(size)
                .map_err(|e| PersistError::io(&c.path, e))?;
            c.size = size;
        }
        c.file
            .write_all_at(&self.buf, c.pos)
            .map_err(|e| PersistError::io(&c.path, e))?;
        c.pos = end;
        c.txns += self.buffered;
        self.buffered = 0;
        self.buf.clear();
        if sync {
            c.file
                .sync_data()
                .map_err(|e| PersistError::io(&c.path, e))?;
            c.durable = c.pos;
        }
        Ok(self.last_zxid)
    }

    /// Commits, fsyncs and closes the current file; the next append opens a new one.
    pub fn roll(&mut self) -> Result<(), PersistError> {
        self.commit(false)?;
        if let Some(c) = self.cur.take() {
            c.file
                .sync_all()
                .map_err(|e| PersistError::io(&c.path, e))?;
            super::sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Txns in the current file.
    pub fn txns_in_file(&self) -> u64 {
        self.cur.as_ref().map_or(0, |c| c.txns)
    }

    /// The current file and how many of its bytes were written (padding excluded).
    pub fn written_point(&self) -> Option<(PathBuf, u64)> {
        self.cur.as_ref().map(|c| (c.path.clone(), c.pos))
    }

    /// The current file and how many of its bytes the last fsync covered (for crash simulation).
    pub fn durable_point(&self) -> Option<(PathBuf, u64)> {
        self.cur.as_ref().map(|c| (c.path.clone(), c.durable))
    }
}

/// One txn read from a log.
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// The txn.
    pub txn: Txn,
    /// Its TxnDigest, when present.
    pub digest: Option<i64>,
    /// Offset of the entry in the file.
    #[cfg_attr(not(test), allow(dead_code))] // read by the crash tests
    pub offset: u64,
    /// Offset just past its 'B' marker.
    #[cfg_attr(not(test), allow(dead_code))] // read by the crash tests
    pub end: u64,
}

/// How a log file ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEnd {
    /// EOF or zero padding after the last entry at `end`.
    Clean {
        /// Offset just past the last valid entry.
        end: u64,
    },
    /// The reader stopped early (callback asked to).
    Stopped {
        /// Offset just past the last entry read.
        end: u64,
    },
    /// The entry at `offset` is damaged.
    Damaged {
        /// Offset of the damaged entry (= end of the valid part).
        offset: u64,
        /// What is wrong.
        reason: String,
        /// Whether anything non-zero follows the damaged entry, or the damage cannot come from an
        /// interrupted append (a checksummed entry that does not decode).
        data_after: bool,
    },
}

/// Reads up to `buf.len()` bytes; fewer only at EOF.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Whether every byte from the reader's position to EOF is zero.
fn rest_is_zero(r: &mut impl Read) -> io::Result<bool> {
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = read_full(r, &mut chunk)?;
        if chunk[..n].iter().any(|b| *b != 0) {
            return Ok(false);
        }
        if n < chunk.len() {
            return Ok(true);
        }
    }
}

/// [`read_log_with`] with the [`DEFAULT_READ_LIMIT`].
#[cfg(test)]
pub fn read_log(
    path: &Path,
    f: impl FnMut(LogEntry) -> Result<bool, PersistError>,
) -> Result<LogEnd, PersistError> {
    read_log_with(path, DEFAULT_READ_LIMIT, f)
}

/// Reads a log file entry by entry. `f` gets each valid entry in order and returns whether to
/// go on. Never hands out an entry whose checksum, length or marker is wrong.
///
/// Every record the writer produces reads back, whatever its size: the writer has no size
/// limit of its own (a closeSession lists every ephemeral of its session, so it grows without
/// bound). A length up to `read_limit` (raised to at least [`DEFAULT_READ_LIMIT`]) is read at
/// once; a longer one is read only if the file holds that many bytes, and accepted only if its
/// end marker and checksum are right — so a damaged length can neither refuse a good log nor
/// make the reader allocate more than the file's size.
pub fn read_log_with(
    path: &Path,
    read_limit: u64,
    mut f: impl FnMut(LogEntry) -> Result<bool, PersistError>,
) -> Result<LogEnd, PersistError> {
    let read_limit = read_limit.max(DEFAULT_READ_LIMIT);
    let file = File::open(path).map_err(|e| PersistError::io(path, e))?;
    let file_len = file
        .metadata()
        .map_err(|e| PersistError::io(path, e))?
        .len();
    let mut r = io::BufReader::with_capacity(256 * 1024, file);
    let io_err = |e| PersistError::io(path, e);
    let mut hdr = [0u8; 16];
    let n = read_full(&mut r, &mut hdr).map_err(io_err)?;
    if n < 16 {
        let zero = hdr[..n].iter().all(|b| *b == 0);
        return Ok(LogEnd::Damaged {
            offset: 0,
            reason: format!("file of {n} bytes is shorter than its header"),
            data_after: !zero && n >= 4 && hdr[..4] != LOG_MAGIC.to_be_bytes(),
        });
    }
    if hdr[..4] != LOG_MAGIC.to_be_bytes() {
        return Ok(LogEnd::Damaged {
            offset: 0,
            reason: "bad magic (not a ZooKeeper txn log)".into(),
            data_after: true,
        });
    }
    let mut off = 16u64;
    loop {
        let mut fr = [0u8; 12];
        let n = read_full(&mut r, &mut fr).map_err(io_err)?;
        if n == 0 {
            return Ok(LogEnd::Clean { end: off });
        }
        if n < 12 {
            if fr[..n].iter().all(|b| *b == 0) {
                return Ok(LogEnd::Clean { end: off });
            }
            return Ok(LogEnd::Damaged {
                offset: off,
                reason: "entry header cut short".into(),
                data_after: false,
            });
        }
        let crc = i64::from_be_bytes(fr[..8].try_into().unwrap_or_default());
        let len = i32::from_be_bytes(fr[8..].try_into().unwrap_or_default());
        if len == 0 {
            // Padding: everything from here on must be zero, else entries would be lost.
            if crc == 0 && rest_is_zero(&mut r).map_err(io_err)? {
                return Ok(LogEnd::Clean { end: off });
            }
            return Ok(LogEnd::Damaged {
                offset: off,
                reason: "zero-length entry followed by data".into(),
                data_after: true,
            });
        }
        let beyond_limit = len as u64 > read_limit;
        let fits = (len as u64) < file_len.saturating_sub(off + 12);
        if len < 0 || (beyond_limit && !fits) {
            let data_after = !rest_is_zero(&mut r).map_err(io_err)?;
            return Ok(LogEnd::Damaged {
                offset: off,
                reason: format!("unreasonable length {len}"),
                data_after,
            });
        }
        let mut payload = vec![0u8; len as usize + 1];
        let n = read_full(&mut r, &mut payload).map_err(io_err)?;
        if n < payload.len() {
            return Ok(LogEnd::Damaged {
                offset: off,
                reason: format!("entry cut short ({n} of {} bytes)", payload.len()),
                data_after: false,
            });
        }
        let marker = payload.pop().unwrap_or(0);
        let reason = if marker != EOR {
            Some(format!("end-of-record marker is 0x{marker:02x}, not 'B'"))
        } else if adler32(&payload) as i64 != crc {
            Some("checksum mismatch".to_owned())
        } else {
            None
        };
        let reason = match reason {
            Some(r) if beyond_limit => Some(format!("unreasonable length {len} ({r})")),
            r => r,
        };
        if beyond_limit && reason.is_none() {
            tracing::debug!(
                file = %path.display(),
                offset = off,
                bytes = len,
                read_limit,
                "log record above the read limit accepted: its marker and checksum are right"
            );
        }
        if let Some(reason) = reason {
            let data_after = !rest_is_zero(&mut r).map_err(io_err)?;
            return Ok(LogEnd::Damaged {
                offset: off,
                reason,
                data_after,
            });
        }
        let end = off + 12 + len as u64 + 1;
        let (txn, digest) = match decode_payload(Bytes::from(payload)) {
            Ok(t) => t,
            Err(e) => {
                return Ok(LogEnd::Damaged {
                    offset: off,
                    reason: format!("entry does not decode: {e}"),
                    data_after: true,
                })
            }
        };
        let go_on = f(LogEntry {
            txn,
            digest,
            offset: off,
            end,
        })?;
        off = end;
        if !go_on {
            return Ok(LogEnd::Stopped { end: off });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tempfile::TempDir;
    use zkit_proto::txn::CreateSessionTxn;

    fn session_txn(zxid: i64) -> Committed {
        Committed {
            txn: Txn::new(
                0x100001a96170000,
                0,
                zxid,
                0x1a2094d94d3,
                TxnBody::CreateSession(CreateSessionTxn { time_out: 10000 }),
            ),
            digest: Some(1371985504),
        }
    }

    #[test]
    fn first_entry_matches_the_reference_hexdump() {
        // `docs/disk-format.md` §4.4, entry 1.
        let mut b = BytesMut::new();
        encode_entry(&session_txn(1), &mut b);
        assert_eq!(
            &b[..12],
            &[0, 0, 0, 0, 0xaa, 0x2d, 0x09, 0xa3, 0, 0, 0, 0x30]
        );
        assert_eq!(b.len(), 12 + 48 + 1);
        assert_eq!(b[b.len() - 1], b'B');
    }

    #[test]
    fn writer_output_reads_back_with_padding() {
        let d = TempDir::with_prefix("zkit-txnlog-").expect("temp dir");
        let mut w = LogWriter::new(d.path(), 64 * 1024);
        for z in 1..=100 {
            w.append(&session_txn(z));
            if z % 7 == 0 {
                w.commit(true).unwrap();
            }
        }
        w.commit(true).unwrap();
        let path = d.path().join("log.1");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 16 + 64 * 1024);
        let mut seen = vec![];
        let end = read_log(&path, |e| {
            seen.push(e.txn.hdr.zxid);
            Ok(true)
        })
        .unwrap();
        assert_eq!(seen, (1..=100).collect::<Vec<_>>());
        assert!(matches!(end, LogEnd::Clean { .. }));
    }

    /// A log whose second entry is a closeSession of `n` 66-byte paths.
    fn big_close_log(d: &TempDir, n: usize) -> (PathBuf, u64) {
        let paths = (0..n).map(|i| format!("/e/{i:063}")).collect();
        let mut w = LogWriter::new(d.path(), 0);
        w.append(&session_txn(1));
        w.append(&Committed {
            txn: Txn::new(
                0x100001a96170000,
                0,
                2,
                0x1a2094d94d3,
                TxnBody::CloseSession(CloseSessionTxn {
                    paths2_delete: paths,
                }),
            ),
            digest: None,
        });
        w.append(&session_txn(3));
        w.commit(true).unwrap();
        let path = d.path().join("log.1");
        // Offset of the big entry: header + the 61-byte first entry.
        (path, 16 + 61)
    }

    #[test]
    fn records_past_the_read_limit_that_check_out_are_read() {
        let d = TempDir::new().unwrap();
        let (path, _) = big_close_log(&d, 40_000);
        let mut seen = vec![];
        let end = read_log(&path, |e| {
            seen.push(e.txn.hdr.zxid);
            Ok(true)
        })
        .unwrap();
        assert_eq!(seen, vec![1, 2, 3]);
        assert!(matches!(end, LogEnd::Clean { .. }), "{end:?}");
    }

    #[test]
    fn a_damaged_length_past_the_limit_is_still_caught() {
        let d = TempDir::new().unwrap();
        let (path, at) = big_close_log(&d, 40_000);
        let mut bytes = std::fs::read(&path).unwrap();
        // Past the end of the file: refused without allocating it.
        bytes[at as usize + 8..at as usize + 12].copy_from_slice(&0x7fff_0000i32.to_be_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let end = read_log(&path, |_| Ok(true)).unwrap();
        assert!(
            matches!(&end, LogEnd::Damaged { offset, reason, data_after: true }
                if *offset == at && reason.contains("unreasonable length")),
            "{end:?}"
        );
        // Within the file but not a record: refused too.
        bytes[at as usize + 8..at as usize + 12].copy_from_slice(&0x0020_0000i32.to_be_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let end = read_log(&path, |_| Ok(true)).unwrap();
        assert!(
            matches!(&end, LogEnd::Damaged { offset, reason, .. }
                if *offset == at && reason.contains("unreasonable length")),
            "{end:?}"
        );
    }
}
