//! [`DiskLog`] on temp dirs: reads from the middle, truncation in and across files with the
//! tree rebuilt from disk, restarts, SNAP bytes installed on another dir, epoch files,
//! durability tickets.

use std::path::Path;

use bytes::Bytes;
use tempfile::TempDir;
use zkit_proto::txn::{CreateSessionTxn, CreateTxn, SetDataTxn};
use zkit_proto::Acl;

use super::DiskLog;
use crate::core::{tree_digest, Committed, Database, Txn, TxnBody};
use crate::persist::logread::proposal_bytes;
use crate::persist::txnlog::decode_payload;
use crate::persist::{list_files, recover, version_dir, PersistError, PersistOptions, LOG_PREFIX};
use crate::quorum::Log;

fn z(epoch: i64, n: i64) -> i64 {
    epoch << 32 | n
}

/// Builds txns against a model database, so that every test knows the exact tree at each zxid.
struct Model {
    db: Database,
    txns: Vec<(i64, Bytes)>,
}

impl Model {
    fn new() -> Model {
        Model {
            db: Database::new(false),
            txns: Vec::new(),
        }
    }

    fn push(&mut self, zxid: i64, body: TxnBody) -> (i64, Bytes) {
        let txn = Txn::new(0x77, 1, zxid, 1_700_000_000_000 + zxid, body);
        self.db.apply(&txn, &mut Vec::new());
        let c = Committed {
            txn,
            digest: Some(tree_digest(&self.db.tree)),
        };
        let e = (zxid, proposal_bytes(&c));
        self.txns.push(e.clone());
        e
    }

    /// A create of `/n<k>` or, every third txn, a setData of the previous node.
    fn step(&mut self, zxid: i64) -> (i64, Bytes) {
        let k = self.txns.len();
        if k == 0 {
            return self.push(
                zxid,
                TxnBody::CreateSession(CreateSessionTxn { time_out: 30_000 }),
            );
        }
        // (`%`, not `is_multiple_of`: newer than the workspace's rust-version.)
        #[allow(clippy::manual_is_multiple_of)]
        let third = k % 3 == 0;
        if third {
            let path = format!("/n{}", k - 1);
            let version = self.db.tree.get(&path).map_or(0, |n| n.stat.version) + 1;
            return self.push(
                zxid,
                TxnBody::SetData(SetDataTxn {
                    path,
                    data: Some(Bytes::from(format!("set at {zxid:x}"))),
                    version,
                }),
            );
        }
        let parent_cversion = self.db.tree.get("/").map_or(0, |n| n.stat.cversion) + 1;
        self.push(
            zxid,
            TxnBody::Create(CreateTxn {
                path: format!("/n{k}"),
                data: Some(Bytes::from(vec![k as u8; 10])),
                acl: Acl::open_unsafe(),
                ephemeral: false,
                parent_cversion,
            }),
        )
    }

    /// The model state after replaying only the txns up to `zxid`.
    fn state_at(&self, zxid: i64) -> Database {
        let mut db = Database::new(false);
        for (zx, b) in self.txns.iter().take_while(|(zx, _)| *zx <= zxid) {
            let (txn, _) = decode_payload(b.clone()).unwrap();
            db.apply(&txn, &mut Vec::new());
            db.last_zxid = *zx;
        }
        db
    }
}

fn opts() -> PersistOptions {
    PersistOptions::default().prealloc(4096)
}

/// A server start: recovery, then the log opened over the recovered dir.
fn start(dir: &Path, opts: PersistOptions) -> DiskLog {
    recover(dir, &opts, false).unwrap();
    DiskLog::open(dir, opts, false).unwrap()
}

/// Both epoch files at `epoch`, as a peer writes them before it logs that epoch's txns.
fn enter(log: &mut DiskLog, epoch: u32) {
    log.set_accepted_epoch(epoch);
    log.set_current_epoch(epoch);
}

fn same_tree(a: &Database, b: &Database) {
    assert_eq!(tree_digest(&a.tree), tree_digest(&b.tree));
    assert_eq!(a.tree.node_count(), b.tree.node_count());
    assert_eq!(a.sessions, b.sessions);
    assert_eq!(a.last_zxid, b.last_zxid);
    for k in 0..64 {
        let p = format!("/n{k}");
        assert_eq!(a.tree.get(&p), b.tree.get(&p), "{p}");
    }
}

fn zxids(v: Option<Vec<(i64, Bytes)>>) -> Vec<i64> {
    v.expect("the log reaches back")
        .into_iter()
        .map(|e| e.0)
        .collect()
}

