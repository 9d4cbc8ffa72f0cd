//! Outgoing frames made of parts, so that a reply can reference a znode's data (`Bytes`) instead
//! of copying it: a getData of a 1 MB node queues a few dozen bytes of its own plus a reference
//! to the node's buffer, however many replies are queued.
//!
//! A small frame is one part, exactly as before; only data of at least [`SHARE_MIN`] bytes is
//! shared, because for small data one copy is cheaper than the extra parts.

use bytes::{BufMut, Bytes, BytesMut};
use zkit_proto::{ErrorCode, Record, ReplyHeader};

/// Data of at least this many bytes is referenced by a reply rather than copied into it.
pub const SHARE_MIN: usize = 4096;

/// Length prefix plus reply header: the bytes [`FrameBuf`] reserves at its start.
const HEAD_LEN: usize = 4 + 16;

/// One whole frame (length prefix included) to send on a connection: the concatenation of its
/// parts, in order. Most frames are a single part; a reply that references znode data is the
/// bytes before the data, the data itself (shared with the tree), the bytes after, and so on.
#[derive(Debug, Clone, Default)]
pub struct Frame {
    /// The first part: the length prefix, the header and whatever follows up to the first
    /// shared buffer (a frame built by the core always holds its whole header here).
    head: Bytes,
    /// The parts after `head` (empty, and so not allocated, for a one-part frame).
    rest: Vec<Bytes>,
}

impl Frame {
    /// The frame's length in bytes, length prefix included.
    pub fn len(&self) -> usize {
        self.head.len() + self.rest.iter().map(Bytes::len).sum::<usize>()
    }

    /// The first part (at least the length prefix and header for a frame the core built).
    pub fn head(&self) -> &Bytes {
        &self.head
    }

    /// Every part, in order (empty parts left out).
    pub fn parts(&self) -> impl Iterator<Item = &Bytes> {
        std::iter::once(&self.head)
            .chain(self.rest.iter())
            .filter(|p| !p.is_empty())
    }

    /// The frame as one contiguous buffer (no copy when it is a single part).
    pub fn to_bytes(&self) -> Bytes {
        if self.rest.is_empty() {
            return self.head.clone();
        }
        let mut b = BytesMut::with_capacity(self.len());
        for p in self.parts() {
            b.extend_from_slice(p);
        }
        b.freeze()
    }
}

impl From<Bytes> for Frame {
    fn from(head: Bytes) -> Frame {
        Frame {
            head,
            rest: Vec::new(),
        }
    }
}

/// Frames compare by their bytes, however they are split into parts.
impl PartialEq for Frame {
    fn eq(&self, other: &Frame) -> bool {
        self.len() == other.len() && self.to_bytes() == other.to_bytes()
    }
}

impl Eq for Frame {}

/// Builds a reply frame whose body may reference shared buffers: the body is written into
/// [`FrameBuf::buf`], data into [`FrameBuf::put_opt_buffer`], and [`FrameBuf::finish`] fills in
/// the length prefix and reply header reserved at the start.
#[derive(Debug)]
pub(crate) struct FrameBuf {
    /// The first part, once a shared buffer follows it (mutable until `finish` patches it).
    head: Option<BytesMut>,
    /// The parts after `head`: shared buffers and the own bytes between them.
    done: Vec<Bytes>,
    /// The own bytes being written.
    cur: BytesMut,
}

impl FrameBuf {
    /// An empty body, with room for the length prefix and reply header.
    pub fn new() -> FrameBuf {
        // Room for most small replies (a Stat is 68 bytes) in the one allocation.
        let mut cur = BytesMut::with_capacity(128);
        cur.put_bytes(0, HEAD_LEN);
        FrameBuf {
            head: None,
            done: Vec::new(),
            cur,
        }
    }

    /// Where the body's own bytes go.
    pub fn buf(&mut self) -> &mut BytesMut {
        &mut self.cur
    }

