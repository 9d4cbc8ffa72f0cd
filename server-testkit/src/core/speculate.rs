//! A leader's digest of each proposal: what its tree digest will be once the proposal (and
//! every one before it) is applied. ZooKeeper's leader attaches that digest to its proposals
//! (`TxnDigest` after the txn) and its learners compare it with their own after applying, so a
//! zkit leader of real ZooKeeper followers must attach it too for their checks to mean
//! anything.
//!
//! The core applies the txn it proposes to a *speculative* copy of its database (made at the
//! first proposal of an epoch, so only a leader that proposes pays for it), with the zxid the
//! replication layer will give it: the next of the epoch, counting from 1. The shell attaches
//! the digest only when the zxid it assigns is the predicted one. Opt-in
//! ([`Config::proposal_digests`](super::Config::proposal_digests)): the copy doubles the
//! leader's memory.

use super::digest::TreeDigest;
use super::txn::{Txn, TxnBody};
use super::{Core, Database, Mode};

/// The speculative database of a leader's epoch.
#[derive(Debug)]
pub(crate) struct Shadow {
    db: Database,
    digest: TreeDigest,
    epoch: u32,
    next: i64,
}

/// What a proposal will be once logged: its zxid, and the tree digest after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Speculated {
    /// The zxid the proposal is expected to get.
    pub zxid: i64,
    /// The tree digest after applying it.
    pub digest: i64,
}

fn apply(s: &mut Shadow, txn: &Txn) {
    let pre = s.digest.before(&s.db.tree, txn);
    let mut changes = Vec::new();
    s.db.apply(txn, &mut changes);
    s.digest.after(&s.db.tree, pre);
}

impl Core {
    /// Leader: the zxid and digest `txn` will have (None when not configured, not leading, or
    /// for an error txn, which ZooKeeper's learners do not check either).
    pub(crate) fn speculate(&mut self, txn: &Txn) -> Option<Speculated> {
        if !self.cfg.proposal_digests {
            return None;
        }
        let Mode::Leader { epoch } = self.replica.mode else {
            return None;
        };
        if self.shadow.as_ref().is_none_or(|s| s.epoch != epoch) {
            self.shadow = Some(Shadow {
                db: self.db.clone(),
                digest: self.digest,
                epoch,
                next: ((epoch as i64) << 32) | 1,
            });
        }
        let s = self.shadow.as_mut()?;
        let mut t = txn.clone();
        t.hdr.zxid = s.next;
        s.next += 1;
        apply(s, &t);
        match t.body {
            TxnBody::Error(_) => None,
            _ => Some(Speculated {
                zxid: t.hdr.zxid,
                digest: s.digest.value(),
            }),
        }
    }

    /// A committed txn of an earlier epoch delivered after the speculative copy was made (the
    /// new leader's history is delivered just after it starts leading): the copy takes it too.
    pub(crate) fn speculate_history(&mut self, txn: &Txn) {
        if let Some(s) = self.shadow.as_mut() {
            if ((txn.hdr.zxid >> 32) as u32) < s.epoch && txn.hdr.zxid > s.db.last_zxid {
                apply(s, txn);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use zkit_proto::txn::CreateTxn;
    use zkit_proto::Acl;

    use super::*;
    use crate::core::Config;

    fn create(path: &str) -> Txn {
        Txn::new(
            0,
            1,
            0,
            1_700_000_000_000,
            TxnBody::Create(CreateTxn {
                path: path.into(),
                data: Some(Bytes::from_static(b"v")),
                acl: Acl::open_unsafe(),
                ephemeral: false,
                parent_cversion: -1,
            }),
        )
    }

    #[test]
    fn a_leaders_speculated_digest_is_the_digest_after_the_commit() {
        let cfg = Config {
            proposal_digests: true,
            ..Config::default()
        };
        let mut c = Core::with_db(cfg, Database::new(false), 0);
        c.replica.mode = Mode::Leader { epoch: 3 };
        // Two proposals in flight before either commits.
        let (a, b) = (create("/a"), create("/a/b"));
        let sa = c.speculate(&a).expect("a digest");
        let sb = c.speculate(&b).expect("a digest");
        assert_eq!((sa.zxid, sb.zxid), ((3 << 32) | 1, (3 << 32) | 2));
        for (mut t, s) in [(a, sa), (b, sb)] {
            t.hdr.zxid = s.zxid;
            c.deliver(&t, 0);
            assert_eq!(c.digest(), s.digest);
        }
    }

    #[test]
    fn no_digest_unless_configured_and_leading() {
        let mut c = Core::with_db(Config::default(), Database::new(false), 0);
        c.replica.mode = Mode::Leader { epoch: 1 };
        assert_eq!(c.speculate(&create("/a")), None);
        let cfg = Config {
            proposal_digests: true,
            ..Config::default()
        };
        let mut c = Core::with_db(cfg, Database::new(false), 0);
        assert_eq!(c.speculate(&create("/a")), None);
    }
}
