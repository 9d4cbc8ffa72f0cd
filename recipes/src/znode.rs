//! Znode helpers every recipe shares: protected sequential creation (Curator's GUID-prefix
//! technique), sequence-suffix ordering, predecessor lookup, parent creation and the background
//! clean-up of nodes whose owner went away mid-operation.
//!
//! # Protected creation
//! A create that fails with `ConnectionLoss` may still have been applied. For a sequential node
//! the client cannot know the name it got, so a naive retry leaves an orphan (for a lock: an
//! ephemeral that blocks every other contender until the session ends). A protected create puts
//! `_c_<uuid>-` in front of the name; after a connection loss it lists the parent and adopts the
//! child that carries its prefix, or creates again if there is none. The prefix is byte-for-byte
//! Curator's (`ZKPaths.PROTECTED_PREFIX` + UUID + `-`), so Java services see the same names.
//!
//! ```no_run
//! # async fn f() -> zkit_recipes::Result<()> {
//! use zkit::CreateMode;
//! use zkit_recipes::znode::ProtectedCreate;
//! let zk = zkit::Client::connect("127.0.0.1:2181").await?;
//! let p = ProtectedCreate::new("/locks/job", "lock-", CreateMode::EphemeralSequential);
//! let path = p.create(&zk, b"worker-1").await?;
//! assert!(path.starts_with(&format!("/locks/job/{}", p.prefix())));
//! # Ok(()) }
//! ```

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;
use zkit::path::join;
use zkit::{Client, CreateMode, CreateOptions, Error as ZkError, OpClass, RetryPolicy};

use crate::state::{in_session, wait_connected};
use crate::Result;

/// Curator's protected-name prefix (`ZKPaths.PROTECTED_PREFIX`).
pub const PROTECTED_PREFIX: &str = "_c_";

/// A random (version 4) UUID in its usual 36-character text form.
pub fn new_uuid() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // RandomState is seeded from the OS once per process and varies per instance; mixing in a
    // counter and the time makes every call distinct without another dependency.
    let mut words = [0u64; 2];
    for (i, w) in words.iter_mut().enumerate() {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_usize(i);
        if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            h.write_u128(d.as_nanos());
        }
        h.write_u32(std::process::id());
        *w = h.finish();
    }
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&words[0].to_be_bytes());
    b[8..].copy_from_slice(&words[1].to_be_bytes());
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The sequence number a sequential node's name ends with (10 digits, or `-` and 10 digits after
/// the int32 counter wrapped), if it has one.
///
/// ```
/// use zkit_recipes::znode::sequence_of;
/// assert_eq!(sequence_of("_c_0b1e-lock-0000000042"), Some(42));
/// assert_eq!(sequence_of("x__lock__-000000007"), Some(-7));
/// assert_eq!(sequence_of("lock-"), None);
/// ```
pub fn sequence_of(name: &str) -> Option<i32> {
    // ZooKeeper formats the parent's cversion with `%010d`: ten characters including a minus
    // sign, eleven for i32::MIN.
    let b = name.as_bytes();
    let n = b.len();
    if n < 10 {
        return None;
    }
    let tail = &b[n - 10..];
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    let text = |s: &[u8]| std::str::from_utf8(s).ok().map(str::to_owned);
    if tail[0] == b'-' {
        return if digits(&tail[1..]) {
            text(tail)?.parse().ok()
        } else {
            None
        };
    }
    if !digits(tail) {
        return None;
    }
    match text(tail)?.parse::<i32>() {
        Ok(v) => Some(v),
        Err(_) if n >= 11 && b[n - 11] == b'-' => text(&b[n - 11..])?.parse().ok(),
        Err(_) => None,
    }
}

/// The children that `is_member` accepts, ordered by sequence number (ties by name).
pub fn sorted_members(children: Vec<String>, is_member: impl Fn(&str) -> bool) -> Vec<String> {
    let mut v: Vec<(i32, String)> = children
        .into_iter()
        .filter(|c| is_member(c))
        .filter_map(|c| sequence_of(&c).map(|s| (s, c)))
        .collect();
    v.sort();
    v.into_iter().map(|(_, c)| c).collect()
}

/// The retry policy every recipe uses unless its options say otherwise: retry until the
/// operation succeeds, fails for good or the session ends, waiting for the connection between
/// attempts, with a backoff from 10 ms up to 1 s.
pub fn default_retry() -> RetryPolicy {
    RetryPolicy::until_session_ends(std::time::Duration::from_millis(10))
}

