//! Export: a depth-first walk with a bounded window of pipelined reads, written as it goes.

use std::collections::VecDeque;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use zkit::{ttl_of_ephemeral_owner, CONTAINER_EPHEMERAL_OWNER};
use zkit::{Acl, Client, ReadOp, ReadResult, Stat};

use super::{
    absolute, check_abs, BackupWriter, Error, Kind, NodeRecord, Progress, Reporter, Result,
};

/// How to export.
///
/// ```
/// use std::time::Duration;
/// use zkit_recipes::backup::{ExportOptions, Kind};
/// let o = ExportOptions::new()
///     .window(128)
///     .declare_kind("/jobs/*", Kind::Container)
///     .declare_kind("/leases", Kind::Ttl(Duration::from_secs(600)))
///     .progress(|p| println!("{} nodes", p.nodes));
/// # let _ = o;
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ExportOptions {
    /// Nodes being read at once (each is two pipelined requests). Default 256.
    pub window: usize,
    /// Free text stored in the header as the source (default: empty).
    pub source: String,
    /// Call the progress callback every this many nodes (default 1000).
    pub progress_every: u64,
    rules: Vec<(String, bool, Kind)>,
    reporter: Option<super::ProgressFn>,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            window: 256,
            source: String::new(),
            progress_every: 1000,
            rules: Vec::new(),
            reporter: None,
        }
    }
}

impl ExportOptions {
    /// Defaults: window 256, no kind rules, no progress callback.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the read window (at least 1).
    pub fn window(mut self, n: usize) -> Self {
        self.window = n.max(1);
        self
    }
    /// Sets the free-text source stored in the header.
    pub fn source(mut self, s: impl Into<String>) -> Self {
        self.source = s.into();
        self
    }
    /// Declares the kind of nodes whose Stat looks persistent: `"/p"` covers `/p` and every node
    /// below it, `"/p/*"` only the nodes below it. The longest matching rule wins (`"/p/*"` counts
    /// as longer than `"/p"`, so it decides for the nodes below `/p`). Paths are as
    /// the exporting client names them (inside its chroot).
    pub fn declare_kind(mut self, path: &str, kind: Kind) -> Self {
        let (p, below_only) = match path.strip_suffix("/*") {
            Some("") => ("/".to_owned(), true),
            Some(p) => (p.to_owned(), true),
            None => (path.to_owned(), false),
        };
        self.rules.push((p, below_only, kind));
        self
    }
    /// Calls `f` every [`progress_every`](Self::progress_every) nodes and at the end.
    pub fn progress(mut self, f: impl Fn(Progress) + Send + Sync + 'static) -> Self {
        self.reporter = Some(super::ProgressFn(Arc::new(f)));
        self
    }
    /// Sets how often progress is reported.
    pub fn progress_every(mut self, nodes: u64) -> Self {
        self.progress_every = nodes.max(1);
        self
    }

    /// The declared kind for `path`, if a rule matches.
    fn declared(&self, path: &str) -> Option<Kind> {
        let mut best: Option<(usize, Kind)> = None;
        for (p, below_only, kind) in &self.rules {
            let below = p == "/" && path != "/"
                || path.len() > p.len()
                    && path.starts_with(p.as_str())
                    && path.as_bytes()[p.len()] == b'/';
            let hit = below || (!below_only && path == p);
            // `/p/*` is the longer pattern (`/p/`) and wins below `/p` over `/p`.
            let rank = p.len() + usize::from(*below_only);
            // (`map_or`, not `is_none_or`: the workspace supports Rust 1.80.)
            #[allow(clippy::unnecessary_map_or)]
            let better = best.map_or(true, |(r, _)| rank > r);
            if hit && better {
                best = Some((rank, *kind));
            }
        }
        best.map(|(_, k)| k)
    }
}

/// What an export did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportReport {
    /// Node records written.
    pub nodes: u64,
    /// Sum of their data lengths.
    pub data_bytes: u64,
    /// Size of the file.
    pub file_bytes: u64,
    /// Ephemeral nodes left out.
    pub ephemerals_skipped: u64,
    /// Nodes that were deleted while the walk reached them (left out).
    pub vanished: u64,
    /// Nodes whose kind came from a [`declare_kind`](ExportOptions::declare_kind) rule.
    pub kinds_declared: u64,
    /// Nodes whose Stat showed a container or TTL marker.
    pub kinds_observed: u64,
    /// CRC-32 of the file (the trailer's `file_crc`).
    pub file_crc: u32,
    /// Wall time.
    pub elapsed: Duration,
}

