//! Request preparation: validates a write request against the tree (plus the pending changes of
//! earlier ops in the same multi) and turns it into a txn body, with ZooKeeper's error
//! precedence (`PrepRequestProcessor.java`, 3.8).

use std::collections::HashMap;

use bytes::Bytes;
use zkit_proto::path::validate_path;
use zkit_proto::txn::*;
use zkit_proto::{
    perms, Acl, CreateMode, ErrorCode, Id, MultiOp, OpCode, CONTAINER_EPHEMERAL_OWNER, MAX_TTL,
};

use super::acl::{check_acl, fixup_acl};
use super::tree::{DataTree, NodeKind, StatPersisted, CONFIG, QUOTA, ROOT, ZOOKEEPER};
use super::txn::TxnBody;

/// What preparation knows about a node (ZooKeeper's `ChangeRecord`).
#[derive(Debug, Clone)]
pub(crate) struct Rec {
    pub stat: StatPersisted,
    pub child_count: i32,
    pub acl: super::tree::AclList,
}

/// The changes of proposals not yet committed (the leader's `outstandingChanges`): for each
/// path, the proposal (by sequence number) that changed it last and what it left (`None`:
/// deleted).
pub(crate) type Pending = HashMap<String, (u64, Option<Rec>)>;

/// A create request of any flavour, normalised.
#[derive(Debug, Clone)]
pub struct CreateArgs {
    /// Path as sent.
    pub path: String,
    /// Data.
    pub data: Option<Bytes>,
    /// Requested ACL.
    pub acl: Vec<Acl>,
    /// Create mode flags.
    pub flags: i32,
    /// TTL for createTTL, -1 otherwise.
    pub ttl: i64,
}

/// Prepares txns for one request (and the ops of one multi) against a tree.
pub struct Prep<'a> {
    tree: &'a DataTree,
    pending: Option<&'a Pending>,
    overlay: HashMap<String, Option<Rec>>,
    session: i64,
    ids: &'a [Id],
    zxid: i64,
    time: i64,
}

fn is_special(path: &str) -> bool {
    matches!(path, ROOT | ZOOKEEPER | QUOTA | CONFIG)
}

fn check_and_inc(current: i32, expected: i32) -> Result<i32, ErrorCode> {
    if expected != -1 && expected != current {
        return Err(ErrorCode::BadVersion);
    }
    Ok(current.wrapping_add(1))
}

impl<'a> Prep<'a> {
    /// A preparation context for a request of `session` with auth `ids`, to get `zxid`/`time`.
    pub fn new(tree: &'a DataTree, session: i64, ids: &'a [Id], zxid: i64, time: i64) -> Self {
        Prep {
            tree,
            pending: None,
            overlay: HashMap::new(),
            session,
            ids,
            zxid,
            time,
        }
    }

    /// Prepares on top of the changes of proposals not committed yet (leader).
    pub(crate) fn over(mut self, pending: &'a Pending) -> Self {
        self.pending = Some(pending);
        self
    }

    /// The changes this preparation made (to be recorded as pending until committed).
    pub(crate) fn into_changes(self) -> HashMap<String, Option<Rec>> {
        self.overlay
    }

    /// What is known of `path` (this preparation's changes, then pending ones, then the
    /// tree), if it exists.
    pub(crate) fn record_of(&self, path: &str) -> Option<Rec> {
        self.record(path).ok()
    }

    fn record(&self, path: &str) -> Result<Rec, ErrorCode> {
        let path = if path.is_empty() { ROOT } else { path };
        if let Some(r) = self.overlay.get(path) {
            return r.clone().ok_or(ErrorCode::NoNode);
        }
        if let Some((_, r)) = self.pending.and_then(|p| p.get(path)) {
            return r.clone().ok_or(ErrorCode::NoNode);
        }
        let n = self.tree.get(path).ok_or(ErrorCode::NoNode)?;
        Ok(Rec {
            stat: n.stat,
            child_count: n.children.len() as i32,
            acl: n.acl.clone(),
        })
    }

    fn kind(&self, owner: i64) -> NodeKind {
        NodeKind::of(owner, self.tree.extended_types())
    }

