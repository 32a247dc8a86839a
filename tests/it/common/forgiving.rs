//! A sign-in pipeline for the tests of flows that forgive (issue 16):
//! ended flows answering their replays (`replays.rs`), expired flows
//! starting again and lifetimes per pipeline (`expiry.rs`), starts that
//! only navigations make (`starts.rs`). Served over a private redis-server
//! through a connection that counts round trips, so any request can be
//! measured.
//!
//! The pipeline, `sso` unless named otherwise (kinds `login` and `link`;
//! the user is the `x-user` header):
//!
//! * `authorize`: binds a PKCE verifier, answers
//!   `authorize state=<callback state> to=<return_to or ->` (the redirect
//!   to the provider) and moves on.
//! * `callback`: the provider's redirect back (a callback step): counts its
//!   runs; `?fail` fails (the flow ends as failed); else binds the identity
//!   (`email`) and the provider's tokens (`id_token`), moves on and answers
//!   `signed in link=<the flow's link>`.
//! * `confirm`: answers `confirm link=<the flow's link>`; a POST finishes,
//!   `?cancel` cancels.
//!
//! `?cancel` on `authorize` cancels too. The finish hook counts its runs,
//! names the landing it was built with ([`Finished::lands_at`]) if any, and
//! answers a `303` there, else to the flow's `return_to`, else to `/`.
//! Replays of a finished flow are answered by
//! [`see_other`](tower_pipeline_state::pipeline::see_other). Failures
//! answer `400` and [`describe`] the failure.
//!
//! `/<name>/start?kind=<kind>&to=<return_to>` (any method) starts a flow
//! (`start_to` when `to` is given); `/<name>` dispatches.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use axum::{
    Router,
    body::Body,
    extract::Request,
    http::{Method, StatusCode},
    response::{IntoResponse, Response},
    routing::any,
};
use redis::aio::ConnectionManager;
use tower_pipeline_state::{
    PipelineStateLayer, RedisStore, Store,
    pipeline::{Failure, Flow, FlowError, HowEnded, Pipeline, PipelineBuilder, see_other},
};

use crate::common::{RedisServer, Server, counting::Counting, nested::has, serve};

/// The identity the provider hands back, and its token: what a finished
/// flow's record must not keep.
pub(crate) const EMAIL: &str = "alice@example.com";
pub(crate) const ID_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.alice-id-token.sig";
pub(crate) const VERIFIER: &str = "pkce-verifier-kept-by-the-flow";

/// Runs of the steps and hooks that must run once.
#[derive(Clone, Default)]
pub(crate) struct Counts {
    pub(crate) callbacks: Arc<AtomicUsize>,
    pub(crate) finishes: Arc<AtomicUsize>,
}

impl Counts {
    pub(crate) fn callbacks(&self) -> usize {
        self.callbacks.load(Ordering::SeqCst)
    }

    pub(crate) fn finishes(&self) -> usize {
        self.finishes.load(Ordering::SeqCst)
    }
}

pub(crate) type Builder = PipelineBuilder<Body, Response>;

/// The layer of an [`App`]: over a connection that counts round trips.
pub(crate) type Layer = PipelineStateLayer<RedisStore<Counting>>;

/// What the error handler answers: `outcome=<kind>`, then for an ended
/// flow ` how=<finished|cancelled|failed:<kind>>`, for a stale page
/// ` current=<step>`, and ` return_to=<path>` when the failure has one.
pub(crate) fn describe(failure: &Failure) -> String {
    let mut text = format!("outcome={}", failure.error.kind());
    match &failure.error {
        FlowError::Ended { how } => {
            let how = match how {
                HowEnded::Finished => "finished".to_owned(),
                HowEnded::Cancelled => "cancelled".to_owned(),
                HowEnded::Failed { kind } => format!("failed:{kind}"),
                other => format!("{other:?}"),
            };
            text.push_str(&format!(" how={how}"));
        }
        FlowError::StaleStep { current } => text.push_str(&format!(" current={current}")),
        _ => {}
    }
    if let Some(to) = &failure.return_to {
        text.push_str(&format!(" return_to={to}"));
    }
    text
}

