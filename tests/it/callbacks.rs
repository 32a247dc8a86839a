//! A callback runs once, read adversarially: the same callback delivered
//! twice at once, a step error that leaves the flow, a refused write of
//! another state of the same request, cross-site requests to steps that are
//! not callbacks and to `start`, a header of thousands of flow cookies, and
//! callback forms over the limits. Real HTTP and a private redis-server;
//! cookies are sent by hand where a test needs exactly what a browser sends.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    extract::{DefaultBodyLimit, Request},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use redis::aio::ConnectionManager;
use tokio::sync::{Barrier, Notify, Semaphore};
use tower_pipeline_state::{
    LazyPipelineState, PipelineStateLayer, RedisStore, Store,
    pipeline::{Flow, FlowError, Pipeline},
    store::{CasOutcome, StoreError},
};

use crate::common::{
    counting::Counting,
    ended::{self, DEFAULT_WINDOW, ended_record, kept_for},
    *,
};

/// What the callback step does, and what the test sees of it.
struct Gate {
    /// Runs of the callback step.
    runs: AtomicUsize,
    /// The callback step waits for a permit here when `hold` is set.
    release: Semaphore,
    /// Told when two runs of the callback step are in it at once.
    both_in: Notify,
    /// Told when the callback step has loaded and changed the browser-wide
    /// state (`main=`).
    loaded: Notify,
    hold: bool,
}

impl Gate {
    /// A gate that lets the callback step through at once, or (`hold`)
    /// only when the test adds a permit.
    fn new(hold: bool) -> Arc<Self> {
        Arc::new(Self {
            runs: AtomicUsize::new(0),
            release: Semaphore::new(0),
            both_in: Notify::new(),
            loaded: Notify::new(),
            hold,
        })
    }
}

/// A `/touch` that never waits.
fn open_touch() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(Semaphore::MAX_PERMITS))
}

/// `authorize` renders `state=<callback state>` and moves on (`?stay`:
/// stays); `callback`
/// counts its runs (waiting at the gate if asked), then by its query:
/// `fail=replayed` asks for the spent nonce (a bug that fails without
/// ending the flow), `fail=ends` fails and ends the flow, `main=<v>` also
/// sets the browser-wide state's `x`; else binds `code` and moves on.
/// `confirm` renders `confirm`. Failures answer `400 outcome=<kind>`.
fn pipeline(
    gate: Arc<Gate>,
    configure: impl FnOnce(PipelineBuilderOf) -> PipelineBuilderOf,
) -> Pipeline<Body, Response> {
    let builder = Pipeline::builder("sso")
        .flow_kind("login")
        .step(
            "authorize",
            |request: Request, flow: Flow<Body, Response>| async move {
                let page = format!("state={}", flow.callback_state()?);
                // `?stay`: the flow waits on this step, its nonce live.
                if request.uri().query() != Some("stay") {
                    flow.advance()?;
                }
                Ok(page.into_response())
            },
        )
        .callback(
            "callback",
            move |request: Request, flow: Flow<Body, Response>| {
                let gate = gate.clone();
                async move {
                    if gate.runs.fetch_add(1, Ordering::SeqCst) == 1 {
                        gate.both_in.notify_one();
                    }
                    let query = request.uri().query().unwrap_or_default().to_owned();
                    if let Some(value) = query.split('&').find_map(|p| p.strip_prefix("main=")) {
                        let lazy = request.extensions().get::<LazyPipelineState>().unwrap();
                        let main = lazy.load().await.unwrap();
                        main.set("x", value)?;
                        gate.loaded.notify_one();
                    }
                    if gate.hold {
                        let _permit = gate.release.acquire().await.unwrap();
                    }
                    if query.contains("fail=replayed") {
                        flow.nonce()?;
                    }
                    if query.contains("fail=ends") {
                        return Err(FlowError::failed("the provider refused the code"));
                    }
                    flow.bind("code", "c0de")?;
                    flow.advance()?;
                    Ok("called back".into_response())
                }
            },
        )
        .step("confirm", |_request, _flow| async move {
            Ok("confirm".into_response())
        })
        .on_finish(|_request, _finished| async { Ok("finished".into_response()) })
        .on_error(|failure| {
            (
                StatusCode::BAD_REQUEST,
                format!("outcome={}", failure.error.kind()),
            )
                .into_response()
        });
    configure(builder).build()
}

type PipelineBuilderOf = tower_pipeline_state::pipeline::PipelineBuilder<Body, Response>;