    /// create / create2 / createContainer / createTTL.
    pub fn create(&mut self, op: OpCode, a: CreateArgs) -> Result<TxnBody, ErrorCode> {
        let mode = CreateMode::from_code(a.flags).map_err(|_| ErrorCode::BadArguments)?;
        // validateCreateRequest
        if mode.is_ttl() && !self.tree.extended_types() {
            return Err(ErrorCode::Unimplemented);
        }
        let ttl_ok = if mode.is_ttl() {
            a.ttl > 0 && a.ttl <= MAX_TTL
        } else {
            a.ttl < 0
        };
        if !ttl_ok {
            return Err(ErrorCode::BadArguments);
        }
        // validatePathForCreate
        let Some(slash) = a.path.rfind('/') else {
            return Err(ErrorCode::BadArguments);
        };
        if a.path.contains('\0') {
            return Err(ErrorCode::BadArguments);
        }
        let parent_path = a.path[..slash].to_owned();
        let acl = fixup_acl(&a.acl, self.ids)?;
        let parent = self.record(&parent_path)?;
        check_acl(&parent.acl, perms::CREATE, self.ids)?;
        let mut path = a.path;
        if mode.is_sequential() {
            path.push_str(&format!("{:010}", parent.stat.cversion));
        }
        validate_path(&path, false).map_err(|_| ErrorCode::BadArguments)?;
        if self.record(&path).is_ok() {
            return Err(ErrorCode::NodeExists);
        }
        if self.kind(parent.stat.ephemeral_owner) == NodeKind::Ephemeral {
            return Err(ErrorCode::NoChildrenForEphemerals);
        }
        let new_cversion = parent.stat.cversion.wrapping_add(1);
        let body = match op {
            OpCode::CreateContainer => TxnBody::CreateContainer(CreateContainerTxn {
                path: path.clone(),
                data: a.data,
                acl: acl.clone(),
                parent_cversion: new_cversion,
            }),
            OpCode::CreateTtl => TxnBody::CreateTtl(CreateTtlTxn {
                path: path.clone(),
                data: a.data,
                acl: acl.clone(),
                parent_cversion: new_cversion,
                ttl: a.ttl,
            }),
            _ => {
                let t = CreateTxn {
                    path: path.clone(),
                    data: a.data,
                    acl: acl.clone(),
                    ephemeral: mode.is_ephemeral(),
                    parent_cversion: new_cversion,
                };
                if op == OpCode::Create {
                    TxnBody::Create(t)
                } else {
                    TxnBody::Create2(t)
                }
            }
        };
        let owner = if mode.is_container() {
            CONTAINER_EPHEMERAL_OWNER
        } else if mode.is_ttl() {
            zkit_proto::ttl_ephemeral_owner(a.ttl)
        } else if mode.is_ephemeral() {
            self.session
        } else {
            0
        };
        let mut p = parent;
        p.child_count += 1;
        p.stat.cversion = new_cversion;
        p.stat.pzxid = self.zxid;
        self.overlay.insert(parent_path_key(&parent_path), Some(p));
        let stat = StatPersisted {
            czxid: self.zxid,
            mzxid: self.zxid,
            ctime: self.time,
            mtime: self.time,
            ephemeral_owner: owner,
            pzxid: self.zxid,
            ..Default::default()
        };
        self.overlay.insert(
            path,
            Some(Rec {
                stat,
                child_count: 0,
                acl: acl.into(),
            }),
        );
        Ok(body)
    }

    fn parent_and_validate(&self, path: &str) -> Result<String, ErrorCode> {
        validate_path(path, false).map_err(|_| ErrorCode::BadArguments)?;
        if !path.contains('/') || path.contains('\0') || is_special(path) {
            return Err(ErrorCode::BadArguments);
        }
        Ok(zkit_proto::path::parent(path).to_owned())
    }

    fn remove(&mut self, path: &str, parent_path: &str, mut parent: Rec) {
        parent.child_count -= 1;
        parent.stat.pzxid = self.zxid;
        self.overlay.insert(parent_path.to_owned(), Some(parent));
        self.overlay.insert(path.to_owned(), None);
    }

