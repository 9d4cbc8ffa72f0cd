//! Persistence through the server: restarts and crashes keep every acknowledged write, torn
//! tails are dropped, corruption refuses to start, fuzzy snapshots replay to the exact tree,
//! purge, backup/restore. (Unit tests, not integration tests: they read the log files.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use zkit::{Client, CreateOptions, Op};

use super::{znodes_of, Error, Server, Znode};
use crate::persist::{self, txnlog, PersistError, PersistOptions};

/// A fresh temp dir named after `tag`, removed on drop.
fn temp_dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("zkit-it-{tag}-"))
        .tempdir()
        .expect("create temp dir")
}

/// Every node of the tree with data, ACL and persisted stat, plus the sessions.
type Dump = (BTreeMap<String, Znode>, BTreeMap<i64, Duration>);

fn dump(s: &Server) -> Dump {
    let tree = s.znodes("/").expect("server running");
    (tree, s.session_table())
}

fn seed() -> u64 {
    std::env::var("ZKIT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1234)
}

/// Runs `ops` random writes on `workers` concurrent sessions under `/w{worker}`; returns the
/// model of every acknowledged write (path -> data).
async fn random_writes(
    addr: String,
    seed: u64,
    workers: u64,
    ops: u64,
) -> BTreeMap<String, Vec<u8>> {
    let mut tasks = Vec::new();
    for w in 0..workers {
        let addr = addr.clone();
        tasks.push(tokio::spawn(async move {
            let c = Client::connect(&addr).await.expect("connect");
            let base = format!("/w{w}");
            let mut model = BTreeMap::new();
            if c.create(&base, b"", &CreateOptions::persistent())
                .await
                .is_ok()
            {
                model.insert(base.clone(), vec![]);
            }
            let mut rng =
                fastrand::Rng::with_seed(seed ^ (w + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            for i in 0..ops {
                let k = format!("{base}/n{}", rng.u64(..40));
                let data = format!("v{i}-{}", rng.u64(..)).into_bytes();
                match rng.u64(..10) {
                    0..=3 => {
                        if c.create(&k, &data, &CreateOptions::persistent())
                            .await
                            .is_ok()
                        {
                            model.insert(k, data);
                        }
                    }
                    4..=6 => {
                        if c.set_data(&k, &data, None).await.is_ok() {
                            model.insert(k, data);
                        }
                    }
                    7..=8 => {
                        if c.delete(&k, None).await.is_ok() {
                            model.remove(&k);
                        }
                    }
                    _ => {
                        let k2 = format!("{base}/m{}", rng.u64(..10));
                        let r = c
                            .multi(vec![
                                Op::create(&k2, &data, &CreateOptions::persistent()),
                                Op::set_data(&k2, b"multi", None),
                            ])
                            .await;
                        if r.is_ok() {
                            model.insert(k2, b"multi".to_vec());
                        }
                    }
                }
            }
            let _ = c.close().await;
            model
        }));
    }
    let mut all = BTreeMap::new();
    for t in tasks {
        all.extend(t.await.expect("worker"));
    }
    all
}

fn check_model(d: &Dump, model: &BTreeMap<String, Vec<u8>>, seed: u64) {
    let user: BTreeMap<&String, &Znode> =
        d.0.iter()
            .filter(|(p, _)| p.as_str() != "/" && !p.starts_with("/zookeeper"))
            .collect();
    assert_eq!(
        user.keys().map(|s| s.as_str()).collect::<Vec<_>>(),
        model.keys().map(|s| s.as_str()).collect::<Vec<_>>(),
        "seed {seed}"
    );
    for (p, data) in model {
        let got = d.0[p].data.as_deref().unwrap_or_default();
        assert_eq!(got, data.as_slice(), "{p} seed {seed}");
    }
}

fn opts() -> PersistOptions {
    PersistOptions::default().prealloc(1 << 20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_every_acknowledged_write_of_thousands_of_random_ops() {
    let seed = seed();
    let dir = temp_dir("restart");
    let mut s = Server::builder()
        .data_dir(dir.path())
        .persist_options(opts().snap_count(700).purge_keep(Some(3)))
        .start()
        .await
        .unwrap();
    let model = random_writes(s.connect_string(), seed, 6, 600).await;
    let before = dump(&s);
    check_model(&before, &model, seed);
    s.restart().await.unwrap();
    let report = s.recovery_report().unwrap().clone();
    assert!(report.snapshot.is_some(), "{report:?}");
    let after = dump(&s);
    assert_eq!(after.0, before.0, "exact tree after restart, seed {seed}");
    assert_eq!(after.1, before.1);
    assert_eq!(report.digest_mismatches, 0);
    // Once more, from a cold start of a new server on the same dir.
    s.stop().await;
    let s2 = Server::builder()
        .data_dir(dir.path())
        .start()
        .await
        .unwrap();
    assert_eq!(dump(&s2).0, before.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_mid_write_keeps_every_acknowledged_write() {
    let seed = seed() ^ 7;
    let dir = temp_dir("kill");
    let mut s = Server::builder()
        .data_dir(dir.path())
        .persist_options(opts().snap_count(400))
        .start()
        .await
        .unwrap();
    let addr = s.connect_string();
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for w in 0..4 {
        let (addr, acked) = (addr.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let c = Client::builder(&addr)
                .request_timeout(std::time::Duration::from_secs(2))
                .connect()
                .await
                .unwrap();
            for i in 0.. {
                let p = format!("/k{w}-{i}");
                match c.create(&p, b"x", &CreateOptions::persistent()).await {
                    Ok(_) => acked.lock().unwrap().push(p),
                    // A busy machine can time a request out; keep writing (the test aborts
                    // the writers at the end; after the kill they only see errors).
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
                }
            }
        }));
    }
    // Kill once enough writes are acknowledged (no fixed sleep: poll the acknowledged count).
    while acked.lock().unwrap().len() < 1500 {
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    s.kill().await;
    let acked_now: Vec<String> = acked.lock().unwrap().clone();
    s.restart().await.unwrap();
    let d = dump(&s);
    for p in &acked_now {
        assert!(
            d.0.contains_key(p),
            "acknowledged {p} lost (seed {seed}) {:?} {:?}",
            s.recovery_report(),
            std::fs::read_dir(persist::version_dir(dir.path()))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect::<Vec<_>>()
        );
    }
    for t in tasks {
        t.abort();
    }
}

fn log_files(dir: &Path) -> Vec<PathBuf> {
    persist::list_files(&persist::version_dir(dir), persist::LOG_PREFIX)
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

fn entry_offsets(file: &Path) -> Vec<(u64, u64, i64)> {
    let mut v = vec![];
    txnlog::read_log(file, |e| {
        v.push((e.offset, e.end, e.txn.hdr.zxid));
        Ok(true)
    })
    .unwrap();
    v
}

/// Writes `n` creates through a server on `dir` (one log file), stops it.
async fn write_n(dir: &Path, n: usize) {
    let mut s = Server::builder()
        .data_dir(dir)
        .persist_options(opts())
        .start()
        .await
        .unwrap();
    let c = Client::connect(&s.connect_string()).await.unwrap();
    for i in 0..n {
        c.create(&format!("/t{i:03}"), b"d", &CreateOptions::persistent())
            .await
            .unwrap();
    }
    c.close().await.unwrap();
    s.stop().await;
}

#[tokio::test]
async fn torn_final_entry_is_dropped_and_every_earlier_txn_recovered() {
    let dir = temp_dir("torn");
    write_n(dir.path(), 50).await;
    let logs = log_files(dir.path());
    let last = logs.last().unwrap();
    let entries = entry_offsets(last);
    let (off, end, _) = *entries.last().unwrap();
    // Cut the final entry in the middle, as a crash during the append would.
    let f = std::fs::OpenOptions::new().write(true).open(last).unwrap();
    f.set_len(off + (end - off) / 2).unwrap();
    drop(f);
    let s = Server::builder()
        .data_dir(dir.path())
        .start()
        .await
        .unwrap();
    let r = s.recovery_report().unwrap();
    assert_eq!(r.torn.len(), 1, "{r:?}");
    assert_eq!(r.torn[0].1, off);
    // The final txn was the closeSession; every create survived.
    let d = dump(&s);
    assert!((0..50).all(|i| d.0.contains_key(&format!("/t{i:03}"))));
}

#[tokio::test]
async fn torn_tail_in_preallocated_zeros_is_dropped() {
    let dir = temp_dir("tornpad");
    write_n(dir.path(), 20).await;
    let last = log_files(dir.path()).pop().unwrap();
    let (off, end, _) = *entry_offsets(&last).last().unwrap();
    // Zero the second half of the last entry (its marker included), keep the padding.
    let mut b = std::fs::read(&last).unwrap();
    let mid = (off + (end - off) / 2) as usize;
    b[mid..end as usize].fill(0);
    std::fs::write(&last, &b).unwrap();
    let s = Server::builder()
        .data_dir(dir.path())
        .start()
        .await
        .unwrap();
    assert_eq!(s.recovery_report().unwrap().torn.len(), 1);
    assert!(dump(&s).0.contains_key("/t019"));
}

#[tokio::test]
async fn corrupt_entry_before_the_end_refuses_to_start_naming_file_and_offset() {
    let dir = temp_dir("corrupt");
    write_n(dir.path(), 30).await;
    let logs = log_files(dir.path());
    let file = logs.last().unwrap().clone();
    let entries = entry_offsets(&file);
    let (off, _, zxid) = entries[10];
    let mut b = std::fs::read(&file).unwrap();
    b[off as usize + 20] ^= 0x01; // inside the payload: checksum mismatch
    std::fs::write(&file, &b).unwrap();
    match Server::builder().data_dir(dir.path()).start().await {
        Err(Error::Persist(PersistError::Corrupt {
            file: f, offset, ..
        })) => {
            assert_eq!(f, file);
            assert_eq!(offset, off);
        }
        other => panic!("expected a corruption error, got {other:?}"),
    }
    // The operator asks to truncate there: nothing from the bad entry on is applied.
    let s = Server::builder()
        .data_dir(dir.path())
        .persist_options(opts().truncate_corrupt(true))
        .start()
        .await
        .unwrap();
    let r = s.recovery_report().unwrap();
    assert_eq!(r.truncated.len(), 1);
    assert_eq!(r.last_zxid, zxid - 1);
    let d = dump(&s);
    let kept = d.0.keys().filter(|p| p.starts_with("/t")).count();
    assert!((8..30).contains(&kept), "kept {kept}");
    assert!(persist::version_dir(dir.path()).join("truncated").is_dir());
}

#[tokio::test]
async fn bad_end_marker_followed_by_entries_is_corruption_not_end_of_file() {
    let dir = temp_dir("marker");
    write_n(dir.path(), 30).await;
    let file = log_files(dir.path()).pop().unwrap();
    let (_, end, _) = entry_offsets(&file)[5];
    let mut b = std::fs::read(&file).unwrap();
    b[end as usize - 1] = b'X';
    std::fs::write(&file, &b).unwrap();
    let e = Server::builder()
        .data_dir(dir.path())
        .start()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("marker"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzy_snapshot_under_concurrent_writes_replays_to_the_exact_tree() {
    let seed = seed() ^ 3;
    let dir = temp_dir("fuzzy");
    let mut s = Server::builder()
        .data_dir(dir.path())
        .persist_options(opts())
        .start()
        .await
        .unwrap();
    let addr = s.connect_string();
    // A base tree large enough that the snapshot takes many chunks.
    let c = Client::connect(&addr).await.unwrap();
    let mut futs = Vec::new();
    for i in 0..6000 {
        futs.push(c.create(&format!("/base{i}"), b"b", &CreateOptions::persistent()));
    }
    for f in futs {
        f.await.unwrap();
    }
    let writer = tokio::spawn(random_writes(addr.clone(), seed, 3, 400));
    let snap = s.snapshot_now().await.unwrap();
    let model = writer.await.unwrap();
    let before = dump(&s);
    let _ = model;
    s.stop().await;
    // Recover from exactly that snapshot plus the logs after it.
    let vdir = persist::version_dir(dir.path());
    for (z, p) in persist::list_files(&vdir, persist::SNAP_PREFIX).unwrap() {
        if p != snap && z > 0 {
            std::fs::remove_file(p).unwrap();
        }
    }
    let rec = persist::recover(dir.path(), &PersistOptions::default(), false).unwrap();
    assert_eq!(rec.report.snapshot.as_deref(), Some(snap.as_path()));
    assert!(rec.report.txns_replayed > 0);
    assert_eq!(rec.report.digest_mismatches, 0);
    assert_eq!(znodes_of(&rec.db.tree, "/"), before.0, "seed {seed}");
}

#[tokio::test]
async fn purge_keeps_the_newest_n_snapshots_and_recovery_still_works() {
    let dir = temp_dir("purge");
    let mut s = Server::builder()
        .data_dir(dir.path())
        .persist_options(opts().snap_count(20))
        .start()
        .await
        .unwrap();
    let c = Client::connect(&s.connect_string()).await.unwrap();
    for i in 0..200 {
        c.create(&format!("/p{i}"), b"x", &CreateOptions::persistent())
            .await
            .unwrap();
    }
    let _ = s.snapshot_now().await.unwrap();
    let vdir = persist::version_dir(dir.path());
    assert!(
        persist::list_files(&vdir, persist::SNAP_PREFIX)
            .unwrap()
            .len()
            > 3
    );
    let removed = s.purge(3).unwrap();
    assert!(!removed.is_empty());
    assert_eq!(
        persist::list_files(&vdir, persist::SNAP_PREFIX)
            .unwrap()
            .len(),
        3
    );
    let before = dump(&s);
    c.close().await.unwrap();
    s.restart().await.unwrap();
    let mut after = dump(&s);
    let mut before = before;
    // The client's session was closed in between; compare the trees.
    after.1.clear();
    before.1.clear();
    assert_eq!(after.0.len(), before.0.len());
    assert!((0..200).all(|i| after.0.contains_key(&format!("/p{i}"))));
}

#[tokio::test]
async fn backup_and_point_in_time_restore() {
    let dir = temp_dir("bk-src");
    let bk = temp_dir("bk-dst");
    let s = Server::builder()
        .data_dir(dir.path())
        .persist_options(opts())
        .start()
        .await
        .unwrap();
    let c = Client::connect(&s.connect_string()).await.unwrap();
    for i in 0..100 {
        c.create(
            &format!("/b{i}"),
            format!("{i}"),
            &CreateOptions::persistent(),
        )
        .await
        .unwrap();
    }
    let (_, stat) = c.get_data("/b99").await.unwrap();
    let at = stat.mzxid;
    let at_dump = dump(&s);
    for i in 0..50 {
        c.set_data(&format!("/b{i}"), b"later", None).await.unwrap();
    }
    s.backup_to(bk.path()).await.unwrap();
    let live = dump(&s);
    let r = Server::from_backup(bk.path()).await.unwrap();
    assert_eq!(dump(&r).0, live.0);
    let pit = temp_dir("bk-pit");
    let p = Server::builder()
        .data_dir(pit.path())
        .restore_from(dir.path())
        .restore_to_zxid(at)
        .start()
        .await
        .unwrap();
    assert_eq!(p.recovery_report().unwrap().last_zxid, at);
    assert_eq!(dump(&p).0, at_dump.0);
}
