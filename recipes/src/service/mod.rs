//! Service discovery in Curator's format (curator-x-discovery): instances registered by Rust
//! are found by Java `ServiceDiscovery` clients and the other way round.
//!
//! Each instance is a node `<base>/<service>/<instance-id>` holding the instance as Curator's
//! JSON ([`ServiceInstance`]: name, id, address, port, sslPort, payload, registrationTimeUTC,
//! serviceType, uriSpec, enabled). A dynamic registration is an ephemeral node, so an instance
//! is healthy exactly while its session lives; it is kept in place while the service runs
//! (re-created if deleted, and after a session expiry when the client re-creates sessions).
//! Static and permanent registrations are persistent nodes.
//!
//! Readers query once ([`ServiceDiscovery::query`]), keep a watched [`ServiceCache`] (the
//! current list and a `Stream` of changes), or let a [`ServiceProvider`] pick one instance per
//! call (random, round-robin or sticky, skipping disabled and failing instances).
//!
//! ```no_run
//! # async fn f() -> zkit_recipes::Result<()> {
//! use zkit_recipes::discovery::DiscoveryOptions;
//! use zkit_recipes::service::{ProviderOptions, ProviderStrategy, ServiceDiscovery, ServiceInstance};
//! let zk = zkit::Client::builder("127.0.0.1:2181").recreate_on_expiry(true).connect().await?;
//! let discovery = ServiceDiscovery::new(&zk, "/services", DiscoveryOptions::default());
//! let me = ServiceInstance::new("search", "search-1").address("10.0.0.5").port(8080)
//!     .payload(serde_json::json!({"zone": "eu-1"}));
//! let _registration = discovery.register(&me).await?;
//! let provider = discovery
//!     .provider("search", ProviderOptions::default().strategy(ProviderStrategy::RoundRobin))
//!     .await?;
//! if let Some(i) = provider.instance() {
//!     println!("call {}:{}", i.address.unwrap_or_default(), i.port.unwrap_or(0));
//! }
//! # Ok(()) }
//! ```

mod cache;
mod instance;
mod provider;

pub use cache::ServiceCache;
pub use instance::{ServiceInstance, ServiceType, UriPart, UriSpec};
pub use provider::{ProviderOptions, ProviderStrategy, ServiceProvider};

use zkit::path::join;
use zkit::{Client, CreateMode, CreateOptions, Error as ZkError, OpClass, RetryPolicy};

use crate::group::KeptNode;
use crate::znode::{delete_quietly, ensure_path};
use crate::Result;

/// Registers, queries and watches service instances under a base path. See the
/// [module docs](self).
#[derive(Debug, Clone)]
pub struct ServiceDiscovery {
    client: Client,
    base: String,
    retry: RetryPolicy,
}

impl ServiceDiscovery {
    /// Discovery under `base_path` (Curator's `basePath`).
    pub fn new(
        client: &Client,
        base_path: &str,
        options: crate::discovery::DiscoveryOptions,
    ) -> ServiceDiscovery {
        ServiceDiscovery {
            client: client.clone(),
            base: base_path.to_owned(),
            retry: options.retry,
        }
    }

    fn node(&self, name: &str, id: &str) -> String {
        join(&join(&self.base, name), id)
    }

    /// Registers `instance`. A dynamic one fails if a live session already registered the same
    /// id; a static or permanent one replaces what is there.
    pub async fn register(&self, instance: &ServiceInstance) -> Result<Registration> {
        let path = self.node(&instance.name, &instance.id);
        let json = instance.to_json();
        let node = if instance.service_type.is_dynamic() {
            Some(KeptNode::start(&self.client, &path, &json, &self.retry).await?)
        } else {
            let c = &self.client;
            ensure_path(
                c,
                zkit::path::parent(&path),
                CreateMode::Persistent,
                &self.retry,
            )
            .await?;
            match self
                .retry
                .run_on(c, OpClass::VersionedWrite, || {
                    c.create(&path, &json, &CreateOptions::persistent())
                })
                .await
            {
                Ok(_) => {}
                Err(ZkError::NodeExists) => {
                    self.retry
                        .run_on(c, OpClass::VersionedWrite, || {
                            c.set_data(&path, &json, None)
                        })
                        .await?;
                }
                Err(e) => return Err(e.into()),
            }
            None
        };
        Ok(Registration {
            client: self.client.clone(),
            retry: self.retry.clone(),
            path,
            instance: instance.clone(),
            node,
        })
    }

    /// The names of the services with a node under the base path, sorted.
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

    /// The instances of service `name` now, by id (nodes that are not Curator JSON are
    /// skipped).
    pub async fn query(&self, name: &str) -> Result<Vec<ServiceInstance>> {
        let path = join(&self.base, name);
        let kids = crate::group::read_children(&self.client, &path, &self.retry).await?;
        Ok(kids
            .iter()
            .filter_map(|(id, data)| ServiceInstance::from_json(&join(&path, id), data).ok())
            .collect())
    }

    /// One instance, if registered.
    pub async fn query_one(&self, name: &str, id: &str) -> Result<Option<ServiceInstance>> {
        let path = self.node(name, id);
        let c = &self.client;
        match self
            .retry
            .run_on(c, OpClass::Read, || c.get_data(&path))
            .await
        {
            Ok((data, _)) => Ok(Some(ServiceInstance::from_json(&path, &data)?)),
            Err(ZkError::NoNode) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// A watched cache of service `name`'s instances, filled before it is returned.
    pub async fn cache(&self, name: &str) -> Result<ServiceCache> {
        ServiceCache::start(&self.client, &self.base, name).await
    }

    /// A provider of service `name`'s instances.
    pub async fn provider(&self, name: &str, options: ProviderOptions) -> Result<ServiceProvider> {
        Ok(ServiceProvider::new(self.cache(name).await?, options))
    }
}

/// A registered instance. Dropping a dynamic one unregisters it in the background; a static or
/// permanent one stays until [`unregister`](Self::unregister).
#[derive(Debug)]
pub struct Registration {
    client: Client,
    path: String,
    retry: RetryPolicy,
    instance: ServiceInstance,
    node: Option<KeptNode>,
}

impl Registration {
    /// The instance as registered.
    pub fn instance(&self) -> &ServiceInstance {
        &self.instance
    }

    /// Replaces the registered instance (same name and id) with `instance`.
    pub async fn update(&mut self, instance: ServiceInstance) -> Result<()> {
        if instance.name != self.instance.name || instance.id != self.instance.id {
            return Err(crate::Error::InvalidArgument(
                "an update keeps the instance's name and id".into(),
            ));
        }
        let json = instance.to_json();
        match &self.node {
            Some(n) => n.set_data(&json).await?,
            None => {
                let c = &self.client;
                self.retry
                    .run_on(c, OpClass::VersionedWrite, || {
                        c.set_data(&self.path, &json, None)
                    })
                    .await?;
            }
        }
        self.instance = instance;
        Ok(())
    }

    /// Marks the instance enabled or disabled (providers skip disabled instances).
    pub async fn set_enabled(&mut self, enabled: bool) -> Result<()> {
        let mut i = self.instance.clone();
        i.enabled = enabled;
        self.update(i).await
    }

    /// Unregisters (deletes the node) and waits for the server.
    pub async fn unregister(self) -> Result<()> {
        match &self.node {
            Some(n) => n.close().await,
            None => delete_quietly(&self.client, &self.path, &self.retry)
                .await
                .map_err(Into::into),
        }
    }
}
