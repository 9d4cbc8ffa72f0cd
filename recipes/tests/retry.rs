//! Every recipe retries through the client's `RetryPolicy`, taken from its options.

use std::time::Duration;

use zkit::{Client, Error as ZkError, RetryPolicy};
use zkit_recipes::barrier::{Barrier, BarrierOptions};
use zkit_recipes::{Error, Mutex, MutexOptions};
use zkit_testkit::{ErrorCode, FaultAction, FaultRule, OpCode, Server};

async fn setup() -> (Server, Client) {
    let server = Server::start().await.unwrap();
    let zk = Client::connect(&server.connect_string()).await.unwrap();
    (server, zk)
}

fn lose_next(server: &Server, op: OpCode, prefix: &str) {
    server.add_fault(
        FaultRule::new(FaultAction::Fail(ErrorCode::ConnectionLoss))
            .op(op)
            .path_prefix(prefix)
            .times(1),
    );
}

#[tokio::test]
async fn a_recipe_retries_a_lost_read_by_default() {
    let (server, zk) = setup().await;
    lose_next(&server, OpCode::Exists, "/b");
    let barrier = Barrier::new(&zk, "/b", BarrierOptions::default());
    assert!(!barrier.is_set().await.unwrap());
}

#[tokio::test]
async fn a_recipe_uses_the_policy_from_its_options() {
    let (server, zk) = setup().await;
    lose_next(&server, OpCode::Exists, "/b");
    let barrier = Barrier::new(
        &zk,
        "/b",
        BarrierOptions::default().retry(RetryPolicy::none()),
    );
    assert!(matches!(
        barrier.is_set().await,
        Err(Error::Zk(ZkError::ConnectionLoss))
    ));
    // A bounded policy gives up after its retries.
    let rule = server.add_fault(
        FaultRule::new(FaultAction::Fail(ErrorCode::ConnectionLoss))
            .op(OpCode::GetChildren)
            .path_prefix("/lock"),
    );
    let policy = RetryPolicy::exponential(Duration::from_millis(1), 2);
    let lock = Mutex::new(&zk, "/lock", MutexOptions::default().retry(policy));
    assert!(lock.contenders().await.is_err());
    assert_eq!(server.fault_fired(rule), 3);
}
