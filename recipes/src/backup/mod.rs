//! Client-side backup and restore of a subtree, for any live ensemble (real Apache ZooKeeper
//! included), through the public `zkit` API only.
//!
//! - [`export`] / [`export_to_file`] walk a subtree depth-first with a bounded number of
//!   pipelined getData / getACL / getChildren requests in flight and write each node as soon as
//!   it is read: memory is bounded by the window and the child lists on the current path, never
//!   by the tree size.
//! - [`import`] / [`import_file`] stream the file back, parents before children, with a bounded
//!   window of pipelined creates; a dry run reports what would be created, overwritten or skipped;
//!   [`ExistingPolicy`] says what happens to nodes that already exist.
//! - [`verify`] / [`verify_file`] check a file without any server; [`BackupWriter`] and
//!   [`BackupReader`] are the format's encoder and validating streaming decoder.
//!
//! The export reads each node with a multiRead (getData + getChildren) and a getACL, so the
//! source must be ZooKeeper 3.6 or later; the import needs nothing newer than 3.5 (containers;
//! TTL nodes need `zookeeper.extendedTypesEnabled=true` on the target).
//!
//! ```no_run
//! # async fn f() -> zkit_recipes::backup::Result<()> {
//! use zkit_recipes::backup::{self, ExistingPolicy, ExportOptions, ImportOptions, Kind};
//! let src = zkit::Client::connect("zk-a:2181").await.unwrap();
//! let opts = ExportOptions::new()
//!     .declare_kind("/app/queues/*", Kind::Container) // kinds a client cannot see (below)
//!     .progress(|p| eprintln!("{} nodes, {} bytes", p.nodes, p.bytes));
//! backup::export_to_file(&src, "/app", "app.zkb", &opts).await?;
//!
//! let dst = zkit::Client::connect("zk-b:2181").await.unwrap();
//! let plan = backup::import_file(&dst, "app.zkb", &ImportOptions::new().dry_run(true)).await?;
//! println!("would create {}, overwrite {}", plan.created, plan.overwritten);
//! let opts = ImportOptions::new().existing(ExistingPolicy::Overwrite).path_prefix("/restored");
//! backup::import_file(&dst, "app.zkb", &opts).await?;
//! # Ok(()) }
//! ```
//!
//! # What is exported
//! Every node of the subtree with its path, data, ACL and kind. Ephemeral nodes are skipped (they
//! belong to a session), and so is `/zookeeper` (the server's own quota and config nodes) when
//! the client has no chroot. Stat fields (versions, zxids, times) are not restorable through a
//! client and are not written; a restored node starts at version 0. Sequential nodes are restored
//! under their exact names, but the parent's sequence counter (its cversion) is not: a later
//! sequential create under it may be given a name that already exists.
//!
//! The export is *fuzzy*: ZooKeeper offers clients no point-in-time read of a subtree, and the
//! three reads per node are separate requests. Nodes deleted during the walk are counted in
//! [`ExportReport::vanished`] and left out; for an exact copy, stop writers or use the
//! server-side backup.
//!
//! ## Node kinds
//! ZooKeeper hides the kind of containers and TTL nodes from clients: `DataNode.copyStat`
//! reports `ephemeralOwner = 0` for them, exactly as for persistent nodes (the testkit does the
//! same), and a node's TTL can never be read back. So the export takes the kind from the Stat when
//! a server does show the marker, otherwise from the rules declared with
//! [`ExportOptions::declare_kind`] (longest match wins; `"/p"` covers `/p` and everything below it,
//! `"/p/*"` only what is below it), and otherwise records the node as persistent. Kinds are
//! re-created as recorded on import; an existing node keeps its kind.
//!
//! # File format, version 1
//! All integers are big-endian; `str` is a `u32` byte length followed by that many UTF-8 bytes;
//! `bytes` is a `u32` length followed by the bytes. CRC-32 is the IEEE / zlib one (reflected
//! polynomial `0xEDB88320`, initial value and final xor `0xFFFFFFFF`; Python `zlib.crc32`, Java
//! `java.util.zip.CRC32`).
//!
//! ```text
//! file     = magic version header node* trailer           (nothing may follow the trailer)
//! magic    = "ZKITBKUP"                                   8 bytes: 5A 4B 49 54 42 4B 55 50
//! version  = u16                                          1
//! frame    = tag:u8 len:u32 body:[len] crc:u32            crc = CRC-32(tag ‖ len ‖ body)
//! header   = frame with tag 'H' (0x48), body:
//!              root:str         the exported subtree root, absolute ("/" or "/a/b")
//!              created_ms:i64   export start, ms since the Unix epoch
//!              source:str       free text naming the source (no credentials)
//! node     = frame with tag 'N' (0x4E), body:
//!              path:str         relative to root: "" is the root itself, else "/x/y"
//!              kind:u8          0 persistent, 1 container, 2 TTL
//!              ttl_ms:i64       > 0 (at most 2^40-1) for TTL, 0 otherwise
//!              acl_count:u32, then per entry: perms:i32 scheme:str id:str
//!              data:bytes
//! trailer  = frame with tag 'T' (0x54), body:
//!              nodes:u64        number of node frames
//!              data_bytes:u64   sum of the nodes' data lengths
//!              file_crc:u32     CRC-32 of every byte of the file before the trailer's tag byte
//! ```
//!
//! Node frames come in an order where every node follows its parent (a depth-first walk), so a
//! reader can create them one by one. The absolute path of a record is `root + path` (for root
//! `/`: `path`, or `/` for the root record). A frame body larger than [`MAX_FRAME`] is rejected.
//! A reader must reject: a wrong magic, another version, an unknown tag, a frame whose CRC does
//! not match, a body whose fields do not fill it exactly, a missing trailer (truncation), trailer
//! counts or a `file_crc` that differ from what was read, and bytes after the trailer. The
//! checksums catch accidents (bit flips, truncation, a lost or repeated record); they are not a
//! signature.
//!
//! # Verification and partial imports
//! Every frame's CRC is checked before its record is used, so a damaged record is never applied.
//! A truncated file, or one with records lost or repeated, is only detected at the trailer.
//! [`import_file`] therefore reads the whole file once first ([`verify_file`]; for
//! [`ExistingPolicy::Fail`] this pre-pass is a dry run that also looks for existing nodes) and
//! writes nothing unless it is sound. [`import`] reads a stream only once: it fails with a clear
//! error at the bad frame or trailer, and the nodes before it *have been created*. A dry run
//! returns its report only after the trailer checked out. Any failed import can be resumed by
//! running it again with [`ExistingPolicy::Skip`] or [`ExistingPolicy::Overwrite`].

