//! Tests of the quorum messages: golden bytes written from the Java layouts, old layouts
//! still accepted, and garbage that must not panic.

use super::*;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn packet_types_match_leader_java() {
    let all = [
        (PacketType::Request, 1),
        (PacketType::Proposal, 2),
        (PacketType::Ack, 3),
        (PacketType::Commit, 4),
        (PacketType::Ping, 5),
        (PacketType::Revalidate, 6),
        (PacketType::Sync, 7),
        (PacketType::Inform, 8),
        (PacketType::CommitAndActivate, 9),
        (PacketType::NewLeader, 10),
        (PacketType::FollowerInfo, 11),
        (PacketType::UpToDate, 12),
        (PacketType::Diff, 13),
        (PacketType::Trunc, 14),
        (PacketType::Snap, 15),
        (PacketType::ObserverInfo, 16),
        (PacketType::LeaderInfo, 17),
        (PacketType::AckEpoch, 18),
        (PacketType::InformAndActivate, 19),
    ];
    for (t, n) in all {
        assert_eq!(t as i32, n);
        assert_eq!(PacketType::from_i32(n), Some(t));
    }
    assert_eq!(PacketType::from_i32(0), None);
    assert_eq!(PacketType::from_i32(20), None);
}

#[test]
fn zxid_halves() {
    let z = make_zxid(3, 7);
    assert_eq!(z, 0x0000_0003_0000_0007);
    assert_eq!((zxid_epoch(z), zxid_counter(z)), (3, 7));
    let z = make_zxid(u32::MAX, u32::MAX);
    assert_eq!((zxid_epoch(z), zxid_counter(z)), (u32::MAX, u32::MAX));
}

#[test]
fn commit_packet_golden_bytes() {
    // new QuorumPacket(Leader.COMMIT, 0x100000002L, null, null) through BinaryOutputArchive.
    let p = QuorumPacket::new(PacketType::Commit, make_zxid(1, 2), None);
    let b = p.to_bytes();
    assert_eq!(
        hex(&b),
        "00000004\
         0000000100000002\
         ffffffff\
         ffffffff"
    );
    assert_eq!(QuorumPacket::from_bytes(b).unwrap(), p);
}

#[test]
fn request_packet_with_auth_round_trips() {
    let p = QuorumPacket {
        kind: PacketType::Request,
        zxid: -1,
        data: Some(Bytes::from_static(b"\x01\x02")),
        authinfo: vec![Id {
            scheme: "digest".into(),
            id: "u:h".into(),
        }],
    };
    let b = p.to_bytes();
    assert_eq!(
        hex(&b),
        "00000001ffffffffffffffff000000020102\
         00000001000000066469676573740000000375 3a68"
            .replace(' ', "")
    );
    assert_eq!(QuorumPacket::from_bytes(b).unwrap(), p);
}

#[test]
fn learner_info_golden_and_short_forms() {
    let li = LearnerInfo {
        server_id: 2,
        protocol_version: LEARNER_PROTOCOL_VERSION,
        config_version: 0x1_0000_0000,
    };
    let b = li.to_bytes();
    assert_eq!(
        hex(&b),
        "00000000000000020001000000000001 00000000".replace(' ', "")
    );
    assert_eq!(LearnerInfo::from_bytes(b.clone()).unwrap(), li);
    let short = LearnerInfo::from_bytes(b.slice(..8)).unwrap();
    assert_eq!((short.server_id, short.protocol_version), (2, 0));
    let mid = LearnerInfo::from_bytes(b.slice(..12)).unwrap();
    assert_eq!(mid.protocol_version, LEARNER_PROTOCOL_VERSION);
    assert!(LearnerInfo::from_bytes(b.slice(..7)).is_err());
}

#[test]
fn notification_golden_bytes() {
    let n = Notification {
        state: ServerState::Looking,
        leader: 3,
        zxid: make_zxid(1, 5),
        election_epoch: 2,
        peer_epoch: 1,
        version: NOTIFICATION_VERSION,
        config: Bytes::from_static(b"v=0"),
    };
    let b = n.encode();
    assert_eq!(b.len(), 44 + 3);
    assert_eq!(
        hex(&b),
        "00000000\
         0000000000000003\
         0000000100000005\
         0000000000000002\
         0000000000000001\
         00000002\
         00000003763d30"
    );
    assert_eq!(Notification::decode(b).unwrap(), n);
}

#[test]
fn notification_old_layouts() {
    let full = Notification {
        state: ServerState::Leading,
        leader: 1,
        zxid: make_zxid(4, 9),
        election_epoch: 7,
        peer_epoch: 4,
        version: NOTIFICATION_VERSION,
        config: Bytes::new(),
    }
    .encode();
    let n28 = Notification::decode(full.slice(..28)).unwrap();
    assert_eq!((n28.peer_epoch, n28.version), (4, 0));
    let mut v40 = BytesMut::from(&full[..36]);
    v40.put_i32(1); // buildMsg's version-1 form is 40 bytes and read as "no version"
    let n40 = Notification::decode(v40.freeze()).unwrap();
    assert_eq!(
        (n40.peer_epoch, n40.version, n40.state),
        (4, 0, ServerState::Leading)
    );
    let mut v1 = BytesMut::from(&full[..36]);
    v1.put_i32(1);
    v1.put_i32(0x7fff_ffff); // trailing junk after a version-1 message is ignored
    let n1 = Notification::decode(v1.freeze()).unwrap();
    assert_eq!((n1.version, n1.config.len()), (1, 0));
}

