//! The README's first example ("Use it in axum"), its handler and router as
//! written there, served over real HTTP on a private redis-server (the
//! README's address and port are the reader's; the test's are free ones):
//! each visit counts one more, the count lives under the README's key
//! prefix, and the layer sets its cookie once.

use axum::{Router, routing::post};
use reqwest::header::{COOKIE, SET_COOKIE};
use tower_pipeline_state::{PipelineState, PipelineStateLayer, RedisStore};

use crate::common::*;

// As in the README.
async fn count(state: PipelineState) -> String {
    let n: u64 = state.get("count").unwrap().unwrap_or(0) + 1;
    state.set("count", &n).unwrap(); // in memory; the layer writes it after
    format!("visit {n}")
}

#[tokio::test]
async fn the_readmes_axum_example_counts_visits_over_http() {
    let redis = RedisServer::start();
    // As in the README, on the private server.
    let store = RedisStore::connect(&redis.url()).await.unwrap();
    let app = Router::new()
        .route("/login/step", post(count))
        .layer(PipelineStateLayer::new(store).key_prefix("auth:pipeline:"));
    let server = serve(app).await;

    // The cookie is `Secure` (the default), which a browser keeps on
    // loopback: it is carried by hand here.
    let client = reqwest::Client::new();
    let first = client.post(server.url("/login/step")).send().await.unwrap();
    let set_cookie = first.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        set_cookie.contains("Secure") && set_cookie.contains("HttpOnly"),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    assert_eq!(first.text().await.unwrap(), "visit 1");

    for n in 2..=3 {
        let visit = client
            .post(server.url("/login/step"))
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap();
        assert!(
            visit.headers().get(SET_COOKIE).is_none(),
            "the id did not change"
        );
        assert_eq!(visit.text().await.unwrap(), format!("visit {n}"));
    }
    let keys = redis.keys();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].starts_with("auth:pipeline:"), "{keys:?}");
    let record: serde_json::Value = serde_json::from_slice(&redis.get(&keys[0]).unwrap()).unwrap();
    assert_eq!(record["data"]["count"], 3);
}
