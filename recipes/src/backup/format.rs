//! The backup file format, version 1: an encoder ([`BackupWriter`]) and a streaming, validating
//! decoder ([`BackupReader`]). The byte layout is specified in the [module docs](super).

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use zkit::{Acl, Id};

use super::{Error, Kind, Result};

/// The eight bytes every backup file starts with: `ZKITBKUP`.
pub const MAGIC: [u8; 8] = *b"ZKITBKUP";
/// The format version this code writes (and the only one it reads).
pub const VERSION: u16 = 1;
/// Largest frame body accepted (64 MiB): a corrupt length never makes the reader allocate more.
pub const MAX_FRAME: u32 = 64 << 20;

const TAG_HEADER: u8 = b'H';
const TAG_NODE: u8 = b'N';
const TAG_TRAILER: u8 = b'T';

/// CRC-32 (IEEE 802.3, reflected polynomial `0xEDB88320`, the zlib / `java.util.zip.CRC32` one).
///
/// ```
/// use zkit_recipes::backup::Crc32;
/// let mut c = Crc32::new();
/// c.update(b"1234");
/// c.update(b"56789");
/// assert_eq!(c.value(), 0xCBF4_3926);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Crc32(u32);

const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

impl Crc32 {
    /// A fresh checksum.
    pub fn new() -> Crc32 {
        Crc32(0xFFFF_FFFF)
    }
    /// Adds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        let mut c = self.0;
        for &b in bytes {
            c = CRC_TABLE[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
        }
        self.0 = c;
    }
    /// The checksum of everything added so far.
    pub fn value(&self) -> u32 {
        self.0 ^ 0xFFFF_FFFF
    }
}

impl Default for Crc32 {
    fn default() -> Self {
        Crc32::new()
    }
}

/// The header frame: what was exported, when and from where.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Header {
    /// The exported subtree's root, as the exporting client saw it (`/` or `/a/b`).
    pub root: String,
    /// Export start, milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// Free text naming the source (never credentials).
    pub source: String,
}

/// One node record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeRecord {
    /// Path relative to [`Header::root`]: `""` for the root itself, else `/child/...`.
    pub path: String,
    /// Persistent, container or TTL.
    pub kind: Kind,
    /// The node's ACL.
    pub acl: Vec<Acl>,
    /// The node's data.
    pub data: Bytes,
}

impl NodeRecord {
    /// A record.
    pub fn new(path: impl Into<String>, kind: Kind, acl: Vec<Acl>, data: Bytes) -> NodeRecord {
        NodeRecord {
            path: path.into(),
            kind,
            acl,
            data,
        }
    }
}

