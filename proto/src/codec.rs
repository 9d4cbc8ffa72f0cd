//! Jute binary encoding: big-endian integers, length-prefixed strings and buffers, vectors.
//!
//! Decoding works on a [`Reader`] over a [`Bytes`] so that `buffer` fields (znode data) are
//! zero-copy slices of the received frame. Every read is bounds-checked: malformed input gives a
//! [`DecodeError`], never a panic.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before the record did.
    #[error("record truncated: needed {needed} more bytes")]
    Truncated {
        /// How many bytes were missing.
        needed: usize,
    },
    /// A length prefix was negative (other than -1) or larger than the input.
    #[error("invalid length {0}")]
    InvalidLength(i32),
    /// A string was not valid UTF-8.
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// A field held a value outside its domain (an unknown opcode, event type, ...).
    #[error("invalid value {value} for {field}")]
    InvalidValue {
        /// The field's name.
        field: &'static str,
        /// The value found.
        value: i64,
    },
    /// A field that may not be null was null.
    #[error("unexpected null for {0}")]
    UnexpectedNull(&'static str),
}

/// A bounds-checked cursor over a received frame.
#[derive(Debug, Clone)]
pub struct Reader {
    buf: Bytes,
    /// Decode strings like Java (see [`Reader::java_strings`]).
    lossy: bool,
}

impl Reader {
    /// Wraps `buf`.
    pub fn new(buf: Bytes) -> Self {
        Reader { buf, lossy: false }
    }

    /// Decodes strings the way a Java peer does (`new String(bytes, UTF_8)`): an invalid UTF-8
    /// sequence becomes U+FFFD instead of failing with [`DecodeError::InvalidUtf8`]. A server
    /// reads requests this way, so that it answers a malformed path the way ZooKeeper does
    /// (BadArguments or NoNode) rather than with a marshalling error.
    pub fn java_strings(mut self) -> Self {
        self.lossy = true;
        self
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The unread rest, consuming the reader.
    pub fn into_rest(self) -> Bytes {
        self.buf
    }

    fn need(&self, n: usize) -> Result<(), DecodeError> {
        if self.buf.len() < n {
            Err(DecodeError::Truncated {
                needed: n - self.buf.len(),
            })
        } else {
            Ok(())
        }
    }

    /// Reads a jute `int`.
    pub fn read_i32(&mut self) -> Result<i32, DecodeError> {
        self.need(4)?;
        Ok(self.buf.get_i32())
    }

    /// Reads a jute `long`.
    pub fn read_i64(&mut self) -> Result<i64, DecodeError> {
        self.need(8)?;
        Ok(self.buf.get_i64())
    }

    /// Reads `N` bytes at once (one bounds check for a fixed-size record such as a Stat).
    pub fn read_array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.need(N)?;
        let mut a = [0; N];
        self.buf.copy_to_slice(&mut a);
        Ok(a)
    }

    /// Reads a jute `boolean` (any non-zero byte is true, like Java's reader).
    pub fn read_bool(&mut self) -> Result<bool, DecodeError> {
        self.need(1)?;
        Ok(self.buf.get_u8() != 0)
    }

    /// Reads a `buffer`; `None` when the length is -1.
    pub fn read_opt_buffer(&mut self) -> Result<Option<Bytes>, DecodeError> {
        let len = self.read_i32()?;
        if len == -1 {
            return Ok(None);
        }
        if len < 0 || len as usize > self.buf.len() {
            return Err(DecodeError::InvalidLength(len));
        }
        Ok(Some(self.buf.split_to(len as usize)))
    }

    /// Reads a `buffer`, mapping null to empty.
    pub fn read_buffer(&mut self) -> Result<Bytes, DecodeError> {
        Ok(self.read_opt_buffer()?.unwrap_or_default())
    }

    /// Reads a `ustring`; `None` when the length is -1.
    pub fn read_opt_string(&mut self) -> Result<Option<String>, DecodeError> {
        match self.read_opt_buffer()? {
            None => Ok(None),
            Some(b) if self.lossy => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
            Some(b) => String::from_utf8(b.to_vec())
                .map(Some)
                .map_err(|_| DecodeError::InvalidUtf8),
        }
    }

    /// Reads a `ustring` that may not be null.
    pub fn read_string(&mut self, field: &'static str) -> Result<String, DecodeError> {
        self.read_opt_string()?
            .ok_or(DecodeError::UnexpectedNull(field))
    }

