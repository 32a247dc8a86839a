//! The engine's security writes through the whole stack: a flow finishes
//! exactly once however often its last step is submitted, and a consumed
//! nonce and an ended flow stay so when the answer is a server error (which
//! otherwise discards the request's changes).

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use axum::{
    Router,
    body::Body,
    extract::Request,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use tokio::sync::Barrier;
use tower_pipeline_state::{
    PipelineStateLayer,
    pipeline::{Flow, FlowError, Pipeline},
};

use crate::common::ended::{self, DEFAULT_WINDOW, ended_record, kept_for};
use crate::common::engine::{self, Options, text, to_step_three};
use crate::common::*;

#[tokio::test]
async fn a_double_submitted_last_step_runs_the_finish_hook_exactly_once() {
    let redis = RedisServer::start();
    let finishes = Arc::new(AtomicUsize::new(0));
    let app = engine::app(
        &redis,
        Options {
            final_barrier: Some(Arc::new(Barrier::new(2))),
            finishes: Some(finishes.clone()),
            ..Options::default()
        },
    )
    .await;
    for n in 0..20 {
        let _: () = redis::cmd("FLUSHALL").query(&mut redis.admin()).unwrap();
        let browser = browser();
        let key = to_step_three(&app, &browser, None).await;
        let left = browser
            .post(app.url("/flow"))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(text(left).await.0, StatusCode::OK);

        // Both submissions load the flow, meet at the barrier in step four,
        // then both go on to finish it.
        let (first, second) = tokio::join!(
            browser.post(app.url("/flow")).send(),
            browser.post(app.url("/flow")).send(),
        );
        let mut answers = [text(first.unwrap()).await, text(second.unwrap()).await];
        answers.sort_by_key(|(status, _)| *status);
        let [(ok, finished), (refused, outcome)] = answers;
        assert_eq!(ok, StatusCode::OK, "repetition {n}");
        assert!(
            finished.starts_with("finished "),
            "repetition {n}: {finished}"
        );
        assert_eq!(
            (refused, outcome.as_str()),
            (StatusCode::BAD_REQUEST, "outcome=concurrent"),
            "repetition {n}"
        );
        assert_eq!(
            finishes.load(Ordering::SeqCst),
            n + 1,
            "repetition {n}: the finish hook ran once per flow"
        );
        assert_eq!(redis.keys(), std::slice::from_ref(&key), "repetition {n}");
        ended_record(&redis, &key, &ended::finished(), DEFAULT_WINDOW);
    }
}

/// A two-step pipeline whose second step is an OAuth-style callback that
/// counts its runs, then fails: `?how=error` with `FlowError::failed` (the
/// flow ends), `?how=page` with its own 500 page (the flow stays). The error
/// handler answers every outcome with a 500.
fn callback_pipeline(reached: Arc<AtomicUsize>) -> Pipeline<Body, Response> {
    Pipeline::builder("replay")
        .flow_kind("login")
        .step(
            "authorize",
            |_request: Request, flow: Flow<Body, Response>| async move {
                // Sends the user to the provider with the nonce as `state`.
                flow.advance()?;
                Ok(format!("nonce={}", flow.nonce()?.as_str()).into_response())
            },
        )
        .callback("back", move |request: Request, flow| {
            let reached = reached.clone();
            async move {
                reached.fetch_add(1, Ordering::SeqCst);
                flow.bind("reached", &true)?;
                match request.uri().query().unwrap_or_default() {
                    query if query.contains("how=page") => Ok((
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the provider did not answer",
                    )
                        .into_response()),
                    _ => Err(FlowError::failed("the provider refused the code")),
                }
            }
        })
        .on_finish(|_request, _finished| async { Ok("finished".into_response()) })
        .on_error(|failure| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("outcome={}", failure.error.kind()),
            )
                .into_response()
        })
        .build()
}

struct Callback {
    redis: RedisServer,
    app: Server,
    reached: Arc<AtomicUsize>,
    client: reqwest::Client,
}

