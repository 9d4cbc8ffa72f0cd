//! Client-side backup and restore: round trips with every kind and ACLs, dry runs, the
//! existing-node policies, corrupt and truncated files, and a large tree.
//!
//! Tests named `*_on_target` use the harness target (real ZooKeeper with `ZK_TEST_CONNECT`);
//! the others start their own testkit servers because they inspect node kinds server-side or
//! need TTL nodes.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use zkit::{perms, Acl, Client, CreateMode, CreateOptions};
use zkit_recipes::backup::{
    self, Action, Error, ExistingPolicy, ExportOptions, ImportOptions, Kind,
};
use zkit_testkit::{NodeKind, Server};

const AUTH: &str = "backup-user:secret";

/// A temp file path removed on drop.
struct TempFile(std::path::PathBuf);
impl TempFile {
    fn new(tag: &str) -> TempFile {
        static N: AtomicU64 = AtomicU64::new(0);
        TempFile(std::env::temp_dir().join(format!(
            "zkit-backup-{tag}-{}-{}.zkb",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )))
    }
}
impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn server() -> Server {
    Server::builder()
        .extended_types(true)
        .start()
        .await
        .unwrap()
}

async fn authed(connect: &str) -> Client {
    Client::builder(connect)
        .auth("digest", AUTH.as_bytes().to_vec())
        .connect()
        .await
        .unwrap()
}

/// Path (relative to `root`) → (data, ACL), read over the client.
async fn walk(c: &Client, root: &str) -> BTreeMap<String, (Vec<u8>, Vec<Acl>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(p) = stack.pop() {
        let (data, stat) = c.get_data(&p).await.unwrap();
        if stat.ephemeral_owner != 0 {
            continue;
        }
        let (acl, _) = c.get_acl(&p).await.unwrap();
        for ch in c.get_children(&p).await.unwrap() {
            stack.push(format!("{}/{ch}", p.trim_end_matches('/')));
        }
        out.insert(p[root.len()..].to_owned(), (data.to_vec(), acl));
    }
    out
}

/// Path (relative to `root`) → (data, ACL, kind), read inside a testkit server.
type Dump = BTreeMap<String, (Vec<u8>, Vec<Acl>, NodeKind)>;
fn dump(s: &Server, root: &str) -> Dump {
    s.znodes(root)
        .expect("server running")
        .into_iter()
        .filter_map(|(p, n)| {
            let kind = NodeKind::of(n.stat.ephemeral_owner, true);
            let data = n.data.as_ref().map(|d| d.to_vec()).unwrap_or_default();
            (kind != NodeKind::Ephemeral).then(|| (p[root.len()..].to_owned(), (data, n.acl, kind)))
        })
        .collect()
}

async fn create(c: &Client, path: &str, data: &[u8], o: CreateOptions) {
    c.create(path, data, &o)
        .await
        .unwrap_or_else(|e| panic!("create {path}: {e}"));
}

