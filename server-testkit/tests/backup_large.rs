//! Server-side backup of a live 100 000-node tree (`backup_to` while clients write, then
//! `Server::from_backup`) compares equal: every path, data and ACL, and the persisted Stat.

use std::collections::BTreeMap;
use std::time::Instant;

use futures::stream::{self, StreamExt};
use zkit::{Acl, Client, CreateOptions};
use zkit_testkit::{PersistOptions, Server, Znode};

mod disk;
use disk::temp_dir;

/// Every node under `root` (data, ACL, persisted Stat and child set).
fn dump(s: &Server, root: &str) -> BTreeMap<String, Znode> {
    s.znodes(root).expect("server running")
}

/// `/big` with `dirs` × `per_dir` leaves through pipelined creates (window 1 000); every 97th
/// leaf read-only. Returns the node count.
async fn build_tree(c: &Client, dirs: usize, per_dir: usize) -> usize {
    c.create("/big", b"big", &CreateOptions::persistent())
        .await
        .unwrap();
    let mut paths = Vec::new();
    for d in 0..dirs {
        paths.push((format!("/big/d{d:03}"), false));
        for l in 0..per_dir {
            paths.push((format!("/big/d{d:03}/n{l:05}"), l % 97 == 0));
        }
    }
    let n = paths.len() + 1;
    stream::iter(paths)
        .map(|(p, ro)| {
            let acl = if ro {
                Acl::read_unsafe()
            } else {
                Acl::open_unsafe()
            };
            let f = c.create(
                &p,
                p.clone().into_bytes(),
                &CreateOptions::persistent().acl(acl),
            );
            async move { f.await.unwrap_or_else(|e| panic!("{p}: {e}")) }
        })
        .buffered(1000)
        .for_each(|_| async {})
        .await;
    n
}

async fn live_tree_backup_round_trip(dirs: usize, per_dir: usize) {
    let dir = temp_dir("src");
    let bk = temp_dir("bk");
    // fsync off: the test measures the backup path, not the disk.
    let opts = PersistOptions::default()
        .prealloc(1 << 20)
        .force_sync(false);
    let s = Server::builder()
        .data_dir(dir.path())
        .persist_options(opts)
        .start()
        .await
        .unwrap();
    let c = Client::connect(&s.connect_string()).await.unwrap();
    let t = Instant::now();
    let n = build_tree(&c, dirs, per_dir).await;
    eprintln!("built {n} nodes in {:?}", t.elapsed());
    // The tree stays live: a writer keeps changing data while the backup is taken.
    let writer = {
        let c = c.clone();
        tokio::spawn(async move {
            for i in 0..200u32 {
                let p = format!("/big/d000/n{:05}", i % 50 + 1);
                c.set_data(&p, i.to_be_bytes(), None).await.unwrap();
            }
        })
    };
    let t = Instant::now();
    let info = s.backup_to(bk.path()).await.unwrap();
    eprintln!(
        "backup_to in {:?}: snapshot {:#x}, {} files",
        t.elapsed(),
        info.snapshot_zxid,
        info.files.len()
    );
    writer.await.unwrap();
    // Everything acknowledged before the backup was cut is in it; compare against a second
    // backup taken once the writer is done, so the expected tree is exact.
    let bk2 = temp_dir("bk2");
    s.backup_to(bk2.path()).await.unwrap();
    let live = dump(&s, "/big");
    assert_eq!(live.len(), n);
    let t = Instant::now();
    let r = Server::from_backup(bk2.path()).await.unwrap();
    eprintln!("from_backup in {:?}", t.elapsed());
    let restored = dump(&r, "/big");
    assert_eq!(restored.len(), n);
    assert!(restored == live, "restored tree differs from the live tree");
    // The backup taken mid-write holds the whole tree too (data of /big/d000 may be older).
    let mid = Server::from_backup(bk.path()).await.unwrap();
    let mid_tree = dump(&mid, "/big");
    assert_eq!(mid_tree.len(), n);
    for (p, node) in &live {
        let m = &mid_tree[p];
        assert_eq!(m.acl, node.acl, "{p}");
        if !p.starts_with("/big/d000/") {
            assert_eq!(m.data, node.data, "{p}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_node_live_tree_round_trips_through_backup_to_and_from_backup() {
    live_tree_backup_round_trip(100, 999).await;
}