#[test]
fn appends_read_back_from_memory_and_after_a_restart_from_disk() {
    let d = TempDir::new().unwrap();
    let mut m = Model::new();
    let mut log = start(d.path(), opts().roll_after(Some(4)));
    enter(&mut log, 1);
    for n in 1..=10 {
        let (zx, b) = m.step(z(1, n));
        log.append(zx, b);
    }
    assert_eq!(log.fsync(), Some(z(1, 10)));
    let from_memory = log.entries_after(z(1, 3)).unwrap();
    assert_eq!(from_memory, m.txns[3..].to_vec());
    drop(log);

    let log = start(d.path(), opts());
    assert_eq!(log.last_zxid(), z(1, 10));
    assert_eq!(log.synced_zxid(), z(1, 10));
    // From the middle of the second file, from the disk.
    assert_eq!(log.entries_after(z(1, 6)).unwrap(), m.txns[6..].to_vec());
    assert_eq!(log.entries_after(z(1, 3)).unwrap(), from_memory);
    assert_eq!(log.entries_after(0).unwrap(), m.txns);
    assert!(log.contains(z(1, 5)) && log.contains(0) && !log.contains(z(1, 11)));
    assert!(!log.contains(z(0, 5)));
    assert_eq!(log.floor(z(2, 0)), z(1, 10));
    assert_eq!(log.floor(z(1, 7)), z(1, 7));
    assert_eq!(
        log.rebuild(i64::MAX).unwrap().db.tree.node_count(),
        m.db.tree.node_count()
    );
}

#[test]
fn truncation_in_a_file_and_across_files_rebuilds_the_exact_tree() {
    let d = TempDir::new().unwrap();
    let mut m = Model::new();
    let mut log = start(d.path(), opts().roll_after(Some(4)));
    enter(&mut log, 1);
    for n in 1..=12 {
        let (zx, b) = m.step(z(1, n));
        log.append(zx, b);
    }
    log.fsync();
    // In the middle of the second file (5..=8), which drops the third one.
    log.truncate(z(1, 6));
    assert!(log.failure().is_none());
    assert_eq!(log.last_zxid(), z(1, 6));
    assert_eq!(
        zxids(log.entries_after(0)),
        (1..=6).map(|n| z(1, n)).collect::<Vec<_>>()
    );
    let vdir = version_dir(d.path());
    assert_eq!(list_files(&vdir, LOG_PREFIX).unwrap().len(), 2);
    let want = m.state_at(z(1, 6));
    same_tree(&log.rebuild(i64::MAX).unwrap().db, &want);

    // A new epoch's txns go on from there, into a new file.
    let mut m2 = Model::new();
    for (_, b) in m.txns.iter().take(6) {
        let (txn, _) = decode_payload(b.clone()).unwrap();
        m2.db.apply(&txn, &mut Vec::new());
        m2.txns.push((txn.hdr.zxid, b.clone()));
    }
    enter(&mut log, 2);
    for n in 1..=3 {
        let (zx, b) = m2.step(z(2, n));
        log.append(zx, b);
    }
    log.fsync();
    drop(log);

    // Restart: recovery and the log agree on the new history.
    let log = start(d.path(), opts());
    assert_eq!(log.last_zxid(), z(2, 3));
    same_tree(&log.rebuild(i64::MAX).unwrap().db, &m2.state_at(i64::MAX));
    same_tree(
        &recover(d.path(), &opts(), false).unwrap().db,
        &m2.state_at(i64::MAX),
    );
    // The recovery snapshot at 0x200000003 goes when a TRUNC cuts below it, across files.
    let mut log = log;
    log.truncate(z(1, 3));
    assert_eq!(log.last_zxid(), z(1, 3));
    assert!(list_files(&vdir, "snapshot")
        .unwrap()
        .iter()
        .all(|(s, _)| *s <= z(1, 3)));
    same_tree(&log.rebuild(i64::MAX).unwrap().db, &m.state_at(z(1, 3)));
    drop(log);
    same_tree(
        &recover(d.path(), &opts(), false).unwrap().db,
        &m.state_at(z(1, 3)),
    );
}