struct Fetched {
    data: Bytes,
    stat: Stat,
    acl: Vec<Acl>,
    children: Vec<String>,
}

type FetchFut = Pin<Box<dyn Future<Output = Result<Option<Fetched>>> + Send>>;

/// Queues the reads for `path` now (zkit sends them in call order): getData and getChildren
/// in one multiRead, then getACL (two requests, not three: the server's per-request cost
/// dominates a walk). `None` if the node vanished.
fn fetch(client: &Client, path: &str) -> FetchFut {
    let reads = client.multi_read(vec![
        ReadOp::GetData(path.to_owned()),
        ReadOp::GetChildren(path.to_owned()),
    ]);
    let acl = client.get_acl(path);
    let p = path.to_owned();
    Box::pin(async move {
        let gone = |r: &zkit::Error| matches!(r, zkit::Error::NoNode);
        let mut results = reads.await.map_err(Error::zk("multiRead", &p))?.into_iter();
        let (data, stat) = match results.next() {
            Some(Ok(ReadResult::Data { data, stat })) => (data, stat),
            Some(Err(e)) if gone(&e) => return Ok(None),
            Some(Err(e)) => return Err(Error::zk("getData", &p)(e)),
            _ => return Err(Error::zk("multiRead", &p)(bad_reply())),
        };
        let children = match results.next() {
            Some(Ok(ReadResult::Children(c))) => c,
            Some(Err(e)) if gone(&e) => return Ok(None),
            Some(Err(e)) => return Err(Error::zk("getChildren", &p)(e)),
            _ => return Err(Error::zk("multiRead", &p)(bad_reply())),
        };
        let (acl, _) = match acl.await {
            Err(e) if gone(&e) => return Ok(None),
            r => r.map_err(Error::zk("getACL", &p))?,
        };
        Ok(Some(Fetched {
            data,
            stat,
            acl,
            children,
        }))
    })
}

fn bad_reply() -> zkit::Error {
    zkit::Error::Protocol("multiRead answered with the wrong result kinds".into())
}

/// Exports the subtree at `root` to `out`, streaming; returns what was written.
///
/// Nodes are written in an order where each follows its parent. Reads are pipelined: up to
/// [`ExportOptions::window`] nodes are being fetched at once, in the order a depth-first walk
/// would visit them. Memory holds the window plus the child lists still to visit.
///
/// ```no_run
/// # async fn f() -> zkit_recipes::backup::Result<()> {
/// use zkit_recipes::backup::{export, ExportOptions};
/// let zk = zkit::Client::connect("127.0.0.1:2181").await.unwrap();
/// let mut file = tokio::fs::File::create("/tmp/app.zkb").await?;
/// let report = export(&zk, "/app", &mut file, &ExportOptions::new()).await?;
/// println!("{} nodes, {} bytes", report.nodes, report.file_bytes);
/// # Ok(()) }
/// ```
pub async fn export<W: AsyncWrite + Unpin>(
    client: &Client,
    root: &str,
    out: W,
    opts: &ExportOptions,
) -> Result<ExportReport> {
    check_abs(root)?;
    let started = Instant::now();
    let progress = Reporter::new(opts.reporter.clone(), opts.progress_every);
    let mut w = BackupWriter::start(tokio::io::BufWriter::new(out), root, &opts.source).await?;
    let mut report = ExportReport::default();
    let skip_system = client.chroot_path().is_none();
    // Paths still to visit, as (relative path); popped from the end, so pushed in reverse.
    let mut stack: Vec<String> = vec![String::new()];
    let mut inflight: VecDeque<(String, FetchFut)> = VecDeque::new();
    loop {
        while inflight.len() < opts.window.max(1) {
            let Some(rel) = stack.pop() else { break };
            let abs = absolute(root, &rel);
            if skip_system && (abs == "/zookeeper" || abs.starts_with("/zookeeper/")) {
                continue;
            }
            let f = fetch(client, &abs);
            inflight.push_back((rel, f));
        }
        let Some((rel, fut)) = inflight.pop_front() else {
            break;
        };
        let Some(node) = fut.await? else {
            if rel.is_empty() {
                return Err(Error::zk("getData", root)(zkit::Error::NoNode));
            }
            report.vanished += 1;
            continue;
        };
        let owner = node.stat.ephemeral_owner;
        let abs = absolute(root, &rel);
        let kind = if owner == CONTAINER_EPHEMERAL_OWNER {
            report.kinds_observed += 1;
            Kind::Container
        } else if let Some(ttl) = ttl_of_ephemeral_owner(owner).filter(|t| *t > 0) {
            report.kinds_observed += 1;
            Kind::Ttl(Duration::from_millis(ttl as u64))
        } else if owner != 0 {
            report.ephemerals_skipped += 1;
            continue;
        } else if let Some(k) = opts.declared(&abs) {
            report.kinds_declared += 1;
            k
        } else {
            Kind::Persistent
        };
        let mut children = node.children;
        children.sort_unstable();
        stack.extend(children.iter().rev().map(|c| format!("{rel}/{c}")));
        report.data_bytes += node.data.len() as u64;
        w.node(&NodeRecord::new(rel, kind, node.acl, node.data))
            .await?;
        progress.tick(w.nodes_written(), w.bytes_written());
    }
    report.nodes = w.nodes_written();
    let (mut out, trailer, file_bytes) = w.finish().await?;
    out.flush().await?;
    report.file_bytes = file_bytes;
    report.file_crc = trailer.file_crc;
    report.elapsed = started.elapsed();
    progress.done(report.nodes, report.file_bytes);
    tracing::info!(
        root,
        nodes = report.nodes,
        bytes = report.file_bytes,
        ephemerals_skipped = report.ephemerals_skipped,
        vanished = report.vanished,
        "subtree exported"
    );
    Ok(report)
}

