//! Barriers: workers wait at a start gate (`Barrier`) until the coordinator removes it, then do a
//! round of work between a `DoubleBarrier`'s enter (everyone arrived) and leave (everyone done).
//!
//! ```sh
//! cargo run -p zkit-examples --bin barrier
//! ```

use zkit_examples::{demos, init_tracing, section, Target};

#[tokio::main]
async fn main() -> demos::DemoResult {
    init_tracing();
    println!("zkit-recipes: barriers");
    let target = Target::from_args().await;
    let connect = target.namespace("barrier-example").await?;
    section("a start gate and a double barrier");
    demos::barrier(&connect, 4).await?;
    println!("\ndone.");
    Ok(())
}