/// The trailer's counts, checked by the reader against what it read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Trailer {
    /// Number of node records.
    pub nodes: u64,
    /// Sum of the records' data lengths.
    pub data_bytes: u64,
    /// CRC-32 of every byte before the trailer frame.
    pub file_crc: u32,
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u32).to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// Writes a backup file frame by frame; nothing is buffered beyond the underlying writer's buffer.
///
/// ```
/// # async fn f() -> zkit_recipes::backup::Result<()> {
/// use zkit_recipes::backup::{BackupReader, BackupWriter, Header, Kind, NodeRecord};
/// let mut file = Vec::new();
/// let mut w = BackupWriter::start(&mut file, "/app", "example").await?;
/// w.node(&NodeRecord::new("", Kind::Persistent, zkit::Acl::open_unsafe(), "cfg".into())).await?;
/// w.finish().await?;
/// let mut r = BackupReader::open(&file[..]).await?;
/// assert_eq!(r.header().root, "/app");
/// assert_eq!(r.next().await?.unwrap().data, "cfg");
/// assert!(r.next().await?.is_none()); // trailer verified
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct BackupWriter<W> {
    out: W,
    crc: Crc32,
    nodes: u64,
    data_bytes: u64,
    written: u64,
    buf: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> BackupWriter<W> {
    /// Writes the magic, the version and the header frame.
    pub async fn start(out: W, root: &str, source: &str) -> Result<Self> {
        let created_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let mut w = BackupWriter {
            out,
            crc: Crc32::new(),
            nodes: 0,
            data_bytes: 0,
            written: 0,
            buf: Vec::with_capacity(4096),
        };
        let mut head = MAGIC.to_vec();
        head.extend_from_slice(&VERSION.to_be_bytes());
        w.crc.update(&head);
        w.out.write_all(&head).await?;
        w.written += head.len() as u64;
        let mut body = Vec::new();
        put_str(&mut body, root);
        body.extend_from_slice(&created_ms.to_be_bytes());
        put_str(&mut body, source);
        w.frame(TAG_HEADER, body).await?;
        Ok(w)
    }

    async fn frame(&mut self, tag: u8, body: Vec<u8>) -> Result<()> {
        let len = u32::try_from(body.len())
            .ok()
            .filter(|l| *l <= MAX_FRAME)
            .ok_or_else(|| {
                Error::InvalidArgument(format!("record of {} bytes is too large", body.len()))
            })?;
        let mut head = [0u8; 5];
        head[0] = tag;
        head[1..].copy_from_slice(&len.to_be_bytes());
        let mut c = Crc32::new();
        c.update(&head);
        c.update(&body);
        let crc = c.value().to_be_bytes();
        for part in [&head[..], &body[..], &crc[..]] {
            if tag != TAG_TRAILER {
                self.crc.update(part);
            }
            self.out.write_all(part).await?;
        }
        self.written += 9 + body.len() as u64;
        self.buf = body;
        Ok(())
    }

    /// Appends one node record.
    pub async fn node(&mut self, n: &NodeRecord) -> Result<()> {
        let mut b = std::mem::take(&mut self.buf);
        b.clear();
        put_str(&mut b, &n.path);
        let (kind, ttl) = match n.kind {
            Kind::Persistent => (0u8, 0i64),
            Kind::Container => (1, 0),
            Kind::Ttl(t) => (2, t.as_millis() as i64),
        };
        b.push(kind);
        b.extend_from_slice(&ttl.to_be_bytes());
        b.extend_from_slice(&(n.acl.len() as u32).to_be_bytes());
        for a in &n.acl {
            b.extend_from_slice(&a.perms.to_be_bytes());
            put_str(&mut b, &a.id.scheme);
            put_str(&mut b, &a.id.id);
        }
        b.extend_from_slice(&(n.data.len() as u32).to_be_bytes());
        b.extend_from_slice(&n.data);
        self.frame(TAG_NODE, b).await?;
        self.nodes += 1;
        self.data_bytes += n.data.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Records written so far.
    pub fn nodes_written(&self) -> u64 {
        self.nodes
    }

    /// Writes the trailer and flushes; returns the writer, the trailer and the file's size.
    pub async fn finish(mut self) -> Result<(W, Trailer, u64)> {
        let t = Trailer {
            nodes: self.nodes,
            data_bytes: self.data_bytes,
            file_crc: self.crc.value(),
        };
        let mut b = Vec::with_capacity(20);
        b.extend_from_slice(&t.nodes.to_be_bytes());
        b.extend_from_slice(&t.data_bytes.to_be_bytes());
        b.extend_from_slice(&t.file_crc.to_be_bytes());
        self.frame(TAG_TRAILER, b).await?;
        self.out.flush().await?;
        Ok((self.out, t, self.written))
    }
}

/// Decodes a frame body; every read is bounds-checked.
struct Body<'a> {
    b: &'a [u8],
    at: usize,
    offset: u64,
}

impl<'a> Body<'a> {
    fn bad(&self, reason: impl Into<String>) -> Error {
        Error::Corrupt {
            offset: self.offset,
            reason: reason.into(),
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.b.len() - self.at < n {
            return Err(self.bad("record shorter than its fields"));
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(a))
    }
    fn u64(&mut self) -> Result<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }
    fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Result<String> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| self.bad("string is not UTF-8"))
    }
    fn end(&self) -> Result<()> {
        if self.at != self.b.len() {
            return Err(self.bad("trailing bytes in record"));
        }
        Ok(())
    }
}