#[tokio::test]
async fn round_trip_keeps_paths_data_acls_and_every_kind() {
    let (src, dst) = (server().await, server().await);
    let a = authed(&src.connect_string()).await;
    let secret = vec![
        Acl::digest(perms::ALL, "backup-user", "secret"),
        Acl::new(perms::READ, "world", "anyone"),
    ];
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    create(&a, "/app", b"root data", CreateOptions::persistent()).await;
    create(
        &a,
        "/app/jobs",
        b"",
        CreateOptions::new(CreateMode::Container),
    )
    .await;
    create(&a, "/app/jobs/j1", b"job", CreateOptions::persistent()).await;
    let ttl = CreateOptions::new(CreateMode::PersistentWithTtl).ttl(Duration::from_secs(3600));
    create(&a, "/app/lease", b"ttl", ttl).await;
    create(
        &a,
        "/app/secret",
        &all_bytes,
        CreateOptions::persistent().acl(secret.clone()),
    )
    .await;
    create(
        &a,
        "/app/secret/inner",
        b"x",
        CreateOptions::persistent().acl(secret),
    )
    .await;
    let ro = CreateOptions::persistent().acl(Acl::read_unsafe());
    create(&a, "/app/readonly", b"ro", ro).await;
    create(&a, "/app/empty", b"", CreateOptions::persistent()).await;
    a.create(
        "/app/seq-",
        b"s",
        &CreateOptions::new(CreateMode::PersistentSequential),
    )
    .await
    .unwrap();
    create(&a, "/app/session", b"gone", CreateOptions::ephemeral()).await;

    let file = TempFile::new("kinds");
    let opts = ExportOptions::new()
        .declare_kind("/app/jobs", Kind::Container)
        .declare_kind("/app/jobs/*", Kind::Persistent)
        .declare_kind("/app/lease", Kind::Ttl(Duration::from_secs(3600)));
    let ex = backup::export_to_file(&a, "/app", &file.0, &opts)
        .await
        .unwrap();
    assert_eq!(
        (ex.nodes, ex.ephemerals_skipped, ex.kinds_declared),
        (9, 1, 3)
    );

    let b = authed(&dst.connect_string()).await;
    let imp = backup::import_file(&b, &file.0, &ImportOptions::new())
        .await
        .unwrap();
    assert_eq!((imp.created, imp.skipped, imp.nodes), (9, 0, 9));
    let (want, got) = (dump(&src, "/app"), dump(&dst, "/app"));
    let mut want_no_eph = want.clone();
    want_no_eph.remove("/session");
    assert_eq!(got, want_no_eph);
    assert_eq!(got["/jobs"].2, NodeKind::Container);
    assert_eq!(got["/lease"].2, NodeKind::Ttl(3_600_000));
    assert_eq!(got["/secret"].0, (0..=255u8).collect::<Vec<_>>());
    // A second import elsewhere (path prefix) gives the same tree again.
    let opts = ImportOptions::new().path_prefix("/copies/one");
    backup::import_file(&b, &file.0, &opts).await.unwrap();
    assert_eq!(dump(&dst, "/copies/one"), want_no_eph);
}

#[tokio::test]
async fn round_trip_of_a_subtree_with_acls_on_target() {
    let t = target!();
    let ns = t.namespace("backup-rt").await;
    let c = ns.client().await;
    c.add_auth("digest", AUTH.as_bytes().to_vec())
        .await
        .unwrap();
    let acl = vec![
        Acl::digest(perms::ALL, "backup-user", "secret"),
        Acl::new(perms::READ, "world", "anyone"),
    ];
    create(&c, "/src", b"top", CreateOptions::persistent()).await;
    for i in 0..20 {
        let p = format!("/src/n{i}");
        create(
            &c,
            &p,
            format!("v{i}").as_bytes(),
            CreateOptions::persistent(),
        )
        .await;
        let o = CreateOptions::persistent().acl(acl.clone());
        create(&c, &format!("{p}/leaf"), &[i as u8; 100], o).await;
    }
    create(&c, "/src/n0/eph", b"", CreateOptions::ephemeral()).await;
    let mut file = Vec::new();
    let r = backup::export(&c, "/src", &mut file, &ExportOptions::new().window(4))
        .await
        .unwrap();
    assert_eq!((r.nodes, r.ephemerals_skipped), (41, 1));
    let opts = ImportOptions::new().path_prefix("/dst").window(3);
    let imp = backup::import(&c, &file[..], &opts).await.unwrap();
    assert_eq!(imp.created, 41);
    assert_eq!(walk(&c, "/dst").await, {
        let mut w = walk(&c, "/src").await;
        w.retain(|k, _| k != "/n0/eph");
        w
    });
}

/// `/src` with a, a/b, c; the target already holds `/dst/a` (other data, read-only ACL).
async fn policy_fixture(c: &Client) -> Vec<u8> {
    create(c, "/src", b"s", CreateOptions::persistent()).await;
    create(c, "/src/a", b"new-a", CreateOptions::persistent()).await;
    create(c, "/src/a/b", b"new-b", CreateOptions::persistent()).await;
    create(c, "/src/c", b"new-c", CreateOptions::persistent()).await;
    create(c, "/dst", b"old", CreateOptions::persistent()).await;
    let ro_open = vec![Acl::new(perms::ALL & !perms::DELETE, "world", "anyone")];
    create(
        c,
        "/dst/a",
        b"old-a",
        CreateOptions::persistent().acl(ro_open),
    )
    .await;
    let mut file = Vec::new();
    backup::export(c, "/src", &mut file, &ExportOptions::new())
        .await
        .unwrap();
    file
}

