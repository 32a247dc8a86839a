//! The layer's answers say what happened: the store unreachable with
//! nothing written (`unavailable`, safe to send again), a write sent whose
//! outcome is unknown (`not_confirmed`), and a conflict each have their
//! own kind, over a real redis-server that the tests stop, freeze and
//! start again.

use std::time::Duration;

use crate::common::*;
use http::Response;
use reqwest::StatusCode;
use tower_pipeline_state::{LayerError, PipelineStateLayer, RedisStore, Store, StoreError};

/// A layer whose answers are the `LayerError`'s kind, so a test reads it.
fn kind_answering<St: Store>(layer: PipelineStateLayer<St>) -> PipelineStateLayer<St> {
    layer.cookie_secure(false).on_error(|error: &LayerError| {
        Response::builder()
            .status(error.status())
            .body(error.kind().to_owned())
            .unwrap()
    })
}

/// Waits until `store`'s client has seen its server go: a load (sent again
/// once after a dropped connection) then fails as unreachable, and so does
/// every command after it until the server is back.
async fn until_unreachable<C: tower_pipeline_state::store::RedisConnection>(store: &RedisStore<C>) {
    let error = store
        .load("pipeline:probe", None)
        .await
        .expect_err("the server is down");
    assert!(
        matches!(error, StoreError::Unreachable(_)),
        "a refused connection sends nothing: {error:?}"
    );
    assert!(error.nothing_written());
    assert_eq!(error.kind(), "unreachable");
}

#[tokio::test]
async fn a_write_never_sent_answers_unavailable_and_the_same_request_works_once_redis_is_back() {
    let (logs, _guard) = Logs::capture();
    let mut redis = RedisServer::start();
    let store = redis_store(&redis.url()).await;
    let app = serve(routes().layer(kind_answering(PipelineStateLayer::new(store.clone())))).await;
    let known = browser();
    let created = known.post(app.url("/incr")).send().await.unwrap();
    assert_eq!(created.status(), StatusCode::OK);

    redis.stop();
    until_unreachable(&store).await;
    // A POST that starts a flow: its `SET NX` is refused a connection, so
    // nothing was written and the answer says so (not "not confirmed").
    let fresh = browser();
    let start = fresh.post(app.url("/incr")).send().await.unwrap();
    assert_eq!(start.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(set_cookie(&start), None, "no cookie for a flow not written");
    assert_eq!(start.text().await.unwrap(), "unavailable");
    // A flow that exists cannot be loaded: unavailable too.
    let load = known.post(app.url("/incr")).send().await.unwrap();
    assert_eq!(
        (load.status(), load.text().await.unwrap().as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    );
    let text = logs.text();
    assert_eq!(
        logs.matching(&["WARN", "nothing was written", "kind=\"unreachable\""])
            .len(),
        1,
        "{text}"
    );
    assert!(!text.contains("not confirmed"), "{text}");
    assert!(!text.contains("ERROR"), "no data at risk: {text}");

    // Redis back on the same port (empty): the same request goes through.
    redis.restart();
    let again = fresh.post(app.url("/incr")).send().await.unwrap();
    assert_eq!(
        (again.status(), again.text().await.unwrap().as_str()),
        (StatusCode::OK, "1")
    );
}

#[tokio::test]
async fn a_write_sent_to_a_frozen_redis_answers_not_confirmed_and_the_next_load_shows_it_landed() {
    let (logs, _guard) = Logs::capture();
    let redis = RedisServer::start();
    let (routes, gate) = routes_with_held(7);
    let layer = kind_answering(PipelineStateLayer::new(redis_store(&redis.url()).await))
        .store_timeout(Duration::from_millis(300));
    let app = serve(routes.layer(layer)).await;
    let browser = browser();
    browser.post(app.url("/incr")).send().await.unwrap();

    let pending = tokio::spawn(browser.post(app.url("/gated")).send());
    gate.loaded.notified().await; // loaded
    // Frozen, connections open: the write goes out and no answer comes.
    redis.pause();
    gate.release.notify_one();
    let answer = pending.await.unwrap().unwrap();
    assert_eq!(
        (answer.status(), answer.text().await.unwrap().as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "not_confirmed")
    );
    assert_eq!(
        logs.matching(&["ERROR", "write not confirmed", "kind=\"timeout\""])
            .len(),
        1,
        "{}",
        logs.text()
    );
    redis.resume();
    // Redis ran the write once it could: "not confirmed" was not "not
    // written".
    assert_eq!(text_of(browser.get(app.url("/read"))).await, "count=7");
}

#[tokio::test]
async fn a_pool_that_hands_out_no_connection_answers_unavailable() {
    let redis = RedisServer::start();
    let manager = bb8_redis::RedisConnectionManager::new(redis.url()).unwrap();
    let pool = bb8::Pool::builder()
        .max_size(1)
        .test_on_check_out(false)
        .connection_timeout(Duration::from_millis(200))
        .build(manager)
        .await
        .unwrap();
    let store = RedisStore::from_pool(pool.clone()).await.unwrap();
    let app = serve(routes().layer(kind_answering(PipelineStateLayer::new(store)))).await;
    // The pool's only connection, held elsewhere.
    let held = pool.get_owned().await.unwrap();
    let start = browser().post(app.url("/incr")).send().await.unwrap();
    assert_eq!(
        (start.status(), start.text().await.unwrap().as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    );
    assert!(redis.keys().is_empty(), "nothing was written");
    drop(held);
    let again = browser().post(app.url("/incr")).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_conflict_has_its_own_kind() {
    let redis = RedisServer::start();
    let (routes, gate) = routes_with_held(100);
    let layer = kind_answering(PipelineStateLayer::new(redis_store(&redis.url()).await));
    let app = serve(routes.layer(layer)).await;
    let browser = browser();
    browser.post(app.url("/incr")).send().await.unwrap();
    let pending = tokio::spawn(browser.post(app.url("/gated")).send());
    gate.loaded.notified().await;
    // Another request changes the same field first.
    assert_eq!(text_of(browser.post(app.url("/incr"))).await, "2");
    gate.release.notify_one();
    let answer = pending.await.unwrap().unwrap();
    assert_eq!(
        (answer.status(), answer.text().await.unwrap().as_str()),
        (StatusCode::CONFLICT, "conflict")
    );
}
