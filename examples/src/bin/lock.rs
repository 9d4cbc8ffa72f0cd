//! N workers increment a shared counter under a zkit `Mutex`; the final count proves that no two
//! held the lock at once (the increments are a plain read-then-write).
//!
//! ```sh
//! cargo run -p zkit-examples --bin lock            # embedded testkit server
//! cargo run -p zkit-examples --bin lock -- --connect 127.0.0.1:2181
//! ```

use zkit_examples::{demos, init_tracing, section, Target};

#[tokio::main]
async fn main() -> demos::DemoResult {
    init_tracing();
    println!("zkit-recipes: Mutex");
    let target = Target::from_args().await;
    let connect = target.namespace("lock-example").await?;
    section("workers incrementing a counter under the lock");
    demos::lock(&connect, 8, 25).await?;
    println!("\ndone.");
    Ok(())
}
