//! The nested test pipelines, one set for every test of nested runs
//! (`nested.rs` over HTTP and Redis, `nested_engine.rs` on the engine's
//! rules over a `MemoryStore`): an integration's setup, `setup` (three
//! steps), whose second step signs in with an identity provider, `idp`, a
//! pipeline of its own (two steps, the second the provider's redirect back)
//! that also runs alone.
//!
//! Flags in a request's query steer the steps (each documented where it is
//! read), so the tests reach every turn through requests, as users do.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
};

use axum::{
    Router,
    body::Body,
    extract::Request,
    http::{Method, StatusCode},
    response::{IntoResponse, Response},
    routing::any,
};
use serde_json::Value;
use tokio::sync::{Barrier, Notify, Semaphore};
use tower_pipeline_state::{
    PipelineStateLayer, Store,
    pipeline::{Finished, Flow, FlowError, Nested, Pipeline},
};

use crate::common::{Server, engine::text, started_flow_key};

/// Holds inner callback steps, and tells when two are in one at once.
#[derive(Debug)]
pub(crate) struct CallbackGate {
    /// Runs of the inner callback step.
    pub(crate) runs: AtomicUsize,
    /// Each run waits for a permit here.
    pub(crate) release: Semaphore,
    /// Told when a second run enters while the first is held.
    pub(crate) both_in: Notify,
}

impl CallbackGate {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            runs: AtomicUsize::new(0),
            release: Semaphore::new(0),
            both_in: Notify::new(),
        })
    }
}

/// How a test wants its pipelines.
#[derive(Clone, Default)]
pub(crate) struct Options {
    /// Submissions of the inner first step wait here, so two overlap.
    pub(crate) authorize_barrier: Option<Arc<Barrier>>,
    /// Inner callbacks are counted here and wait for its permits.
    pub(crate) callback_gate: Option<Arc<CallbackGate>>,
    /// Inner callbacks wait here twice, so the test can act in between.
    pub(crate) callback_pause: Option<Arc<Barrier>>,
    /// Inner callbacks with `?hold` wait here twice (the flow loaded, the
    /// step entered), so the test can run another request in between.
    pub(crate) hold: Option<Arc<Barrier>>,
    /// The outer step keeps only the run's `email`, not its `code` too.
    pub(crate) email_only: bool,
}

/// What the pipelines saw and counted.
#[derive(Clone, Default)]
pub(crate) struct Record {
    /// What `nest` handed the outer step, each time a run ended.
    pub(crate) nested_finished: Arc<Mutex<Vec<Finished>>>,
    /// Runs of the inner pipeline's own finish hook and error handler.
    pub(crate) inner_hooks: Arc<AtomicUsize>,
    /// What the inner steps saw of their `Flow`, a line per step entered.
    pub(crate) inner_seen: Arc<Mutex<Vec<String>>>,
    /// What the outer finish hook got.
    pub(crate) outer_finished: Arc<Mutex<Option<Finished>>>,
}

impl Record {
    /// Times the outer step got `Nested::Finished`.
    pub(crate) fn runs_ended(&self) -> usize {
        self.nested_finished.lock().unwrap().len()
    }

    /// Inner steps entered so far.
    pub(crate) fn inner_steps(&self) -> usize {
        self.inner_seen.lock().unwrap().len()
    }
}

/// Whether the request's query has `flag`.
pub(crate) fn has(request: &Request, flag: &str) -> bool {
    request
        .uri()
        .query()
        .is_some_and(|query| query.split('&').any(|part| part == flag))
}