use std::sync::Arc;
use std::time::Duration;

mod export;
mod format;
mod import;
mod reader;

pub use export::{export, export_to_file, ExportOptions, ExportReport};
pub use format::{BackupWriter, Crc32, Header, NodeRecord, Trailer, MAGIC, MAX_FRAME, VERSION};
pub use import::{
    import, import_file, verify, verify_file, Action, ExistingPolicy, ImportOptions, ImportReport,
};
pub use reader::BackupReader;

/// What a backup or restore can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing the backup file failed.
    #[error("backup file I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A ZooKeeper request failed.
    #[error("{op} {path}: {source}")]
    Zk {
        /// The request (`getData`, `create`, ...).
        op: &'static str,
        /// The server-side path as the client names it.
        path: String,
        /// The failure.
        #[source]
        source: zkit::Error,
    },
    /// The input does not start with the backup magic.
    #[error("not a zkit backup file (bad magic)")]
    NotABackup,
    /// The file was written by a format version this code does not read.
    #[error("unsupported backup format version {0}")]
    UnsupportedVersion(u16),
    /// The file ends before its trailer.
    #[error("backup file truncated at byte {offset} (no valid trailer)")]
    Truncated {
        /// Where the input ended.
        offset: u64,
    },
    /// A frame's or the whole file's checksum does not match its content.
    #[error("backup {what} checksum mismatch at byte {offset}: stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch {
        /// Offset of the frame (or of the trailer body for the file checksum).
        offset: u64,
        /// `"frame"` or `"file"`.
        what: &'static str,
        /// The checksum in the file.
        stored: u32,
        /// The checksum of the bytes read.
        computed: u32,
    },
    /// A frame is well formed but its content is not.
    #[error("corrupt backup at byte {offset}: {reason}")]
    Corrupt {
        /// Offset of the frame body.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A node exists and the policy is [`ExistingPolicy::Fail`].
    #[error("node exists: {path}")]
    NodeExists {
        /// The node.
        path: String,
    },
    /// Bad arguments (a relative path, a zero window, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// Whether the backup file itself is bad (truncated, corrupt, foreign, wrong version).
    pub fn is_bad_file(&self) -> bool {
        matches!(
            self,
            Error::NotABackup
                | Error::UnsupportedVersion(_)
                | Error::Truncated { .. }
                | Error::ChecksumMismatch { .. }
                | Error::Corrupt { .. }
        )
    }

    pub(crate) fn zk<'a>(
        op: &'static str,
        path: &'a str,
    ) -> impl FnOnce(zkit::Error) -> Error + 'a {
        move |source| Error::Zk {
            op,
            path: path.to_owned(),
            source,
        }
    }
}

