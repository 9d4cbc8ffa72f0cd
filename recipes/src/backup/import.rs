//! Import: a streaming read with a bounded window of pipelined creates, a dry run, a policy for
//! nodes that exist; and verification without a server.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesOrdered, StreamExt};
use tokio::io::{AsyncRead, BufReader};
use zkit::{Client, CreateMode, CreateOptions};

use super::{
    absolute, check_abs, BackupReader, Error, Header, Kind, NodeRecord, Progress, Reporter, Result,
    Trailer,
};

/// What to do with a node of the backup that already exists in the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ExistingPolicy {
    /// Leave it as it is (its children are still imported). The default.
    #[default]
    Skip,
    /// Replace its data and ACL (its kind stays what it is).
    Overwrite,
    /// Stop with [`Error::NodeExists`].
    Fail,
}

impl std::str::FromStr for ExistingPolicy {
    type Err = Error;
    /// `skip`, `overwrite` or `fail`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "skip" => Ok(ExistingPolicy::Skip),
            "overwrite" => Ok(ExistingPolicy::Overwrite),
            "fail" => Ok(ExistingPolicy::Fail),
            _ => Err(Error::InvalidArgument(format!(
                "existing-node policy {s:?}: expected skip, overwrite or fail"
            ))),
        }
    }
}

/// What happened (or, in a dry run, would happen) to one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// Created.
    Create,
    /// Existed; data and ACL replaced.
    Overwrite,
    /// Existed (or is a server node under `/zookeeper`); left alone.
    Skip,
    /// Existed, and the policy is [`ExistingPolicy::Fail`] (dry run only; a real import stops).
    Conflict,
}

/// How to import.
///
/// ```
/// use zkit_recipes::backup::{ExistingPolicy, ImportOptions};
/// let o = ImportOptions::new()
///     .existing(ExistingPolicy::Overwrite)
///     .path_prefix("/restored/app")
///     .window(512)
///     .dry_run(true);
/// # let _ = o;
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ImportOptions {
    /// Creates (or, in a dry run, existence checks) in flight at once. Default 256.
    pub window: usize,
    /// What to do with existing nodes.
    pub existing: ExistingPolicy,
    /// Report what would happen, write nothing.
    pub dry_run: bool,
    /// Where the backup's root goes (default: where it came from, [`Header::root`]).
    pub path_prefix: Option<String>,
    /// Call the progress callback every this many nodes (default 1000).
    pub progress_every: u64,
    /// How many paths per [`Action`] the report lists (default 20).
    pub samples: usize,
    reporter: Option<super::ProgressFn>,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            window: 256,
            existing: ExistingPolicy::Skip,
            dry_run: false,
            path_prefix: None,
            progress_every: 1000,
            samples: 20,
            reporter: None,
        }
    }
}

