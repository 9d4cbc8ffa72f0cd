//! [`ConfigWatch<T>`]: a typed configuration value for config-reloading services, decoded from
//! one znode by a user function and exposed as a [`tokio::sync::watch::Receiver<T>`].
//!
//! Built on [`NodeCache`], so it never misses the last version across reconnects and (on a
//! client that re-creates its session, the default) across session expiry: it re-reads the node
//! whenever a reconnect carried its watch over. A version that fails to decode is reported through
//! [`ConfigWatch::errors`] and the last good value stays in place. On a client that does not
//! re-create sessions an expiry ends the watch: [`ConfigWatch::is_live`] turns false and the
//! receivers' `changed()` fails.
//!
//! ```no_run
//! # async fn f() -> zkit_recipes::Result<()> {
//! use zkit_recipes::cache::CacheOptions;
//! use zkit_recipes::config::ConfigWatch;
//! let zk = zkit::Client::connect("127.0.0.1:2181").await?;
//! let cfg = ConfigWatch::start(&zk, "/config/limits", CacheOptions::default(), |bytes: Option<&[u8]>| {
//!     let text = std::str::from_utf8(bytes.unwrap_or(b"100")).map_err(|e| e.to_string())?;
//!     text.trim().parse::<u32>().map_err(|e| e.to_string())
//! })
//! .await?;
//! let mut limit = cfg.watched();
//! while limit.changed().await.is_ok() {
//!     println!("new limit: {}", *limit.borrow());
//! }
//! # Ok(()) }
//! ```

use tokio::sync::watch;
use zkit::Client;

use crate::cache::{CacheOptions, NodeCache, NodeData};
use crate::state::TaskGuard;
use crate::{Error, Result};

/// A version of the node that did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecodeFailure {
    /// The node's data version (`None`: the node was deleted).
    pub version: Option<i32>,
    /// The decoder's message.
    pub message: String,
}

/// A decoded configuration value. See the [module docs](self).
#[derive(Debug)]
pub struct ConfigWatch<T> {
    rx: watch::Receiver<T>,
    errors: watch::Receiver<Option<DecodeFailure>>,
    _task: TaskGuard,
}

impl<T: Send + Sync + 'static> ConfigWatch<T> {
    /// Watches `path`; `decode` gets the node's data (`None` when the node does not exist). Fails
    /// if the current version does not decode.
    pub async fn start<F, E>(
        client: &Client,
        path: &str,
        options: CacheOptions,
        decode: F,
    ) -> Result<ConfigWatch<T>>
    where
        F: Fn(Option<&[u8]>) -> std::result::Result<T, E> + Send + 'static,
        E: std::fmt::Display,
    {
        let cache = NodeCache::start(client, path, options).await?;
        let mut changes = cache.watched();
        let first = changes.borrow_and_update().clone();
        let value = decode(first.as_ref().map(|d| &d.data[..])).map_err(|e| Error::BadData {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let (tx, rx) = watch::channel(value);
        let (etx, errors) = watch::channel(None);
        let task = tokio::spawn(async move {
            let _cache = cache; // owned by the task: dropped with it
            while changes.changed().await.is_ok() {
                let node: Option<NodeData> = changes.borrow_and_update().clone();
                match decode(node.as_ref().map(|d| &d.data[..])) {
                    Ok(v) => {
                        etx.send_replace(None);
                        tx.send_replace(v);
                    }
                    Err(e) => {
                        tracing::warn!(version = ?node.as_ref().map(|n| n.stat.version), "config did not decode; keeping the last good value");
                        etx.send_replace(Some(DecodeFailure {
                            version: node.map(|n| n.stat.version),
                            message: e.to_string(),
                        }));
                    }
                }
            }
        });
        Ok(ConfigWatch {
            rx,
            errors,
            _task: TaskGuard(task),
        })
    }

    /// The value as a watched value (`borrow()` for the current value, `changed().await` for
    /// the next, `changes()` as a `Stream`).
    pub fn watched(&self) -> zkit::Watched<T> {
        zkit::Watched::new(self.rx.clone())
    }

    /// The latest decode failure (`None` once a later version decoded), as a watched value.
    pub fn errors(&self) -> zkit::Watched<Option<DecodeFailure>> {
        zkit::Watched::new(self.errors.clone())
    }

    /// Whether the value still follows the server. False once the session expired on a client
    /// that does not re-create sessions (or the client was closed): the last value stays, and
    /// every receiver's `changed()` fails from then on.
    pub fn is_live(&self) -> bool {
        self.rx.has_changed().is_ok()
    }

    /// Resolves when the value stops following the server (see [`is_live`](Self::is_live)).
    pub async fn ended(&self) {
        let mut rx = self.rx.clone();
        while rx.changed().await.is_ok() {}
    }
}
