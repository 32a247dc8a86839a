//! The smallest app over the layer: a per-browser counter kept in Redis.
//!
//! ```text
//! cargo run -p demo --bin counter      # Redis at REDIS_URL, default redis://127.0.0.1:6379
//! curl -c jar -b jar -X POST localhost:3000/   # count up
//! curl -c jar -b jar localhost:3000/           # read
//! curl -c jar -b jar -X DELETE localhost:3000/ # end the flow
//! ```

use axum::{Router, routing::get};
use demo::listen;
use tower_pipeline_state::{PipelineState, PipelineStateLayer, RedisStore, Status};

/// Reads the counter: one Redis round trip (GETEX), no write.
async fn show(state: PipelineState) -> String {
    let count: u64 = state.get("count").unwrap_or_default().unwrap_or(0);
    match state.status() {
        Status::Expired => format!("your flow expired; count is {count}\n"),
        _ => format!("count is {count}\n"),
    }
}

/// Counts up: the layer writes the change once, after this returns.
async fn count_up(state: PipelineState) -> String {
    let count: u64 = state.get("count").unwrap_or_default().unwrap_or(0) + 1;
    state
        .set("count", &count)
        .expect("a number always serializes");
    format!("count is {count}\n")
}

/// Ends the flow: the record is deleted and the cookie expired.
async fn reset(state: PipelineState) -> &'static str {
    state.clear().expect("the request is still running");
    "cleared\n"
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let store = RedisStore::connect(&url)
        .await
        .map_err(|error| format!("cannot reach Redis at {url} ({error}); set REDIS_URL"))?;

    let app = Router::new()
        .route("/", get(show).post(count_up).delete(reset))
        // Plain HTTP on localhost: a Secure cookie would not come back from
        // curl over http://. Keep the default (Secure) behind HTTPS.
        .layer(PipelineStateLayer::new(store).cookie_secure(false));

    let listener = listen::listener().await?;
    println!(
        "counter on http://{} (Redis at {url})",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}
