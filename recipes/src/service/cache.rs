//! [`ServiceCache`]: the instances of one service kept in memory and watched (Curator's
//! `ServiceCache`): the current list, and a `Stream` of the lists that follow.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;
use tokio::sync::watch;
use zkit::path::join;
use zkit::Client;

use super::instance::ServiceInstance;
use crate::group::watch_children;
use crate::state::TaskGuard;
use crate::Result;

/// The watched instances of one service. See the [module docs](super).
///
/// Nodes that do not hold an instance in Curator's JSON are left out (and logged at debug).
#[derive(Debug)]
pub struct ServiceCache {
    path: String,
    rx: watch::Receiver<BTreeMap<String, Bytes>>,
    /// Shared with the streams from [`changes`](ServiceCache::changes).
    task: Arc<TaskGuard>,
}

impl ServiceCache {
    /// Starts a cache of service `name` under `base`; returns once it is filled.
    pub(crate) async fn start(client: &Client, base: &str, name: &str) -> Result<ServiceCache> {
        let path = join(base, name);
        let (task, rx) = watch_children(client, &path).await?;
        Ok(ServiceCache {
            path,
            rx,
            task: Arc::new(task),
        })
    }

    /// The instances now, by id.
    pub fn instances(&self) -> Vec<ServiceInstance> {
        parse(&self.path, &self.rx.borrow())
    }

    /// Waits for the next change; fails with [`Error::Closed`](crate::Error::Closed) once the
    /// cache has ended (its client is closed or its session is gone for good).
    pub async fn changed(&mut self) -> Result<Vec<ServiceInstance>> {
        self.rx.changed().await.map_err(|_| crate::Error::Closed)?;
        Ok(parse(&self.path, &self.rx.borrow_and_update()))
    }

    /// Every list of instances from now on, one item per change; keeps the cache running
    /// while it is alive, and ends when the cache ends.
    pub fn changes(&self) -> impl Stream<Item = Vec<ServiceInstance>> + Send + 'static {
        let mut rx = self.rx.clone();
        rx.mark_unchanged();
        let path = self.path.clone();
        let task = self.task.clone();
        futures::stream::unfold((rx, task), move |(mut rx, task)| {
            let path = path.clone();
            async move {
                rx.changed().await.ok()?;
                let now = parse(&path, &rx.borrow_and_update());
                Some((now, (rx, task)))
            }
        })
    }

    /// Whether the cache still follows the server.
    pub fn is_live(&self) -> bool {
        self.rx.has_changed().is_ok()
    }
}

fn parse(path: &str, nodes: &BTreeMap<String, Bytes>) -> Vec<ServiceInstance> {
    nodes
        .iter()
        .filter_map(|(id, data)| {
            let node = join(path, id);
            match ServiceInstance::from_json(&node, data) {
                Ok(i) => Some(i),
                Err(e) => {
                    tracing::debug!(node = %node, error = %e, "skipping a node");
                    None
                }
            }
        })
        .collect()
}