    /// Appends a jute `buffer` (length, then bytes; -1 for null): referenced when it is at least
    /// [`SHARE_MIN`] bytes long, copied otherwise.
    pub fn put_opt_buffer(&mut self, data: &Option<Bytes>) {
        match data {
            Some(d) if d.len() >= SHARE_MIN => {
                self.cur.put_i32(d.len() as i32);
                let own = std::mem::take(&mut self.cur);
                match self.head {
                    None => self.head = Some(own),
                    Some(_) => self.done.push(own.freeze()),
                }
                self.done.push(d.clone());
            }
            _ => data.encode(&mut self.cur),
        }
    }

    /// The frame: `header`, then the body when the header says success (a failed request's
    /// reply is the header alone, like ZooKeeper's).
    pub fn finish(self, header: ReplyHeader) -> Frame {
        let FrameBuf {
            head,
            mut done,
            mut cur,
        } = self;
        if header.err != ErrorCode::Ok.code() {
            // The reserved start is all the reply needs: no second allocation.
            let mut first = head.unwrap_or(cur);
            first.truncate(HEAD_LEN);
            put_head(&mut first, header, HEAD_LEN);
            return Frame::from(first.freeze());
        }
        let Some(mut head) = head else {
            let len = cur.len();
            put_head(&mut cur, header, len);
            return Frame::from(cur.freeze());
        };
        let len = head.len() + done.iter().map(Bytes::len).sum::<usize>() + cur.len();
        put_head(&mut head, header, len);
        if !cur.is_empty() {
            done.push(cur.freeze());
        }
        Frame {
            head: head.freeze(),
            rest: done,
        }
    }
}

