//! Fencing tokens: proof of holding a lock (or leadership) that a holder can attach to its
//! writes, so a holder that lost the lock without noticing (a long pause, a partition) can
//! never write under it.
//!
//! * [`FencingToken`]: the holder node's creation zxid (`czxid`). Every new holder's node is
//!   created after the previous holder's, so tokens only grow; a store outside ZooKeeper can
//!   refuse any write that carries a token lower than one it has seen.
//! * `fenced_multi(ops)` on a guard runs the caller's ops in one ZooKeeper multi behind a check
//!   on the holder's node: the ops apply only if the node still exists, i.e. only while the
//!   lock is held (the node is ephemeral and its name is unique to this hold).
//!
//! ```no_run
//! # async fn f() -> zkit_recipes::Result<()> {
//! use zkit::Op;
//! use zkit_recipes::lock::{Mutex, MutexOptions};
//! let zk = zkit::Client::connect("127.0.0.1:2181").await?;
//! let guard = Mutex::new(&zk, "/locks/ledger", MutexOptions::default()).acquire().await?;
//! let token = guard.token();
//! guard.fenced_multi(vec![Op::set_data("/ledger/head", token.0.to_be_bytes(), None)]).await?;
//! guard.release().await?;
//! # Ok(()) }
//! ```

use zkit::{Client, Error as ZkError, Op, OpResult};

use crate::state::why_node_gone;
use crate::{Error, Result};

/// A lock holder's fencing token: its node's creation zxid. See the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FencingToken(pub i64);

/// Runs `ops` in one multi behind a check that `node` (made by session `session_id`) exists.
/// Returns the results of `ops` only. Fails with [`Error::Lost`] when the node is gone; an
/// abort in one of `ops` is reported with that op's index in `ops`.
pub(crate) async fn fenced_multi(
    client: &Client,
    node: &str,
    session_id: i64,
    ops: Vec<Op>,
) -> Result<Vec<OpResult>> {
    let mut all = Vec::with_capacity(ops.len() + 1);
    // Version -1: any version; the check passes exactly while the node exists.
    all.push(Op::check(node, -1));
    all.extend(ops);
    match client.multi(all).await {
        Ok(mut results) => {
            results.remove(0);
            Ok(results)
        }
        Err(ZkError::MultiAborted { index: 0, .. }) => {
            Err(Error::Lost(why_node_gone(client, session_id)))
        }
        Err(ZkError::MultiAborted {
            index,
            error,
            mut codes,
        }) => {
            if !codes.is_empty() {
                codes.remove(0);
            }
            Err(ZkError::MultiAborted {
                index: index - 1,
                error,
                codes,
            }
            .into())
        }
        Err(e) => Err(e.into()),
    }
}