/// Exports to a file: written to `FILE.partial`, synced, then renamed, so `path` only ever
/// holds a complete backup.
///
/// ```no_run
/// # async fn f() -> zkit_recipes::backup::Result<()> {
/// use zkit_recipes::backup::{export_to_file, ExportOptions};
/// let zk = zkit::Client::connect("127.0.0.1:2181").await.unwrap();
/// export_to_file(&zk, "/", "/tmp/all.zkb", &ExportOptions::new()).await?;
/// # Ok(()) }
/// ```
pub async fn export_to_file(
    client: &Client,
    root: &str,
    path: impl AsRef<Path>,
    opts: &ExportOptions,
) -> Result<ExportReport> {
    let path = path.as_ref();
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = std::path::PathBuf::from(tmp);
    let file = tokio::fs::File::create(&tmp).await?;
    let r = async {
        let mut file = file;
        let report = export(client, root, &mut file, opts).await?;
        file.sync_all().await?;
        Ok::<_, Error>(report)
    }
    .await;
    match r {
        Ok(report) => {
            tokio::fs::rename(&tmp, path).await?;
            Ok(report)
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_rules_longest_match_wins() {
        let o = ExportOptions::new()
            .declare_kind("/q/*", Kind::Container)
            .declare_kind("/q/keep", Kind::Persistent)
            .declare_kind("/t", Kind::Ttl(Duration::from_secs(9)));
        assert_eq!(o.declared("/q"), None);
        assert_eq!(o.declared("/q/a"), Some(Kind::Container));
        assert_eq!(o.declared("/q/keep"), Some(Kind::Persistent));
        assert_eq!(o.declared("/q/keep/x"), Some(Kind::Persistent));
        assert_eq!(o.declared("/t"), Some(Kind::Ttl(Duration::from_secs(9))));
        assert_eq!(o.declared("/tt"), None);
        let both = ExportOptions::new()
            .declare_kind("/j", Kind::Container)
            .declare_kind("/j/*", Kind::Persistent);
        assert_eq!(both.declared("/j"), Some(Kind::Container));
        assert_eq!(both.declared("/j/x"), Some(Kind::Persistent));
        let all = ExportOptions::new().declare_kind("/*", Kind::Container);
        assert_eq!(all.declared("/"), None);
        assert_eq!(all.declared("/a"), Some(Kind::Container));
    }
}