/// The pipeline `name`, counting into `counts`, its finish hook naming
/// `lands_at` if given, configured further by `configure`.
pub(crate) fn sso(
    name: &str,
    counts: &Counts,
    lands_at: Option<&'static str>,
    configure: impl FnOnce(Builder) -> Builder,
) -> Pipeline<Body, Response> {
    let callbacks = counts.callbacks.clone();
    let finishes = counts.finishes.clone();
    let path = format!("/{name}");
    let confirm_path = path.clone();
    let builder = Pipeline::builder(name)
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
            "authorize",
            |request: Request, flow: Flow<Body, Response>| async move {
                if has(&request, "cancel") {
                    flow.cancel()?;
                    return Ok("cancelled".into_response());
                }
                flow.bind("verifier", VERIFIER)?;
                let page = format!(
                    "authorize state={} to={}",
                    flow.callback_state()?,
                    flow.return_to().unwrap_or("-")
                );
                flow.advance()?;
                Ok(page.into_response())
            },
        )
        .callback("callback", move |request: Request, flow| {
            let callbacks = callbacks.clone();
            let path = path.clone();
            async move {
                callbacks.fetch_add(1, Ordering::SeqCst);
                if has(&request, "fail") {
                    return Err(FlowError::failed("the provider refused the code"));
                }
                flow.bind("email", EMAIL)?;
                flow.bind("id_token", ID_TOKEN)?;
                flow.advance()?;
                Ok(format!("signed in link={}", flow.link(&path)).into_response())
            }
        })
        .step(
            "confirm",
            move |request: Request, flow: Flow<Body, Response>| {
                let path = confirm_path.clone();
                async move {
                    if has(&request, "cancel") {
                        flow.cancel()?;
                        return Ok("cancelled".into_response());
                    }
                    if request.method() != Method::POST {
                        return Ok(format!("confirm link={}", flow.link(&path)).into_response());
                    }
                    flow.next().await
                }
            },
        )
        .on_finish(move |_request, finished| {
            finishes.fetch_add(1, Ordering::SeqCst);
            async move {
                if let Some(landing) = lands_at {
                    finished.lands_at(landing);
                }
                let to = lands_at
                    .or(finished.return_to.as_deref())
                    .unwrap_or("/")
                    .to_owned();
                Ok(see_other(&to))
            }
        })
        .on_redirect(see_other)
        .on_error(|failure| (StatusCode::BAD_REQUEST, describe(&failure)).into_response());
    configure(builder).build()
}

/// Each pipeline at `/<name>/start` and `/<name>`, behind `layer` (with
/// cookies that work over plain HTTP).
pub(crate) fn router<St: Store>(
    pipelines: Vec<Pipeline<Body, Response>>,
    layer: PipelineStateLayer<St>,
) -> Router {
    let mut router = Router::new();
    for pipeline in pipelines {
        let starter = pipeline.clone();
        let name = pipeline.name().to_owned();
        router = router
            .route(
                &format!("/{name}/start"),
                any(move |request: Request| {
                    let starter = starter.clone();
                    async move {
                        let query = request.uri().query().unwrap_or_default().to_owned();
                        let param = |wanted: &str| {
                            form_urlencoded::parse(query.as_bytes())
                                .find(|(name, _)| name == wanted)
                                .map(|(_, value)| value.into_owned())
                        };
                        let kind = param("kind").unwrap_or_else(|| "login".to_owned());
                        match param("to") {
                            Some(to) => starter.start_to(request, &kind, &to).await,
                            None => starter.start(request, &kind).await,
                        }
                    }
                }),
            )
            .route_service(&format!("/{name}"), pipeline);
    }
    router.layer(layer.cookie_secure(false))
}

/// A private redis-server, an app over it through a counting connection,
/// and what its pipelines counted.
pub(crate) struct App {
    pub(crate) redis: RedisServer,
    pub(crate) app: Server,
    pub(crate) trips: Arc<AtomicUsize>,
    pub(crate) counts: Counts,
}

impl App {
    /// The `sso` pipeline configured by `configure`, behind the default
    /// layer.
    pub(crate) async fn new(configure: impl FnOnce(Builder) -> Builder) -> Self {
        Self::landing(None, configure).await
    }

    /// [`new`](Self::new), with a finish hook that names `lands_at`.
    pub(crate) async fn landing(
        lands_at: Option<&'static str>,
        configure: impl FnOnce(Builder) -> Builder,
    ) -> Self {
        Self::serving(
            |counts| vec![sso("sso", counts, lands_at, configure)],
            |l| l,
        )
        .await
    }