#[tokio::test]
async fn dry_run_reports_every_action_and_writes_nothing_on_target() {
    let t = target!();
    let ns = t.namespace("backup-dry").await;
    let c = ns.client().await;
    let file = policy_fixture(&c).await;
    let before = walk(&c, "/dst").await;
    let at = |p: ExistingPolicy| {
        ImportOptions::new()
            .path_prefix("/dst")
            .existing(p)
            .dry_run(true)
    };
    let r = backup::import(&c, &file[..], &at(ExistingPolicy::Skip))
        .await
        .unwrap();
    assert!(r.dry_run);
    assert_eq!(
        (r.created, r.skipped, r.overwritten, r.conflicts),
        (2, 2, 0, 0)
    );
    assert!(r.samples.contains(&(Action::Create, "/dst/a/b".into())));
    assert!(r.samples.contains(&(Action::Skip, "/dst/a".into())));
    let r = backup::import(&c, &file[..], &at(ExistingPolicy::Overwrite))
        .await
        .unwrap();
    assert_eq!((r.created, r.overwritten), (2, 2));
    let r = backup::import(&c, &file[..], &at(ExistingPolicy::Fail))
        .await
        .unwrap();
    assert_eq!((r.created, r.conflicts), (2, 2));
    assert_eq!(walk(&c, "/dst").await, before);
    // A dry run of a damaged file gives no report at all.
    let mut bad = file.clone();
    bad.truncate(bad.len() - 1);
    let e = backup::import(&c, &bad[..], &at(ExistingPolicy::Skip))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Truncated { .. }), "{e}");
}

#[tokio::test]
async fn existing_skip_keeps_nodes_and_imports_their_children_on_target() {
    let t = target!();
    let c = t.namespace("backup-skip").await.client().await;
    let file = policy_fixture(&c).await;
    let opts = ImportOptions::new().path_prefix("/dst");
    let r = backup::import(&c, &file[..], &opts).await.unwrap();
    assert_eq!((r.created, r.skipped), (2, 2));
    assert_eq!(&c.get_data("/dst").await.unwrap().0[..], b"old");
    assert_eq!(&c.get_data("/dst/a").await.unwrap().0[..], b"old-a");
    assert_eq!(&c.get_data("/dst/a/b").await.unwrap().0[..], b"new-b");
    assert_eq!(
        c.get_acl("/dst/a").await.unwrap().0[0].perms,
        perms::ALL & !perms::DELETE
    );
}

#[tokio::test]
async fn existing_overwrite_replaces_data_and_acl_on_target() {
    let t = target!();
    let c = t.namespace("backup-over").await.client().await;
    let file = policy_fixture(&c).await;
    let opts = ImportOptions::new()
        .path_prefix("/dst")
        .existing(ExistingPolicy::Overwrite);
    let r = backup::import(&c, &file[..], &opts).await.unwrap();
    assert_eq!((r.created, r.overwritten), (2, 2));
    assert_eq!(walk(&c, "/dst").await, walk(&c, "/src").await);
}

#[tokio::test]
async fn existing_fail_refuses_before_writing_anything_on_target() {
    let t = target!();
    let c = t.namespace("backup-fail").await.client().await;
    let bytes = policy_fixture(&c).await;
    let file = TempFile::new("fail");
    std::fs::write(&file.0, &bytes).unwrap();
    let before = walk(&c, "/dst").await;
    let opts = ImportOptions::new()
        .path_prefix("/dst")
        .existing(ExistingPolicy::Fail);
    let e = backup::import_file(&c, &file.0, &opts).await.unwrap_err();
    assert!(
        matches!(&e, Error::NodeExists { path } if path == "/dst"),
        "{e}"
    );
    assert_eq!(walk(&c, "/dst").await, before);
    // Into a fresh place, Fail imports everything.
    let opts = ImportOptions::new()
        .path_prefix("/fresh")
        .existing(ExistingPolicy::Fail);
    let r = backup::import_file(&c, &file.0, &opts).await.unwrap();
    assert_eq!(r.created, 4);
}

