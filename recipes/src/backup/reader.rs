//! The streaming, validating decoder of the backup format ([`BackupReader`]); the layout is
//! specified in the [module docs](super).

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};
use zkit::{Acl, Id};

use super::format::{TAG_HEADER, TAG_NODE, TAG_TRAILER};
use super::{Crc32, Error, Header, Kind, NodeRecord, Result, Trailer, MAGIC, MAX_FRAME, VERSION};

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
            (2, t) if t > 0 && t <= zkit::MAX_TTL => Kind::Ttl(Duration::from_millis(t as u64)),
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
    fn relative_paths() {
        assert!(valid_rel(""));
        assert!(valid_rel("/a/b"));
        assert!(!valid_rel("a"));
        assert!(!valid_rel("/a/"));
        assert!(!valid_rel("/a//b"));
        assert!(!valid_rel("/.."));
    }
}