    /// Reads a `vector<T>`, mapping null to empty.
    pub fn read_vec<T>(
        &mut self,
        mut item: impl FnMut(&mut Reader) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let n = self.read_i32()?;
        if n == -1 {
            return Ok(Vec::new());
        }
        // Each element takes at least one byte, so a count above the remaining length is bogus;
        // checking it first keeps a hostile count from reserving gigabytes.
        if n < 0 || n as usize > self.buf.len() {
            return Err(DecodeError::InvalidLength(n));
        }
        let mut v = Vec::with_capacity(n as usize);
        for _ in 0..n {
            v.push(item(self)?);
        }
        Ok(v)
    }

    /// Reads a `vector<ustring>`.
    pub fn read_string_vec(&mut self, field: &'static str) -> Result<Vec<String>, DecodeError> {
        self.read_vec(|r| r.read_string(field))
    }
}

/// Writes jute primitives into a [`BytesMut`].
pub trait JuteWrite {
    /// Writes a `boolean`.
    fn put_bool(&mut self, v: bool);
    /// Writes a `buffer` (or a null one).
    fn put_opt_buffer(&mut self, v: Option<&[u8]>);
    /// Writes a `buffer`.
    fn put_buffer(&mut self, v: &[u8]) {
        self.put_opt_buffer(Some(v))
    }
    /// Writes a `ustring`.
    fn put_string(&mut self, v: &str) {
        self.put_opt_buffer(Some(v.as_bytes()))
    }
    /// Writes a `vector<ustring>`.
    fn put_string_vec<S: AsRef<str>>(&mut self, v: &[S]);
}

impl JuteWrite for BytesMut {
    fn put_bool(&mut self, v: bool) {
        self.put_u8(v as u8);
    }
    fn put_opt_buffer(&mut self, v: Option<&[u8]>) {
        match v {
            None => self.put_i32(-1),
            Some(b) => {
                self.put_i32(b.len() as i32);
                self.put_slice(b);
            }
        }
    }
    fn put_string_vec<S: AsRef<str>>(&mut self, v: &[S]) {
        self.put_i32(v.len() as i32);
        for s in v {
            self.put_string(s.as_ref());
        }
    }
}

/// A jute record: encodes to and decodes from the binary archive format.
pub trait Record: Sized {
    /// Appends the record's fields to `buf`.
    fn encode(&self, buf: &mut BytesMut);
    /// Reads the record's fields from `r`.
    fn decode(r: &mut Reader) -> Result<Self, DecodeError>;

    /// Encodes into a fresh buffer (handy in tests).
    fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::new();
        self.encode(&mut b);
        b.freeze()
    }

    /// Decodes from a complete buffer, ignoring trailing bytes.
    fn from_bytes(b: Bytes) -> Result<Self, DecodeError> {
        Self::decode(&mut Reader::new(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_int_is_an_error() {
        let mut r = Reader::new(Bytes::from_static(&[0, 0, 1]));
        assert_eq!(r.read_i32(), Err(DecodeError::Truncated { needed: 1 }));
    }

    #[test]
    fn null_and_empty_buffers_differ() {
        let mut b = BytesMut::new();
        b.put_opt_buffer(None);
        b.put_buffer(b"");
        let mut r = Reader::new(b.freeze());
        assert_eq!(r.read_opt_buffer().unwrap(), None);
        assert_eq!(r.read_opt_buffer().unwrap(), Some(Bytes::new()));
    }

    #[test]
    fn hostile_lengths_are_rejected() {
        let mut r = Reader::new(Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff, 1]));
        assert_eq!(
            r.read_opt_buffer(),
            Err(DecodeError::InvalidLength(i32::MAX))
        );
        let mut r = Reader::new(Bytes::from_static(&[0xff, 0xff, 0xff, 0xfe]));
        assert!(r.read_vec(|r| r.read_i32()).is_err());
        let mut r = Reader::new(Bytes::from_static(&[0, 0, 0, 2, 0xff]));
        assert!(r.read_opt_string().is_err());
    }

    #[test]
    fn java_strings_replace_invalid_utf8() {
        let bad = Bytes::from_static(&[0, 0, 0, 3, b'/', 0xff, 0xfe]);
        assert_eq!(
            Reader::new(bad.clone()).read_opt_string(),
            Err(DecodeError::InvalidUtf8)
        );
        let mut r = Reader::new(bad).java_strings();
        assert_eq!(r.read_string("path").unwrap(), "/\u{fffd}\u{fffd}");
    }

    #[test]
    fn strings_round_trip() {
        let mut b = BytesMut::new();
        b.put_string_vec(&["a", "/b/c", ""]);
        let mut r = Reader::new(b.freeze());
        assert_eq!(r.read_string_vec("x").unwrap(), vec!["a", "/b/c", ""]);
        assert!(r.is_empty());
    }
}
