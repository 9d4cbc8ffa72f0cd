//! Framing: every message is a big-endian `int32` length followed by that many bytes.
//!
//! Parsing is two-pass like mini-redis: first check that a whole frame is buffered ("incomplete"
//! is `Ok(None)`, not an error), then split it off without copying.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::codec::Record;
use super::records::RequestHeader;

/// Default largest accepted payload, like `jute.maxbuffer` (0xfffff).
pub const DEFAULT_MAX_PACKET: usize = 0xfffff;

/// A frame that must not be accepted; the connection should be dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix was negative.
    #[error("negative frame length {0}")]
    Negative(i32),
    /// The length prefix was above the configured maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
}

/// Splits one whole frame's payload off the front of `buf`, if one is buffered.
///
/// ```
/// use bytes::BytesMut;
/// use zkit_proto::frame::take_frame;
/// let mut buf = BytesMut::from(&[0u8, 0, 0, 2, 7, 8, 0, 0][..]);
/// assert_eq!(&take_frame(&mut buf, 1024).unwrap().unwrap()[..], &[7, 8]);
/// assert_eq!(take_frame(&mut buf, 1024).unwrap(), None); // incomplete
/// ```
pub fn take_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 0 {
        return Err(FrameError::Negative(len));
    }
    let len = len as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    if buf.len() < 4 + len {
        buf.reserve(4 + len - buf.len());
        return Ok(None);
    }
    // One split of the whole frame, then the length prefix skipped on the frozen half (cheaper
    // than advancing the growable buffer).
    let mut frame = buf.split_to(4 + len).freeze();
    frame.advance(4);
    Ok(Some(frame))
}

/// Starts a frame in `buf`: writes a placeholder length, returns where it is.
pub fn begin_frame(buf: &mut BytesMut) -> usize {
    let at = buf.len();
    buf.put_i32(0);
    at
}

/// Finishes a frame started at `at` by patching in its length.
pub fn end_frame(buf: &mut BytesMut, at: usize) {
    let len = (buf.len() - at - 4) as i32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Appends a whole request frame: header and optional body.
pub fn write_request(buf: &mut BytesMut, xid: i32, op: i32, body: Option<&dyn Encodable>) {
    let at = begin_frame(buf);
    RequestHeader { xid, op }.encode(buf);
    if let Some(b) = body {
        b.encode_into(buf);
    }
    end_frame(buf, at);
}

/// Appends a whole frame holding one record (no header: the handshake).
pub fn write_record<R: Record>(buf: &mut BytesMut, r: &R) {
    let at = begin_frame(buf);
    r.encode(buf);
    end_frame(buf, at);
}

/// Object-safe view of [`Record::encode`], so request bodies of any type can be queued together.
pub trait Encodable: Send + Sync {
    /// Appends the encoding to `buf`.
    fn encode_into(&self, buf: &mut BytesMut);
}

impl<R: Record + Send + Sync> Encodable for R {
    fn encode_into(&self, buf: &mut BytesMut) {
        self.encode(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_frame_matches_reference() {
        let mut b = BytesMut::new();
        write_request(&mut b, -2, 11, None);
        assert_eq!(&b[..], &[0, 0, 0, 8, 0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 11]);
    }

    #[test]
    fn oversized_and_negative_frames_are_errors() {
        let mut b = BytesMut::from(&[0x00u8, 0x10, 0, 0][..]);
        assert_eq!(
            take_frame(&mut b, DEFAULT_MAX_PACKET),
            Err(FrameError::TooLarge {
                len: 0x100000,
                max: DEFAULT_MAX_PACKET
            })
        );
        let mut b = BytesMut::from(&[0xffu8, 0xff, 0xff, 0xff][..]);
        assert_eq!(take_frame(&mut b, 10), Err(FrameError::Negative(-1)));
    }

    #[test]
    fn frames_split_across_reads() {
        let mut b = BytesMut::new();
        b.extend_from_slice(&[0, 0]);
        assert_eq!(take_frame(&mut b, 100).unwrap(), None);
        b.extend_from_slice(&[0, 1]);
        assert_eq!(take_frame(&mut b, 100).unwrap(), None);
        b.extend_from_slice(&[9, 0, 0, 0, 0]);
        assert_eq!(&take_frame(&mut b, 100).unwrap().unwrap()[..], &[9]);
        assert_eq!(&take_frame(&mut b, 100).unwrap().unwrap()[..], &[] as &[u8]);
        assert!(b.is_empty());
    }
}