#[test]
fn handshake_golden_bytes() {
    let h = ElectionHandshake::new(1, vec!["a:1".into(), "b:2".into()]);
    let b = h.encode();
    assert_eq!(
        hex(&b),
        "ffffffffffff0001\
         0000000000000001\
         00000007613a317c623a32"
    );
    assert_eq!(ElectionHandshake::decode(b).unwrap(), h);
    assert_eq!(ELECTION_PROTOCOL_V1 as u64, 0xffff_ffff_ffff_0000);
    let legacy = ElectionHandshake::Legacy { sid: 9 };
    assert_eq!(ElectionHandshake::decode(legacy.encode()).unwrap(), legacy);
    let mut bad = BytesMut::new();
    bad.put_i64(-3);
    bad.put_i64(1);
    assert!(ElectionHandshake::decode(bad.freeze()).is_err());
}

#[test]
fn payload_helpers_round_trip() {
    assert_eq!(hex(&int_payload(LEARNER_PROTOCOL_VERSION)), "00010000");
    let p = int_payload(-1);
    assert_eq!(read_int_payload(Some(&p)).unwrap(), -1);
    assert!(read_int_payload(None).is_err());
    let t = vec![
        SessionTouch {
            session_id: 0x0100_0000_0000_0001,
            timeout: 30_000,
        },
        SessionTouch {
            session_id: 5,
            timeout: 4_000,
        },
    ];
    assert_eq!(decode_touches(&encode_touches(&t)).unwrap(), t);
    assert!(decode_touches(&[0; 13]).is_err());
    let mut stream = BytesMut::new();
    put_election_frame(&mut stream, b"abc");
    put_election_frame(&mut stream, b"de");
    let mut partial = stream.split_to(5);
    assert_eq!(split_election_frame(&mut partial).unwrap(), None);
    partial.unsplit(stream);
    assert_eq!(
        &split_election_frame(&mut partial).unwrap().unwrap()[..],
        b"abc"
    );
    assert_eq!(
        &split_election_frame(&mut partial).unwrap().unwrap()[..],
        b"de"
    );
    let mut hostile = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff][..]);
    assert!(split_election_frame(&mut hostile).is_err());
}

#[test]
fn forwarded_request_and_revalidate_golden_bytes() {
    let req = ForwardedRequest {
        session_id: 0x0100_0000_0000_0002,
        cxid: 7,
        op: 5,
        body: Bytes::from_static(b"\xab"),
    };
    let b = req.encode();
    assert_eq!(
        hex(&b),
        "0100000000000002000000070000000 5ab".replace(' ', "")
    );
    assert_eq!(ForwardedRequest::decode(b).unwrap(), req);
    assert!(ForwardedRequest::decode(Bytes::from_static(&[0; 15])).is_err());
    let r = encode_revalidate(9, 30_000);
    assert_eq!(hex(&r), "000000000000000900007530");
    assert_eq!(decode_revalidate(r).unwrap(), (9, 30_000));
    let a = encode_revalidate_reply(9, true);
    assert_eq!(hex(&a), "000000000000000901");
    assert_eq!(decode_revalidate_reply(a).unwrap(), (9, true));
    assert!(decode_revalidate_reply(Bytes::from_static(&[0; 8])).is_err());
}

/// A tiny xorshift generator so the fuzz test needs no dependency and replays exactly.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn decoders_never_panic_on_garbage() {
    let seeds: Vec<Bytes> = vec![
        QuorumPacket::new(PacketType::Proposal, 7, Some(Bytes::from_static(b"xyz"))).to_bytes(),
        LearnerInfo {
            server_id: 1,
            protocol_version: 1,
            config_version: 1,
        }
        .to_bytes(),
        Notification {
            state: ServerState::Following,
            leader: 1,
            zxid: 2,
            election_epoch: 3,
            peer_epoch: 4,
            version: 2,
            config: Bytes::from_static(b"server.1=x"),
        }
        .encode(),
        ElectionHandshake::new(3, vec!["h:1".into()]).encode(),
    ];
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..20_000 {
        let base = &seeds[round % seeds.len()];
        let mut m = base.to_vec();
        // Flip, truncate or extend: the three ways a frame goes bad.
        match next(&mut rng) % 3 {
            0 if !m.is_empty() => {
                let i = (next(&mut rng) as usize) % m.len();
                m[i] = next(&mut rng) as u8;
            }
            1 => m.truncate((next(&mut rng) as usize) % (m.len() + 1)),
            _ => m.extend((0..next(&mut rng) % 8).map(|_| next(&mut rng) as u8)),
        }
        let b = Bytes::from(m);
        let _ = QuorumPacket::from_bytes(b.clone());
        let _ = LearnerInfo::from_bytes(b.clone());
        let _ = Notification::decode(b.clone());
        let _ = ElectionHandshake::decode(b.clone());
        let _ = decode_touches(&b);
        let _ = ForwardedRequest::decode(b.clone());
        let _ = decode_revalidate(b.clone());
        let _ = decode_revalidate_reply(b.clone());
        let _ = split_election_frame(&mut BytesMut::from(&b[..]));
    }
}
