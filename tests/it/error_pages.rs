//! The layer's own answers rendered by the application's error hook: the
//! store unavailable at load (the lazy extractor's rejection and the eager
//! layer's answer), a write not confirmed, a conflict, a state too large.

use std::sync::Arc;

use axum::routing::post;
use http::{Response, header::CONTENT_TYPE};
use reqwest::StatusCode;
use tokio::sync::Barrier;
use tower_pipeline_state::{LayerError, LoadMode, PipelineState, PipelineStateLayer, RedisStore};

use crate::common::*;

/// A page of the application's own, keeping the layer's status.
fn page(error: &LayerError) -> Response<String> {
    Response::builder()
        .status(error.status())
        .header(CONTENT_TYPE, "text/html; charset=utf-8")
        .body(format!("<h1>{}</h1><p>{error}</p>", error.kind()))
        .unwrap()
}

fn layer(store: RedisStore) -> PipelineStateLayer<RedisStore> {
    PipelineStateLayer::new(store)
        .cookie_secure(false)
        .on_error(page)
}

/// Status, content type and body of one answer.
async fn answer(response: reqwest::Response) -> (StatusCode, String, String) {
    let status = response.status();
    let kind = response.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    (status, kind, response.text().await.unwrap())
}

fn rendered(status: StatusCode, kind: &str) -> (StatusCode, String, String) {
    let message = match kind {
        "unavailable" => {
            "pipeline state store unavailable; nothing was saved, send the request again"
        }
        "not_confirmed" => "pipeline state store unavailable; the changes may not have been saved",
        "conflict" => "the flow was changed by a concurrent request; nothing was saved, try again",
        _ => "pipeline state too large; nothing was saved",
    };
    (
        status,
        "text/html; charset=utf-8".to_owned(),
        format!("<h1>{kind}</h1><p>{message}</p>"),
    )
}

#[tokio::test]
async fn a_store_down_at_load_is_rendered_in_both_load_modes() {
    for mode in [LoadMode::Lazy, LoadMode::Eager] {
        let mut redis = RedisServer::start();
        let app =
            serve(routes().layer(layer(redis_store(&redis.url()).await).load_mode(mode))).await;
        let browser = browser();
        browser.post(app.url("/incr")).send().await.unwrap();
        redis.stop();
        let down = browser.get(app.url("/read")).send().await.unwrap();
        assert_eq!(
            answer(down).await,
            rendered(StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            "{mode:?}"
        );
    }
}

#[tokio::test]
async fn a_write_not_confirmed_is_rendered() {
    let mut redis = RedisServer::start();
    let (routes, gate) = routes_with_held(99);
    let app = serve(routes.layer(layer(redis_store(&redis.url()).await))).await;
    let browser = browser();
    browser.post(app.url("/incr")).send().await.unwrap();
    let pending = tokio::spawn(browser.post(app.url("/gated")).send());
    gate.loaded.notified().await;
    redis.stop();
    gate.release.notify_one();
    let response = pending.await.unwrap().unwrap();
    assert_eq!(
        answer(response).await,
        rendered(StatusCode::SERVICE_UNAVAILABLE, "not_confirmed")
    );
}

#[tokio::test]
async fn a_conflict_keeps_the_configured_status() {
    let redis = RedisServer::start();
    let gate = Arc::new(Barrier::new(2));
    let handler_gate = gate.clone();
    let routes = routes().route(
        "/race",
        post(move |state: PipelineState| {
            let gate = handler_gate.clone();
            async move {
                gate.wait().await; // both loaded the same version
                let n: u64 = state.get("count").unwrap().unwrap_or(0);
                state.set("count", &(n + 1)).unwrap();
                "raced"
            }
        }),
    );
    let layer =
        layer(redis_store(&redis.url()).await).conflict_status(StatusCode::PRECONDITION_FAILED);
    let app = serve(routes.layer(layer)).await;
    let browser = browser();
    browser.post(app.url("/incr")).send().await.unwrap();
    let (first, second) = tokio::join!(
        browser.post(app.url("/race")).send(),
        browser.post(app.url("/race")).send(),
    );
    let mut answers = [answer(first.unwrap()).await, answer(second.unwrap()).await];
    answers.sort();
    assert_eq!(answers[0].0, StatusCode::OK);
    assert_eq!(answers[0].2, "raced");
    assert_eq!(
        answers[1],
        rendered(StatusCode::PRECONDITION_FAILED, "conflict")
    );
}

#[tokio::test]
async fn a_state_too_large_is_rendered() {
    let redis = RedisServer::start();
    let layer = layer(redis_store(&redis.url()).await).max_record_size(64);
    let app = serve(routes().layer(layer)).await;
    let long = "x".repeat(100);
    let response = browser()
        .post(app.url(&format!("/set/big/{long}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer(response).await,
        rendered(StatusCode::INTERNAL_SERVER_ERROR, "too_large")
    );
    assert_eq!(redis.keys(), Vec::<String>::new(), "nothing written");
}