impl Callback {
    async fn new() -> Self {
        let redis = RedisServer::start();
        let reached = Arc::new(AtomicUsize::new(0));
        let pipeline = callback_pipeline(reached.clone());
        let starter = pipeline.clone();
        let router = Router::new()
            .route(
                "/flow/start",
                get(move |request: Request| async move { starter.start(request, "login").await }),
            )
            .route_service("/flow", pipeline)
            .layer(PipelineStateLayer::new(redis_store(&redis.url()).await).cookie_secure(false));
        Self {
            redis,
            app: serve(router).await,
            reached,
            // No cookie store: each request carries the cookie the test
            // gives it, as a replay of a captured request would.
            client: reqwest::Client::new(),
        }
    }

    /// Starts a flow; returns its cookie (`name=value`) and its nonce.
    async fn start(&self) -> (String, String) {
        let started = self
            .client
            .get(self.app.url("/flow/start"))
            .send()
            .await
            .unwrap();
        let cookie = flow_cookie(&started).unwrap();
        let cookie = format!("{}={}", cookie.name(), cookie.value());
        let (status, body) = text(started).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let nonce = body.strip_prefix("nonce=").expect(&body).to_owned();
        (cookie, nonce)
    }

    /// The provider's redirect back, with the flow's cookie.
    async fn callback(
        &self,
        cookie: &str,
        nonce: &str,
        how: &str,
    ) -> (StatusCode, Option<cookie::Cookie<'static>>, String) {
        let response = self
            .client
            .get(
                self.app
                    .url(&format!("/flow?code=c&state={nonce}&how={how}")),
            )
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        let set = flow_cookie(&response);
        let (status, body) = text(response).await;
        (status, set, body)
    }

    fn reached(&self) -> usize {
        self.reached.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn a_callback_replayed_after_its_step_failed_with_a_500_reaches_the_step_once() {
    let callback = Callback::new().await;
    let (cookie, nonce) = callback.start().await;
    let key = flow_key(cookie.split_once('=').unwrap().1);
    assert!(callback.redis.get(&key).is_some());

    let (status, set, body) = callback.callback(&cookie, &nonce, "error").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, "outcome=failed")
    );
    assert_eq!(callback.reached(), 1);
    kept_for(
        set.as_ref()
            .expect("the failure ends the flow, its cookie set again"),
        DEFAULT_WINDOW,
    );
    // The flow's end is written though the answer is a 500: its record is
    // the ended one, without the `reached` the step bound.
    let ended = ended_record(
        &callback.redis,
        &key,
        &ended::failed("failed"),
        DEFAULT_WINDOW,
    );

    // The same callback twice more, with the same cookie: the flow has
    // ended, so neither reaches the step, and each is told so.
    for replay in 0..2 {
        let (status, set, body) = callback.callback(&cookie, &nonce, "error").await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::INTERNAL_SERVER_ERROR, "outcome=ended"),
            "replay {replay}"
        );
        assert_eq!(set, None, "replay {replay}: nothing written");
    }
    assert_eq!(callback.reached(), 1, "only the first call ran the step");
    assert_eq!(callback.redis.keys(), std::slice::from_ref(&key));
    let raw = callback.redis.get(&key).unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&raw).unwrap()["data"],
        ended,
        "the replays changed nothing"
    );
}

#[tokio::test]
async fn a_callback_whose_step_answers_500_keeps_its_nonce_consumed_and_replays_are_refused() {
    let callback = Callback::new().await;
    let (cookie, nonce) = callback.start().await;
    let key = flow_key(cookie.split_once('=').unwrap().1);

    let (status, set, body) = callback.callback(&cookie, &nonce, "page").await;
    assert_eq!(
        (status, body.as_str()),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the provider did not answer"
        )
    );
    assert_eq!(set, None, "the flow goes on under its id");
    assert_eq!(callback.reached(), 1);

    for replay in 0..2 {
        let (status, set, body) = callback.callback(&cookie, &nonce, "page").await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::INTERNAL_SERVER_ERROR, "outcome=nonce_replayed"),
            "replay {replay}"
        );
        assert_eq!(set, None, "a replay does not end the flow");
    }
    assert_eq!(callback.reached(), 1, "only the first call ran the step");

    let raw = callback.redis.get(&key).expect("the flow is still there");
    let record: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let data = &record["data"];
    assert_eq!(data.get("nonce"), None, "the nonce was consumed for good");
    assert_eq!(data["step_index"], 1, "the flow did not move on");
    assert_eq!(
        data["data"].get("reached"),
        None,
        "the step's own changes were discarded with its 500"
    );
}
