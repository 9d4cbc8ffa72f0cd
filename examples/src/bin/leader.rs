//! Leader election with `LeaderLatch`: three candidates, the leader steps down and another takes
//! over, then that one gives up its term and the third leads.
//!
//! ```sh
//! cargo run -p zkit-examples --bin leader
//! ```

use zkit_examples::{demos, init_tracing, section, Target};

#[tokio::main]
async fn main() -> demos::DemoResult {
    init_tracing();
    println!("zkit-recipes: leader election");
    let target = Target::from_args().await;
    let connect = target.namespace("leader-example").await?;
    section("three candidates");
    demos::leader(&connect).await?;
    println!("\ndone.");
    Ok(())
}