    /// The pipelines `pipelines` makes, behind the layer `layer` makes.
    pub(crate) async fn serving(
        pipelines: impl FnOnce(&Counts) -> Vec<Pipeline<Body, Response>>,
        layer: impl FnOnce(Layer) -> Layer,
    ) -> Self {
        let redis = RedisServer::start();
        let client = redis::Client::open(redis.url()).unwrap();
        let trips = Arc::new(AtomicUsize::new(0));
        let store = RedisStore::new(Counting {
            inner: ConnectionManager::new(client).await.unwrap(),
            trips: trips.clone(),
        });
        let counts = Counts::default();
        let router = router(pipelines(&counts), layer(PipelineStateLayer::new(store)));
        Self {
            redis,
            app: serve(router).await,
            trips,
            counts,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        self.app.url(path)
    }

    /// Sends `request`: the response, the round trips it cost (counted
    /// by the connection) and the commands the server ran for it.
    pub(crate) async fn measure(
        &self,
        request: reqwest::RequestBuilder,
    ) -> (reqwest::Response, usize, BTreeMap<String, u64>) {
        self.redis.reset_stats();
        self.trips.store(0, Ordering::SeqCst);
        let response = request.send().await.unwrap();
        (
            response,
            self.trips.load(Ordering::SeqCst),
            self.redis.command_calls(),
        )
    }
}

/// Commands by name, as [`App::measure`] returns them.
pub(crate) fn calls(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs
        .iter()
        .map(|(name, n)| ((*name).to_owned(), *n))
        .collect()
}

/// A response's status and text.
pub(crate) async fn answer(response: reqwest::Response) -> (StatusCode, String) {
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    (status, response.text().await.unwrap())
}

/// A response's `Location`, if any.
pub(crate) fn location(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("location")
        .map(|value| value.to_str().unwrap().to_owned())
}

/// `400` with `text`: what the error handler answers.
pub(crate) fn refused(text: &str) -> (StatusCode, String) {
    (StatusCode::BAD_REQUEST, text.to_owned())
}

/// A flow of `sso` as a browser walked it.
pub(crate) struct Walked {
    /// Its Redis key.
    pub(crate) key: String,
    /// The `state` its `authorize` sent to the provider.
    pub(crate) state: String,
    /// The flow's link, as the page after the callback made it (for the
    /// `confirm` step).
    pub(crate) link: String,
}

/// Starts a flow of `sso` in `browser` with `start` (the start URL's query:
/// `to=/billing`, say): its Redis key and the `state` its `authorize`
/// answered with.
pub(crate) async fn authorize(
    app: &App,
    browser: &reqwest::Client,
    start: &str,
) -> (String, String) {
    let started = browser
        .get(app.url(&format!("/sso/start?{start}")))
        .send()
        .await
        .unwrap();
    let key = crate::common::started_flow_key(&started);
    let (status, body) = answer(started).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let state = body
        .strip_prefix("authorize state=")
        .and_then(|rest| rest.split_once(' '))
        .expect(&body)
        .0
        .to_owned();
    (key, state)
}

/// Walks a flow of `sso` to its last step, `confirm`: started with
/// `start`, then called back by the provider.
pub(crate) async fn to_confirm(app: &App, browser: &reqwest::Client, start: &str) -> Walked {
    let (key, state) = authorize(app, browser, start).await;
    let back = browser
        .get(app.url(&format!("/sso?code=c0de&state={state}")))
        .send()
        .await
        .unwrap();
    let (status, body) = answer(back).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let link = body
        .strip_prefix("signed in link=")
        .expect(&body)
        .to_owned();
    Walked { key, state, link }
}

/// Walks a flow of `sso` through its finish (a POST of `confirm`, through
/// the page's own link): the flow, and the finish's response.
pub(crate) async fn finish(
    app: &App,
    browser: &reqwest::Client,
    start: &str,
) -> (Walked, reqwest::Response) {
    let walked = to_confirm(app, browser, start).await;
    let page = browser.get(app.url(&walked.link)).send().await.unwrap();
    let (status, body) = answer(page).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let action = body.strip_prefix("confirm link=").expect(&body).to_owned();
    let finished = browser.post(app.url(&action)).send().await.unwrap();
    let walked = Walked {
        link: action,
        ..walked
    };
    (walked, finished)
}
