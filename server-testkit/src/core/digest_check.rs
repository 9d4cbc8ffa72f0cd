//! The leader's txn digests checked against ours: a leader that attaches a digest to its
//! proposals (ZooKeeper 3.6+ does, `TxnDigest`) says what its tree digest was after the txn;
//! a learner that applies the same txn to the same tree must reach the same value. Every
//! comparison is counted, every mismatch logged with its zxid and counted
//! (`zk_digest_mismatches_count` in `mntr`, as ZooKeeper names it). Not compared, as in
//! ZooKeeper: the txns a learner applies again onto a leader's snapshot that may already hold
//! them (`fuzzy`, see `crate::quorum::peer::Event::Deliver`).

use super::{Core, Txn};

impl Core {
    /// Applies a committed txn of the replicated history and checks the digest its leader
    /// attached (`leader`), unless the tree is `fuzzy` there: it may hold later txns already,
    /// after a leader's snapshot taken while it went on applying (see
    /// `crate::quorum::peer::Event::Deliver`), and ZooKeeper's learner compares no digest until
    /// the txns after that snapshot's sync.
    pub fn deliver_checked(&mut self, txn: &Txn, leader: Option<i64>, fuzzy: bool, now: i64) {
        self.deliver(txn, now);
        if let Some(d) = leader.filter(|_| !fuzzy) {
            self.check_digest(txn.hdr.zxid, d);
        }
    }

    /// Compares the digest after the last applied txn (`zxid`) with the leader's; returns
    /// whether they agree.
    pub fn check_digest(&mut self, zxid: i64, leader: i64) -> bool {
        self.counters.digest_checks += 1;
        let ours = self.digest.value();
        if ours == leader {
            return true;
        }
        self.counters.digest_mismatches += 1;
        tracing::error!(
            zxid = format_args!("0x{zxid:x}"),
            ours,
            leader,
            mismatches = self.counters.digest_mismatches,
            "tree digest differs from the leader's after applying this txn"
        );
        false
    }
}

#[cfg(test)]
mod tests {
    use zkit_proto::txn::CreateSessionTxn;

    use crate::core::{Config, Core, Database, Txn, TxnBody};

    #[test]
    fn checks_and_mismatches_are_counted() {
        let mut c = Core::with_db(Config::default(), Database::new(false), 0);
        let d = c.digest();
        assert!(c.check_digest(1, d));
        assert!(!c.check_digest(2, d ^ 1));
        assert_eq!(c.counters().digest_checks, 2);
        assert_eq!(c.counters().digest_mismatches, 1);
    }

    #[test]
    fn a_fuzzy_delivery_is_applied_but_not_compared() {
        let mut c = Core::replica(Config::default(), Database::new(false), 0, 1);
        let session = |id, zxid| {
            let body = TxnBody::CreateSession(CreateSessionTxn { time_out: 30_000 });
            Txn::new(id, 0, zxid, 0, body)
        };
        c.deliver_checked(&session(0x77, 1), Some(c.digest() ^ 1), true, 0);
        assert_eq!(c.db().last_zxid, 1);
        assert_eq!(c.counters().digest_checks, 0);
        c.deliver_checked(&session(0x78, 2), Some(c.digest() ^ 1), false, 0);
        assert_eq!(c.counters().digest_checks, 1);
        assert_eq!(c.counters().digest_mismatches, 1);
    }
}
