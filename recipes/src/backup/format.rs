//! The backup file format, version 1: constants, the CRC, the records and the encoder
//! ([`BackupWriter`]); the decoder is in `reader.rs`. The byte layout is specified in the
//! [module docs](super).

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use zkit::Acl;

use super::{Error, Kind, Result};

/// The eight bytes every backup file starts with: `ZKITBKUP`.
pub const MAGIC: [u8; 8] = *b"ZKITBKUP";
/// The format version this code writes (and the only one it reads).
pub const VERSION: u16 = 1;
/// Largest frame body accepted (64 MiB): a corrupt length never makes the reader allocate more.
pub const MAX_FRAME: u32 = 64 << 20;

pub(super) const TAG_HEADER: u8 = b'H';
pub(super) const TAG_NODE: u8 = b'N';
pub(super) const TAG_TRAILER: u8 = b'T';

/// CRC-32 (IEEE 802.3, reflected polynomial `0xEDB88320`, the zlib / `java.util.zip.CRC32` one).
///
/// ```
/// use zkit_recipes::backup::Crc32;
/// let mut c = Crc32::new();
/// c.update(b"1234");
/// c.update(b"56789");
/// assert_eq!(c.value(), 0xCBF4_3926);
/// ```
#[derive(Debug, Clone)]
pub struct Crc32(crc32fast::Hasher);

impl Crc32 {
    /// A fresh checksum.
    pub fn new() -> Crc32 {
        Crc32(crc32fast::Hasher::new())
    }
    /// Adds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    /// The checksum of everything added so far.
    pub fn value(&self) -> u32 {
        self.0.clone().finalize()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        let mut c = Crc32::new();
        c.update(b"123456789");
        assert_eq!(c.value(), 0xCBF4_3926);
    }
}