/// `/flow/start` (GET or POST) starts a flow, `/flow` dispatches, `/touch`
/// sets the browser-wide state's `x` to `touched <n>` (the `n`th touch)
/// once `touch_gate` lets it.
async fn app(
    redis: &RedisServer,
    pipeline: Pipeline<Body, Response>,
    touch_gate: Arc<Semaphore>,
) -> Server {
    app_over(redis_store(&redis.url()).await, pipeline, touch_gate).await
}

/// [`app`] over any store.
async fn app_over<St: Store>(
    store: St,
    pipeline: Pipeline<Body, Response>,
    touch_gate: Arc<Semaphore>,
) -> Server {
    let starter = pipeline.clone();
    let touches = Arc::new(AtomicUsize::new(0));
    let router = Router::new()
        .route(
            "/flow/start",
            get({
                let starter = starter.clone();
                move |request: Request| async move { starter.start(request, "login").await }
            })
            .post(move |request: Request| async move { starter.start(request, "login").await }),
        )
        .route_service("/flow", pipeline)
        .route(
            "/touch",
            post(move |state: tower_pipeline_state::PipelineState| {
                let gate = touch_gate.clone();
                let touch = touches.fetch_add(1, Ordering::SeqCst);
                async move {
                    state.set("x", &format!("touched {touch}")).unwrap();
                    gate.acquire().await.unwrap().forget();
                    "touched"
                }
            }),
        )
        .layer(PipelineStateLayer::new(store).cookie_secure(false));
    serve(router).await
}

/// Starts a flow in `browser`: its callback state and its Redis key.
async fn start(app: &Server, browser: &reqwest::Client) -> (String, String) {
    let response = browser.get(app.url("/flow/start")).send().await.unwrap();
    let key = flow_key(
        flow_cookie(&response)
            .expect("a started flow sets its cookie")
            .value(),
    );
    let body = response.text().await.unwrap();
    let state = body.strip_prefix("state=").expect(&body).to_owned();
    (state, key)
}

async fn answer(response: reqwest::Response) -> (StatusCode, String) {
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    (status, response.text().await.unwrap())
}

fn refused(kind: &str) -> (StatusCode, String) {
    (StatusCode::BAD_REQUEST, format!("outcome={kind}"))
}

#[tokio::test]
async fn a_callback_delivered_twice_at_once_runs_its_step_once() {
    let redis = RedisServer::start();
    for round in 0..5 {
        let gate = Gate::new(true);
        let app = app(&redis, pipeline(gate.clone(), |b| b), open_touch()).await;
        let browser = browser();
        let (state, key) = start(&app, &browser).await;
        let url = app.url(&format!("/flow?code=c0de&state={state}"));
        let first = tokio::spawn(browser.get(&url).send());
        let second = tokio::spawn(browser.get(&url).send());
        let (mut first, mut second) = (Some(first), Some(second));
        // Whichever answers while the other is held in the step is the
        // loser; two runs in the step at once is the bug, and lets both go.
        let early = tokio::select! {
            answered = first.as_mut().unwrap() => { first = None; Some(answered) }
            answered = second.as_mut().unwrap() => { second = None; Some(answered) }
            () = gate.both_in.notified() => None,
        };
        gate.release.add_permits(2);
        let mut answers = Vec::new();
        if let Some(early) = early {
            answers.push(answer(early.unwrap().unwrap()).await);
        }
        for pending in [first, second].into_iter().flatten() {
            answers.push(answer(pending.await.unwrap().unwrap()).await);
        }
        assert_eq!(
            gate.runs.load(Ordering::SeqCst),
            1,
            "round {round}: the step ran once ({answers:?})"
        );
        answers.sort();
        assert_eq!(answers[0], (StatusCode::OK, "called back".to_owned()));
        assert!(
            [refused("concurrent"), refused("nonce_replayed")].contains(&answers[1]),
            "round {round}: the loser is refused before the step: {answers:?}"
        );
        let record: serde_json::Value = serde_json::from_slice(&redis.get(&key).unwrap()).unwrap();
        assert_eq!(
            record["data"]["data"]["code"], "c0de",
            "the winner's flow is kept"
        );
        assert!(record["data"].get("nonce").is_none(), "the nonce is spent");
        assert_eq!(record["data"]["step_index"], 2);
    }
}

/// A Redis store whose loads of one chosen key meet at a barrier: two
/// requests for that flow both hold what they loaded before either writes,
/// so they really overlap (neither can see the other's write at its load).
struct LoadsMeet {
    inner: RedisStore,
    meeting: Arc<Meeting>,
}