/// Creates `path` and its missing ancestors with `mode` (Persistent or Container); succeeds if
/// they already exist. Reads and creates are retried under `retry` (a create of a fixed path
/// is safe to repeat: a repeat that finds its own node gets `NodeExists`).
pub async fn ensure_path(
    client: &Client,
    path: &str,
    mode: CreateMode,
    retry: &RetryPolicy,
) -> Result<()> {
    // A caller (e.g. a counter's first write) must not see a bare ConnectionLoss from a read.
    if path == "/"
        || retry
            .run_on(client, OpClass::Read, || client.exists(path))
            .await?
            .is_some()
    {
        return Ok(());
    }
    let mut at = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        at.push('/');
        at.push_str(part);
        let opts = CreateOptions::new(mode);
        match retry
            .run_on(client, OpClass::VersionedWrite, || {
                client.create(&at, b"", &opts)
            })
            .await
        {
            Ok(_) | Err(ZkError::NodeExists) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Deletes a node, treating "already gone" as success (so a repeat after a connection loss is
/// harmless) and retrying under `retry`.
pub(crate) async fn delete_quietly(
    client: &Client,
    path: &str,
    retry: &RetryPolicy,
) -> zkit::Result<()> {
    match retry
        .run_on(client, OpClass::VersionedWrite, || {
            client.delete(path, None)
        })
        .await
    {
        Ok(()) | Err(ZkError::NoNode) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes `path` only if it is an ephemeral node of session `session_id`: once that session is
/// gone (or a create of ours failed because the node was there), the path may name another
/// client's node, which is left alone.
pub(crate) async fn delete_owned(client: &Client, path: &str, session_id: i64) -> zkit::Result<()> {
    loop {
        let r = match client.exists(path).await {
            Ok(Some(st)) if st.ephemeral_owner == session_id && in_session(client, session_id) => {
                client.delete(path, Some(st.version)).await
            }
            Ok(_) => return Ok(()),
            Err(e) => Err(e),
        };
        match r {
            Ok(()) | Err(ZkError::NoNode) | Err(ZkError::BadVersion) => return Ok(()),
            Err(e) if e.is_retryable() => wait_connected(client).await?,
            Err(e) => return Err(e),
        }
    }
}

/// A sequential create protected by a GUID prefix: `parent/_c_<uuid>-<name><seq>`.
#[derive(Debug, Clone)]
pub struct ProtectedCreate {
    parent: String,
    name: String,
    prefix: String,
    mode: CreateMode,
    parent_mode: CreateMode,
    retry: RetryPolicy,
}

impl ProtectedCreate {
    /// A protected create of `parent/_c_<uuid>-<name>` with `mode`; missing parents are created
    /// as containers (like Curator's `creatingParentContainersIfNeeded`).
    pub fn new(parent: &str, name: &str, mode: CreateMode) -> Self {
        ProtectedCreate {
            parent: parent.to_owned(),
            name: name.to_owned(),
            prefix: format!("{PROTECTED_PREFIX}{}-", new_uuid()),
            mode,
            parent_mode: CreateMode::Container,
            retry: default_retry(),
        }
    }

    /// Retries the reads (and parent creates) of this create under `policy` instead of
    /// [`default_retry`]. The create itself is never repeated blindly: after a connection loss
    /// it looks for its own node first.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Creates missing parents with this mode instead (`Persistent` for nodes that must stay).
    pub fn parent_mode(mut self, mode: CreateMode) -> Self {
        self.parent_mode = mode;
        self
    }

    /// The `_c_<uuid>-` prefix that identifies this create's node.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The parent path.
    pub fn parent(&self) -> &str {
        &self.parent
    }

    /// Creates the node (or finds the one an earlier attempt created) and returns its path.
    pub async fn create(&self, client: &Client, data: &[u8]) -> Result<String> {
        let path = join(&self.parent, &format!("{}{}", self.prefix, self.name));
        let opts = CreateOptions::new(self.mode);
        let mut parent_attempts = 0;
        loop {
            match client.create(&path, data, &opts).await {
                Ok((p, _)) => return Ok(p),
                Err(ZkError::NoNode) if parent_attempts < 5 => {
                    // A container parent can be reaped between ensure_path and create; retry.
                    parent_attempts += 1;
                    ensure_path(client, &self.parent, self.parent_mode, &self.retry).await?;
                }
                Err(e) if e.is_retryable() => {
                    tracing::debug!(parent = %self.parent, "connection lost during protected create");
                    wait_connected(client).await?;
                    if let Some(p) = self.find_owned(client).await? {
                        return Ok(p);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The node this create made in the client's current session, if it exists. For the
    /// ephemeral modes a node carrying the prefix counts only if its `ephemeralOwner` is the
    /// current session (CURATOR-498): after an expiry the old session's node can still be listed
    /// while the server deletes it, and adopting it would hand the caller a node about to vanish.
    pub async fn find_owned(&self, client: &Client) -> Result<Option<String>> {
        let children = match self
            .retry
            .run_on(client, OpClass::Read, || client.get_children(&self.parent))
            .await
        {
            Ok(c) => c,
            Err(ZkError::NoNode) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        for c in children.into_iter().filter(|c| c.starts_with(&self.prefix)) {
            let path = join(&self.parent, &c);
            if !self.mode.is_ephemeral() {
                return Ok(Some(path));
            }
            let session = client.session_id();
            match self
                .retry
                .run_on(client, OpClass::Read, || client.exists(&path))
                .await?
            {
                Some(st) if st.ephemeral_owner == session => return Ok(Some(path)),
                _ => tracing::debug!(%path, "a node with our prefix from another session"),
            }
        }
        Ok(None)
    }

    /// The node carrying this create's prefix, if it exists, whatever session owns it (what
    /// clean-up deletes).
    pub async fn find(&self, client: &Client) -> Result<Option<String>> {
        match self
            .retry
            .run_on(client, OpClass::Read, || client.get_children(&self.parent))
            .await
        {
            Ok(children) => Ok(children
                .into_iter()
                .find(|c| c.starts_with(&self.prefix))
                .map(|c| join(&self.parent, &c))),
            Err(ZkError::NoNode) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// Deletes nodes whose owner went away in the middle of an operation (a cancelled acquire, a
/// guard dropped without `release().await`).
///
/// One task per recipe instance, spawned on first use from async code; it ends when the recipe and
/// every guard are gone (the channel closes) after finishing what was queued. The queue holds at
/// most one entry per dropped guard or cancelled acquire.
#[derive(Debug, Clone)]
pub(crate) struct Reaper {
    tx: mpsc::UnboundedSender<Cleanup>,
}

#[derive(Debug)]
pub(crate) enum Cleanup {
    /// Delete this node.
    Delete(String),
    /// Delete this ephemeral node of the given session, unless the client runs another by then.
    DeleteOwned(String, i64),
    /// Delete whatever child of `parent` carries `prefix` (the create may still be in flight).
    Prefix(ProtectedCreate),
}

impl Reaper {
    pub(crate) fn spawn(client: &Client, retry: &RetryPolicy) -> Reaper {
        let retry = retry.clone();
        let (tx, mut rx) = mpsc::unbounded_channel::<Cleanup>();
        let client = client.clone();
        tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                let r = match &job {
                    Cleanup::Delete(p) => {
                        delete_quietly(&client, p, &retry).await.map_err(Into::into)
                    }
                    Cleanup::DeleteOwned(p, s) => {
                        delete_owned(&client, p, *s).await.map_err(Into::into)
                    }
                    Cleanup::Prefix(pc) => match pc.find(&client).await {
                        Ok(Some(p)) => delete_quietly(&client, &p, &retry)
                            .await
                            .map_err(Into::into),
                        Ok(None) => Ok(()),
                        Err(e) => Err(e),
                    },
                };
                if let Err(e) = r {
                    // Session gone: its ephemerals went with it.
                    tracing::debug!(error = %e, "clean-up gave up");
                }
            }
        });
        Reaper { tx }
    }

    pub(crate) fn submit(&self, job: Cleanup) {
        let _ = self.tx.send(job);
    }
}

/// Removes a half-made node when dropped, unless disarmed: makes acquire futures
/// cancellation-safe.
pub(crate) struct CleanupOnDrop<'a> {
    reaper: &'a Reaper,
    job: Option<Cleanup>,
}

impl<'a> CleanupOnDrop<'a> {
    pub(crate) fn new(reaper: &'a Reaper, job: Cleanup) -> Self {
        CleanupOnDrop {
            reaper,
            job: Some(job),
        }
    }
    pub(crate) fn set(&mut self, job: Cleanup) {
        self.job = Some(job);
    }
    pub(crate) fn disarm(&mut self) {
        self.job = None;
    }
}

impl Drop for CleanupOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(job) = self.job.take() {
            self.reaper.submit(job);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_look_like_uuids_and_differ() {
        let a = new_uuid();
        let b = new_uuid();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.as_bytes()[14], b'4');
        assert_eq!(a.matches('-').count(), 4);
    }

    #[test]
    fn members_sort_by_sequence_not_by_name() {
        let kids = vec![
            "_c_ffff-lock-0000000003".to_string(),
            "0000abcd__lock__0000000001".to_string(),
            "_c_0000-lock-0000000002".to_string(),
            "not-a-lock".to_string(),
        ];
        let s = sorted_members(kids, |c| c.contains("lock"));
        assert_eq!(
            s,
            vec![
                "0000abcd__lock__0000000001",
                "_c_0000-lock-0000000002",
                "_c_ffff-lock-0000000003"
            ]
        );
    }

    #[test]
    fn sequence_parsing() {
        assert_eq!(sequence_of("lock-0000000000"), Some(0));
        assert_eq!(sequence_of("lock-2147483647"), Some(i32::MAX));
        assert_eq!(sequence_of("lock--000000005"), Some(-5));
        assert_eq!(sequence_of("lock--2147483648"), Some(i32::MIN));
        assert_eq!(sequence_of("lock-00000000x1"), None);
        assert_eq!(sequence_of("short"), None);
    }
}