/// Short for `Result<T, backup::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The kind of a persistent node, as recorded in a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// A plain persistent node (also what a node of unknown kind is recorded as).
    Persistent,
    /// A container: the server deletes it once it had children and is empty again.
    Container,
    /// A node with a TTL (the server must enable extended types).
    Ttl(Duration),
}

/// Progress of an export or import, passed to the callback set with
/// [`ExportOptions::progress`] / [`ImportOptions::progress`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// Node records written (export) or processed (import) so far.
    pub nodes: u64,
    /// Bytes of the backup file written or read so far.
    pub bytes: u64,
    /// Whether this is the final report.
    pub done: bool,
}

/// A progress callback (cheap to clone; called from the task running the export or import).
#[derive(Clone)]
pub(crate) struct ProgressFn(pub(crate) Arc<dyn Fn(Progress) + Send + Sync>);

impl std::fmt::Debug for ProgressFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressFn(..)")
    }
}

/// Calls the callback every `every` nodes and once at the end.
#[derive(Clone, Debug)]
pub(crate) struct Reporter {
    f: Option<ProgressFn>,
    every: u64,
}

impl Reporter {
    pub(crate) fn new(f: Option<ProgressFn>, every: u64) -> Reporter {
        Reporter {
            f,
            every: every.max(1),
        }
    }
    pub(crate) fn tick(&self, nodes: u64, bytes: u64) {
        if let Some(f) = &self.f {
            // (`%`, not `is_multiple_of`: the workspace supports Rust 1.80.)
            #[allow(clippy::manual_is_multiple_of)]
            let due = nodes % self.every == 0;
            if due {
                (f.0)(Progress {
                    nodes,
                    bytes,
                    done: false,
                });
            }
        }
    }
    pub(crate) fn done(&self, nodes: u64, bytes: u64) {
        if let Some(f) = &self.f {
            (f.0)(Progress {
                nodes,
                bytes,
                done: true,
            });
        }
    }
}

/// `/` plus `rel` joined under `root` (`rel` is `""` or starts with `/`).
pub(crate) fn absolute(root: &str, rel: &str) -> String {
    match (root, rel) {
        ("/", "") => "/".to_owned(),
        ("/", r) => r.to_owned(),
        (r, rel) => format!("{r}{rel}"),
    }
}

/// Checks an absolute path argument (`/` or `/a/b`, no trailing slash).
pub(crate) fn check_abs(path: &str) -> Result<()> {
    let ok = path == "/"
        || (path.starts_with('/')
            && path[1..]
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".."));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{path:?} is not an absolute znode path"
        )))
    }
}