/// The key whose loads meet (none until the test names it), and where.
struct Meeting {
    key: Mutex<Option<String>>,
    barrier: Barrier,
}

impl Store for LoadsMeet {
    async fn load(
        &self,
        key: &str,
        refresh: Option<Duration>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let loaded = self.inner.load(key, refresh).await;
        let chosen = self.meeting.key.lock().unwrap().as_deref() == Some(key);
        if chosen {
            self.meeting.barrier.wait().await;
        }
        loaded
    }

    async fn create(&self, key: &str, record: &[u8], ttl: Duration) -> Result<bool, StoreError> {
        self.inner.create(key, record, ttl).await
    }

    async fn update(
        &self,
        key: &str,
        version: u64,
        record: &[u8],
        ttl: Duration,
    ) -> Result<CasOutcome, StoreError> {
        self.inner.update(key, version, record, ttl).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }

    async fn delete_if_version(&self, key: &str, version: u64) -> Result<CasOutcome, StoreError> {
        self.inner.delete_if_version(key, version).await
    }
}

#[tokio::test]
async fn a_callback_whose_two_copies_both_loaded_before_either_wrote_runs_its_step_once() {
    let redis = RedisServer::start();
    for round in 0..5 {
        let meeting = Arc::new(Meeting {
            key: Mutex::new(None),
            barrier: Barrier::new(2),
        });
        let store = LoadsMeet {
            inner: redis_store(&redis.url()).await,
            meeting: meeting.clone(),
        };
        let gate = Gate::new(false);
        let app = app_over(store, pipeline(gate.clone(), |b| b), open_touch()).await;
        let browser = browser();
        let (state, key) = start(&app, &browser).await;
        *meeting.key.lock().unwrap() = Some(key.clone());
        let url = app.url(&format!("/flow?code=c0de&state={state}"));
        let (first, second) = tokio::join!(browser.get(&url).send(), browser.get(&url).send());
        let mut answers = vec![answer(first.unwrap()).await, answer(second.unwrap()).await];
        answers.sort();
        assert_eq!(
            gate.runs.load(Ordering::SeqCst),
            1,
            "round {round}: {answers:?}"
        );
        // Both loaded the same version: the loser's spend of the nonce
        // finds the winner's write, so it is refused as concurrent (never
        // as a replay, which would mean it loaded after the winner wrote).
        assert_eq!(
            answers,
            [
                (StatusCode::OK, "called back".to_owned()),
                refused("concurrent")
            ],
            "round {round}"
        );
        let record: serde_json::Value = serde_json::from_slice(&redis.get(&key).unwrap()).unwrap();
        assert_eq!(record["data"]["data"]["code"], "c0de", "round {round}");
    }
}

