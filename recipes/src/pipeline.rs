//! One round trip to queue and look: a sequential create and a getChildren of its parent sent
//! back to back, without waiting for the create's reply in between. ZooKeeper answers a
//! session's requests in the order they were sent, and the read is served after the write is
//! applied, so the listing already shows our node: an uncontended lock is taken in one write
//! round trip instead of two sequential ones.

use zkit::path::join;
use zkit::{Client, CreateMode, CreateOptions, Error as ZkError};

/// What a pipelined create-and-list found.
#[derive(Debug)]
pub(crate) enum Queued {
    /// Our node, its creation zxid and the parent's children as seen right after the create
    /// (`None` when the listing was cut off by a connection loss).
    Listed {
        node: String,
        czxid: i64,
        children: Option<Vec<String>>,
    },
    /// The parent is missing: nothing was created; use the step-by-step path.
    NoParent,
    /// The connection was lost: the create may or may not have been applied (look for the
    /// node by its protected prefix before creating again).
    Unknown,
}

/// Creates `<parent>/<name>` (a protected, sequential name) with `mode` and lists `parent`,
/// pipelined.
pub(crate) async fn create_and_list(
    client: &Client,
    parent: &str,
    name: &str,
    mode: CreateMode,
    data: &[u8],
) -> zkit::Result<Queued> {
    // Both requests are queued when the calls are made, in this order.
    let create = client.create(&join(parent, name), data, &CreateOptions::new(mode));
    let list = client.get_children(parent);
    let (created, listed) = futures::join!(create, list);
    match created {
        Ok((node, stat)) => match listed {
            Ok(children) => Ok(Queued::Listed {
                node,
                czxid: stat.czxid,
                children: Some(children),
            }),
            Err(e) if e.is_retryable() => Ok(Queued::Listed {
                node,
                czxid: stat.czxid,
                children: None,
            }),
            Err(e) => Err(e),
        },
        Err(ZkError::NoNode) => Ok(Queued::NoParent),
        Err(e) if e.is_retryable() => Ok(Queued::Unknown),
        Err(e) => Err(e),
    }
}
