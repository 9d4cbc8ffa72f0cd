//! [`ServiceDiscovery`]: service instances register as ephemeral nodes
//! `<base>/<service>/<instance-id>` holding a payload; clients query and watch the instances of a
//! service (the layout of Curator's `ServiceDiscovery`; the payload is the application's bytes,
//! not Curator's JSON envelope; [`service`](crate::service) speaks Curator's JSON).
//!
//! A registration is kept in place while the service runs: re-created if deleted, and after a
//! session expiry when the client re-creates sessions. It disappears when the service closes it or
//! its session ends.
//!
//! ```no_run
//! # async fn f() -> zkit_recipes::Result<()> {
//! use zkit_recipes::discovery::{DiscoveryOptions, ServiceDiscovery, ServiceInstance};
//! let zk = zkit::Client::connect("127.0.0.1:2181").await?;
//! let discovery = ServiceDiscovery::new(&zk, "/services", DiscoveryOptions::default());
//! let _me = discovery.register(&ServiceInstance::new("search", "search-1", "10.0.0.5:8080")).await?;
//! for instance in discovery.query("search").await? {
//!     println!("{} at {}", instance.id, String::from_utf8_lossy(&instance.payload));
//! }
//! let mut watch = discovery.watch("search").await?;
//! while watch.changed().await.is_ok() {
//!     println!("{} instances", watch.instances().len());
//! }
//! # Ok(()) }
//! ```

use bytes::Bytes;
use zkit::path::join;
use zkit::{Client, Error as ZkError, OpClass, RetryPolicy};

use crate::group::{read_children, watch_children, KeptNode, MembersWatch};
use crate::Result;

/// One instance of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceInstance {
    /// The service's name.
    pub name: String,
    /// The instance's id (unique within the service).
    pub id: String,
    /// What clients need to reach it (an address, a serialized descriptor, ...).
    pub payload: Bytes,
}

impl ServiceInstance {
    /// An instance `id` of service `name`.
    pub fn new(name: &str, id: &str, payload: impl Into<Bytes>) -> Self {
        ServiceInstance {
            name: name.to_owned(),
            id: id.to_owned(),
            payload: payload.into(),
        }
    }
}

/// Registers, queries and watches service instances under a base path. See the
/// [module docs](self).
#[derive(Debug, Clone)]
pub struct ServiceDiscovery {
    client: Client,
    base: String,
    retry: RetryPolicy,
}

/// Options of a [`ServiceDiscovery`] (this one and [`crate::service`]'s).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DiscoveryOptions {
    /// How reads and writes are retried (default
    /// [`default_retry`](crate::znode::default_retry)).
    pub retry: RetryPolicy,
}

impl Default for DiscoveryOptions {
    fn default() -> Self {
        DiscoveryOptions {
            retry: crate::znode::default_retry(),
        }
    }
}

impl DiscoveryOptions {
    /// Sets the retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }
}

impl ServiceDiscovery {
    /// Discovery under `base_path`.
    pub fn new(client: &Client, base_path: &str, options: DiscoveryOptions) -> ServiceDiscovery {
        ServiceDiscovery {
            client: client.clone(),
            base: base_path.to_owned(),
            retry: options.retry,
        }
    }

    /// Registers `instance` (fails if a live session already registered the same id).
    pub async fn register(&self, instance: &ServiceInstance) -> Result<Registration> {
        let path = join(&join(&self.base, &instance.name), &instance.id);
        let node = KeptNode::start(&self.client, &path, &instance.payload, &self.retry).await?;
        Ok(Registration {
            instance: instance.clone(),
            node,
        })
    }

    /// The names of the services with a node under the base path.
    pub async fn names(&self) -> Result<Vec<String>> {
        let c = &self.client;
        match self
            .retry
            .run_on(c, OpClass::Read, || c.get_children(&self.base))
            .await
        {
            Ok(mut k) => {
                k.sort();
                Ok(k)
            }
            Err(ZkError::NoNode) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// The instances of service `name` now, by id.
    pub async fn query(&self, name: &str) -> Result<Vec<ServiceInstance>> {
        let kids = read_children(&self.client, &join(&self.base, name), &self.retry).await?;
        Ok(kids
            .into_iter()
            .map(|(id, payload)| ServiceInstance {
                name: name.to_owned(),
                id,
                payload,
            })
            .collect())
    }

    /// The instances of service `name` as a watched value.
    pub async fn watch(&self, name: &str) -> Result<ServiceWatch> {
        let (task, rx) = watch_children(&self.client, &join(&self.base, name)).await?;
        Ok(ServiceWatch {
            name: name.to_owned(),
            inner: MembersWatch::from_parts(rx, task),
        })
    }
}

/// A registered instance; dropping it unregisters in the background.
#[derive(Debug)]
pub struct Registration {
    instance: ServiceInstance,
    node: KeptNode,
}

impl Registration {
    /// The instance.
    pub fn instance(&self) -> &ServiceInstance {
        &self.instance
    }

    /// Changes the instance's payload.
    pub async fn update(&mut self, payload: impl Into<Bytes>) -> Result<()> {
        let payload = payload.into();
        self.node.set_data(&payload).await?;
        self.instance.payload = payload;
        Ok(())
    }

    /// Unregisters (deletes the node) and waits for the server.
    pub async fn unregister(self) -> Result<()> {
        self.node.close().await
    }
}

/// The watched instances of one service.
#[derive(Debug)]
pub struct ServiceWatch {
    name: String,
    inner: MembersWatch,
}

impl ServiceWatch {
    /// The instances now, by id.
    pub fn instances(&self) -> Vec<ServiceInstance> {
        self.inner
            .current()
            .iter()
            .map(|(id, payload)| ServiceInstance {
                name: self.name.clone(),
                id: id.clone(),
                payload: payload.clone(),
            })
            .collect()
    }

    /// Waits for the next change; fails once the watch has ended.
    pub async fn changed(&mut self) -> Result<()> {
        self.inner.changed().await
    }
}
