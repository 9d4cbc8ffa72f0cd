//! The leader's txn digests checked against ours: a leader that attaches a digest to its
//! proposals (ZooKeeper 3.6+ does, `TxnDigest`) says what its tree digest was after the txn;
//! a learner that applies the same txn to the same tree must reach the same value. Every
//! comparison is counted, every mismatch logged with its zxid and counted
//! (`zk_digest_mismatches_count` in `mntr`, as ZooKeeper names it).

use super::Core;

impl Core {
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
    use crate::core::{Config, Core, Database};

    #[test]
    fn checks_and_mismatches_are_counted() {
        let mut c = Core::with_db(Config::default(), Database::new(false), 0);
        let d = c.digest();
        assert!(c.check_digest(1, d));
        assert!(!c.check_digest(2, d ^ 1));
        assert_eq!(c.counters().digest_checks, 2);
        assert_eq!(c.counters().digest_mismatches, 1);
    }
}
