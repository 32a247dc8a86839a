//! hyper 1 + hyper-util: the layer around a plain tower service.
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p demo --bin hyper
//! # open the printed URL for a page with the wizard's buttons, or:
//! curl -c jar -b jar -X POST localhost:3000/wizard/start   # step 1
//! curl -c jar -b jar localhost:3000/wizard                 # step 1
//! curl -c jar -b jar -X POST localhost:3000/wizard/next    # step 2
//! curl -c jar -b jar -X POST localhost:3000/wizard/finish  # finished at step 2
//! ```

use demo::{http1, hyper_app as app, listen};
use tower_pipeline_state::RedisStore;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let store = RedisStore::connect(&url).await?;
    let listener = listen::listener().await?;
    println!("listening on http://{}/", listener.local_addr()?);
    http1::serve(listener, app::service(store)).await;
    Ok(())
}
