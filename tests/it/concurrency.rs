//! Racing requests on one flow: no acknowledged update is ever lost, changes
//! to different fields merge, changes to the same field conflict, and a
//! cleared flow is never brought back.

use std::sync::Arc;

use crate::common::*;
use axum::{Router, extract::Path, routing::post};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::{sync::Notify, task::JoinSet};
use tower_pipeline_state::{MemoryStore, PipelineState, PipelineStateLayer};

/// The stored fields of a flow, read straight from Redis.
fn stored(redis: &RedisServer, id: &str) -> Option<serde_json::Map<String, Value>> {
    let raw = redis.get(&format!("pipeline:{id}"))?;
    let record: Value = serde_json::from_slice(&raw).unwrap();
    Some(record["data"].as_object().unwrap().clone())
}

/// Creates a flow with one request and returns its id.
async fn start_flow(app: &Server) -> String {
    let response = browser().post(app.url("/incr")).send().await.unwrap();
    set_cookie(&response).unwrap().value().to_owned()
}

/// 16 clients each send 20 concurrent increments of one flow's counter.
/// Returns (acknowledged, conflicts).
async fn race_increments(app: &Server, id: &str) -> (u64, u64) {
    let mut requests = JoinSet::new();
    for _ in 0..16 {
        // Each client has its own connections; all carry the same flow.
        let client = reqwest::Client::new();
        for _ in 0..20 {
            let request = client
                .post(app.url("/incr"))
                .header("cookie", format!("pipeline_id={id}"));
            requests.spawn(async move { request.send().await.unwrap().status() });
        }
    }
    let (mut ok, mut conflicts) = (0u64, 0u64);
    while let Some(status) = requests.join_next().await {
        match status.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::CONFLICT => conflicts += 1,
            other => panic!("unexpected answer {other}"),
        }
    }
    eprintln!("320 concurrent increments: {ok} acknowledged, {conflicts} conflicts");
    assert_eq!(ok + conflicts, 320);
    assert!(ok > 0, "some increments must succeed");
    (ok, conflicts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_clients_with_twenty_concurrent_increments_lose_nothing() {
    let _serial = SERIAL.lock().await;
    let redis = RedisServer::start();
    let app = serve_with(PipelineStateLayer::new(redis_store(&redis.url()).await)).await;
    let id = start_flow(&app).await; // count = 1
    let (ok, conflicts) = race_increments(&app, &id).await;
    let count = stored(&redis, &id).unwrap()["count"].as_u64().unwrap();
    assert_eq!(
        count,
        1 + ok,
        "every acknowledged increment is stored, none more ({conflicts} conflicts)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_store_loses_nothing_either() {
    let _serial = SERIAL.lock().await;
    let app = serve_with(PipelineStateLayer::new(MemoryStore::new())).await;
    let id = start_flow(&app).await;
    let (ok, _) = race_increments(&app, &id).await;
    let read = reqwest::Client::new()
        .get(app.url("/read"))
        .header("cookie", format!("pipeline_id={id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(read.text().await.unwrap(), format!("count={}", 1 + ok));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_changes_to_different_fields_all_survive() {
    let redis = RedisServer::start();
    let app = serve_with(PipelineStateLayer::new(redis_store(&redis.url()).await)).await;
    let id = start_flow(&app).await;

    let client = reqwest::Client::new();
    let mut requests = JoinSet::new();
    for i in 0..16 {
        let request = client
            .post(app.url(&format!("/set/field{i}/value{i}")))
            .header("cookie", format!("pipeline_id={id}"));
        requests.spawn(async move { request.send().await.unwrap().status() });
    }
    while let Some(status) = requests.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::OK);
    }
    let data = stored(&redis, &id).unwrap();
    for i in 0..16 {
        assert_eq!(data[&format!("field{i}")], format!("value{i}"), "{data:?}");
    }
    assert_eq!(data["count"], 1, "the field nobody touched is intact");
}

/// A handler that loads the state, lets the test run another request, then
/// sets a field: a race made deterministic.
struct Gate {
    loaded: Notify,
    release: Notify,
}

fn gated_routes(gate: Arc<Gate>) -> Router {
    let clear_gate = gate.clone();
    routes()
        .route(
            "/gated/{field}/{value}",
            post(
                move |state: PipelineState, Path((field, value)): Path<(String, String)>| {
                    let gate = gate.clone();
                    async move {
                        gate.wait().await;
                        state.set(&field, &value).unwrap();
                        "set"
                    }
                },
            ),
        )
        .route(
            "/gated-clear",
            post(move |state: PipelineState| {
                let gate = clear_gate.clone();
                async move {
                    gate.wait().await;
                    state.clear().unwrap();
                    "cleared"
                }
            }),
        )
}

impl Gate {
    /// Says "loaded", then waits for the test to let the handler go on.
    async fn wait(&self) {
        self.loaded.notify_one();
        self.release.notified().await;
    }
}

struct Race {
    redis: RedisServer,
    app: Server,
    gate: Arc<Gate>,
    id: String,
}

impl Race {
    async fn new(
        layer: impl FnOnce(
            tower_pipeline_state::RedisStore,
        ) -> PipelineStateLayer<tower_pipeline_state::RedisStore>,
    ) -> Self {
        let redis = RedisServer::start();
        let gate = Arc::new(Gate {
            loaded: Notify::new(),
            release: Notify::new(),
        });
        let layer = layer(redis_store(&redis.url()).await).cookie_secure(false);
        let app = serve(gated_routes(gate.clone()).layer(layer)).await;
        let id = start_flow(&app).await;
        Self {
            redis,
            app,
            gate,
            id,
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new()
            .request(method, self.app.url(path))
            .header("cookie", format!("pipeline_id={}", self.id))
    }

    /// Runs `gated` until it has loaded, then `meanwhile` to completion, then
    /// lets `gated` finish. Returns both responses.
    async fn run(&self, gated: &str, meanwhile: &str) -> (reqwest::Response, reqwest::Response) {
        let slow = self.request(reqwest::Method::POST, gated).send();
        let slow = tokio::spawn(slow);
        self.gate.loaded.notified().await;
        let fast = self
            .request(reqwest::Method::POST, meanwhile)
            .send()
            .await
            .unwrap();
        self.gate.release.notify_one();
        (slow.await.unwrap().unwrap(), fast)
    }
}

#[tokio::test]
async fn a_racing_write_to_another_field_is_merged() {
    let race = Race::new(PipelineStateLayer::new).await;
    let (slow, fast) = race.run("/gated/color/blue", "/set/shape/round").await;
    assert_eq!(fast.status(), StatusCode::OK);
    assert_eq!(
        slow.status(),
        StatusCode::OK,
        "merged on top of the newer record"
    );
    let data = stored(&race.redis, &race.id).unwrap();
    assert_eq!(data["color"], "blue");
    assert_eq!(data["shape"], "round");
    assert_eq!(data["count"], 1);
}

#[tokio::test]
async fn a_racing_write_to_the_same_field_is_refused() {
    let race = Race::new(PipelineStateLayer::new).await;
    let (slow, fast) = race.run("/gated/color/blue", "/set/color/red").await;
    assert_eq!(fast.status(), StatusCode::OK);
    assert_eq!(slow.status(), StatusCode::CONFLICT);
    assert_eq!(
        slow.headers()["content-type"],
        "text/plain; charset=utf-8",
        "a short plain answer"
    );
    assert!(slow.text().await.unwrap().contains("concurrent"));
    assert_eq!(
        stored(&race.redis, &race.id).unwrap()["color"],
        "red",
        "the first write stands"
    );
}

#[tokio::test]
async fn the_conflict_status_is_configurable() {
    let race = Race::new(|store| {
        PipelineStateLayer::new(store).conflict_status(StatusCode::PRECONDITION_FAILED)
    })
    .await;
    let (slow, _) = race.run("/gated/color/blue", "/set/color/red").await;
    assert_eq!(slow.status(), StatusCode::PRECONDITION_FAILED);
}

#[tokio::test]
async fn a_clear_racing_an_update_does_not_resurrect_the_flow() {
    let race = Race::new(PipelineStateLayer::new).await;
    let (slow, fast) = race.run("/gated/color/blue", "/clear").await;
    assert_eq!(fast.status(), StatusCode::OK);
    assert_eq!(
        slow.status(),
        StatusCode::CONFLICT,
        "the update must not be acknowledged"
    );
    assert_eq!(
        stored(&race.redis, &race.id),
        None,
        "the cleared flow stays gone"
    );
    assert_eq!(race.redis.keys(), Vec::<String>::new());
}

#[tokio::test]
async fn a_clear_loses_to_an_update_that_came_first() {
    let race = Race::new(PipelineStateLayer::new).await;
    let (slow, fast) = race.run("/gated-clear", "/set/color/red").await;
    assert_eq!(fast.status(), StatusCode::OK);
    assert_eq!(
        slow.status(),
        StatusCode::CONFLICT,
        "the clear was decided on a state that no longer is"
    );
    assert_eq!(
        stored(&race.redis, &race.id).unwrap()["color"],
        "red",
        "the acknowledged update is not dropped"
    );
}
