//! What the layer does when Redis fails or the input is bad: 503 with a
//! short plain body and the handler not called, a log line that says why,
//! malformed ids that never reach Redis, corrupt records seen as expired.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use crate::common::*;
use axum::{Router, routing::post};
use reqwest::StatusCode;
use tower_pipeline_state::{LoadMode, PipelineState, PipelineStateLayer};

/// The test routes plus `/counted`, which counts its calls and increments.
fn counted_routes(calls: Arc<AtomicUsize>) -> Router {
    routes().route(
        "/counted",
        post(move |state: PipelineState| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                let n: u64 = state.get("count").unwrap().unwrap_or(0) + 1;
                state.set("count", &n).unwrap();
                n.to_string()
            }
        }),
    )
}

/// Lazy: the extractor's rejection is the 503; eager: the layer's own.
#[tokio::test]
async fn redis_down_gives_503_without_calling_the_handler_and_service_resumes_after() {
    for mode in [LoadMode::Lazy, LoadMode::Eager] {
        redis_down_in(mode).await;
    }
}

async fn redis_down_in(mode: LoadMode) {
    let (logs, _guard) = Logs::capture();
    let mut redis = RedisServer::start();
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = PipelineStateLayer::new(redis_store(&redis.url()).await)
        .cookie_secure(false)
        .load_mode(mode);
    let app = serve(counted_routes(calls.clone()).layer(layer)).await;
    let browser = browser();

    let created = browser.post(app.url("/counted")).send().await.unwrap();
    assert_eq!(created.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    redis.stop();
    let down = browser.post(app.url("/counted")).send().await.unwrap();
    assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(down.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(
        down.text().await.unwrap(),
        "pipeline state store unavailable; nothing was saved, send the request again\n"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the handler was not called"
    );
    let logged = logs.matching(&["not loaded"]);
    assert!(
        logged
            .iter()
            .any(|line| line.contains("WARN") && line.contains("store unreachable")),
        "a warning says why: {logged:?}"
    );

    // A request without an id needs no Redis...
    let fresh = crate::common::browser();
    let untouched = fresh.get(app.url("/noop")).send().await.unwrap();
    assert_eq!(untouched.status(), StatusCode::OK);
    // ...but creating a flow does, and its failed write is a 503, not a lie.
    let create = fresh.post(app.url("/counted")).send().await.unwrap();
    assert_eq!(create.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(set_cookie(&create), None);

    redis.restart();
    // The same app, without a restart, serves again once the connection
    // manager has reconnected (it does so on the next command).
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..50 {
        status = browser
            .post(app.url("/counted"))
            .send()
            .await
            .unwrap()
            .status();
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        status,
        StatusCode::OK,
        "service resumes after Redis is back"
    );
    // The restarted server is empty (no persistence): the flow started over.
    assert_eq!(text_of(browser.get(app.url("/read"))).await, "count=1");
}

#[tokio::test]
async fn a_failed_write_answers_503_instead_of_the_handlers_response() {
    let (logs, _guard) = Logs::capture();
    let mut redis = RedisServer::start();
    let (routes, gate) = routes_with_held(99);
    let layer = PipelineStateLayer::new(redis_store(&redis.url()).await).cookie_secure(false);
    let app = serve(routes.layer(layer)).await;
    let browser = browser();
    browser.post(app.url("/incr")).send().await.unwrap();

    let pending = tokio::spawn(browser.post(app.url("/gated")).send());
    gate.loaded.notified().await; // loaded
    redis.stop();
    gate.release.notify_one();
    let response = pending.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.text().await.unwrap(),
        "pipeline state store unavailable; the changes may not have been saved\n"
    );
    assert_eq!(
        logs.matching(&["write not confirmed"]).len(),
        1,
        "{}",
        logs.text()
    );
}

#[tokio::test]
async fn a_malformed_cookie_starts_fresh_without_any_redis_command() {
    let redis = RedisServer::start();
    let app = serve_with(PipelineStateLayer::new(redis_store(&redis.url()).await)).await;
    let client = reqwest::Client::new();
    let valid_looking = "0123456789abcdef0123456789abcdef";

    redis.reset_stats();
    for bad in [
        "nothing-like-an-id",
        "0123456789ABCDEF0123456789ABCDEF",
        "01234567-89ab-cdef-0123-456789abcdef",
        "*",
        &"a".repeat(10_000),
    ] {
        assert_eq!(
            text_of(
                client
                    .get(app.url("/status"))
                    .header("cookie", format!("pipeline_id={bad}"))
            )
            .await,
            "new none",
            "{bad:?}"
        );
    }
    assert_eq!(
        redis.command_calls(),
        Default::default(),
        "no Redis command at all"
    );

    // Clearing with a malformed cookie only expires that cookie.
    let cleared = client
        .post(app.url("/clear"))
        .header("cookie", "pipeline_id=garbage")
        .send()
        .await
        .unwrap();
    assert!(removes(&set_cookie(&cleared).unwrap()));
    assert_eq!(redis.command_calls(), Default::default());

    // A well-formed id that names nothing costs exactly one lookup.
    assert_eq!(
        text_of(
            client
                .get(app.url("/status"))
                .header("cookie", format!("pipeline_id={valid_looking}"))
        )
        .await,
        "expired none"
    );
    assert_eq!(redis.command_calls().get("evalsha"), Some(&1));
}

#[tokio::test]
async fn a_corrupt_record_is_expired_with_a_warning_and_replaced_on_write() {
    let (logs, _guard) = Logs::capture();
    let redis = RedisServer::start();
    let app = serve_with(PipelineStateLayer::new(redis_store(&redis.url()).await)).await;
    let browser = browser();
    let created = browser.post(app.url("/incr")).send().await.unwrap();
    let old_id = set_cookie(&created).unwrap().value().to_owned();
    let old_key = format!("pipeline:{old_id}");

    for corrupt in [
        &b"not json at all"[..],
        // A format older than any release wrote (a newer one is left alone:
        // `planted::a_record_of_a_newer_format_is_left_alone`).
        br#"{"format":0,"version":1,"data":{}}"#,
        br#"{"format":1,"version":1,"data":"not a map"}"#,
        b"\xff\xfe\x00",
    ] {
        redis.set(&old_key, corrupt);
        assert_eq!(
            text_of(browser.get(app.url("/status"))).await,
            "expired none"
        );
    }
    let warnings = logs.matching(&["does not decode"]);
    assert_eq!(warnings.len(), 4, "{}", logs.text());
    assert!(
        warnings.iter().all(|line| line.contains("WARN")),
        "{warnings:?}"
    );

    // Writing starts a new flow and removes the corrupt record.
    let restarted = browser.post(app.url("/incr")).send().await.unwrap();
    let new_id = set_cookie(&restarted).unwrap().value().to_owned();
    assert_ne!(new_id, old_id);
    assert_eq!(redis.keys(), [format!("pipeline:{new_id}")]);
}

#[tokio::test]
async fn the_extractor_without_the_layer_names_the_missing_layer() {
    let app = serve(
        Router::new()
            .route(
                "/required",
                axum::routing::get(|_: PipelineState| async { "unreachable" }),
            )
            .route(
                "/optional",
                axum::routing::get(|state: Option<PipelineState>| async move {
                    format!("present={}", state.is_some())
                }),
            ),
    )
    .await;
    let client = reqwest::Client::new();
    let required = client.get(app.url("/required")).send().await.unwrap();
    assert_eq!(required.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        required
            .text()
            .await
            .unwrap()
            .contains("PipelineStateLayer")
    );
    assert_eq!(
        text_of(client.get(app.url("/optional"))).await,
        "present=false"
    );
}
