//! A four-step test pipeline and its server, shared by the engine's tests.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use axum::{
    Router,
    body::Body,
    extract::Request,
    http::{Method, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
};
use tokio::sync::Barrier;
use tower_pipeline_state::{
    PipelineStateLayer, RedisStore,
    pipeline::{Flow, FlowError, Pipeline},
};

use crate::common::*;

/// How a test wants its pipeline.
#[derive(Clone, Default)]
pub(crate) struct Options {
    /// Name the third step `three-b` instead of `three` (a deployment that
    /// changed the steps).
    pub(crate) renamed: bool,
    /// Make submissions of step three wait here, so two of them overlap.
    pub(crate) barrier: Option<Arc<Barrier>>,
    /// Make submissions of step four (the last) wait here.
    pub(crate) final_barrier: Option<Arc<Barrier>>,
    /// Counts the runs of the finish hook.
    pub(crate) finishes: Option<Arc<AtomicUsize>>,
}

/// A four-step test pipeline. The user is the `x-user` header.
///
/// * `one`: renders `at one nonce=<nonce>`; a POST advances.
/// * `two`: a callback step (needs `?state=<nonce>`): binds, advances.
/// * `three`: renders `at three`; a POST binds its body and advances.
/// * `four`: renders `at four`; a POST finishes.
pub(crate) fn pipeline(options: Options) -> Pipeline<Body, Response> {
    let barrier = options.barrier.clone();
    let final_barrier = options.final_barrier.clone();
    let finishes = options.finishes.clone();
    Pipeline::builder("test")
        .flow_kind("login")
        .flow_kind("link")
        .user(|parts| {
            parts
                .headers
                .get("x-user")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .step(
            "one",
            |request: Request, flow: Flow<Body, Response>| async move {
                if request.method() == Method::POST {
                    flow.advance()?;
                    return Ok("left one".into_response());
                }
                Ok(format!("at one nonce={}", flow.nonce()?.as_str()).into_response())
            },
        )
        .callback("two", |_request, flow| async move {
            flow.bind("called_back", &true)?;
            flow.advance()?;
            Ok("left two".into_response())
        })
        .step(
            if options.renamed { "three-b" } else { "three" },
            move |request: Request, flow: Flow<Body, Response>| {
                let barrier = barrier.clone();
                async move {
                    if request.method() != Method::POST {
                        return Ok("at three".into_response());
                    }
                    let body = axum::body::to_bytes(request.into_body(), 1024)
                        .await
                        .map_err(FlowError::failed)?;
                    if let Some(barrier) = barrier {
                        // Both submissions have loaded the flow when they
                        // get here; neither has written yet.
                        barrier.wait().await;
                    }
                    flow.bind("three", &String::from_utf8_lossy(&body))?;
                    flow.advance()?;
                    Ok(
                        format!("left three with {}", String::from_utf8_lossy(&body))
                            .into_response(),
                    )
                }
            },
        )
        .step(
            "four",
            move |request: Request, flow: Flow<Body, Response>| {
                let barrier = final_barrier.clone();
                async move {
                    if request.method() != Method::POST {
                        return Ok("at four".into_response());
                    }
                    if let Some(barrier) = barrier {
                        barrier.wait().await;
                    }
                    flow.next().await
                }
            },
        )
        .on_finish(move |_request, finished| {
            if let Some(finishes) = &finishes {
                finishes.fetch_add(1, Ordering::SeqCst);
            }
            async move {
                Ok(format!(
                    "finished kind={} user={} data={}",
                    finished.kind,
                    finished.user.as_deref().unwrap_or("-"),
                    serde_json::Value::Object(finished.data)
                )
                .into_response())
            }
        })
        .on_error(|failure| {
            (
                StatusCode::BAD_REQUEST,
                format!("outcome={}", failure.error.kind()),
            )
                .into_response()
        })
        .build()
}

/// `GET /flow/start?kind=<kind>` starts a flow; every method on `/flow`
/// dispatches to its current step.
pub(crate) fn router(pipeline: Pipeline<Body, Response>, store: RedisStore) -> Router {
    router_with(pipeline, PipelineStateLayer::new(store))
}

/// [`router`] behind a layer the test configured (`durability`, say).
pub(crate) fn router_with(
    pipeline: Pipeline<Body, Response>,
    layer: PipelineStateLayer<RedisStore>,
) -> Router {
    let starter = pipeline.clone();
    Router::new()
        .route(
            "/flow/start",
            get(move |request: Request| async move {
                let kind = request
                    .uri()
                    .query()
                    .and_then(|q| q.strip_prefix("kind="))
                    .unwrap_or("login")
                    .to_owned();
                starter.start(request, &kind).await
            }),
        )
        .route_service("/flow", pipeline)
        .layer(layer.cookie_secure(false))
}

pub(crate) async fn app(redis: &RedisServer, options: Options) -> Server {
    serve(router(pipeline(options), redis_store(&redis.url()).await)).await
}

/// A request as `user` (none: anonymous).
pub(crate) fn as_user(
    builder: reqwest::RequestBuilder,
    user: Option<&str>,
) -> reqwest::RequestBuilder {
    match user {
        Some(user) => builder.header("x-user", user),
        None => builder,
    }
}

pub(crate) async fn text(response: reqwest::Response) -> (StatusCode, String) {
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    (status, response.text().await.unwrap())
}

/// Starts a flow and walks it to step three; returns the flow's Redis key.
pub(crate) async fn to_step_three(
    app: &Server,
    browser: &reqwest::Client,
    user: Option<&str>,
) -> String {
    let started = as_user(browser.get(app.url("/flow/start")), user)
        .send()
        .await
        .unwrap();
    let key = flow_key(
        flow_cookie(&started)
            .expect("a started flow sets its cookie")
            .value(),
    );
    let (status, body) = text(started).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let nonce = body.strip_prefix("at one nonce=").expect(&body).to_owned();
    let left = as_user(browser.post(app.url("/flow")), user)
        .send()
        .await
        .unwrap();
    assert_eq!(text(left).await, (StatusCode::OK, "left one".to_owned()));
    let back = as_user(browser.get(app.url(&format!("/flow?state={nonce}"))), user)
        .send()
        .await
        .unwrap();
    assert_eq!(text(back).await, (StatusCode::OK, "left two".to_owned()));
    key
}

pub(crate) fn stored(redis: &RedisServer, key: &str) -> serde_json::Value {
    let raw = redis.get(key).expect("the flow's record exists");
    serde_json::from_slice::<serde_json::Value>(&raw).unwrap()["data"].clone()
}