#[tokio::test]
async fn every_flipped_byte_and_every_truncation_is_rejected() {
    let mut file = Vec::new();
    let mut w = backup::BackupWriter::start(&mut file, "/app", "unit")
        .await
        .unwrap();
    for (i, p) in ["", "/a", "/a/b"].into_iter().enumerate() {
        let rec = backup::NodeRecord::new(
            p,
            Kind::Persistent,
            Acl::open_unsafe(),
            vec![i as u8; 5].into(),
        );
        w.node(&rec).await.unwrap();
    }
    let rec = backup::NodeRecord::new(
        "/t",
        Kind::Ttl(Duration::from_secs(5)),
        Acl::read_unsafe(),
        "t".into(),
    );
    w.node(&rec).await.unwrap();
    w.finish().await.unwrap();
    let (_, trailer) = backup::verify(&file[..]).await.unwrap();
    assert_eq!(trailer.nodes, 4);
    for i in 0..file.len() {
        for bit in [0x01u8, 0x80] {
            let mut bad = file.clone();
            bad[i] ^= bit;
            let e = backup::verify(&bad[..])
                .await
                .expect_err(&format!("flip at {i} accepted"));
            assert!(e.is_bad_file(), "byte {i}: {e}");
        }
    }
    for len in 0..file.len() {
        let e = backup::verify(&file[..len])
            .await
            .expect_err(&format!("cut at {len} accepted"));
        assert!(e.is_bad_file(), "cut at {len}: {e}");
    }
    let mut longer = file.clone();
    longer.push(0);
    assert!(backup::verify(&longer[..]).await.is_err());
}

#[tokio::test]
async fn corrupt_or_truncated_file_imports_nothing_on_target() {
    let t = target!();
    let c = t.namespace("backup-corrupt").await.client().await;
    create(&c, "/src", b"s", CreateOptions::persistent()).await;
    for i in 0..50 {
        create(
            &c,
            &format!("/src/n{i}"),
            b"data",
            CreateOptions::persistent(),
        )
        .await;
    }
    let mut good = Vec::new();
    backup::export(&c, "/src", &mut good, &ExportOptions::new())
        .await
        .unwrap();
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x10;
    let truncated = good[..good.len() - 10].to_vec();
    for (name, bytes) in [("flipped", flipped), ("truncated", truncated)] {
        let file = TempFile::new(name);
        std::fs::write(&file.0, &bytes).unwrap();
        let opts = ImportOptions::new().path_prefix(format!("/{name}"));
        let e = backup::import_file(&c, &file.0, &opts).await.unwrap_err();
        assert!(e.is_bad_file(), "{name}: {e}");
        assert!(
            c.exists(&format!("/{name}")).await.unwrap().is_none(),
            "{name}"
        );
    }
    // A one-pass streaming import stops at the damage with a clear error (nodes before it stay).
    let e = backup::import(
        &c,
        &good[..good.len() - 10],
        &ImportOptions::new().path_prefix("/stream"),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, Error::Truncated { .. }), "{e}");
}

/// Builds `/big` with `dirs` × `per_dir` leaves (pipelined creates, a window of 1 000), some
/// leaves with a read-only ACL. Returns the node count.
async fn build_tree(c: &Client, dirs: usize, per_dir: usize) -> usize {
    create(c, "/big", b"big", CreateOptions::persistent()).await;
    let mut paths = Vec::new();
    for d in 0..dirs {
        paths.push((format!("/big/d{d:03}"), false));
        for l in 0..per_dir {
            paths.push((format!("/big/d{d:03}/n{l:05}"), l % 97 == 0));
        }
    }
    let n = paths.len() + 1;
    stream::iter(paths)
        .map(|(p, ro)| {
            let o = if ro {
                CreateOptions::persistent().acl(Acl::read_unsafe())
            } else {
                CreateOptions::persistent()
            };
            let f = c.create(&p, p.clone().into_bytes(), &o);
            async move { f.await.unwrap_or_else(|e| panic!("{p}: {e}")) }
        })
        .buffered(1000)
        .for_each(|_| async {})
        .await;
    n
}

async fn large_round_trip(dirs: usize, per_dir: usize) {
    let (src, dst) = (server().await, server().await);
    let a = Client::connect(&src.connect_string()).await.unwrap();
    let t = Instant::now();
    let n = build_tree(&a, dirs, per_dir).await;
    eprintln!("built {n} nodes in {:?}", t.elapsed());
    let file = TempFile::new("large");
    let seen = Arc::new(AtomicU64::new(0));
    let s2 = seen.clone();
    let opts = ExportOptions::new()
        .progress_every(10_000)
        .progress(move |p| {
            assert!(p.nodes >= s2.load(Ordering::Relaxed));
            s2.store(p.nodes, Ordering::Relaxed);
        });
    let t = Instant::now();
    let ex = backup::export_to_file(&a, "/big", &file.0, &opts)
        .await
        .unwrap();
    eprintln!(
        "exported {} nodes, {} bytes in {:?}",
        ex.nodes,
        ex.file_bytes,
        t.elapsed()
    );
    assert_eq!(ex.nodes as usize, n);
    assert_eq!(seen.load(Ordering::Relaxed), n as u64);
    let b = Client::connect(&dst.connect_string()).await.unwrap();
    let t = Instant::now();
    let imp = backup::import_file(&b, &file.0, &ImportOptions::new().window(1000))
        .await
        .unwrap();
    eprintln!("imported {} nodes in {:?}", imp.created, t.elapsed());
    assert_eq!(imp.created as usize, n);
    let (want, got) = (dump(&src, "/big"), dump(&dst, "/big"));
    assert_eq!(got.len(), n);
    assert!(got == want, "trees differ");
}