/// Fills the reserved start of a frame of `len` bytes: the length prefix, then the header.
fn put_head(first: &mut BytesMut, header: ReplyHeader, len: usize) {
    let mut at = &mut first[..HEAD_LEN];
    at.put_i32((len - 4) as i32);
    at.put_i32(header.xid);
    at.put_i64(header.zxid);
    at.put_i32(header.err);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Config, Core, Output};
    use zkit_proto::frame::{take_frame, write_request, Encodable};
    use zkit_proto::*;

    const NOW: i64 = 1_700_000_000_000;

    fn header(err: ErrorCode) -> ReplyHeader {
        ReplyHeader {
            xid: 7,
            zxid: 0x1_0000_0002,
            err: err.code(),
        }
    }

    /// A getData body for `data`, built by `FrameBuf` and by the record's own encoding.
    fn both(data: Option<Bytes>) -> (Frame, Frame) {
        let resp = GetDataResponse {
            data,
            stat: Stat::default(),
        };
        let mut fb = FrameBuf::new();
        fb.put_opt_buffer(&resp.data);
        resp.stat.encode(fb.buf());
        let built = fb.finish(header(ErrorCode::Ok));
        let plain = super::super::reply_frame(
            header(ErrorCode::Ok),
            Some(&|b: &mut BytesMut| resp.encode(b)),
        );
        (built, plain)
    }

    #[test]
    fn small_replies_are_one_part_and_byte_identical() {
        for data in [
            None,
            Some(Bytes::new()),
            Some(Bytes::from(vec![9; SHARE_MIN - 1])),
        ] {
            let (built, plain) = both(data);
            assert_eq!(built.parts().count(), 1);
            assert_eq!(built.to_bytes(), plain.to_bytes());
        }
        let mut fb = FrameBuf::new();
        fb.buf().extend_from_slice(b"body");
        fb.put_opt_buffer(&Some(Bytes::from(vec![1; SHARE_MIN])));
        let failed = fb.finish(header(ErrorCode::NoNode));
        let plain = super::super::reply_frame(header(ErrorCode::NoNode), None);
        assert_eq!(failed.parts().count(), 1);
        assert_eq!(
            failed.to_bytes().len(),
            4 + 16,
            "a failed reply is its header alone"
        );
        assert_eq!(failed.to_bytes(), plain.to_bytes());
    }

    #[test]
    fn large_data_is_referenced_and_the_bytes_are_the_same() {
        let data = Bytes::from(vec![7; SHARE_MIN]);
        let (built, plain) = both(Some(data.clone()));
        let parts: Vec<&Bytes> = built.parts().collect();
        assert_eq!(parts.len(), 3, "head, data, Stat");
        assert_eq!(parts[1].as_ptr(), data.as_ptr());
        assert_eq!(parts[0].len(), 4 + 16 + 4);
        assert_eq!(built.len(), plain.len());
        assert_eq!(built, plain);
        assert_eq!(built.to_bytes(), plain.to_bytes());
    }

    /// Feeds one request to `core` on connection 1 and returns the frame it sends back.
    fn call(core: &mut Core, xid: i32, op: OpCode, body: &dyn Encodable) -> Frame {
        let mut b = BytesMut::new();
        write_request(&mut b, xid, op.code(), Some(body));
        core.receive(1, take_frame(&mut b, usize::MAX).unwrap().unwrap(), NOW);
        core.take_output()
            .into_iter()
            .find_map(|o| match o {
                Output::Send(1, f) => Some(f),
                _ => None,
            })
            .expect("a reply")
    }

    #[test]
    fn get_data_replies_share_the_nodes_buffer() {
        let mut core = Core::new(Config::default(), NOW);
        core.conn_opened(1, "127.0.0.1:1".parse().unwrap(), NOW);
        let req = ConnectRequest {
            timeout: 30000,
            passwd: Bytes::from_static(&[0; 16]),
            read_only: Some(false),
            ..Default::default()
        };
        core.receive(1, req.to_bytes(), NOW);
        core.take_output();
        let data = Bytes::from((0..1_000_000u32).map(|i| i as u8).collect::<Vec<_>>());
        let create = CreateRequest {
            path: "/big".into(),
            data: Some(data),
            acl: Acl::open_unsafe(),
            flags: 0,
        };
        let created = call(&mut core, 1, OpCode::Create, &create);
        assert_eq!(created.head()[16..20], [0; 4], "created");
        let node = core.db().tree.get("/big").unwrap().data.clone().unwrap();
        let get = PathWatchRequest {
            path: "/big".into(),
            watch: false,
        };
        let stat = core.db().tree.get("/big").unwrap().client_stat(false);
        let expected = GetDataResponse {
            data: Some(node.clone()),
            stat,
        };
        for xid in 2..4 {
            let reply = call(&mut core, xid, OpCode::GetData, &get);
            let parts: Vec<&Bytes> = reply.parts().collect();
            assert_eq!(
                parts[1].as_ptr(),
                node.as_ptr(),
                "the node's data, not a copy"
            );
            let plain = super::super::reply_frame(
                ReplyHeader {
                    xid,
                    zxid: core.db().last_zxid,
                    err: 0,
                },
                Some(&|b: &mut BytesMut| expected.encode(b)),
            );
            assert_eq!(reply.to_bytes(), plain.to_bytes());
        }
        // multiRead: every getData result references the data too; the bytes are the
        // record's own encoding.
        let multi = MultiRequest {
            ops: vec![
                MultiOp::GetData(get.clone()),
                MultiOp::GetChildren(get.clone()),
                MultiOp::GetData(PathWatchRequest {
                    path: "/none".into(),
                    watch: false,
                }),
                MultiOp::GetData(get.clone()),
            ],
        };
        let reply = call(&mut core, 4, OpCode::MultiRead, &multi);
        let shared = reply
            .parts()
            .filter(|p| p.as_ptr() == node.as_ptr())
            .count();
        assert_eq!(shared, 2);
        let results = vec![
            MultiResult::GetData(expected.clone()),
            MultiResult::GetChildren(vec![]),
            MultiResult::Error(ErrorCode::NoNode.code()),
            MultiResult::GetData(expected),
        ];
        let plain = super::super::reply_frame(
            ReplyHeader {
                xid: 4,
                zxid: core.db().last_zxid,
                err: 0,
            },
            Some(&|b: &mut BytesMut| {
                MultiResponse {
                    results: results.clone(),
                }
                .encode(b)
            }),
        );
        assert_eq!(reply.to_bytes(), plain.to_bytes());
    }
}
