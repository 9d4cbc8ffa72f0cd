//! The zkit tour: a client session against an embedded 3-server testkit ensemble (or
//! `--connect`), covering creates, watches, transactions, persistent watches, sessions and
//! faults, a failover (the leader is killed while a lock is held and a config is watched), then
//! the recipes: a lock hand-off, a leader election and a config reload.
//!
//! ```sh
//! cargo run -p zkit-examples --bin tour
//! ```

use std::time::{Duration, Instant};

use zkit::{Client, CreateMode, CreateOptions, EventType, Op, SessionState, WatchItem};
use zkit_examples::{init_tracing, section, step, Target};

#[tokio::main]
async fn main() -> zkit_examples::demos::DemoResult {
    init_tracing();
    println!("zkit tour");
    let mut target = Target::from_args().await;
    let root = Client::connect(&target.connect).await?;
    let ns = format!("/tour-{:08x}", fastrand_u32());
    root.create(&ns, b"", &CreateOptions::persistent()).await?;

    section("a session");
    let t = Instant::now();
    let zk = Client::builder(&format!("{}{}", target.connect, ns))
        .session_timeout(Duration::from_secs(6))
        .connect()
        .await?;
    step(&format!(
        "connected in {:.2} ms: session {:#x}, negotiated timeout {:?}, chroot {}",
        ms(t),
        zk.session_id(),
        zk.negotiated_timeout(),
        ns
    ));

    section("nodes and Stats");
    let (p, stat) = zk
        .create("/config", b"v1", &CreateOptions::persistent())
        .await?;
    step(&format!(
        "created {p}: version {}, czxid {:#x}",
        stat.version, stat.czxid
    ));
    let (seq, _) = zk
        .create(
            "/config/item-",
            b"",
            &CreateOptions::new(CreateMode::PersistentSequential),
        )
        .await?;
    step(&format!("sequential create gave {seq}"));
    let (eph, s) = zk
        .create("/alive", b"", &CreateOptions::ephemeral())
        .await?;
    step(&format!(
        "ephemeral {eph} owned by {:#x}",
        s.ephemeral_owner
    ));

    section("one-shot watches");
    let (data, stat, watch) = zk.get_data_and_watch("/config").await?;
    step(&format!(
        "read /config = {:?} (version {})",
        String::from_utf8_lossy(&data),
        stat.version
    ));
    let writer = Client::connect(&format!("{}{}", target.connect, ns)).await?;
    writer
        .set_data("/config", b"v2", Some(stat.version))
        .await?;
    let ev = watch.await?;
    step(&format!(
        "another client wrote; our watch fired: {:?} on {}",
        ev.event_type, ev.path
    ));

    section("persistent recursive watches");
    let mut events = zk
        .add_watch("/config", zkit::AddWatchMode::PersistentRecursive)
        .await?;
    writer.set_data(&seq, b"x", None).await?;
    writer
        .create("/config/new", b"", &CreateOptions::persistent())
        .await?;
    let mut seen = 0;
    while seen < 2 {
        match events.next().await.expect("stream open")? {
            WatchItem::Event(ev) => {
                seen += 1;
                step(&format!("{:?} {}", ev.event_type, ev.path));
            }
            // After a reconnect: events may have been missed, re-read what matters.
            _ => step("resync: re-reading /config"),
        }
    }
    drop(events);

    section("transactions");
    let t = Instant::now();
    let r = zk
        .multi(vec![
            Op::check("/config", 1),
            Op::create("/config/a", b"", &CreateOptions::persistent()),
            Op::set_data("/config", b"v3", Some(1)),
        ])
        .await?;
    step(&format!(
        "multi of 3 ops committed atomically in {:.2} ms: {} results",
        ms(t),
        r.len()
    ));
    match zk
        .multi(vec![
            Op::create("/config/b", b"", &CreateOptions::persistent()),
            Op::check("/config", 0),
        ])
        .await
    {
        Err(e) => step(&format!(
            "a multi with a stale check aborted as a whole: {e}"
        )),
        Ok(_) => step("unexpected: stale multi committed"),
    }
    step(&format!(
        "/config/b exists after the abort? {}",
        zk.exists("/config/b").await?.is_some()
    ));

    section("pipelining");
    let t = Instant::now();
    let n = 10_000;
    let futs: Vec<_> = (0..n).map(|_| zk.get_data("/config")).collect();
    let results = futures::future::join_all(futs).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    step(&format!(
        "{ok}/{n} pipelined getData on one connection in {:.1} ms ({:.0} ops/s)",
        ms(t),
        n as f64 / t.elapsed().as_secs_f64()
    ));

    section("sessions and faults");
    let mut states = zk.state_changes();
    let (_, exists_watch) = writer.exists_and_watch("/alive").await?;
    if let Some(server) = &target.embedded {
        let t = Instant::now();
        server.expire_session(zk.session_id());
        while let Some(s) = states.next().await {
            step(&format!("state -> {s:?}"));
            if s == SessionState::Expired {
                break;
            }
        }
        let ev = exists_watch.await?;
        step(&format!(
            "the server expired our session: {:?} {} seen by the other client ({:.1} ms)",
            ev.event_type,
            ev.path,
            ms(t)
        ));
        // The client re-creates its session (the default): Connected again, with a new id.
        while let Some(s) = states.next().await {
            step(&format!("state -> {s:?}"));
            if s.is_connected() {
                break;
            }
        }
        step(&format!(
            "a new session {:#x} replaced it; requests work again: {}",
            zk.session_id(),
            zk.get_data("/config").await.is_ok()
        ));
    } else {
        zk.close().await?;
        let ev = exists_watch.await?;
        assert_eq!(ev.event_type, EventType::NodeDeleted);
        step("closed our session: its ephemeral went away");
    }
    writer.close().await?;
    root.close().await?;

    if let Some(ens) = target.embedded.as_mut() {
        let connect = ens.connect_string();
        let ns = format!("/tour-failover-{:08x}", fastrand_u32());
        failover(ens, &connect, &ns).await?;
    }

    section("recipes: a lock hand-off");
    let t = Instant::now();
    let connect = target.namespace("tour-lock").await?;
    zkit_examples::demos::lock(&connect, 4, 10).await?;
    step(&format!("lock section took {:.0} ms", ms(t)));

    section("recipes: a leader election");
    let t = Instant::now();
    let connect = target.namespace("tour-leader").await?;
    zkit_examples::demos::leader(&connect).await?;
    step(&format!("election section took {:.0} ms", ms(t)));

    section("recipes: a config reload");
    let t = Instant::now();
    let connect = target.namespace("tour-config").await?;
    zkit_examples::demos::config(&connect).await?;
    step(&format!("config section took {:.0} ms", ms(t)));
    println!("\ntour done.");
    Ok(())
}