/// The user: the `x-user` header.
fn user(parts: &axum::http::request::Parts) -> Option<String> {
    parts
        .headers
        .get("x-user")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The identity provider's sign-in, `idp` (kinds `login` and `link`). Each
/// step first records what it sees of its `Flow` in
/// [`Record::inner_seen`].
///
/// * `authorize`: `?fail` fails it; `?nest-again` nests another pipeline
///   (which a step of a nested run cannot); `?claim-finished` returns
///   `FlowError::NestedFinished` without having finished. Otherwise it
///   renders `at authorize`; a POST binds `code`, advances and answers
///   `to idp state=<the run's state>`.
/// * `callback`: a callback step (needs the run's nonce): binds `email` and
///   moves past the last step; `?server-error` binds `email` and answers
///   `500` instead.
pub(crate) fn idp(options: &Options, record: &Record) -> Pipeline<Body, Response> {
    let authorize_barrier = options.authorize_barrier.clone();
    let callback_gate = options.callback_gate.clone();
    let callback_pause = options.callback_pause.clone();
    let hold = options.hold.clone();
    let seen_authorize = record.inner_seen.clone();
    let seen_callback = record.inner_seen.clone();
    let finishes = record.inner_hooks.clone();
    let errors = record.inner_hooks.clone();
    Pipeline::builder("idp")
        .flow_kind("login")
        .flow_kind("link")
        .step(
            "authorize",
            move |request: Request, flow: Flow<Body, Response>| {
                let barrier = authorize_barrier.clone();
                let seen = seen_authorize.clone();
                async move {
                    seen.lock().unwrap().push(format!(
                        "{}/{}#{} kind={} user={:?} verified={}",
                        flow.pipeline(),
                        flow.step_name(),
                        flow.step_index(),
                        flow.kind(),
                        flow.user(),
                        flow.nonce_verified()
                    ));
                    if has(&request, "fail") {
                        return Err(FlowError::failed("the provider refused"));
                    }
                    if has(&request, "nest-again") {
                        return flow
                            .nest(&again(), "login", request)
                            .await
                            .map(|_| "nested again".into_response());
                    }
                    if has(&request, "claim-finished") {
                        return Err(FlowError::NestedFinished);
                    }
                    if request.method() != Method::POST {
                        return Ok("at authorize".into_response());
                    }
                    if let Some(barrier) = barrier {
                        barrier.wait().await;
                    }
                    flow.bind("code", "c0de")?;
                    flow.advance()?;
                    Ok(format!("to idp state={}", flow.callback_state()?).into_response())
                }
            },
        )
        .callback(
            "callback",
            move |request: Request, flow: Flow<Body, Response>| {
                let gate = callback_gate.clone();
                let pause = callback_pause.clone();
                let hold = hold.clone().filter(|_| has(&request, "hold"));
                let seen = seen_callback.clone();
                async move {
                    if let Some(gate) = gate {
                        if gate.runs.fetch_add(1, Ordering::SeqCst) == 1 {
                            gate.both_in.notify_one();
                        }
                        gate.release.acquire().await.unwrap().forget();
                    }
                    for pause in [pause, hold].into_iter().flatten() {
                        pause.wait().await;
                        pause.wait().await;
                    }
                    let code: Option<String> = flow.fetch("code")?;
                    seen.lock().unwrap().push(format!(
                        "{}/{}#{} kind={} code={code:?} verified={}",
                        flow.pipeline(),
                        flow.step_name(),
                        flow.step_index(),
                        flow.kind(),
                        flow.nonce_verified()
                    ));
                    flow.bind("email", "alice@example.com")?;
                    if has(&request, "server-error") {
                        return Ok((StatusCode::INTERNAL_SERVER_ERROR, "the provider broke")
                            .into_response());
                    }
                    flow.next().await
                }
            },
        )
        .on_finish(move |_request, _finished| {
            finishes.fetch_add(1, Ordering::SeqCst);
            async { Ok("the inner finish hook".into_response()) }
        })
        .on_error(move |_failure| {
            errors.fetch_add(1, Ordering::SeqCst);
            "the inner error handler".into_response()
        })
        .build()
}

/// A one-step pipeline that `idp`'s `?nest-again` tries to nest.
fn again() -> Pipeline<Body, Response> {
    Pipeline::builder("again")
        .flow_kind("login")
        .step("only", |_request, flow: Flow<Body, Response>| async move {
            flow.next().await
        })
        .on_finish(|_request, _finished| async { Ok("again finished".into_response()) })
        .on_error(|failure| failure.error.to_string().into_response())
        .build()
}

/// The integration's setup, `setup` (kind `integration`; the user is the
/// `x-user` header):
///
/// * `choose`: renders `at choose state=<the flow's state>`; a POST runs the
///   next step.
/// * `identity`: nests `idp`, of the kind in the `x-kind` header (`login`
///   without). When the run ends, records what `nest` handed over, binds
///   the run's `email` and `code` (only `email` with
///   [`Options::email_only`]), advances and answers
///   `identity done state=<the flow's state>`. `?skip`: advances without
///   nesting and answers `skipped`; `?pad`: binds 300 bytes before nesting;
///   `?fail-after`: fails once the run ended; `?refuse-after`: fails then
///   with `FlowError::UserMismatch`, an outcome that leaves the flow as it
///   was.
/// * `confirm`: a callback step (needs the outer nonce) that finishes.
///
/// The finish hook records what it got and answers
/// `finished data=<the data>`. Failures answer
/// `400 outcome=<kind> step=<step> inner=<pipeline>/<step>` (`-` for what
/// is not there).
pub(crate) fn setup(options: &Options, record: &Record) -> Pipeline<Body, Response> {
    let inner = idp(options, record);
    let nested_finished = record.nested_finished.clone();
    let outer_finished = record.outer_finished.clone();
    let email_only = options.email_only;
    Pipeline::builder("setup")
        .flow_kind("integration")
        .user(user)
        .step(
            "choose",
            |request: Request, flow: Flow<Body, Response>| async move {
                if request.method() != Method::POST {
                    return Ok(
                        format!("at choose state={}", flow.callback_state()?).into_response()
                    );
                }
                flow.next().await
            },
        )
        .step(
            "identity",
            move |request: Request, flow: Flow<Body, Response>| {
                let inner = inner.clone();
                let nested_finished = nested_finished.clone();
                async move {
                    if has(&request, "skip") {
                        flow.advance()?;
                        return Ok("skipped".into_response());
                    }
                    if has(&request, "pad") {
                        flow.bind("pad", &"x".repeat(300))?;
                    }
                    let fail_after = has(&request, "fail-after");
                    let refuse_after = has(&request, "refuse-after");
                    let kind = request
                        .headers()
                        .get("x-kind")
                        .map_or("login".to_owned(), |v| v.to_str().unwrap().to_owned());
                    match flow.nest(&inner, &kind, request).await? {
                        Nested::Answer(answer) => Ok(answer),
                        Nested::Finished(finished) => {
                            nested_finished.lock().unwrap().push(finished.clone());
                            if fail_after {
                                return Err(FlowError::failed("the outer step failed"));
                            }
                            if refuse_after {
                                return Err(FlowError::UserMismatch);
                            }
                            flow.bind("email", &finished.fetch::<String>("email")?)?;
                            if !email_only {
                                flow.bind("code", &finished.fetch::<String>("code")?)?;
                            }
                            flow.advance()?;
                            Ok(format!("identity done state={}", flow.callback_state()?)
                                .into_response())
                        }
                    }
                }
            },
        )
        .callback("confirm", |_request, flow| async move { flow.next().await })
        .on_finish(move |_request, finished| {
            let outer_finished = outer_finished.clone();
            async move {
                let answer = format!("finished data={}", Value::Object(finished.data.clone()));
                *outer_finished.lock().unwrap() = Some(finished);
                Ok(answer.into_response())
            }
        })
        .on_error(|failure| {
            let inner = failure.inner.as_ref().map_or("-".to_owned(), |inner| {
                format!(
                    "{}/{}",
                    inner.pipeline,
                    inner.step.as_deref().unwrap_or("-")
                )
            });
            (
                StatusCode::BAD_REQUEST,
                format!(
                    "outcome={} step={} inner={inner}",
                    failure.error.kind(),
                    failure.step.as_deref().unwrap_or("-")
                ),
            )
                .into_response()
        })
        .build()
}

/// Serves `pipeline` behind `layer` (with cookies that work over plain
/// HTTP): any method on `/<name>/start` starts a flow of `kind`; every
/// method on `/<name>` dispatches.
pub(crate) fn router<St: Store>(
    pipeline: Pipeline<Body, Response>,
    kind: &'static str,
    layer: PipelineStateLayer<St>,
) -> Router {
    let starter = pipeline.clone();
    let name = pipeline.name().to_owned();
    Router::new()
        .route(
            &format!("/{name}/start"),
            any(move |request: Request| async move { starter.start(request, kind).await }),
        )
        .route_service(&format!("/{name}"), pipeline)
        .layer(layer.cookie_secure(false))
}

/// A flow walked into the inner run's callback step: its store key, the
/// outer `state` and the inner one.
pub(crate) struct AtCallback {
    pub(crate) key: String,
    pub(crate) outer: String,
    pub(crate) inner: String,
}

/// Starts a setup and walks it into the inner run's callback step: `choose`
/// (started), `choose` submitted (runs `authorize`), `authorize` submitted.
pub(crate) async fn to_the_inner_callback(app: &Server, browser: &reqwest::Client) -> AtCallback {
    let started = browser.get(app.url("/setup/start")).send().await.unwrap();
    let key = started_flow_key(&started);
    let (status, body) = text(started).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let outer = body
        .strip_prefix("at choose state=")
        .expect(&body)
        .to_owned();
    let chosen = browser.post(app.url("/setup")).send().await.unwrap();
    assert_eq!(
        text(chosen).await,
        (StatusCode::OK, "at authorize".to_owned()),
        "the outer step runs the inner run's first step"
    );
    let authorized = browser.post(app.url("/setup")).send().await.unwrap();
    let (status, body) = text(authorized).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let inner = body.strip_prefix("to idp state=").expect(&body).to_owned();
    AtCallback { key, outer, inner }
}

/// A GET of `path`: the answer's status and text.
pub(crate) async fn visit(
    browser: &reqwest::Client,
    app: &Server,
    path: &str,
) -> (StatusCode, String) {
    text(browser.get(app.url(path)).send().await.unwrap()).await
}

/// The nonce inside a `state` value (`<reference>.<nonce>`).
pub(crate) fn nonce_of(state: &str) -> &str {
    state.split_once('.').map_or(state, |(_, nonce)| nonce)
}
