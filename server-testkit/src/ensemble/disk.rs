//! The disk of an ensemble member: in memory, or a ZooKeeper data dir. One type for both, so
//! every member's peer is the same `QuorumPeer<Disk>`, and the one thing the server needs of
//! a disk beyond the peer's [`Log`]: its tree rebuilt at a zxid ([`Disk::rebuild`]), at start
//! and after the peer truncated or replaced its history.

use std::path::PathBuf;

use bytes::Bytes;

use crate::core::{Database, TreeDigest};
use crate::persist::recovery::replay;
use crate::persist::txnlog::decode_payload;
use crate::persist::PersistError;
use crate::quorum::disklog::{self, DiskLog};
use crate::quorum::shell::disk::SyncTicket;
use crate::quorum::shell::{MemoryDisk, ShellDisk};
use crate::quorum::Log;

/// A member's disk.
#[derive(Debug, Clone)]
pub(crate) enum Disk {
    /// In memory: outlives the server's tasks; a kill loses what was not synced.
    Memory(MemoryDisk),
    /// A data dir in ZooKeeper's format.
    Data(DiskLog),
}

/// What an fsync of a [`Disk`] started with.
#[derive(Debug)]
pub(crate) enum Ticket {
    Memory(SyncTicket),
    Data(disklog::SyncTicket),
}

impl Disk {
    /// The state at `upto` (`i64::MAX`: everything logged): for a data dir its newest usable
    /// snapshot plus the log, in memory a replay of the log. Blocks on a data dir.
    pub fn rebuild(&self, upto: i64, extended_types: bool) -> Result<Database, PersistError> {
        match self {
            Disk::Data(log) => log.rebuild(upto).map(|r| r.db),
            Disk::Memory(m) => {
                let mut db = Database::new(extended_types);
                let mut digest = TreeDigest::of(&db.tree);
                for (i, (zxid, bytes)) in m.entries().into_iter().enumerate() {
                    if zxid > upto {
                        break;
                    }
                    let (txn, _) = decode_payload(bytes).map_err(|e| PersistError::Corrupt {
                        file: PathBuf::from("<memory disk>"),
                        offset: i as u64,
                        reason: format!("txn 0x{zxid:x}: {e}"),
                    })?;
                    replay(&mut db, &mut digest, &txn);
                    db.last_zxid = zxid;
                }
                Ok(db)
            }
        }
    }

    /// Makes everything appended durable (a clean shutdown). Blocks on a data dir.
    pub fn sync_all(&self) {
        let t = self.begin_sync();
        let _ = self.complete_sync(t);
    }
}

impl Log for Disk {
    fn last_zxid(&self) -> i64 {
        match self {
            Disk::Memory(d) => d.last_zxid(),
            Disk::Data(d) => d.last_zxid(),
        }
    }

    fn entries_after(&self, zxid: i64) -> Option<Vec<(i64, Bytes)>> {
        match self {
            Disk::Memory(d) => d.entries_after(zxid),
            Disk::Data(d) => d.entries_after(zxid),
        }
    }

    fn contains(&self, zxid: i64) -> bool {
        match self {
            Disk::Memory(d) => d.contains(zxid),
            Disk::Data(d) => d.contains(zxid),
        }
    }

    fn floor(&self, zxid: i64) -> i64 {
        match self {
            Disk::Memory(d) => d.floor(zxid),
            Disk::Data(d) => d.floor(zxid),
        }
    }

    fn truncate(&mut self, zxid: i64) {
        match self {
            Disk::Memory(d) => d.truncate(zxid),
            Disk::Data(d) => d.truncate(zxid),
        }
    }

    fn append(&mut self, zxid: i64, txn: Bytes) {
        match self {
            Disk::Memory(d) => d.append(zxid, txn),
            Disk::Data(d) => d.append(zxid, txn),
        }
    }

    fn snapshot(&self, zxid: i64) -> Bytes {
        match self {
            Disk::Memory(d) => d.snapshot(zxid),
            Disk::Data(d) => d.snapshot(zxid),
        }
    }

    fn load_snapshot(&mut self, zxid: i64, snapshot: Bytes) {
        match self {
            Disk::Memory(d) => d.load_snapshot(zxid, snapshot),
            Disk::Data(d) => d.load_snapshot(zxid, snapshot),
        }
    }