    /// delete.
    pub fn delete(&mut self, path: &str, version: i32) -> Result<TxnBody, ErrorCode> {
        // Like ZooKeeper, delete does not run the full path validation: a path no node can
        // have (U+FFFD, a trailing slash) is NoNode, not BadArguments.
        if !path.contains('/') || path.contains('\0') || is_special(path) {
            return Err(ErrorCode::BadArguments);
        }
        let parent_path = zkit_proto::path::parent(path).to_owned();
        let parent = self.record(&parent_path)?;
        check_acl(&parent.acl, perms::DELETE, self.ids)?;
        let node = self.record(path)?;
        check_and_inc(node.stat.version, version)?;
        if node.child_count > 0 {
            return Err(ErrorCode::NotEmpty);
        }
        self.remove(path, &parent_path, parent);
        Ok(TxnBody::Delete(DeleteTxn { path: path.into() }))
    }

    /// deleteContainer (the reaper's request): only empty containers / TTL nodes.
    pub fn delete_container(&mut self, path: &str) -> Result<TxnBody, ErrorCode> {
        let parent_path = self.parent_and_validate(path)?;
        let node = self.record(path)?;
        if node.child_count > 0 {
            return Err(ErrorCode::NotEmpty);
        }
        if matches!(
            self.kind(node.stat.ephemeral_owner),
            NodeKind::Ephemeral | NodeKind::Persistent
        ) {
            return Err(ErrorCode::BadVersion);
        }
        let parent = self.record(&parent_path)?;
        self.remove(path, &parent_path, parent);
        Ok(TxnBody::DeleteContainer(DeleteTxn { path: path.into() }))
    }

    /// setData.
    pub fn set_data(
        &mut self,
        path: &str,
        data: Option<Bytes>,
        version: i32,
    ) -> Result<TxnBody, ErrorCode> {
        validate_path(path, false).map_err(|_| ErrorCode::BadArguments)?;
        let mut node = self.record(path)?;
        check_acl(&node.acl, perms::WRITE, self.ids)?;
        let new_version = check_and_inc(node.stat.version, version)?;
        node.stat.version = new_version;
        node.stat.mzxid = self.zxid;
        node.stat.mtime = self.time;
        self.overlay.insert(path.to_owned(), Some(node));
        Ok(TxnBody::SetData(SetDataTxn {
            path: path.into(),
            data,
            version: new_version,
        }))
    }

    /// setACL.
    pub fn set_acl(&mut self, path: &str, acl: &[Acl], version: i32) -> Result<TxnBody, ErrorCode> {
        validate_path(path, false).map_err(|_| ErrorCode::BadArguments)?;
        let acl = fixup_acl(acl, self.ids)?;
        let mut node = self.record(path)?;
        check_acl(&node.acl, perms::ADMIN, self.ids)?;
        let new_version = check_and_inc(node.stat.aversion, version)?;
        node.stat.aversion = new_version;
        node.acl = acl.clone().into();
        self.overlay.insert(path.to_owned(), Some(node));
        Ok(TxnBody::SetAcl(SetAclTxn {
            path: path.into(),
            acl,
            version: new_version,
        }))
    }

    /// check.
    pub fn check(&mut self, path: &str, version: i32) -> Result<TxnBody, ErrorCode> {
        validate_path(path, false).map_err(|_| ErrorCode::BadArguments)?;
        let node = self.record(path)?;
        check_acl(&node.acl, perms::READ, self.ids)?;
        let v = check_and_inc(node.stat.version, version)?;
        Ok(TxnBody::Check(CheckVersionTxn {
            path: path.into(),
            version: v,
        }))
    }

    /// One op of a multi.
    pub fn op(&mut self, op: &MultiOp) -> Result<TxnBody, ErrorCode> {
        match op {
            MultiOp::Create { op, req } => self.create(
                *op,
                CreateArgs {
                    path: req.path.clone(),
                    data: req.data.clone(),
                    acl: req.acl.clone(),
                    flags: req.flags,
                    ttl: -1,
                },
            ),
            MultiOp::CreateTtl(req) => self.create(
                OpCode::CreateTtl,
                CreateArgs {
                    path: req.path.clone(),
                    data: req.data.clone(),
                    acl: req.acl.clone(),
                    flags: req.flags,
                    ttl: req.ttl,
                },
            ),
            MultiOp::Delete(r) => self.delete(&r.path, r.version),
            MultiOp::SetData(r) => self.set_data(&r.path, r.data.clone(), r.version),
            MultiOp::Check(r) => self.check(&r.path, r.version),
            _ => Err(ErrorCode::BadArguments),
        }
    }

