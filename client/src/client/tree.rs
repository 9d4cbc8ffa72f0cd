//! Operations on a path and its relatives: [`Client::create_all`] (create with missing
//! parents, kazoo's `makepath`, Curator's `creatingParentsIfNeeded`) and
//! [`Client::delete_all`] (a subtree, deepest first, in bounded multis).

use super::*;

/// The most deletes [`Client::delete_all`] puts in one multi: keeps each request far below
/// ZooKeeper's 1 MiB `jute.maxbuffer` for any valid path length.
pub const DELETE_ALL_BATCH: usize = 100;

/// How often [`Client::create_all`] re-creates parents that vanished under it (a concurrent
/// delete, a container reaped) before giving up with `NoNode`.
const CREATE_ALL_ATTEMPTS: usize = 5;

/// How many list-and-delete rounds [`Client::delete_all`] runs before giving up with
/// `NotEmpty` (children keep appearing).
const DELETE_ALL_ROUNDS: usize = 10;

impl Client {
    /// Creates `path` like [`create`](Self::create), first creating its missing ancestors as
    /// persistent nodes with empty data and the same ACL (kazoo's `makepath`), the nodes of
    /// this handle's chroot included (as Curator creates its namespace). Ancestors that exist
    /// are left alone; fails with `NodeExists` if `path` itself exists.
    ///
    /// The common case costs one request; when parents are missing, their creates and the
    /// node's are written at once, in order, and the server applies them in that order.
    ///
    /// ```no_run
    /// # async fn f(zk: zkit::Client) -> zkit::Result<()> {
    /// use zkit::{CreateMode, CreateOptions};
    /// let opts = CreateOptions::new(CreateMode::EphemeralSequential);
    /// let (path, _) = zk.create_all("/services/web/instance-", b"10.0.0.7", &opts).await?;
    /// # let _ = path; Ok(()) }
    /// ```
    pub async fn create_all(
        &self,
        path: &str,
        data: impl AsRef<[u8]>,
        options: &CreateOptions,
    ) -> Result<(String, Stat)> {
        let data = data.as_ref();
        match self.create(path, data, options).await {
            Err(Error::NoNode) => {}
            r => return r,
        }
        let parent_opts = CreateOptions::persistent().acl(options.acl.clone());
        // Ancestors are created by their full server path, the chroot's own nodes included.
        let full = self.server_path(path, options.mode.is_sequential())?;
        let unrooted = Client {
            inner: self.inner.clone(),
            chroot: None,
        };
        for _ in 0..CREATE_ALL_ATTEMPTS {
            // Queued now, in order: every ancestor, then the node.
            let parents: Vec<_> = ancestors(&full)
                .map(|p| unrooted.create(p, b"", &parent_opts))
                .collect();
            let node = self.create(path, data, options);
            for p in parents {
                match p.await {
                    Ok(_) | Err(Error::NodeExists) => {}
                    // An ancestor vanished between two creates: the node's create says so.
                    Err(Error::NoNode) => {}
                    Err(e) => return Err(e),
                }
            }
            match node.await {
                Err(Error::NoNode) => continue,
                r => return r,
            }
        }
        Err(Error::NoNode)
    }

    /// Deletes `path` and everything below it, deepest nodes first, in multis of at most
    /// [`DELETE_ALL_BATCH`] deletes. Nodes deleted by someone else meanwhile are skipped;
    /// children created meanwhile are deleted too. Succeeds when `path` is gone at the end,
    /// including when it did not exist. Not atomic: a failure (e.g. `NoAuth`) can leave part
    /// of the subtree deleted. `path` must not be the root.
    pub async fn delete_all(&self, path: &str) -> Result<()> {
        validate_path(path, false)?;
        if path == "/" {
            return Err(Error::BadArguments("delete_all of the root".into()));
        }
        // Each round lists what is there, deletes it; a NotEmpty (a child created meanwhile)
        // or NoNode (deleted by someone else) in a batch sends that batch one by one, and
        // what is left is found by the next round. Someone who keeps adding children wins
        // after DELETE_ALL_ROUNDS rounds (NotEmpty).
        for _ in 0..DELETE_ALL_ROUNDS {
            let nodes = self.subtree_post_order(path).await?;
            if nodes.is_empty() {
                return Ok(());
            }
            let mut left_behind = false;
            for batch in nodes.chunks(DELETE_ALL_BATCH) {
                let ops = batch.iter().map(|p| Op::delete(p, None)).collect();
                match self.multi(ops).await {
                    Ok(_) => continue,
                    Err(Error::MultiAborted { .. }) => {}
                    Err(e) => return Err(e),
                }
                for p in batch {
                    match self.delete(p, None).await {
                        Ok(()) | Err(Error::NoNode) => {}
                        Err(Error::NotEmpty) => left_behind = true,
                        Err(e) => return Err(e),
                    }
                }
            }
            if !left_behind && self.exists(path).await?.is_none() {
                return Ok(());
            }
        }
        Err(Error::NotEmpty)
    }

    /// `path` and its descendants, every node after its children; empty if `path` is gone.
    async fn subtree_post_order(&self, path: &str) -> Result<Vec<String>> {
        let mut pre = Vec::new();
        let mut level = vec![path.to_owned()];
        while !level.is_empty() {
            // A whole level's listings are in flight together.
            let lists: Vec<_> = level.iter().map(|p| self.get_children(p)).collect();
            let mut next = Vec::new();
            for (p, list) in level.into_iter().zip(lists) {
                match list.await {
                    Ok(kids) => {
                        next.extend(kids.iter().map(|k| zkit_proto::path::join(&p, k)));
                        pre.push(p);
                    }
                    Err(Error::NoNode) => {}
                    Err(e) => return Err(e),
                }
            }
            level = next;
        }
        // Breadth-first order reversed: every node comes after all of its descendants.
        pre.reverse();
        Ok(pre)
    }
}

/// The proper ancestors of `path`, outermost first, the root excluded (`/a/b/c` → `/a`, `/a/b`).
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/')
        .map(|(i, _)| &path[..i])
        .filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::ancestors;

    #[test]
    fn ancestors_outermost_first() {
        assert_eq!(ancestors("/a/b/c").collect::<Vec<_>>(), vec!["/a", "/a/b"]);
        assert_eq!(ancestors("/a").count(), 0);
    }
}
