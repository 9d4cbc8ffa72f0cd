//! Transactions, watches, auth, identity and ensemble configuration.

use std::future::Future;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::*;

impl Client {
    /// Checks that a node is at `version` (a one-op multi: Apache ZooKeeper 3.8 mishandles a
    /// bare check request, so zkit never sends one outside a multi).
    pub fn check_version(
        &self,
        path: &str,
        version: i32,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let fut = self.multi(vec![Op::check(path, version)]);
        async move {
            match fut.await {
                Ok(_) => Ok(()),
                Err(Error::MultiAborted { error, .. }) => Err(*error),
                Err(e) => Err(e),
            }
        }
    }

    /// Runs writes atomically. On abort, returns [`Error::MultiAborted`] with the failing op's
    /// index and error and every op's code.
    pub fn multi(
        &self,
        ops: Vec<Op>,
    ) -> impl Future<Output = Result<Vec<OpResult>>> + Send + 'static {
        let req = self.multi_request(ops);
        let fut = req.map(|r| self.send(Body::Multi(r), None));
        let this = self.clone();
        async move {
            let r = MultiResponse::from_bytes(fut?.await?)?;
            this.multi_results(r)
        }
    }

    fn multi_request(&self, ops: Vec<Op>) -> Result<MultiRequest> {
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            out.push(match op {
                Op::Create {
                    path,
                    data,
                    options,
                } => self.create_request(&path, &data, &options)?.into(),
                Op::Delete { path, version: v } => MultiOp::Delete(DeleteRequest {
                    path: self.server_path(&path, false)?,
                    version: version(v),
                }),
                Op::SetData {
                    path,
                    data,
                    version: v,
                } => MultiOp::SetData(SetDataRequest {
                    path: self.server_path(&path, false)?,
                    data: Some(data),
                    version: version(v),
                }),
                Op::Check { path, version } => MultiOp::Check(CheckVersionRequest {
                    path: self.server_path(&path, false)?,
                    version,
                }),
            });
        }
        Ok(MultiRequest { ops: out })
    }

    fn multi_results(&self, r: MultiResponse) -> Result<Vec<OpResult>> {
        let failed = r
            .results
            .iter()
            .position(|x| matches!(x, MultiResult::Error(c) if *c != 0));
        if let Some(index) = failed {
            let codes = r
                .results
                .iter()
                .map(|x| match x {
                    MultiResult::Error(c) => *c,
                    _ => 0,
                })
                .collect();
            let MultiResult::Error(code) = r.results[index] else {
                unreachable!("position matched an error")
            };
            return Err(Error::MultiAborted {
                index,
                error: Box::new(Error::from_wire(code)),
                codes,
            });
        }
        r.results
            .into_iter()
            .map(|x| {
                Ok(match x {
                    MultiResult::Create(path) => OpResult::Create {
                        path: self.strip(path),
                        stat: Stat::default(),
                    },
                    MultiResult::Create2(c) => OpResult::Create {
                        path: self.strip(c.path),
                        stat: c.stat,
                    },
                    MultiResult::Delete => OpResult::Delete,
                    MultiResult::SetData(stat) => OpResult::SetData { stat },
                    MultiResult::Check => OpResult::Check,
                    other => {
                        return Err(Error::Protocol(format!(
                            "unexpected multi result {other:?}"
                        )))
                    }
                })
            })
            .collect()
    }

    /// Runs reads together (multiRead, 3.6+); each succeeds or fails on its own.
    pub fn multi_read(
        &self,
        ops: Vec<ReadOp>,
    ) -> impl Future<Output = Result<Vec<Result<ReadResult>>>> + Send + 'static {
        let req: Result<MultiRequest> = (|| {
            let mut out = Vec::with_capacity(ops.len());
            for op in ops {
                out.push(match op {
                    ReadOp::GetData(p) => MultiOp::GetData(PathWatchRequest {
                        path: self.server_path(&p, false)?,
                        watch: false,
                    }),
                    ReadOp::GetChildren(p) => MultiOp::GetChildren(PathWatchRequest {
                        path: self.server_path(&p, false)?,
                        watch: false,
                    }),
                });
            }
            Ok(MultiRequest { ops: out })
        })();
        let fut = req.map(|r| self.send(Body::MultiRead(r), None));
        async move {
            let r = MultiResponse::from_bytes(fut?.await?)?;
            Ok(r.results
                .into_iter()
                .map(|x| match x {
                    MultiResult::GetData(d) => Ok(ReadResult::Data {
                        data: d.data.unwrap_or_default(),
                        stat: d.stat,
                    }),
                    MultiResult::GetChildren(c) => Ok(ReadResult::Children(c)),
                    MultiResult::Error(c) => Err(Error::from_wire(c)),
                    other => Err(Error::Protocol(format!("unexpected read result {other:?}"))),
                })
                .collect())
        }
    }

    /// Adds a persistent watch: [`AddWatchMode::Persistent`] for data and child events of the
    /// node, [`AddWatchMode::PersistentRecursive`] for data events of the node and every
    /// descendant. Events arrive as a stream.
    pub fn add_watch(
        &self,
        path: &str,
        mode: AddWatchMode,
    ) -> impl Future<Output = Result<PersistentWatcher>> + Send + 'static {
        let r = self.server_path(path, false).map(|p| {
            let kind = match mode {
                AddWatchMode::PersistentRecursive => WatchKind::PersistentRecursive,
                _ => WatchKind::Persistent,
            };
            let (tx, rx) = mpsc::unbounded_channel();
            let (pw, reg) = self.watch_parts(&p, kind, Sink::Persistent(tx));
            let fut = self.send(
                Body::AddWatch(AddWatchRequest {
                    path: p,
                    mode: mode.code(),
                }),
                Some(pw),
            );
            (fut, PersistentWatcher::new(rx, reg))
        });
        async move {
            let (fut, w) = r?;
            fut.await?;
            Ok(w)
        }
    }

    /// Removes every watch of `watcher_type` this session has on `path` on the server (like the
    /// Java client's `removeAllWatches`). Local watcher handles for them never fire afterwards.
    /// Apache ZooKeeper 3.8 accepts only `Children`, `Data` and `Any`.
    pub fn remove_all_watches(
        &self,
        path: &str,
        watcher_type: WatcherType,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        self.watches_request(Body::RemoveWatches, path, watcher_type)
    }

    /// Asks the server whether this session has a watch of `watcher_type` on `path`
    /// (`Err(NoWatcher)` if not). Apache ZooKeeper 3.8 answers OK when *any* session watches
    /// the path.
    pub fn check_watches(
        &self,
        path: &str,
        watcher_type: WatcherType,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        self.watches_request(Body::CheckWatches, path, watcher_type)
    }

    fn watches_request(
        &self,
        body: fn(WatchesRequest) -> Body,
        path: &str,
        watcher_type: WatcherType,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let fut = self.server_path(path, false).map(|p| {
            let r = WatchesRequest {
                path: p,
                watcher_type: watcher_type.code(),
            };
            self.send(body(r), None)
        });
        async move {
            fut?.await?;
            Ok(())
        }
    }

    /// Authenticates (e.g. `add_auth("digest", "user:password")`); replayed after reconnects.
    pub fn add_auth(
        &self,
        scheme: &str,
        auth: impl Into<Bytes>,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let (tx, rx) = self.inner.replies.channel();
        let _ = self.inner.cmd.send(Command::Auth {
            scheme: scheme.to_owned(),
            auth: auth.into(),
            waiter: tx,
        });
        async move {
            rx.await??;
            Ok(())
        }
    }

    /// The identities the server associates with this session (whoAmI, 3.7+).
    pub fn who_am_i(&self) -> impl Future<Output = Result<Vec<ClientInfo>>> + Send + 'static {
        let fut = self.send(Body::WhoAmI, None);
        async move { Ok(WhoAmIResponse::from_bytes(fut.await?)?.client_info) }
    }

    /// The ensemble configuration (getData of `/zookeeper/config`, not chrooted).
    pub fn get_config(&self) -> impl Future<Output = Result<(Bytes, Stat)>> + Send + 'static {
        let fut = self.send(
            Body::GetData(PathWatchRequest {
                path: "/zookeeper/config".into(),
                watch: false,
            }),
            None,
        );
        async move {
            let d = GetDataResponse::from_bytes(fut.await?)?;
            Ok((d.data.unwrap_or_default(), d.stat))
        }
    }

    /// Changes the ensemble membership (needs reconfigEnabled and admin rights on the server).
    pub fn reconfig(
        &self,
        joining: Option<&str>,
        leaving: Option<&str>,
        new_members: Option<&str>,
        from_config: Option<i64>,
    ) -> impl Future<Output = Result<(Bytes, Stat)>> + Send + 'static {
        let fut = self.send(
            Body::Reconfig(Box::new(ReconfigRequest {
                joining_servers: joining.map(str::to_owned),
                leaving_servers: leaving.map(str::to_owned),
                new_members: new_members.map(str::to_owned),
                cur_config_id: from_config.unwrap_or(-1),
            })),
            None,
        );
        async move {
            let d = GetDataResponse::from_bytes(fut.await?)?;
            Ok((d.data.unwrap_or_default(), d.stat))
        }
    }
}
