//! Whatever the server writes to its txn log, it reloads: records past ZooKeeper's own reader
//! limit (a closeSession of a session with 40,000 ephemerals, a multi at the packet limit)
//! survive a crash and a restart.

mod common;
mod disk;

use bytes::Bytes;
use common::*;
use zkit_proto::{CreateRequest, MultiOp, MultiRequest, OpCode};
use zkit_testkit::{PersistOptions, Server};

const EPHEMERAL: i32 = 1;

/// Creates `n` ephemerals under `parent`, `depth` requests in flight at a time.
async fn create_pipelined(c: &mut RawClient, parent: &str, n: usize, path_len: usize) {
    let depth = 500;
    let mut done = 0;
    while done < n {
        let batch = depth.min(n - done);
        let mut xids = Vec::with_capacity(batch);
        for i in done..done + batch {
            let name = format!("{parent}/{i:08}");
            let path = format!("{name}{}", "e".repeat(path_len - name.len()));
            let req = CreateRequest {
                path,
                data: Some(Bytes::new()),
                acl: open_acl(),
                flags: EPHEMERAL,
            };
            xids.push(c.send(OpCode::Create, Some(&req)).await);
        }
        for x in xids {
            assert_eq!(c.wait(x).await.header.err, 0);
        }
        done += batch;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_session_of_40000_ephemerals_and_a_full_multi_reload_after_a_crash() {
    let dir = disk::temp_dir("bigrec");
    let opts = PersistOptions::default()
        .prealloc(1 << 20)
        .force_sync(false);
    let mut s = Server::builder()
        .data_dir(dir.path())
        .persist_options(opts)
        .start()
        .await
        .unwrap();
    let addr = s.connect_string();
    let mut keeper = RawClient::connect(&addr).await;
    keeper.create("/eph", b"", 0).await.unwrap();
    keeper.create("/seq", b"", 0).await.unwrap();

    // 40,000 ephemerals with 66-byte paths: their closeSession record is 40,000 × (4 + 66) bytes
    // ≈ 2.8 MB, past the 2 MiB − 2 a ZooKeeper reader accepts (the reader's handling of such
    // records is unit-tested beside it in the txn log module).
    let mut owner = RawClient::connect(&addr).await;
    let owner_id = owner.session_id;
    create_pipelined(&mut owner, "/eph", 40_000, 66).await;
    assert_eq!(owner.close_session().await.err, 0);

    // A multi of sequential creates filling the packet limit: the log record is larger than
    // the request (each name gains ten digits).
    let one = CreateRequest {
        path: "/seq/s".into(),
        data: Some(Bytes::new()),
        acl: open_acl(),
        flags: 2,
    };
    let per_op = 9 + 4 + one.path.len() + 4 + 4 + 23 + 4;
    let ops = (zkit_proto::frame::DEFAULT_MAX_PACKET - 64) / per_op;
    let multi = MultiRequest {
        ops: (0..ops)
            .map(|_| MultiOp::Create {
                op: OpCode::Create,
                req: one.clone(),
            })
            .collect(),
    };
    let r = keeper.call(OpCode::Multi, Some(&multi)).await;
    assert_eq!(r.header.err, 0, "the multi at the packet limit is accepted");
    // Any later write, then a crash.
    keeper.create("/after", b"last", 0).await.unwrap();
    s.kill().await;

    s.restart().await.expect("restarts from its own log");
    let tree = s.znodes("/").expect("running");
    assert_eq!(
        tree["/eph"].children.len(),
        0,
        "every ephemeral deleted by the closeSession"
    );
    assert_eq!(tree["/seq"].children.len(), ops, "the whole multi replayed");
    assert_eq!(tree["/after"].data.as_deref(), Some(&b"last"[..]));
    assert!(
        !s.session_table().contains_key(&owner_id),
        "the closed session stays closed"
    );
    let mut c = RawClient::connect(&s.connect_string()).await;
    c.create("/again", b"", 0).await.unwrap();
}
