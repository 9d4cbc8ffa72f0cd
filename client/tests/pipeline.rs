//! Many requests in flight on one connection: 100 000 pipelined setData calls complete with no
//! loss and in call order.

mod common;

use common::Target;
use futures::stream::{FuturesOrdered, StreamExt};
use zkit::CreateOptions;

const N: usize = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_complete_in_call_order() {
    let t = Target::new().await;
    let (zk, _) = t.client().await;
    zk.create("/p", b"", &CreateOptions::persistent())
        .await
        .unwrap();
    let start = std::time::Instant::now();
    // Every request is queued when the method is called; none is awaited before the last one
    // has been issued.
    let mut futs: FuturesOrdered<_> = (0..N)
        .map(|i| zk.set_data("/p", (i as u32).to_be_bytes(), None))
        .collect();
    let mut n = 0usize;
    let mut last_mzxid = 0;
    while let Some(r) = futs.next().await {
        let stat = r.unwrap_or_else(|e| panic!("request {n}: {e}"));
        // Applied in call order: the version counts the calls, and zxids only go up.
        assert_eq!(stat.version as usize, n + 1, "request {n}");
        assert!(stat.mzxid > last_mzxid, "request {n}");
        assert_eq!(stat.data_length, 4);
        last_mzxid = stat.mzxid;
        n += 1;
    }
    assert_eq!(n, N);
    let (data, stat) = zk.get_data("/p").await.unwrap();
    assert_eq!(&data[..], &((N - 1) as u32).to_be_bytes());
    assert_eq!(stat.version as usize, N);
    eprintln!("{N} pipelined setData in {:?}", start.elapsed());

    // Reads and writes interleaved: each read sees exactly the writes issued before it.
    let mut futs = FuturesOrdered::new();
    for i in 0..1000u32 {
        let w = zk.set_data("/p", i.to_be_bytes(), None);
        let r = zk.get_data("/p");
        futs.push_back(async move {
            let ws = w.await.unwrap();
            let (d, rs) = r.await.unwrap();
            (i, ws, d, rs)
        });
    }
    while let Some((i, ws, d, rs)) = futs.next().await {
        assert_eq!(&d[..], &i.to_be_bytes());
        assert_eq!(rs.version, ws.version);
    }
    zk.close().await.unwrap();
}
