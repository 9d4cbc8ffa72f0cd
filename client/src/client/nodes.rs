//! Node operations: create, delete, exists, data, ACLs, children, sync.

use std::future::Future;

use bytes::Bytes;

use super::*;

impl Client {
    /// Creates a node; returns its path (with any sequence suffix) and Stat.
    ///
    /// The opcode follows the mode: createContainer for containers, createTTL for TTL modes,
    /// create2 otherwise.
    pub fn create(
        &self,
        path: &str,
        data: impl AsRef<[u8]>,
        options: &CreateOptions,
    ) -> impl Future<Output = Result<(String, Stat)>> + Send + 'static {
        let data = data.as_ref();
        let fut = create_shape(options).and_then(|(op, ttl)| {
            self.send_encoded(op, path, options.mode.is_sequential(), |b| {
                b.put_buffer(data);
                options.acl.encode(b);
                b.put_i32(options.mode.code());
                if let Some(ttl) = ttl {
                    b.put_i64(ttl);
                }
            })
        });
        let chroot = self.chroot.clone();
        async move {
            let r = Create2Response::from_bytes(fut?.await?)?;
            Ok((strip_chroot(chroot.as_deref(), r.path), r.stat))
        }
    }

    pub(super) fn create_request(
        &self,
        path: &str,
        data: &[u8],
        o: &CreateOptions,
    ) -> Result<Create> {
        let p = self.server_path(path, o.mode.is_sequential())?;
        let data = Some(Bytes::copy_from_slice(data));
        let (op, ttl) = create_shape(o)?;
        if let Some(ttl) = ttl {
            return Ok(Create::Ttl(CreateTtlRequest {
                path: p,
                data,
                acl: o.acl.clone(),
                flags: o.mode.code(),
                ttl,
            }));
        }
        let req = CreateRequest {
            path: p,
            data,
            acl: o.acl.clone(),
            flags: o.mode.code(),
        };
        Ok(Create::Plain { op, req })
    }

    /// Deletes a node (`version` `None` = any version).
    pub fn delete(
        &self,
        path: &str,
        version_: Option<i32>,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let fut = self.send_encoded(OpCode::Delete, path, false, |b| {
            b.put_i32(version(version_))
        });
        async move {
            fut?.await?;
            Ok(())
        }
    }

    /// A read of a path without a watch (exists, getData, getChildren, getChildren2): encoded
    /// by the caller, watch flag false.
    fn path_read(&self, op: OpCode, path: &str) -> Result<ReplyFuture> {
        self.send_encoded(op, path, false, |b| b.put_bool(false))
    }

    /// A read of a path that leaves a one-shot watch: a typed record whose watch flag the
    /// session sets (unless a persistent watch already covers the path).
    fn path_watch_request(
        &self,
        body: fn(PathWatchRequest) -> Body,
        path: &str,
        kind: WatchKind,
    ) -> Result<(ReplyFuture, OneshotWatcher)> {
        let p = self.server_path(path, false)?;
        let (pw, w) = self.oneshot_watch(&p, kind);
        let r = PathWatchRequest {
            path: p,
            watch: false,
        };
        Ok((self.send(body(r), Some(pw)), w))
    }

    /// The node's Stat, or `None` if it does not exist.
    pub fn exists(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<Option<Stat>>> + Send + 'static {
        let fut = self.path_read(OpCode::Exists, path);
        async move {
            let fut = fut?;
            exists_reply(fut.await)
        }
    }

    /// Like [`exists`](Self::exists), and leaves a watch that fires on create, delete or data
    /// change (also when the node does not exist yet).
    pub fn exists_and_watch(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<(Option<Stat>, OneshotWatcher)>> + Send + 'static {
        let r = self.path_watch_request(Body::Exists, path, WatchKind::Exist);
        async move {
            let (fut, w) = r?;
            let stat = exists_reply(fut.await)?;
            Ok((stat, w))
        }
    }

    /// The node's data and Stat.
    pub fn get_data(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<(Bytes, Stat)>> + Send + 'static {
        let fut = self.path_read(OpCode::GetData, path);
        async move {
            let fut = fut?;
            let d = GetDataResponse::from_bytes(fut.await?)?;
            Ok((d.data.unwrap_or_default(), d.stat))
        }
    }

    /// Like [`get_data`](Self::get_data), and leaves a watch for data change or delete.
    pub fn get_data_and_watch(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<(Bytes, Stat, OneshotWatcher)>> + Send + 'static {
        let r = self.path_watch_request(Body::GetData, path, WatchKind::Data);
        async move {
            let (fut, w) = r?;
            let d = GetDataResponse::from_bytes(fut.await?)?;
            Ok((d.data.unwrap_or_default(), d.stat, w))
        }
    }

    /// Sets the node's data (`version` `None` = any); returns the new Stat.
    pub fn set_data(
        &self,
        path: &str,
        data: impl AsRef<[u8]>,
        version_: Option<i32>,
    ) -> impl Future<Output = Result<Stat>> + Send + 'static {
        let data = data.as_ref();
        let fut = self.send_encoded(OpCode::SetData, path, false, |b| {
            b.put_buffer(data);
            b.put_i32(version(version_));
        });
        async move { Ok(StatResponse::from_bytes(fut?.await?)?.stat) }
    }

    /// The node's ACL and Stat.
    pub fn get_acl(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<(Vec<Acl>, Stat)>> + Send + 'static {
        let fut = self
            .server_path(path, false)
            .map(|p| self.send(Body::GetAcl(PathRequest { path: p }), None));
        async move {
            let r = GetAclResponse::from_bytes(fut?.await?)?;
            Ok((r.acl, r.stat))
        }
    }

    /// Sets the node's ACL (`version` = expected aversion, `None` = any); returns the new Stat.
    pub fn set_acl(
        &self,
        path: &str,
        acl: Vec<Acl>,
        version_: Option<i32>,
    ) -> impl Future<Output = Result<Stat>> + Send + 'static {
        let fut = self.server_path(path, false).map(|p| {
            self.send(
                Body::SetAcl(Box::new(SetAclRequest {
                    path: p,
                    acl,
                    version: version(version_),
                })),
                None,
            )
        });
        async move { Ok(StatResponse::from_bytes(fut?.await?)?.stat) }
    }

    /// The node's child names (unordered, as the server gives them).
    pub fn get_children(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<Vec<String>>> + Send + 'static {
        let fut = self.path_read(OpCode::GetChildren, path);
        async move {
            let fut = fut?;
            Ok(GetChildrenResponse::from_bytes(fut.await?)?.children)
        }
    }

    /// Child names and the parent's Stat (getChildren2).
    pub fn get_children_with_stat(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<(Vec<String>, Stat)>> + Send + 'static {
        let fut = self.path_read(OpCode::GetChildren2, path);
        async move {
            let fut = fut?;
            let c = GetChildren2Response::from_bytes(fut.await?)?;
            Ok((c.children, c.stat))
        }
    }

    /// Child names, parent Stat, and a watch for child changes or delete.
    pub fn get_children_and_watch(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<(Vec<String>, Stat, OneshotWatcher)>> + Send + 'static {
        let r = self.path_watch_request(Body::GetChildren2, path, WatchKind::Child);
        async move {
            let (fut, w) = r?;
            let c = GetChildren2Response::from_bytes(fut.await?)?;
            Ok((c.children, c.stat, w))
        }
    }

    /// Number of descendants of a node (getAllChildrenNumber).
    pub fn get_all_children_number(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<i32>> + Send + 'static {
        let fut = self
            .server_path(path, false)
            .map(|p| self.send(Body::GetAllChildrenNumber(PathRequest { path: p }), None));
        async move { Ok(IntResponse::from_bytes(fut?.await?)?.value) }
    }

    /// Paths of this session's ephemerals under `prefix` (`/` for all).
    pub fn get_ephemerals(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<String>>> + Send + 'static {
        let fut = self
            .server_path(prefix, false)
            .map(|p| self.send(Body::GetEphemerals(PathRequest { path: p }), None));
        let this = self.clone();
        async move {
            let r = GetChildrenResponse::from_bytes(fut?.await?)?;
            Ok(r.children.into_iter().map(|p| this.strip(p)).collect())
        }
    }

    /// Waits until the server this client talks to has caught up with the leader for `path`.
    pub fn sync(&self, path: &str) -> impl Future<Output = Result<()>> + Send + 'static {
        let fut = self
            .server_path(path, false)
            .map(|p| self.send(Body::Sync(PathRequest { path: p }), None));
        async move {
            fut?.await?;
            Ok(())
        }
    }
}

/// The opcode of a create with these options, and its TTL in ms for the TTL modes.
fn create_shape(o: &CreateOptions) -> Result<(OpCode, Option<i64>)> {
    if o.mode.is_ttl() {
        let ttl = o.ttl.map(|t| t.as_millis() as i64).unwrap_or(0);
        if ttl <= 0 || ttl > MAX_TTL {
            return Err(Error::BadArguments(format!("TTL {ttl} ms out of range")));
        }
        return Ok((OpCode::CreateTtl, Some(ttl)));
    }
    if o.ttl.is_some() {
        return Err(Error::BadArguments("TTL given for a non-TTL mode".into()));
    }
    let op = if o.mode.is_container() {
        OpCode::CreateContainer
    } else {
        OpCode::Create2
    };
    Ok((op, None))
}
