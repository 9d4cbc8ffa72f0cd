//! The replicated state: data tree, global session table and last zxid, changed only by
//! [`Database::apply`].

use std::collections::BTreeMap;

use zkit_proto::{ErrorCode, OpCode, Stat, CONTAINER_EPHEMERAL_OWNER};

use super::tree::{Change, DataTree};
use super::txn::{Txn, TxnBody};

/// Outcome of applying one txn (ZooKeeper's `ProcessTxnResult`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyResult {
    /// Txn type (a multi's sub-result has its sub-txn's type; [`OpCode::Error`] for an error
    /// entry).
    pub txn_type: OpCode,
    /// Error code ([`ErrorCode::Ok`] on success). For a multi: the first failing sub-result.
    pub err: ErrorCode,
    /// Path the txn addressed.
    pub path: String,
    /// Stat after the change (create2 / setData / setACL / check).
    pub stat: Option<Stat>,
    /// Sub-results of a multi.
    pub multi: Vec<ApplyResult>,
    /// Ephemerals deleted by a closeSession.
    pub killed: Vec<String>,
}

/// Tree + sessions + last zxid.
#[derive(Debug, Clone)]
pub struct Database {
    /// The znodes.
    pub tree: DataTree,
    /// Live sessions and their negotiated timeouts.
    pub sessions: BTreeMap<i64, i32>,
    /// Zxid of the last applied txn.
    pub last_zxid: i64,
}

impl Database {
    /// A fresh database.
    pub fn new(extended_types: bool) -> Database {
        Database {
            tree: DataTree::new(extended_types),
            sessions: BTreeMap::new(),
            last_zxid: 0,
        }
    }

    /// Applies a txn: the one place where state changes. Appends watch-relevant changes to
    /// `changes` in order.
    pub fn apply(&mut self, txn: &Txn, changes: &mut Vec<Change>) -> ApplyResult {
        let r = self.apply_body(txn, &txn.body, changes);
        if txn.hdr.zxid > self.last_zxid {
            self.last_zxid = txn.hdr.zxid;
        }
        r
    }

    fn apply_body(&mut self, txn: &Txn, body: &TxnBody, changes: &mut Vec<Change>) -> ApplyResult {
        let h = &txn.hdr;
        let mut rc = ApplyResult {
            txn_type: body.op(),
            err: ErrorCode::Ok,
            path: String::new(),
            stat: None,
            multi: Vec::new(),
            killed: Vec::new(),
        };
        let res: Result<Option<Stat>, ErrorCode> = match body {
            TxnBody::Create(_)
            | TxnBody::Create2(_)
            | TxnBody::CreateContainer(_)
            | TxnBody::CreateTtl(_) => {
                // The create kinds differ only in the owner they record.
                let (path, data, acl, owner, parent_cversion) = match body {
                    TxnBody::Create(t) | TxnBody::Create2(t) => (
                        &t.path,
                        &t.data,
                        &t.acl,
                        if t.ephemeral { h.client_id } else { 0 },
                        t.parent_cversion,
                    ),
                    TxnBody::CreateContainer(t) => (
                        &t.path,
                        &t.data,
                        &t.acl,
                        CONTAINER_EPHEMERAL_OWNER,
                        t.parent_cversion,
                    ),
                    TxnBody::CreateTtl(t) => (
                        &t.path,
                        &t.data,
                        &t.acl,
                        zkit_proto::ttl_ephemeral_owner(t.ttl),
                        t.parent_cversion,
                    ),
                    _ => unreachable!("matched a create kind above"),
                };
                rc.path = path.clone();
                self.tree
                    .create_node(
                        path,
                        data.clone(),
                        acl.clone(),
                        owner,
                        parent_cversion,
                        h.zxid,
                        h.time,
                        changes,
                    )
                    .map(Some)
            }
            TxnBody::Delete(t) | TxnBody::DeleteContainer(t) => {
                rc.path = t.path.clone();
                self.tree
                    .delete_node(&t.path, h.zxid, changes)
                    .map(|_| None)
            }
            TxnBody::SetData(t) => {
                rc.path = t.path.clone();
                self.tree
                    .set_data(&t.path, t.data.clone(), t.version, h.zxid, h.time, changes)
                    .map(Some)
            }
            TxnBody::SetAcl(t) => {
                rc.path = t.path.clone();
                self.tree
                    .set_acl(&t.path, t.acl.clone(), t.version)
                    .map(Some)
            }
            TxnBody::Check(t) => {
                rc.path = t.path.clone();
                Ok(self.tree.stat(&t.path))
            }
            // A code this server does not know (a foreign log) still fails the txn.
            TxnBody::Error(e) => Err(ErrorCode::from_code(e.err).unwrap_or(ErrorCode::SystemError)),
            TxnBody::CreateSession(s) => {
                self.sessions.insert(h.client_id, s.time_out);
                Ok(None)
            }
            TxnBody::CloseSession(c) => {
                // 3.6+ carries the paths; fall back to the tree's own list when empty.
                let paths = if c.paths2_delete.is_empty() {
                    self.tree.ephemerals_of(h.client_id)
                } else {
                    c.paths2_delete.clone()
                };
                for p in paths {
                    if self.tree.delete_node(&p, h.zxid, changes).is_ok() {
                        rc.killed.push(p);
                    }
                }
                self.tree.forget_session(h.client_id);
                self.sessions.remove(&h.client_id);
                Ok(None)
            }
            TxnBody::Multi(subs) => {
                // Like DataTree.processTxn: if any sub-txn is an error, every sub-txn becomes an
                // error entry: 0 before the first failure, -2 after it.
                let failed = subs.iter().any(|s| matches!(s, TxnBody::Error(_)));
                let mut post_failed = false;
                for s in subs {
                    let sub = if failed {
                        match s {
                            TxnBody::Error(e) => {
                                post_failed = true;
                                TxnBody::Error(e.clone())
                            }
                            _ => TxnBody::Error(zkit_proto::txn::ErrorTxn {
                                err: if post_failed {
                                    ErrorCode::RuntimeInconsistency.code()
                                } else {
                                    ErrorCode::Ok.code()
                                },
                            }),
                        }
                    } else {
                        s.clone()
                    };
                    let sub_rc = self.apply_body(txn, &sub, changes);
                    if !sub_rc.err.is_ok() && rc.err.is_ok() {
                        rc.err = sub_rc.err;
                    }
                    rc.multi.push(sub_rc);
                }
                Ok(None)
            }
        };
        match res {
            Ok(stat) => rc.stat = stat,
            Err(e) => rc.err = e,
        }
        rc
    }
}