#[tokio::test]
async fn a_callback_step_costs_one_round_trip_more_than_any_step() {
    let redis = RedisServer::start();
    let client = redis::Client::open(redis.url()).unwrap();
    let trips = Arc::new(AtomicUsize::new(0));
    let store = RedisStore::new(Counting {
        inner: ConnectionManager::new(client).await.unwrap(),
        trips: trips.clone(),
    });
    let app = app_over(store, pipeline(Gate::new(false), |b| b), open_touch()).await;
    let browser = browser();
    // Warm the script cache: the first EVALSHA on a fresh server costs a
    // NOSCRIPT and a SCRIPT LOAD.
    let (state, _) = start(&app, &browser).await;
    browser
        .get(app.url(&format!("/flow?state={state}")))
        .send()
        .await
        .unwrap();

    let (state, _) = start(&app, &browser).await;
    redis.reset_stats();
    trips.store(0, Ordering::SeqCst);
    let called = browser
        .get(app.url(&format!("/flow?state={state}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer(called).await,
        (StatusCode::OK, "called back".to_owned())
    );
    let commands = [("evalsha", 3), ("expire", 1), ("get", 3), ("set", 2)]
        .map(|(name, n)| (name.to_owned(), n))
        .into();
    assert_eq!(
        (trips.load(Ordering::SeqCst), redis.command_calls()),
        (3, commands),
        "the load, the nonce spent before the step, the step's changes"
    );
}

#[tokio::test]
async fn a_step_error_that_leaves_the_flow_keeps_the_nonce_spent() {
    let redis = RedisServer::start();
    let gate = Gate::new(false);
    let app = app(&redis, pipeline(gate.clone(), |b| b), open_touch()).await;
    let browser = browser();
    let (state, key) = start(&app, &browser).await;
    let url = app.url(&format!("/flow?fail=replayed&state={state}"));
    let failed = browser.get(&url).send().await.unwrap();
    assert_eq!(answer(failed).await, refused("nonce_replayed"));
    let record: serde_json::Value = serde_json::from_slice(&redis.get(&key).unwrap()).unwrap();
    assert!(record["data"].get("nonce").is_none(), "spent: {record}");
    assert_eq!(record["data"]["step_index"], 1, "the flow did not move");

    let again = browser.get(&url).send().await.unwrap();
    assert_eq!(answer(again).await, refused("nonce_replayed"));
    assert_eq!(
        gate.runs.load(Ordering::SeqCst),
        1,
        "the same state and code never reach the step again"
    );
}

#[tokio::test]
async fn a_refused_write_of_the_browser_state_does_not_stop_the_flows_end() {
    let redis = RedisServer::start();
    let gate = Gate::new(true);
    let touch_gate = Arc::new(Semaphore::new(1));
    let app = app(&redis, pipeline(gate.clone(), |b| b), touch_gate.clone()).await;
    let browser = browser();
    // The browser-wide state exists, with `x`.
    let touched = browser.post(app.url("/touch")).send().await.unwrap();
    assert_eq!(answer(touched).await.0, StatusCode::OK);
    let (state, key) = start(&app, &browser).await;

    // A `/touch` and the callback both load the browser-wide state and
    // change `x`; the touch writes first, so the callback's write of it is
    // refused. The callback's step also fails, which ends its flow.
    let touch = tokio::spawn(browser.post(app.url("/touch")).send());
    let url = app.url(&format!("/flow?fail=ends&main=callback&state={state}"));
    let callback = tokio::spawn(browser.get(&url).send());
    gate.loaded.notified().await;
    touch_gate.add_permits(1);
    assert_eq!(
        answer(touch.await.unwrap().unwrap()).await.0,
        StatusCode::OK
    );
    gate.release.add_permits(1);
    let response = callback.await.unwrap().unwrap();
    assert_eq!(
        response.status(),
        StatusCode::CONFLICT,
        "the browser state's write was refused, and that is the answer"
    );
    let ended = set_cookies(response.headers())
        .into_iter()
        .find(|cookie| cookie.name().starts_with("pipeline_id."))
        .expect("the flow's end went out with the conflict");
    kept_for(&ended, DEFAULT_WINDOW);
    ended_record(&redis, &key, &ended::failed("failed"), DEFAULT_WINDOW);
}

#[tokio::test]
async fn a_cross_site_post_with_the_nonce_reaches_no_step_but_a_callback() {
    let redis = RedisServer::start();
    let gate = Gate::new(false);
    let app = app(
        &redis,
        pipeline(gate.clone(), |b| b.cross_site_callbacks(true)),
        open_touch(),
    )
    .await;
    // The flow waits on `authorize` (not a callback), its nonce live.
    let browser = reqwest::Client::new();
    let started = browser
        .get(app.url("/flow/start?stay"))
        .send()
        .await
        .unwrap();
    let cookie = flow_cookie(&started).unwrap();
    let key = flow_key(cookie.value());
    let body = started.text().await.unwrap();
    let state = body.strip_prefix("state=").unwrap();
    let before = redis.get(&key).unwrap();

    let attack = browser
        .post(app.url(&format!("/flow?state={state}")))
        .header("cookie", format!("{}={}", cookie.name(), cookie.value()))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(answer(attack).await, refused("cross_site"));
    assert_eq!(
        redis.get(&key),
        Some(before),
        "the flow is untouched, its nonce live"
    );
}

#[tokio::test]
async fn another_site_cannot_start_a_flow_unless_the_pipeline_allows_it() {
    let redis = RedisServer::start();
    let app = app(&redis, pipeline(Gate::new(false), |b| b), open_touch()).await;
    let refused_start = reqwest::Client::new()
        .post(app.url("/flow/start"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert!(flow_cookie(&refused_start).is_none(), "no flow cookie set");
    assert_eq!(answer(refused_start).await, refused("cross_site"));
    assert!(redis.keys().is_empty(), "nothing stored");

    let open = app_allowing_cross_site_start(&redis).await;
    let started = reqwest::Client::new()
        .post(open.url("/flow/start"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert!(flow_cookie(&started).is_some());
    assert_eq!(answer(started).await.0, StatusCode::OK);
}

async fn app_allowing_cross_site_start(redis: &RedisServer) -> Server {
    app(
        redis,
        pipeline(Gate::new(false), |b| b.cross_site_start(true)),
        open_touch(),
    )
    .await
}

#[tokio::test]
async fn thousands_of_flow_cookies_cost_at_most_max_flows_removals() {
    let redis = RedisServer::start();
    let app = app(&redis, pipeline(Gate::new(false), |b| b), open_touch()).await;
    // 5,000 names shaped as flow references (20 URL-safe characters).
    let header = (0..5_000)
        .map(|n| format!("pipeline_id.{n:020}=x"))
        .collect::<Vec<_>>()
        .join("; ");
    let response = reqwest::Client::new()
        .get(app.url("/flow/start"))
        .header("cookie", header)
        .send()
        .await
        .unwrap();
    let set = set_cookies(response.headers());
    let removals = set.iter().filter(|cookie| removes(cookie)).count();
    assert!(
        removals <= 5,
        "{removals} removals for the default max_flows of 5"
    );
    assert_eq!(set.len() - removals, 1, "the new flow's cookie");
    assert_eq!(answer(response).await.0, StatusCode::OK);
}

/// A pipeline whose one step answers with the length of the body it got.
fn body_length(callbacks: bool) -> Pipeline<Body, Response> {
    let step = |request: Request, _flow: Flow<Body, Response>| async move {
        let body = axum::body::to_bytes(request.into_body(), usize::MAX)
            .await
            .map_err(FlowError::failed)?;
        Ok(format!("body {}", body.len()).into_response())
    };
    let builder = Pipeline::builder("form")
        .flow_kind("login")
        .form_limit(1024);
    let builder = if callbacks {
        builder.step("read", step).callback("callback", step)
    } else {
        builder.step("read", step)
    };
    builder
        .on_finish(|_request, _finished| async { Ok("finished".into_response()) })
        .on_error(|failure| {
            (
                StatusCode::BAD_REQUEST,
                format!("outcome={}", failure.error.kind()),
            )
                .into_response()
        })
        .build()
}

async fn form_app(
    redis: &RedisServer,
    pipeline: Pipeline<Body, Response>,
    body_limit: Option<usize>,
) -> Server {
    let starter = pipeline.clone();
    let mut router = Router::new()
        .route(
            "/flow/start",
            get(move |request: Request| async move { starter.start(request, "login").await }),
        )
        .route_service("/flow", pipeline);
    if let Some(limit) = body_limit {
        router = router.layer(DefaultBodyLimit::max(limit));
    }
    serve(
        router.layer(PipelineStateLayer::new(redis_store(&redis.url()).await).cookie_secure(false)),
    )
    .await
}

async fn post_form(app: &Server, browser: &reqwest::Client, size: usize) -> (StatusCode, String) {
    let form = format!("a={}", "x".repeat(size - 2));
    let response = browser
        .post(app.url("/flow"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    answer(response).await
}

#[tokio::test]
async fn a_callback_form_is_read_only_within_the_limits_and_only_by_a_pipeline_with_callbacks() {
    let redis = RedisServer::start();
    let with_callbacks = form_app(&redis, body_length(true), None).await;
    let browser = browser();
    browser
        .get(with_callbacks.url("/flow/start"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        post_form(&with_callbacks, &browser, 1024).await,
        (StatusCode::OK, "body 1024".to_owned()),
        "within the limit: read for `state`, then handed to the step whole"
    );
    assert_eq!(
        post_form(&with_callbacks, &browser, 1025).await,
        refused("failed")
    );

    let tighter = form_app(&redis, body_length(true), Some(100)).await;
    let browser = browser_for(&tighter).await;
    assert_eq!(
        post_form(&tighter, &browser, 101).await,
        refused("failed"),
        "the application's DefaultBodyLimit holds when it is smaller"
    );

    let no_callbacks = form_app(&redis, body_length(false), None).await;
    let browser = browser_for(&no_callbacks).await;
    assert_eq!(
        post_form(&no_callbacks, &browser, 4096).await,
        (StatusCode::OK, "body 4096".to_owned()),
        "a pipeline without callbacks leaves the body to its step"
    );
}

/// A browser that started a flow on `app`.
async fn browser_for(app: &Server) -> reqwest::Client {
    let browser = browser();
    let started = browser.get(app.url("/flow/start")).send().await.unwrap();
    assert_eq!(started.status(), 200);
    browser
}