/// Kills the ensemble's leader while one client holds a lock and another watches a config,
/// and shows what each sees; then the old leader comes back and every server agrees.
async fn failover(
    ens: &mut zkit_testkit::Ensemble,
    connect: &str,
    ns: &str,
) -> zkit_examples::demos::DemoResult {
    use zkit_recipes::config::ConfigWatch;
    use zkit_recipes::lock::{Mutex, MutexOptions};

    section("failover: the leader dies while a lock is held and a config is watched");
    let root = Client::connect(connect).await?;
    root.create(ns, b"", &CreateOptions::persistent()).await?;
    root.close().await?;
    let chrooted = format!("{connect}{ns}");
    let session = |c: &str| {
        Client::builder(c)
            .session_timeout(Duration::from_secs(10))
            .connect()
    };
    let holder = session(&chrooted).await?;
    let watcher = session(&chrooted).await?;
    let operator = session(&chrooted).await?;
    let mutex = Mutex::new(&holder, "/lock", MutexOptions::default().data("holder"));
    let guard = mutex.acquire().await?;
    operator
        .create("/config", b"workers=8", &CreateOptions::persistent())
        .await?;
    let cfg = ConfigWatch::start(
        &watcher,
        "/config",
        zkit_recipes::cache::CacheOptions::default(),
        |b: Option<&[u8]>| {
            Ok::<_, String>(String::from_utf8_lossy(b.unwrap_or_default()).into_owned())
        },
    )
    .await?;
    let mut seen = cfg.watched();
    let leader = ens.wait_for_leader().await?;
    let where_is = |c: &Client| {
        c.connected_server()
            .map_or("nowhere".to_string(), |a| a.to_string())
    };
    step(&format!(
        "holder (session {:#x}, on {}) holds /lock; watcher (on {}) sees {:?}; server {leader} \
         ({}) leads",
        holder.session_id(),
        where_is(&holder),
        where_is(&watcher),
        *seen.borrow(),
        ens.server(leader).addr()
    ));
    let mut holder_states = holder.state_changes();
    let t = Instant::now();
    ens.kill(leader).await;
    let new_leader = ens.wait_for_leader().await?;
    step(&format!(
        "killed server {leader}: server {new_leader} leads after {:.1} ms (meanwhile every \
         server dropped its clients, as ZooKeeper's do while they elect)",
        ms(t)
    ));
    // The operator may have been on the dead server: its first write waits for the reconnect.
    loop {
        match operator.set_data("/config", b"workers=16", None).await {
            Ok(_) => break,
            Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(5)).await,
            Err(e) => return Err(e.into()),
        }
    }
    step(&format!(
        "operator wrote workers=16 {:.1} ms after the kill (from {})",
        ms(t),
        where_is(&operator)
    ));
    while *seen.borrow_and_update() != "workers=16" {
        seen.changed().await?;
    }
    step(&format!(
        "watcher (now on {}) sees {:?}: its watch moved with its session",
        where_is(&watcher),
        *seen.borrow()
    ));
    // The holder may still be reconnecting (its server may have been the one killed): a read
    // is idempotent, so the retry policy retries it across the connection loss.
    let retry = zkit::RetryPolicy::default();
    retry
        .run(zkit::OpClass::Read, || holder.exists("/"))
        .await?;
    let mut moves = Vec::new();
    while let Ok(Some(s)) =
        tokio::time::timeout(Duration::from_millis(1), holder_states.next()).await
    {
        moves.push(format!("{s:?}"));
    }
    let node_owner = retry
        .run(zkit::OpClass::Read, || holder.exists(guard.node()))
        .await?
        .map(|st| st.ephemeral_owner);
    step(&format!(
        "holder (now on {}, states: {}): {}; its session survived, so {} is still its node \
         (owner {:#x})",
        where_is(&holder),
        if moves.is_empty() {
            "never disconnected".to_string()
        } else {
            moves.join(" -> ")
        },
        if guard.is_held() {
            "never told of a loss (its server did not die)".to_string()
        } else {
            format!(
                "told the lock may be lost ({:?}, under the default LossPolicy::Suspended) \
                 while it was disconnected",
                guard.lost().await
            )
        },
        guard.node(),
        node_owner.unwrap_or(0)
    ));
    guard.release().await?;
    let t = Instant::now();
    ens.restart(leader).await?;
    ens.wait_for_leader().await?;
    let zxid = ens.check_consistent().await?;
    step(&format!(
        "server {leader} restarted and caught up in {:.1} ms: all servers at zxid {zxid:#x} \
         with the same tree digest",
        ms(t)
    ));
    for c in [holder, watcher, operator] {
        c.close().await?;
    }
    Ok(())
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn fastrand_u32() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}