    fn accepted_epoch(&self) -> u32 {
        match self {
            Disk::Memory(d) => d.accepted_epoch(),
            Disk::Data(d) => d.accepted_epoch(),
        }
    }

    fn set_accepted_epoch(&mut self, epoch: u32) {
        match self {
            Disk::Memory(d) => d.set_accepted_epoch(epoch),
            Disk::Data(d) => d.set_accepted_epoch(epoch),
        }
    }

    fn current_epoch(&self) -> u32 {
        match self {
            Disk::Memory(d) => d.current_epoch(),
            Disk::Data(d) => d.current_epoch(),
        }
    }

    fn set_current_epoch(&mut self, epoch: u32) {
        match self {
            Disk::Memory(d) => d.set_current_epoch(epoch),
            Disk::Data(d) => d.set_current_epoch(epoch),
        }
    }
}

impl ShellDisk for Disk {
    type Ticket = Ticket;

    fn blocking_sync(&self) -> bool {
        match self {
            Disk::Memory(d) => d.blocking_sync(),
            Disk::Data(d) => d.blocking_sync(),
        }
    }

    fn begin_sync(&self) -> Ticket {
        match self {
            Disk::Memory(d) => Ticket::Memory(ShellDisk::begin_sync(d)),
            Disk::Data(d) => Ticket::Data(ShellDisk::begin_sync(d)),
        }
    }

    fn complete_sync(&self, t: Ticket) -> Option<i64> {
        match (self, t) {
            (Disk::Memory(d), Ticket::Memory(t)) => ShellDisk::complete_sync(d, t),
            (Disk::Data(d), Ticket::Data(t)) => ShellDisk::complete_sync(d, t),
            // Not a ticket of this disk: it covers nothing.
            _ => None,
        }
    }

    fn synced_zxid(&self) -> i64 {
        match self {
            Disk::Memory(d) => ShellDisk::synced_zxid(d),
            Disk::Data(d) => ShellDisk::synced_zxid(d),
        }
    }

    fn unsynced(&self) -> bool {
        match self {
            Disk::Memory(d) => ShellDisk::unsynced(d),
            Disk::Data(d) => ShellDisk::unsynced(d),
        }
    }

    fn failure(&self) -> Option<String> {
        match self {
            Disk::Memory(d) => ShellDisk::failure(d),
            Disk::Data(d) => ShellDisk::failure(d),
        }
    }

    fn crash(&self) {
        match self {
            Disk::Memory(d) => d.crash(),
            Disk::Data(d) => ShellDisk::crash(d),
        }
    }

    fn zookeeper_snapshots(&self) -> bool {
        matches!(self, Disk::Data(_))
    }
}

#[cfg(test)]
mod tests {
    use zkit_proto::txn::CreateTxn;
    use zkit_proto::Acl;

    use super::*;
    use crate::core::{Committed, Txn, TxnBody};
    use crate::persist::logread::proposal_bytes;

    fn create(zxid: i64, path: &str) -> Bytes {
        let txn = Txn::new(
            1,
            1,
            zxid,
            1_700_000_000_000,
            TxnBody::Create(CreateTxn {
                path: path.into(),
                data: Some(Bytes::from_static(b"x")),
                acl: Acl::open_unsafe(),
                ephemeral: false,
                parent_cversion: -1,
            }),
        );
        proposal_bytes(&Committed { txn, digest: None })
    }

    #[test]
    fn a_memory_disk_rebuilds_its_tree_up_to_a_zxid() {
        let mut d = Disk::Memory(MemoryDisk::new());
        d.append(1, create(1, "/a"));
        d.append(2, create(2, "/b"));
        let db = d.rebuild(1, false).expect("rebuild");
        assert_eq!(db.last_zxid, 1);
        assert!(db.tree.get("/a").is_some() && db.tree.get("/b").is_none());
        let db = d.rebuild(i64::MAX, false).expect("rebuild");
        assert_eq!(db.last_zxid, 2);
        assert!(db.tree.get("/b").is_some());
        d.append(3, Bytes::from_static(b"garbage"));
        assert!(d.rebuild(i64::MAX, false).is_err());
    }
}