    /// A whole multi: never fails as a request. On the first failing op the pending changes are
    /// dropped, that op becomes an error txn with its code and every later op an error txn with
    /// -2 (RuntimeInconsistency); ops before it keep their txns (the apply step turns them into
    /// `0` results, like `DataTree.processTxn`).
    pub fn multi(&mut self, ops: &[MultiOp]) -> TxnBody {
        let mut subs = Vec::with_capacity(ops.len());
        let mut failed = false;
        for op in ops {
            if failed {
                subs.push(TxnBody::Error(ErrorTxn {
                    err: ErrorCode::RuntimeInconsistency.code(),
                }));
                continue;
            }
            match self.op(op) {
                Ok(b) => subs.push(b),
                Err(e) => {
                    failed = true;
                    self.overlay.clear();
                    subs.push(TxnBody::Error(ErrorTxn { err: e.code() }));
                }
            }
        }
        TxnBody::Multi(subs)
    }
}

fn parent_path_key(p: &str) -> String {
    if p.is_empty() {
        ROOT.to_owned()
    } else {
        p.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(path: &str, flags: i32) -> CreateArgs {
        CreateArgs {
            path: path.into(),
            data: None,
            acl: Acl::open_unsafe(),
            flags,
            ttl: -1,
        }
    }

    #[test]
    fn create_error_precedence() {
        let t = DataTree::new(false);
        let ids = [];
        let mut p = Prep::new(&t, 1, &ids, 5, 0);
        assert_eq!(
            p.create(OpCode::Create, args("/a", 9)).unwrap_err(),
            ErrorCode::BadArguments
        );
        assert_eq!(
            p.create(OpCode::Create, args("/a", 5)).unwrap_err(),
            ErrorCode::Unimplemented
        );
        assert_eq!(
            p.create(OpCode::Create, args("a", 0)).unwrap_err(),
            ErrorCode::BadArguments
        );
        let mut bad = args("/x/y", 0);
        bad.acl = vec![];
        // InvalidACL is checked before the parent is looked up.
        assert_eq!(
            p.create(OpCode::Create, bad).unwrap_err(),
            ErrorCode::InvalidAcl
        );
        assert_eq!(
            p.create(OpCode::Create, args("/x/y", 0)).unwrap_err(),
            ErrorCode::NoNode
        );
        assert_eq!(
            p.create(OpCode::Create, args("/zookeeper", 0)).unwrap_err(),
            ErrorCode::NodeExists
        );
        // The parent is looked up before the full path is validated.
        assert_eq!(
            p.create(OpCode::Create, args("/a/", 0)).unwrap_err(),
            ErrorCode::NoNode
        );
        assert_eq!(
            p.create(OpCode::Create, args("/zookeeper/", 0))
                .unwrap_err(),
            ErrorCode::BadArguments
        );
    }

    #[test]
    fn sequential_names_use_the_persisted_cversion() {
        let t = DataTree::new(false);
        let mut p = Prep::new(&t, 1, &[], 5, 0);
        match p.create(OpCode::Create, args("/s", 2)).unwrap() {
            TxnBody::Create(c) => {
                // The root of a fresh server has a persisted cversion of 0.
                assert_eq!(c.path, "/s0000000000");
                assert_eq!(c.parent_cversion, 1);
            }
            b => panic!("{b:?}"),
        }
        // The next op of the same multi sees the pending change.
        match p.create(OpCode::Create, args("/s", 2)).unwrap() {
            TxnBody::Create(c) => assert_eq!(c.path, "/s0000000001"),
            b => panic!("{b:?}"),
        }
    }

    #[test]
    fn special_paths_cannot_be_deleted() {
        let t = DataTree::new(false);
        let mut p = Prep::new(&t, 1, &[], 5, 0);
        assert_eq!(
            p.delete("/zookeeper", -1).unwrap_err(),
            ErrorCode::BadArguments
        );
        assert_eq!(p.delete("/", -1).unwrap_err(), ErrorCode::BadArguments);
        assert_eq!(p.delete("/nope", -1).unwrap_err(), ErrorCode::NoNode);
    }
}