impl ImportOptions {
    /// Defaults: window 256, [`ExistingPolicy::Skip`], not a dry run, original root.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the window (at least 1).
    pub fn window(mut self, n: usize) -> Self {
        self.window = n.max(1);
        self
    }
    /// Sets the existing-node policy.
    pub fn existing(mut self, p: ExistingPolicy) -> Self {
        self.existing = p;
        self
    }
    /// Makes this a dry run.
    pub fn dry_run(mut self, yes: bool) -> Self {
        self.dry_run = yes;
        self
    }
    /// Imports the backup's root at `path` instead of its original place.
    pub fn path_prefix(mut self, path: impl Into<String>) -> Self {
        self.path_prefix = Some(path.into());
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
}

/// What an import did, or (dry run) would do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportReport {
    /// Whether nothing was written.
    pub dry_run: bool,
    /// Where the backup's root went.
    pub target_root: String,
    /// Records processed.
    pub nodes: u64,
    /// Nodes created.
    pub created: u64,
    /// Existing nodes whose data and ACL were replaced.
    pub overwritten: u64,
    /// Existing nodes left alone.
    pub skipped: u64,
    /// Existing nodes under [`ExistingPolicy::Fail`] (dry run).
    pub conflicts: u64,
    /// The first [`ImportOptions::samples`] target paths of each action, in file order.
    pub samples: Vec<(Action, String)>,
    /// Bytes of the backup read.
    pub file_bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl ImportReport {
    fn count(&mut self, a: Action, path: String, limit: usize) {
        let n = match a {
            Action::Create => &mut self.created,
            Action::Overwrite => &mut self.overwritten,
            Action::Skip => &mut self.skipped,
            Action::Conflict => &mut self.conflicts,
        };
        *n += 1;
        if *n <= limit as u64 {
            self.samples.push((a, path));
        }
        self.nodes += 1;
    }
}

type Outcome = Pin<Box<dyn Future<Output = Result<(Action, String)>> + Send>>;

fn done(a: Action, path: String) -> Outcome {
    Box::pin(std::future::ready(Ok((a, path))))
}

fn create_options(rec: &NodeRecord) -> CreateOptions {
    let o = match rec.kind {
        Kind::Container => CreateOptions::new(CreateMode::Container),
        Kind::Ttl(t) => CreateOptions::new(CreateMode::PersistentWithTtl).ttl(t),
        _ => CreateOptions::persistent(),
    };
    o.acl(rec.acl.clone())
}

/// Queues the replacement of data and ACL now; the future reports it.
fn overwrite(client: &Client, path: String, rec: &NodeRecord) -> Outcome {
    let d = client.set_data(&path, &rec.data, None);
    let a = client.set_acl(&path, rec.acl.clone(), None);
    Box::pin(async move {
        d.await.map_err(Error::zk("setData", &path))?;
        a.await.map_err(Error::zk("setACL", &path))?;
        Ok((Action::Overwrite, path))
    })
}

/// Queues the requests for one record now (so the server sees them in file order: a parent's
/// create always precedes its children's) and returns a future of the outcome.
fn apply(client: &Client, rec: NodeRecord, path: String, opts: &ImportOptions) -> Outcome {
    let policy = opts.existing;
    let on_existing = match policy {
        ExistingPolicy::Skip => Action::Skip,
        ExistingPolicy::Overwrite => Action::Overwrite,
        ExistingPolicy::Fail => Action::Conflict,
    };
    if client.chroot_path().is_none() && (path == "/zookeeper" || path.starts_with("/zookeeper/")) {
        return done(Action::Skip, path);
    }
    // `/` always exists and can be neither created nor deleted: never a conflict.
    if path == "/" {
        return match (policy, opts.dry_run) {
            (ExistingPolicy::Overwrite, false) => overwrite(client, path, &rec),
            (ExistingPolicy::Overwrite, true) => done(Action::Overwrite, path),
            _ => done(Action::Skip, path),
        };
    }
    if opts.dry_run {
        let ex = client.exists(&path);
        return Box::pin(async move {
            match ex.await.map_err(Error::zk("exists", &path))? {
                None => Ok((Action::Create, path)),
                Some(_) => Ok((on_existing, path)),
            }
        });
    }
    let create = client.create(&path, &rec.data, &create_options(&rec));
    let client = client.clone();
    Box::pin(async move {
        match create.await {
            Ok(_) => Ok((Action::Create, path)),
            Err(zkit::Error::NodeExists) => match policy {
                ExistingPolicy::Overwrite => overwrite(&client, path, &rec).await,
                ExistingPolicy::Fail => Err(Error::NodeExists { path }),
                _ => Ok((Action::Skip, path)),
            },
            Err(e) => Err(Error::zk("create", &path)(e)),
        }
    })
}

/// Imports a backup read from `input` in one streaming pass.
///
/// Records are applied as they are read, each after its frame checksum checked out; a bad
/// frame or trailer stops the import with an error and the nodes before it remain created (see
/// the [module docs](super#verification-and-partial-imports); [`import_file`] checks first). A
/// dry run writes nothing and returns its report only once the whole input verified. Missing
/// ancestors of the target root are created as plain persistent nodes with an open ACL.
///
/// ```no_run
/// # async fn f() -> zkit_recipes::backup::Result<()> {
/// use zkit_recipes::backup::{import, ImportOptions};
/// let zk = zkit::Client::connect("127.0.0.1:2181").await.unwrap();
/// let file = tokio::fs::File::open("/tmp/app.zkb").await?;
/// let report = import(&zk, file, &ImportOptions::new().path_prefix("/copy")).await?;
/// println!("created {}, skipped {}", report.created, report.skipped);
/// # Ok(()) }
/// ```
pub async fn import<R: AsyncRead + Unpin>(
    client: &Client,
    input: R,
    opts: &ImportOptions,
) -> Result<ImportReport> {
    let started = Instant::now();
    let progress = Reporter::new(opts.reporter.clone(), opts.progress_every);
    let mut r = BackupReader::open(BufReader::with_capacity(64 << 10, input)).await?;
    let root = opts
        .path_prefix
        .clone()
        .unwrap_or_else(|| r.header().root.clone());
    check_abs(&root)?;
    if !opts.dry_run {
        let parent = zkit::path::parent(&root);
        if parent != "/" {
            crate::znode::ensure_path(
                client,
                parent,
                CreateMode::Persistent,
                &crate::znode::default_retry(),
            )
            .await
            .map_err(|e| match e {
                crate::Error::Zk(z) => Error::zk("create", parent)(z),
                other => Error::InvalidArgument(other.to_string()),
            })?;
        }
    }
    let mut report = ImportReport {
        dry_run: opts.dry_run,
        target_root: root.clone(),
        ..ImportReport::default()
    };
    let mut inflight: FuturesOrdered<Outcome> = FuturesOrdered::new();
    let mut input_done = false;
    loop {
        while !input_done && inflight.len() < opts.window.max(1) {
            match r.next().await? {
                Some(rec) => {
                    let path = absolute(&root, &rec.path);
                    inflight.push_back(apply(client, rec, path, opts));
                }
                None => input_done = true,
            }
        }
        let Some(outcome) = inflight.next().await else {
            break;
        };
        let (action, path) = outcome?;
        report.count(action, path, opts.samples);
        progress.tick(report.nodes, r.bytes_read());
    }
    report.file_bytes = r.bytes_read();
    report.elapsed = started.elapsed();
    progress.done(report.nodes, report.file_bytes);
    tracing::info!(
        root = %report.target_root,
        dry_run = report.dry_run,
        created = report.created,
        overwritten = report.overwritten,
        skipped = report.skipped,
        conflicts = report.conflicts,
        "backup imported"
    );
    Ok(report)
}

/// Imports a backup file, checking it completely before writing anything: a first pass verifies
/// every checksum and the trailer (with [`ExistingPolicy::Fail`] it is a dry run that also fails
/// with [`Error::NodeExists`] if any node exists), the second pass imports. A dry run reads the
/// file once.
///
/// ```no_run
/// # async fn f() -> zkit_recipes::backup::Result<()> {
/// use zkit_recipes::backup::{import_file, ExistingPolicy, ImportOptions};
/// let zk = zkit::Client::connect("127.0.0.1:2181").await.unwrap();
/// let opts = ImportOptions::new().existing(ExistingPolicy::Fail);
/// import_file(&zk, "/tmp/app.zkb", &opts).await?;
/// # Ok(()) }
/// ```
pub async fn import_file(
    client: &Client,
    path: impl AsRef<Path>,
    opts: &ImportOptions,
) -> Result<ImportReport> {
    let path = path.as_ref();
    if !opts.dry_run {
        if opts.existing == ExistingPolicy::Fail {
            let mut plan_opts = opts.clone().dry_run(true);
            plan_opts.reporter = None;
            plan_opts.samples = plan_opts.samples.max(1);
            let file = tokio::fs::File::open(path).await?;
            let plan = import(client, file, &plan_opts).await?;
            if plan.conflicts > 0 {
                let first = plan
                    .samples
                    .into_iter()
                    .find(|(a, _)| *a == Action::Conflict);
                let path = first.map(|(_, p)| p).unwrap_or(plan.target_root);
                return Err(Error::NodeExists { path });
            }
        } else {
            verify_file(path).await?;
        }
    }
    import(client, tokio::fs::File::open(path).await?, opts).await
}

/// Reads a whole backup and checks every frame, the trailer's counts and the file checksum;
/// returns the header and the trailer.
///
/// ```
/// # async fn f() -> zkit_recipes::backup::Result<()> {
/// use zkit_recipes::backup::{verify, BackupWriter};
/// let mut file = Vec::new();
/// BackupWriter::start(&mut file, "/", "").await?.finish().await?;
/// let (header, trailer) = verify(&file[..]).await?;
/// assert_eq!((header.root.as_str(), trailer.nodes), ("/", 0));
/// file.pop();
/// assert!(verify(&file[..]).await.unwrap_err().is_bad_file());
/// # Ok(()) }
/// ```
pub async fn verify<R: AsyncRead + Unpin>(input: R) -> Result<(Header, Trailer)> {
    let mut r = BackupReader::open(BufReader::with_capacity(64 << 10, input)).await?;
    while r.next().await?.is_some() {}
    let t = r.trailer().ok_or(Error::Truncated {
        offset: r.bytes_read(),
    })?;
    Ok((r.header().clone(), t))
}

/// [`verify`] for a file.
///
/// ```no_run
/// # async fn f() -> zkit_recipes::backup::Result<()> {
/// let (header, trailer) = zkit_recipes::backup::verify_file("/tmp/app.zkb").await?;
/// println!("{}: {} nodes", header.root, trailer.nodes);
/// # Ok(()) }
/// ```
pub async fn verify_file(path: impl AsRef<Path>) -> Result<(Header, Trailer)> {
    verify(tokio::fs::File::open(path).await?).await
}
