//! Targeted faults with the zkit client: request rules (apply then disconnect, apply then
//! delay, fail, drop) and per-session network faults, on a server and on an ensemble. Every
//! fault hits one session while the others carry on.

use std::time::Duration;

use zkit::{Client, CreateOptions, Error, SessionState};
use zkit_proto::{ErrorCode, OpCode};
use zkit_testkit::{Ensemble, FaultAction, FaultRule, Server, SessionFaults};

/// Waits (up to 30 s) for `f`.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn server() -> Server {
    Server::builder()
        .tick_time(Duration::from_millis(100))
        .min_session_timeout(Duration::from_millis(500))
        .start()
        .await
        .unwrap()
}

async fn client(addr: &str, timeout: Duration) -> Client {
    Client::builder(addr)
        .session_timeout(timeout)
        .request_timeout(Duration::from_secs(20))
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_applied_create_whose_reply_is_lost_is_there_after_the_connection_loss() {
    let s = server().await;
    let c = client(&s.connect_string(), Duration::from_secs(10)).await;
    let other = client(&s.connect_string(), Duration::from_secs(10)).await;
    let rule = s.add_fault(
        FaultRule::new(FaultAction::ApplyThenDisconnect)
            .session(c.session_id())
            .op(OpCode::Create)
            .path_prefix("/locks")
            .times(1),
    );
    // Another session's create under the same prefix is not picked.
    other
        .create("/locks", b"", &CreateOptions::persistent())
        .await
        .unwrap();
    let r = c
        .create("/locks/a", b"x", &CreateOptions::persistent())
        .await;
    assert!(matches!(r, Err(Error::ConnectionLoss)), "{r:?}");
    assert_eq!(s.fault_fired(rule), 1);
    // The write was applied; the session survives; the rule is spent.
    let (data, _) = c.get_data("/locks/a").await.unwrap();
    assert_eq!(&data[..], b"x");
    c.create("/locks/b", b"", &CreateOptions::persistent())
        .await
        .unwrap();
    assert_eq!(s.fault_fired(rule), 1);
}

#[tokio::test]
async fn a_failed_request_is_not_applied_and_a_dropped_one_times_out() {
    let s = server().await;
    let c = Client::builder(&s.connect_string())
        .session_timeout(Duration::from_secs(10))
        .request_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    let fail = s.add_fault(
        FaultRule::new(FaultAction::Fail(ErrorCode::NodeExists))
            .op(OpCode::Create)
            .path_prefix("/f")
            .times(1),
    );
    let r = c.create("/f", b"", &CreateOptions::persistent()).await;
    assert!(matches!(r, Err(Error::NodeExists)), "{r:?}");
    assert!(c.exists("/f").await.unwrap().is_none());
    let drop = s.add_fault(
        FaultRule::new(FaultAction::Drop)
            .op(OpCode::SetData)
            .times(1),
    );
    c.create("/d", b"old", &CreateOptions::persistent())
        .await
        .unwrap();
    let r = c.set_data("/d", b"new", None).await;
    assert!(r.is_err(), "a dropped request is never answered: {r:?}");
    assert_eq!(s.fault_fired(drop), 1);
    assert_eq!(s.fault_fired(fail), 1);
    let c2 = client(&s.connect_string(), Duration::from_secs(10)).await;
    let (data, _) = c2.get_data("/d").await.unwrap();
    assert_eq!(&data[..], b"old");
    assert!(s.remove_fault(drop));
    s.clear_faults();
    assert_eq!(s.fault_fired(fail), 0);
}

#[tokio::test]
async fn a_delayed_reply_keeps_the_order_of_the_replies_behind_it() {
    let s = server().await;
    let c = client(&s.connect_string(), Duration::from_secs(10)).await;
    let other = client(&s.connect_string(), Duration::from_secs(10)).await;
    c.create("/d", b"0", &CreateOptions::persistent())
        .await
        .unwrap();
    let rule = s.add_fault(
        FaultRule::new(FaultAction::ApplyThenDelay(Duration::from_millis(300)))
            .op(OpCode::SetData)
            .session(c.session_id()),
    );
    let set = c.set_data("/d", b"1", None);
    let get = c.get_data("/d");
    // The other session reads the applied write while the delayed reply is held.
    let (seen, _) = other.get_data("/d").await.unwrap();
    assert_eq!(&seen[..], b"1");
    let (set, get) = tokio::join!(set, get);
    assert_eq!(set.unwrap().version, 1);
    assert_eq!(&get.unwrap().0[..], b"1");
    assert_eq!(s.fault_fired(rule), 1);
}

#[tokio::test]
async fn a_session_whose_pings_are_dropped_expires_alone() {
    let s = server().await;
    // The victim stays expired (no new session) so the test can see the state it ends in.
    let victim = Client::builder(&s.connect_string())
        .session_timeout(Duration::from_millis(1500))
        .request_timeout(Duration::from_secs(20))
        .recreate_on_expiry(false)
        .connect()
        .await
        .unwrap();
    let other = client(&s.connect_string(), Duration::from_millis(1500)).await;
    victim
        .create("/v", b"", &CreateOptions::ephemeral())
        .await
        .unwrap();
    other
        .create("/o", b"", &CreateOptions::ephemeral())
        .await
        .unwrap();
    s.set_session_faults(victim.session_id(), SessionFaults::new().drop_pings());
    let id = victim.session_id();
    eventually("the victim's session expires", || {
        !s.sessions().iter().any(|x| x.id == id)
    })
    .await;
    eventually("the victim learns it", || {
        victim.state() == SessionState::Expired
    })
    .await;
    assert!(other.exists("/v").await.unwrap().is_none());
    assert!(other.exists("/o").await.unwrap().is_some());
    assert_eq!(other.state(), SessionState::Connected);
}

#[tokio::test]
async fn a_session_cut_every_few_ms_keeps_reconnecting_while_others_stay_up() {
    let s = server().await;
    let victim = client(&s.connect_string(), Duration::from_secs(10)).await;
    let other = client(&s.connect_string(), Duration::from_secs(10)).await;
    let mut states = victim.state_changes();
    let mut others = other.state_changes();
    s.set_session_faults(
        victim.session_id(),
        SessionFaults::new().cut_every(Duration::from_millis(100)),
    );
    let mut cuts = 0;
    while cuts < 3 {
        if states.next().await == Some(SessionState::Disconnected) {
            cuts += 1;
        }
    }
    s.set_session_faults(victim.session_id(), SessionFaults::new());
    victim
        .create("/after", b"", &CreateOptions::persistent())
        .await
        .unwrap();
    other.exists("/after").await.unwrap();
    assert_eq!(other.state(), SessionState::Connected);
    assert!(
        tokio::time::timeout(Duration::ZERO, others.next())
            .await
            .is_err(),
        "the other session never changed state"
    );
}

#[tokio::test]
async fn held_watch_events_arrive_when_the_hold_is_lifted() {
    let s = server().await;
    let c = client(&s.connect_string(), Duration::from_secs(10)).await;
    let other = client(&s.connect_string(), Duration::from_secs(10)).await;
    c.create("/w", b"0", &CreateOptions::persistent())
        .await
        .unwrap();
    let (_, _, mut held) = c.get_data_and_watch("/w").await.unwrap();
    let (_, _, free) = other.get_data_and_watch("/w").await.unwrap();
    s.set_session_faults(c.session_id(), SessionFaults::new().hold_events());
    other.set_data("/w", b"1", None).await.unwrap();
    free.await.unwrap();
    // A reply sent after the event went out; the event did not.
    let (data, _) = c.get_data("/w").await.unwrap();
    assert_eq!(&data[..], b"1");
    assert!(futures_poll_once(&mut held).await.is_none());
    s.set_session_faults(c.session_id(), SessionFaults::new());
    held.await.unwrap();
}

#[tokio::test]
async fn delayed_session_frames_slow_one_session_only() {
    let s = server().await;
    let slow = client(&s.connect_string(), Duration::from_secs(10)).await;
    let fast = client(&s.connect_string(), Duration::from_secs(10)).await;
    s.set_session_faults(
        slow.session_id(),
        SessionFaults::new().delay(Duration::from_secs(60)),
    );
    let slow_read = slow.exists("/");
    tokio::pin!(slow_read);
    for _ in 0..20 {
        fast.exists("/").await.unwrap();
    }
    assert!(futures_poll_once(&mut slow_read).await.is_none());
    s.set_session_faults(slow.session_id(), SessionFaults::new());
    // Frames delayed before the fault was lifted keep their time: cut the connection, the
    // client reconnects and retries nothing (the read fails with ConnectionLoss).
    s.close_session_connection(slow.session_id());
    let _ = slow_read.await;
    slow.exists("/").await.unwrap();
}

#[tokio::test]
async fn an_ensemble_applies_rules_on_the_member_the_client_uses() {
    let e = Ensemble::builder().servers(3).start().await.unwrap();
    let leader = e.wait_for_leader().await.unwrap();
    let follower = (leader + 1) % 3;
    let c = client(
        &e.server(follower).connect_string(),
        Duration::from_secs(10),
    )
    .await;
    let rule = e.add_fault(
        FaultRule::new(FaultAction::ApplyThenDisconnect)
            .op(OpCode::Create)
            .times(1),
    );
    let r = c.create("/e", b"x", &CreateOptions::persistent()).await;
    assert!(matches!(r, Err(Error::ConnectionLoss)), "{r:?}");
    assert_eq!(e.fault_fired(rule), 1);
    assert!(c.exists("/e").await.unwrap().is_some());
    e.set_session_faults(c.session_id(), SessionFaults::new().drop_pings());
    let id = c.session_id();
    eventually("the session expires on the leader", || {
        !e.server(leader).sessions().iter().any(|x| x.id == id)
    })
    .await;
}

/// Polls a future once: its output if it is ready now.
async fn futures_poll_once<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut *f).poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
}
