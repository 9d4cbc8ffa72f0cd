//! Lock revocation (Curator's `Revocable` / `Revoker`): anyone may ask the holder of a lock to
//! let go by writing Curator's revoke message into the holder's lock node; a holder that agreed
//! to be revocable waits for that request next to its work and releases.
//!
//! Revocation is cooperative, as in Curator: the request is only a message; the holder decides.
//! The message is Curator's (`__REVOKE__`), so a Java `Revoker.attemptRevoke` reaches a zkit
//! holder and [`attempt_revoke`] reaches a Java holder that called `makeRevocable`.
//!
//! ```no_run
//! # async fn f() -> zkit_recipes::Result<()> {
//! use zkit_recipes::lock::{Mutex, MutexOptions};
//! use zkit_recipes::revoke::attempt_revoke;
//! let zk = zkit::Client::connect("127.0.0.1:2181").await?;
//! let guard = Mutex::new(&zk, "/locks/report", MutexOptions::default()).acquire().await?;
//! tokio::select! {
//!     _ = guard.revocation_requested() => println!("asked to let go"),
//!     _ = long_job() => {}
//! }
//! guard.release().await?;
//! // Elsewhere: ask whoever holds the lock node to release it.
//! attempt_revoke(&zk, "/locks/report/_c_...-lock-0000000007").await?;
//! # Ok(()) }
//! # async fn long_job() {}
//! ```

use zkit::{Client, Error as ZkError, OpClass};

use crate::lock::MutexGuard;
use crate::state::wait_connected;
use crate::{Error, Result};

/// Curator's revoke message (`LockInternals.REVOKE_MESSAGE`).
pub const REVOKE_MESSAGE: &[u8] = b"__REVOKE__";

/// Asks the holder of lock node `node` to release it (a no-op when the node is gone).
pub async fn attempt_revoke(client: &Client, node: &str) -> Result<()> {
    match crate::znode::default_retry()
        .run_on(client, OpClass::VersionedWrite, || {
            client.set_data(node, REVOKE_MESSAGE, None)
        })
        .await
    {
        Ok(_) | Err(ZkError::NoNode) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

impl MutexGuard {
    /// Resolves once someone asked this holder to release ([`attempt_revoke`]); fails when the
    /// lock node is gone or the session is (the lock is lost then: see
    /// [`lost`](MutexGuard::lost)).
    pub async fn revocation_requested(&self) -> Result<()> {
        let client = self.client();
        loop {
            match client.get_data_and_watch(self.node()).await {
                Ok((data, _, _)) if &data[..] == REVOKE_MESSAGE => return Ok(()),
                Ok((_, _, w)) => {
                    if let Err(e) = w.await {
                        if e.is_session_gone() {
                            return Err(e.into());
                        }
                    }
                }
                Err(ZkError::NoNode) => {
                    return Err(Error::Lost(crate::state::LossReason::NodeDeleted))
                }
                Err(e) if e.is_retryable() => wait_connected(client).await?,
                Err(e) => return Err(e.into()),
            }
        }
    }
}
