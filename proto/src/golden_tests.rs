//! Golden bytes: every frame in `proto/tests/golden/frames.txt` was captured from a real Java
//! client talking to a real Apache ZooKeeper 3.8.0 server (`scripts/capture_golden.py`, see
//! `proto/tests/golden/README.md` for the exact commands). Each must decode with our records and
//! re-encode to the very same bytes.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};

use super::codec::{Reader, Record};
use super::frame::take_frame;
use super::multi::{MultiRequest, MultiResponse};
use super::records::*;

const FRAMES: &str = include_str!("../tests/golden/frames.txt");

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Decodes `R` and checks that encoding it again gives back the same bytes.
fn round_trip<R: Record + std::fmt::Debug>(name: &str, r: &mut Reader) {
    let start = r.clone().into_rest();
    let rec = R::decode(r).unwrap_or_else(|e| panic!("{name}: {e}"));
    let used = start.len() - r.remaining();
    let mut again = BytesMut::new();
    rec.encode(&mut again);
    assert_eq!(&again[..], &start[..used], "{name}: {rec:?}");
}

fn request(name: &str, op: i32, r: &mut Reader) {
    match op {
        1 | 15 | 19 => round_trip::<CreateRequest>(name, r),
        21 => round_trip::<CreateTtlRequest>(name, r),
        2 => round_trip::<DeleteRequest>(name, r),
        3 | 4 | 8 | 12 => round_trip::<PathWatchRequest>(name, r),
        5 => round_trip::<SetDataRequest>(name, r),
        6 | 9 | 103 | 104 => round_trip::<PathRequest>(name, r),
        7 => round_trip::<SetAclRequest>(name, r),
        13 => round_trip::<CheckVersionRequest>(name, r),
        14 | 22 => round_trip::<MultiRequest>(name, r),
        16 => round_trip::<ReconfigRequest>(name, r),
        17 | 18 => round_trip::<WatchesRequest>(name, r),
        100 => round_trip::<AuthPacket>(name, r),
        101 => round_trip::<SetWatches>(name, r),
        105 => round_trip::<SetWatches2>(name, r),
        106 => round_trip::<AddWatchRequest>(name, r),
        11 | 107 | -11 => {}
        _ => panic!("{name}: unexpected opcode {op}"),
    }
}

fn reply(name: &str, op: i32, r: &mut Reader) {
    match op {
        1 | 9 => round_trip::<PathResponse>(name, r),
        15 | 19 | 21 => round_trip::<Create2Response>(name, r),
        3 | 5 | 7 => round_trip::<StatResponse>(name, r),
        4 | 16 => round_trip::<GetDataResponse>(name, r),
        6 => round_trip::<GetAclResponse>(name, r),
        8 | 103 => round_trip::<GetChildrenResponse>(name, r),
        12 => round_trip::<GetChildren2Response>(name, r),
        14 | 22 => round_trip::<MultiResponse>(name, r),
        104 | 106 => round_trip::<IntResponse>(name, r),
        107 => round_trip::<WhoAmIResponse>(name, r),
        _ => {}
    }
}

#[test]
fn every_captured_frame_decodes_and_re_encodes_identically() {
    let mut ops: HashMap<i32, i32> = HashMap::new();
    let mut handshake_c = true;
    let mut handshake_s = true;
    let mut counted = 0;
    for line in FRAMES.lines() {
        if line.starts_with("# ---- connection") {
            ops.clear();
            handshake_c = true;
            handshake_s = true;
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut parts = line.split('\t');
        let (name, dir, hx) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let mut buf = BytesMut::from(&hex(hx)[..]);
        let frame = take_frame(&mut buf, super::frame::DEFAULT_MAX_PACKET)
            .unwrap()
            .unwrap_or_else(|| panic!("{name}: incomplete frame"));
        assert!(buf.is_empty(), "{name}: trailing bytes");
        let mut r = Reader::new(frame);
        match dir {
            "c2s" if handshake_c => {
                handshake_c = false;
                round_trip::<ConnectRequest>(name, &mut r);
            }
            "s2c" if handshake_s => {
                handshake_s = false;
                round_trip::<ConnectResponse>(name, &mut r);
            }
            "c2s" => {
                let h = RequestHeader::decode(&mut r).unwrap();
                ops.insert(h.xid, h.op);
                request(name, h.op, &mut r);
            }
            "s2c" => {
                let h = ReplyHeader::decode(&mut r).unwrap();
                if h.xid == -1 {
                    round_trip::<WatcherEvent>(name, &mut r);
                } else if h.err == 0 {
                    let op = *ops
                        .get(&h.xid)
                        .unwrap_or_else(|| panic!("{name}: xid {}", h.xid));
                    reply(name, op, &mut r);
                }
            }
            d => panic!("{name}: direction {d}"),
        }
        assert!(r.is_empty(), "{name}: {} undecoded bytes", r.remaining());
        counted += 1;
    }
    assert!(counted > 100, "only {counted} frames");
}

#[test]
fn golden_connect_request_fields() {
    // java.connect.new_session: timeOut 6000, new session, readOnly false.
    let b = Bytes::from(hex("000000000000000000000000000017700000000000000000000000100000000000000000000000000000000000"));
    let c = ConnectRequest::from_bytes(b).unwrap();
    assert_eq!(c.timeout, 6000);
    assert_eq!(c.session_id, 0);
    assert_eq!(c.read_only, Some(false));
}
