//! Differential test: the same seeded random sequence of operations against the testkit and a
//! real ZooKeeper (`ZKIT_TEST_SERVER=host:port`, ideally otherwise idle); every reply and
//! notification must match after normalising zxids, times and session ids.
//! Seed: `ZKIT_DIFF_SEED`; length: `ZKIT_DIFF_OPS`. Skipped without a real server. Sessions left
//! behind by an aborted run expire within 30 s on the real server and shift its zxids: wait, or
//! use a fresh server. On failure both transcripts are written to the temp directory.

mod common;

use common::unique;
use zkit_testkit::diff::{first_divergence, summary, transcript};
use zkit_testkit::Server;

#[tokio::test]
async fn random_operations_match_a_real_server() {
    let Ok(real) = std::env::var("ZKIT_TEST_SERVER") else {
        eprintln!("ZKIT_TEST_SERVER not set: differential test skipped");
        return;
    };
    let seed: u64 = std::env::var("ZKIT_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let n: usize = std::env::var("ZKIT_DIFF_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1500);
    eprintln!("differential seed {seed}, {n} ops");
    let ours = Server::start().await.unwrap();
    let root = unique("diff");
    let a = transcript(&real, &root, seed, n).await;
    let b = transcript(&ours.connect_string(), &root, seed, n).await;
    if let Some(i) = first_divergence(&a, &b) {
        let dir = std::env::temp_dir();
        let _ = std::fs::write(dir.join("zkit-diff-real.txt"), a.join("\n"));
        let _ = std::fs::write(dir.join("zkit-diff-testkit.txt"), b.join("\n"));
        for line in &a[i.saturating_sub(40)..i] {
            eprintln!("  {line}");
        }
        panic!(
            "first difference, seed {seed}:\n  real:    {}\n  testkit: {}",
            a.get(i).map_or("(end)", |l| l.as_str()),
            b.get(i).map_or("(end)", |l| l.as_str())
        );
    }
    eprintln!("{}", summary(&a));
}