#[tokio::test]
async fn hundred_thousand_node_tree_round_trips_client_side() {
    large_round_trip(100, 999).await;
}

/// With `ZK_TEST_CONNECT` this is the real-ZooKeeper check: a tree of every kind the server
/// supports is exported from it and imported into a testkit, then exported from the testkit and
/// imported back into it; both copies compare equal (paths, data, ACLs; kinds on the testkit).
#[tokio::test]
async fn target_and_a_testkit_round_trip_both_ways_on_target() {
    let t = target!();
    let ns = t.namespace("backup-cross").await;
    let zk = ns.client().await;
    zk.add_auth("digest", AUTH.as_bytes().to_vec())
        .await
        .unwrap();
    let acl = vec![
        Acl::digest(perms::ALL, "backup-user", "secret"),
        Acl::new(perms::READ, "world", "anyone"),
    ];
    create(&zk, "/src", b"top", CreateOptions::persistent()).await;
    create(
        &zk,
        "/src/jobs",
        b"",
        CreateOptions::new(CreateMode::Container),
    )
    .await;
    for i in 0..200 {
        let data: Vec<u8> = (0..i).map(|b| b as u8).collect();
        create(
            &zk,
            &format!("/src/jobs/j{i}"),
            &data,
            CreateOptions::persistent(),
        )
        .await;
    }
    create(
        &zk,
        "/src/acl",
        b"a",
        CreateOptions::persistent().acl(acl.clone()),
    )
    .await;
    create(
        &zk,
        "/src/acl/inner",
        b"b",
        CreateOptions::persistent().acl(acl),
    )
    .await;
    create(&zk, "/src/eph", b"", CreateOptions::ephemeral()).await;
    let ttl = CreateOptions::new(CreateMode::PersistentWithTtl).ttl(Duration::from_secs(3600));
    let has_ttl = zk.create("/src/lease", b"t", &ttl).await.is_ok();
    eprintln!("TTL nodes supported by the target: {has_ttl}");
    let opts = ExportOptions::new()
        .declare_kind("/src/jobs", Kind::Container)
        .declare_kind("/src/jobs/*", Kind::Persistent)
        .declare_kind("/src/lease", Kind::Ttl(Duration::from_secs(3600)));
    let mut file = Vec::new();
    let ex = backup::export(&zk, "/src", &mut file, &opts).await.unwrap();
    assert_eq!(ex.nodes, 204 + u64::from(has_ttl));
    assert_eq!(ex.ephemerals_skipped, 1);

    let kit = server().await;
    let k = authed(&kit.connect_string()).await;
    let into = ImportOptions::new().path_prefix("/from-target");
    backup::import(&k, &file[..], &into).await.unwrap();
    let want = walk(&zk, "/src").await;
    assert_eq!(walk(&k, "/from-target").await, want);
    let kinds = dump(&kit, "/from-target");
    assert_eq!(kinds["/jobs"].2, NodeKind::Container);
    if has_ttl {
        assert_eq!(kinds["/lease"].2, NodeKind::Ttl(3_600_000));
    }

    let mut back = Vec::new();
    let opts = opts_for_copy(has_ttl);
    backup::export(&k, "/from-target", &mut back, &opts)
        .await
        .unwrap();
    let r = backup::import(&zk, &back[..], &ImportOptions::new().path_prefix("/back"))
        .await
        .unwrap();
    assert_eq!(r.created, 204 + u64::from(has_ttl));
    assert_eq!(walk(&zk, "/back").await, want);
}

/// The kind rules for the testkit copy (`/from-target`).
fn opts_for_copy(has_ttl: bool) -> ExportOptions {
    let o = ExportOptions::new()
        .declare_kind("/from-target/jobs", Kind::Container)
        .declare_kind("/from-target/jobs/*", Kind::Persistent);
    if has_ttl {
        o.declare_kind("/from-target/lease", Kind::Ttl(Duration::from_secs(3600)))
    } else {
        o
    }
}