#[test]
fn a_leaders_snapshot_installs_on_another_data_dir() {
    let (a, b) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let mut m = Model::new();
    let mut leader = start(a.path(), opts());
    enter(&mut leader, 1);
    for n in 1..=9 {
        let (zx, t) = m.step(z(1, n));
        leader.append(zx, t);
    }
    leader.fsync();
    let snap = leader.snapshot(z(1, 7));
    assert_eq!(&snap[..4], b"ZKSN");

    // The follower had a divergent history: it is replaced entirely.
    let mut follower = start(b.path(), opts());
    enter(&mut follower, 1);
    let mut other = Model::new();
    for n in 1..=3 {
        let (zx, t) = other.step(z(1, n));
        follower.append(zx, t);
    }
    follower.load_snapshot(z(1, 7), snap);
    assert!(follower.failure().is_none());
    assert_eq!(follower.last_zxid(), z(1, 7));
    assert_eq!(follower.synced_zxid(), z(1, 7));
    assert_eq!(zxids(follower.entries_after(z(1, 7))), Vec::<i64>::new());
    assert!(list_files(&version_dir(b.path()), LOG_PREFIX)
        .unwrap()
        .is_empty());
    same_tree(
        &follower.rebuild(i64::MAX).unwrap().db,
        &m.state_at(z(1, 7)),
    );
    for (zx, t) in leader.entries_after(z(1, 7)).unwrap() {
        follower.append(zx, t);
    }
    follower.fsync();
    drop(follower);
    let follower = start(b.path(), opts());
    same_tree(
        &follower.rebuild(i64::MAX).unwrap().db,
        &m.state_at(i64::MAX),
    );
    assert_eq!(
        follower.entries_after(z(1, 7)),
        leader.entries_after(z(1, 7))
    );

    // Garbage is refused, and the log stops accepting writes.
    let mut f2 = follower.clone();
    f2.load_snapshot(z(1, 9), Bytes::from_static(b"not a snapshot"));
    assert!(f2.failure().is_some());
    assert_eq!(f2.last_zxid(), z(1, 9));
}

#[test]
fn reads_below_a_purged_log_say_so() {
    let d = TempDir::new().unwrap();
    let mut m = Model::new();
    let mut log = start(d.path(), opts().roll_after(Some(3)));
    enter(&mut log, 1);
    for n in 1..=10 {
        let (zx, t) = m.step(z(1, n));
        log.append(zx, t);
    }
    log.fsync();
    drop(log);
    let vdir = version_dir(d.path());
    // What a purge keeping the newest snapshot leaves: snapshot.1000000a, logs from log.100000004.
    recover(d.path(), &opts(), false).unwrap();
    std::fs::remove_file(vdir.join("log.100000001")).unwrap();
    std::fs::remove_file(vdir.join("snapshot.0")).unwrap();
    let log = DiskLog::open(d.path(), opts(), false).unwrap();
    assert_eq!(log.entries_after(z(1, 2)), None);
    assert_eq!(log.entries_after(0), None);
    assert!(!log.contains(z(1, 2)));
    assert!(log.contains(z(1, 4)));
    assert_eq!(
        zxids(log.entries_after(z(1, 4))),
        (5..=10).map(|n| z(1, n)).collect::<Vec<_>>()
    );
}

#[test]
fn epoch_files_round_trip_and_damage_is_refused() {
    let d = TempDir::new().unwrap();
    let mut log = start(d.path(), opts());
    assert_eq!((log.accepted_epoch(), log.current_epoch()), (0, 0));
    log.set_accepted_epoch(3);
    log.set_current_epoch(2);
    drop(log);
    let log = start(d.path(), opts());
    assert_eq!((log.accepted_epoch(), log.current_epoch()), (3, 2));
    let vdir = version_dir(d.path());
    assert_eq!(std::fs::read(vdir.join("acceptedEpoch")).unwrap(), b"3");
    drop(log);
    std::fs::write(vdir.join("currentEpoch"), b"2x").unwrap();
    let e = DiskLog::open(d.path(), opts(), false).unwrap_err();
    assert!(
        matches!(&e, PersistError::Corrupt { file, .. } if file.ends_with("currentEpoch")),
        "{e}"
    );
}

#[test]
fn durability_is_reported_per_fsync_and_not_across_a_truncation() {
    let d = TempDir::new().unwrap();
    let mut m = Model::new();
    let mut log = start(d.path(), opts());
    enter(&mut log, 1);
    let (z1, t1) = m.step(z(1, 1));
    log.append(z1, t1);
    let ticket = log.begin_sync();
    let (z2, t2) = m.step(z(1, 2));
    log.append(z2, t2);
    assert!(log.unsynced());
    assert_eq!(log.complete_sync(ticket), Some(z1));
    assert!(log.unsynced());
    let ticket = log.begin_sync();
    log.truncate(z1);
    assert_eq!(log.complete_sync(ticket), None, "straddled a truncation");
    assert_eq!(log.synced_zxid(), z1);
    // Out of order and undecodable appends are not logged.
    log.append(z1, Bytes::from_static(b"x"));
    assert_eq!(log.last_zxid(), z1);
    log.append(z(1, 5), Bytes::from_static(b"not a txn"));
    assert!(log.failure().is_some());
    assert_eq!(log.fsync(), None);
}
