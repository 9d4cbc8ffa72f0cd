//! A config-reloading service built on `ConfigWatch<T>`: it prints every new configuration; a
//! second client (an operator with its own session) changes it a few times, once with a typo
//! that the service rejects while keeping the last good configuration.
//!
//! ```sh
//! cargo run -p zkit-examples --bin config
//! ```

use zkit_examples::{demos, init_tracing, section, Target};

#[tokio::main]
async fn main() -> demos::DemoResult {
    init_tracing();
    println!("zkit-recipes: config reload");
    let target = Target::from_args().await;
    let connect = target.namespace("config-example").await?;
    section("a service reloading its configuration");
    demos::config(&connect).await?;
    println!("\ndone.");
    Ok(())
}