/// Whether `rel` is a valid relative record path: empty, or `/`-separated non-empty names.
fn valid_rel(rel: &str) -> bool {
    rel.is_empty()
        || (rel.starts_with('/')
            && rel[1..]
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0')))
}

/// Reads a backup file as a stream of verified records. Each frame's CRC is checked before the
/// record is returned; the trailer (count, data bytes, whole-file CRC) is checked when
/// [`next`](Self::next) reaches it, and nothing may follow it.
#[derive(Debug)]
pub struct BackupReader<R> {
    input: R,
    header: Header,
    crc: Crc32,
    offset: u64,
    nodes: u64,
    data_bytes: u64,
    trailer: Option<Trailer>,
}

impl<R: AsyncRead + Unpin> BackupReader<R> {
    /// Reads and checks the magic, the version and the header frame.
    pub async fn open(mut input: R) -> Result<Self> {
        let mut head = [0u8; 10];
        read_exact(&mut input, &mut head, 0).await?;
        if head[..8] != MAGIC {
            return Err(Error::NotABackup);
        }
        let version = u16::from_be_bytes([head[8], head[9]]);
        if version != VERSION {
            return Err(Error::UnsupportedVersion(version));
        }
        let mut crc = Crc32::new();
        crc.update(&head);
        let mut r = BackupReader {
            input,
            header: Header {
                root: String::new(),
                created_ms: 0,
                source: String::new(),
            },
            crc,
            offset: 10,
            nodes: 0,
            data_bytes: 0,
            trailer: None,
        };
        let (tag, body, at) = r
            .frame()
            .await?
            .ok_or(Error::Truncated { offset: r.offset })?;
        let mut b = Body {
            b: &body,
            at: 0,
            offset: at,
        };
        if tag != TAG_HEADER {
            return Err(b.bad("first frame is not the header"));
        }
        let root = b.string()?;
        let created_ms = b.u64()? as i64;
        let source = b.string()?;
        b.end()?;
        if !root.starts_with('/') || (root.len() > 1 && !valid_rel(&root)) {
            return Err(b.bad(format!("bad root path {root:?}")));
        }
        r.header = Header {
            root,
            created_ms,
            source,
        };
        Ok(r)
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Bytes consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.offset
    }

    /// The trailer, once [`next`](Self::next) has returned `None`.
    pub fn trailer(&self) -> Option<Trailer> {
        self.trailer
    }

    /// One frame: tag, body and the body's offset; `None` at a clean end of input.
    async fn frame(&mut self) -> Result<Option<(u8, Vec<u8>, u64)>> {
        let start = self.offset;
        let mut head = [0u8; 5];
        let n = read_full(&mut self.input, &mut head).await?;
        if n == 0 {
            return Ok(None);
        }
        if n < head.len() {
            return Err(Error::Truncated {
                offset: start + n as u64,
            });
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
        if len > MAX_FRAME {
            return Err(Error::Corrupt {
                offset: start,
                reason: format!("frame length {len} over the {MAX_FRAME} limit"),
            });
        }
        let mut body = vec![0u8; len as usize + 4];
        read_exact(&mut self.input, &mut body, start + 5).await?;
        let (body_only, crc) = body.split_at(len as usize);
        let mut c = Crc32::new();
        c.update(&head);
        c.update(body_only);
        let stored = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if c.value() != stored {
            return Err(Error::ChecksumMismatch {
                offset: start,
                what: "frame",
                stored,
                computed: c.value(),
            });
        }
        if head[0] != TAG_TRAILER {
            self.crc.update(&head);
            self.crc.update(&body);
        }
        self.offset = start + 9 + len as u64;
        body.truncate(len as usize);
        Ok(Some((head[0], body, start + 5)))
    }

    /// The next node record; `None` once the trailer has been read and verified.
    pub async fn next(&mut self) -> Result<Option<NodeRecord>> {
        if self.trailer.is_some() {
            return Ok(None);
        }
        let Some((tag, body, at)) = self.frame().await? else {
            return Err(Error::Truncated {
                offset: self.offset,
            });
        };
        let mut b = Body {
            b: &body,
            at: 0,
            offset: at,
        };
        match tag {
            TAG_NODE => {}
            TAG_TRAILER => return self.finish(b).await.map(|()| None),
            t => return Err(b.bad(format!("unknown frame tag 0x{t:02x}"))),
        }
        let path = b.string()?;
        if !valid_rel(&path) {
            return Err(b.bad(format!("bad record path {path:?}")));
        }
        let kind = b.u8()?;
        let ttl = b.u64()? as i64;
        let kind = match (kind, ttl) {
            (0, 0) => Kind::Persistent,
            (1, 0) => Kind::Container,
            (2, t) if t > 0 && t <= zkit::proto::MAX_TTL => {
                Kind::Ttl(Duration::from_millis(t as u64))
            }
            (k, t) => return Err(b.bad(format!("bad kind {k} with TTL {t}"))),
        };
        let n = b.u32()? as usize;
        // Each entry takes at least 12 bytes: a bad count fails here, not in an allocation.
        if n > (body.len() - b.at) / 12 {
            return Err(b.bad(format!("ACL count {n} exceeds the record")));
        }
        let mut acl = Vec::with_capacity(n);
        for _ in 0..n {
            let perms = b.u32()? as i32;
            let scheme = b.string()?;
            let id = b.string()?;
            acl.push(Acl {
                perms,
                id: Id { scheme, id },
            });
        }
        let data = Bytes::copy_from_slice(b.bytes()?);
        b.end()?;
        self.nodes += 1;
        self.data_bytes += data.len() as u64;
        Ok(Some(NodeRecord {
            path,
            kind,
            acl,
            data,
        }))
    }

    async fn finish(&mut self, mut b: Body<'_>) -> Result<()> {
        let t = Trailer {
            nodes: b.u64()?,
            data_bytes: b.u64()?,
            file_crc: b.u32()?,
        };
        b.end()?;
        if t.nodes != self.nodes || t.data_bytes != self.data_bytes {
            return Err(b.bad(format!(
                "trailer counts {} nodes / {} data bytes, file holds {} / {}",
                t.nodes, t.data_bytes, self.nodes, self.data_bytes
            )));
        }
        if t.file_crc != self.crc.value() {
            return Err(Error::ChecksumMismatch {
                offset: b.offset,
                what: "file",
                stored: t.file_crc,
                computed: self.crc.value(),
            });
        }
        let mut one = [0u8; 1];
        if read_full(&mut self.input, &mut one).await? != 0 {
            return Err(Error::Corrupt {
                offset: self.offset,
                reason: "bytes after the trailer".into(),
            });
        }
        self.trailer = Some(t);
        Ok(())
    }
}

/// Reads until `buf` is full or the input ends; returns how many bytes were read.
async fn read_full<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]).await? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

async fn read_exact<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8], offset: u64) -> Result<()> {
    let n = read_full(r, buf).await?;
    if n < buf.len() {
        return Err(Error::Truncated {
            offset: offset + n as u64,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        let mut c = Crc32::new();
        c.update(b"123456789");
        assert_eq!(c.value(), 0xCBF4_3926);
    }

    #[test]
    fn relative_paths() {
        assert!(valid_rel(""));
        assert!(valid_rel("/a/b"));
        assert!(!valid_rel("a"));
        assert!(!valid_rel("/a/"));
        assert!(!valid_rel("/a//b"));
        assert!(!valid_rel("/.."));
    }
}
