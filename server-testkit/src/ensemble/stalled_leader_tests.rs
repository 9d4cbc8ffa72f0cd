//! A leader stalled past syncLimit, probed with a sync read sent after the others elected a
//! new leader and committed a write (see the note on stale leaders in
//! `linearizability_tests`).

use std::time::Duration;

use zkit::{Client, CreateMode, CreateOptions};

use super::*;

/// A sync read at a leader whose quorum side is stalled past syncLimit while the others
/// elect a new leader and commit a write: when it resumes it must not answer from its old
/// state (it no longer knows whether it leads). The read is sent while it is stalled, after
/// the write completed; it must see the write or fail. Without the leader's PING round per
/// sync this read the old value once in 6 rounds, in each of 3 runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_leader_does_not_answer_a_sync_read_from_its_old_state() {
    let e = Ensemble::builder()
        .servers(3)
        .tick_time(Duration::from_millis(100))
        .max_session_timeout(Duration::from_secs(30))
        .start()
        .await
        .expect("start");
    let slow = |connect: String| async move {
        Client::builder(&connect)
            .session_timeout(Duration::from_secs(30))
            .connect()
            .await
            .expect("a client connects")
    };
    let mut stale_reads = Vec::new();
    for round in 0..ROUNDS {
        let old = e.wait_for_leader().await.expect("a leader");
        let others: Vec<String> = (0..e.len())
            .filter(|&i| i != old)
            .map(|i| e.server(i).connect_string())
            .collect();
        let on_old = slow(e.server(old).connect_string()).await;
        let writer = slow(others.join(",")).await;
        let path = format!("/stalled{round}");
        writer
            .create(
                &path,
                b"before",
                &CreateOptions::new(CreateMode::Persistent),
            )
            .await
            .expect("create");
        on_old.sync(&path).await.expect("sync");
        assert_eq!(
            &on_old.get_data(&path).await.expect("read").0[..],
            b"before"
        );

        // Only its quorum peer stalls: its clients are still served, so the read's sync is
        // queued for the peer by the time it resumes.
        e.stall_quorum(old, STALL).await;
        e.wait_for("a new leader while the old one is stalled", |e| {
            e.servers().any(|s| {
                s.index() != old
                    && matches!(
                        s.role(),
                        QuorumRole::Leading {
                            established: true,
                            ..
                        }
                    )
            })
        })
        .await
        .expect("a new leader");
        zkit::RetryPolicy::exponential(Duration::from_millis(20), 200)
            .max_delay(Duration::from_millis(100))
            .run(zkit::OpClass::VersionedWrite, || {
                writer.set_data(&path, b"after", None)
            })
            .await
            .expect("a write through the new leader");
        // Still stalled (`STALL` is far more than an election and a write take): the read waits
        // in the old leader's socket until it resumes.
        let (synced, read) = (on_old.sync(&path), on_old.get_data(&path));
        let got = async {
            synced.await?;
            read.await
        }
        .await;
        if let Ok((data, _)) = got {
            if &data[..] != b"after" {
                stale_reads.push(format!(
                    "round {round}: read {data:?} from old leader {old}"
                ));
            }
        }
        e.wait_for_leader().await.expect("the old leader follows");
        let _ = on_old.close().await;
        let _ = writer.close().await;
    }
    assert!(stale_reads.is_empty(), "stale sync reads: {stale_reads:#?}");
}

/// Stalls in [`a_stalled_leader_does_not_answer_a_sync_read_from_its_old_state`], and how
/// long each lasts.
const ROUNDS: usize = 6;
const STALL: Duration = Duration::from_millis(2500);
