//! Support for the `zkit-persist-bench` binary: building a large data dir straight through the
//! txn log, and timing recovery. Not part of the testkit's API (hidden from its docs).

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use zkit_proto::txn::CreateTxn;
use zkit_proto::Acl;

use crate::core::{Committed, Database, TreeDigest, Txn, TxnBody};
use crate::persist::snapshot::write_db;
use crate::persist::txnlog::LogWriter;
use crate::persist::{recover, version_dir, PersistError, PersistOptions};

/// What [`generate`] wrote.
#[derive(Debug, Clone)]
pub struct Generated {
    /// Txns written.
    pub txns: u64,
    /// Nodes in the resulting tree.
    pub nodes: usize,
    /// Time taken.
    pub elapsed: Duration,
}

/// A data dir with `snapshot.0` and `n` create txns: 1000 parents `/p<k>`, then children
/// `/p<k>/c<i>` (logs rolled every 100 000 txns).
pub fn generate(dir: &Path, n: u64) -> Result<Generated, PersistError> {
    let v = version_dir(dir);
    std::fs::create_dir_all(&v).map_err(|e| PersistError::io(&v, e))?;
    let mut db = Database::new(false);
    write_db(&v, &db, None)?;
    let mut digest = TreeDigest::of(&db.tree);
    let mut w = LogWriter::new(&v, 64 << 20);
    let t0 = Instant::now();
    let parents = 1000u64.min(n);
    let mut cversions = vec![0i32; parents as usize + 1];
    for z in 1..=n as i64 {
        let (path, parent_cv) = if (z as u64) <= parents {
            cversions[0] += 1;
            (format!("/p{z}"), cversions[0])
        } else {
            let k = (z as u64 % parents) as usize + 1;
            cversions[k] += 1;
            (format!("/p{k}/c{z}"), cversions[k])
        };
        let txn = Txn::new(
            0x100,
            z as i32,
            z,
            1_700_000_000_000 + z,
            TxnBody::Create(CreateTxn {
                path,
                data: Some(Bytes::from_static(b"0123456789abcdef")),
                acl: Acl::open_unsafe(),
                ephemeral: false,
                parent_cversion: parent_cv,
            }),
        );
        let pre = digest.before(&db.tree, &txn);
        db.apply(&txn, &mut Vec::new());
        digest.after(&db.tree, pre);
        w.append(&Committed {
            txn,
            digest: Some(digest.value()),
        });
        if z % 10_000 == 0 {
            w.commit(false)?;
        }
        if z % 100_000 == 0 {
            w.roll()?;
        }
    }
    w.roll()?;
    Ok(Generated {
        txns: n,
        nodes: db.tree.node_count(),
        elapsed: t0.elapsed(),
    })
}

/// What [`recover_and_snapshot`] measured.
#[derive(Debug, Clone)]
pub struct Recovery {
    /// Txns replayed.
    pub txns_replayed: u64,
    /// Nodes recovered.
    pub nodes: usize,
    /// Recovery time (load, replay and the closing snapshot, as ZooKeeper does).
    pub recover: Duration,
    /// Time of one more snapshot of the recovered tree.
    pub snapshot: Duration,
    /// Size of that snapshot, bytes.
    pub snapshot_bytes: u64,
}

/// Recovers `dir`, then writes one snapshot of the result; times both.
pub fn recover_and_snapshot(dir: &Path) -> Result<Recovery, PersistError> {
    let t0 = Instant::now();
    let r = recover(dir, &PersistOptions::default(), false)?;
    let recover_time = t0.elapsed();
    let t1 = Instant::now();
    let p = write_db(&version_dir(dir), &r.db, Some((r.db.last_zxid, r.digest)))?;
    let snapshot = t1.elapsed();
    Ok(Recovery {
        txns_replayed: r.report.txns_replayed,
        nodes: r.db.tree.node_count(),
        recover: recover_time,
        snapshot,
        snapshot_bytes: std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0),
    })
}
