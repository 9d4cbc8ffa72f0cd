//! `RetryPolicy` per operation class, against the testkit's targeted faults (the outcome of a
//! request whose reply was lost is what decides the class).

use std::time::Duration;

use zkit::{Client, CreateMode, CreateOptions, Error, OpClass, RetryPolicy};
use zkit_testkit::{ErrorCode, FaultAction, FaultRule, OpCode, Server};

fn policy() -> RetryPolicy {
    RetryPolicy::exponential(Duration::from_millis(5), 5)
}

#[tokio::test]
async fn reads_are_retried_through_connection_loss() {
    let server = Server::start().await.unwrap();
    let zk = Client::connect(&server.connect_string()).await.unwrap();
    let rule = server.add_fault(
        FaultRule::new(FaultAction::Fail(ErrorCode::ConnectionLoss))
            .op(OpCode::GetData)
            .times(2),
    );
    let (data, _) = policy()
        .run(OpClass::Read, || zk.get_data("/"))
        .await
        .unwrap();
    assert!(data.is_empty());
    assert_eq!(server.fault_fired(rule), 2);
}

#[tokio::test]
async fn an_unsafe_write_is_not_repeated_after_an_ambiguous_loss() {
    let server = Server::start().await.unwrap();
    let zk = Client::connect(&server.connect_string()).await.unwrap();
    zk.create("/jobs", b"", &CreateOptions::persistent())
        .await
        .unwrap();
    // The create is applied, but the client only sees the connection drop.
    let rule = server.add_fault(
        FaultRule::new(FaultAction::ApplyThenDisconnect)
            .op(OpCode::Create)
            .path_prefix("/jobs/")
            .times(1),
    );
    let seq = CreateOptions::new(CreateMode::PersistentSequential);
    let r = policy()
        .run(OpClass::UnsafeWrite, || zk.create("/jobs/job-", b"", &seq))
        .await;
    assert_eq!(r, Err(Error::ConnectionLoss));
    assert_eq!(server.fault_fired(rule), 1);
    zk.wait_connected().await.unwrap();
    // One node, not two: the policy did not send the sequential create again.
    assert_eq!(zk.get_children("/jobs").await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_versioned_write_is_retried_and_finds_its_own_effect() {
    let server = Server::start().await.unwrap();
    let zk = Client::connect(&server.connect_string()).await.unwrap();
    let (_, stat) = zk
        .create("/cfg", b"v1", &CreateOptions::persistent())
        .await
        .unwrap();
    let rule = server.add_fault(
        FaultRule::new(FaultAction::ApplyThenDisconnect)
            .op(OpCode::SetData)
            .times(1),
    );
    // The retry meets the first attempt's effect as BadVersion: "maybe it was me".
    let r = policy()
        .run_on(&zk, OpClass::VersionedWrite, || {
            zk.set_data("/cfg", b"v2", Some(stat.version))
        })
        .await;
    assert_eq!(r, Err(Error::BadVersion));
    assert_eq!(server.fault_fired(rule), 1);
    assert_eq!(&zk.get_data("/cfg").await.unwrap().0[..], b"v2");
}

#[tokio::test]
async fn throttled_unsafe_writes_are_retried() {
    let server = Server::start().await.unwrap();
    let zk = Client::connect(&server.connect_string()).await.unwrap();
    let rule = server.add_fault(
        FaultRule::new(FaultAction::Fail(ErrorCode::Throttled))
            .op(OpCode::Create)
            .times(1),
    );
    let seq = CreateOptions::new(CreateMode::PersistentSequential);
    policy()
        .run(OpClass::UnsafeWrite, || zk.create("/t-", b"", &seq))
        .await
        .unwrap();
    assert_eq!(server.fault_fired(rule), 1);
}

#[tokio::test]
async fn run_on_retries_a_read_across_a_dropped_connection() {
    let server = Server::start().await.unwrap();
    let zk = Client::connect(&server.connect_string()).await.unwrap();
    // The read's reply is replaced by a dropped connection; the one retry allowed goes out
    // after the client is connected again.
    let rule = server.add_fault(
        FaultRule::new(FaultAction::ApplyThenDisconnect)
            .op(OpCode::GetData)
            .times(1),
    );
    let policy = RetryPolicy::exponential(Duration::from_millis(1), 1);
    let (data, _) = policy
        .run_on(&zk, OpClass::Read, || zk.get_data("/"))
        .await
        .unwrap();
    assert!(data.is_empty());
    assert_eq!(server.fault_fired(rule), 1);
}
