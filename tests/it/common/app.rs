//! A small axum app over the layer, served on loopback, and a cookie-keeping
//! HTTP client: the stack as users run it.

use axum::{
    Router,
    extract::Path,
    http::StatusCode,
    routing::{get, post},
};
use tower_pipeline_state::{PipelineState, PipelineStateLayer, RedisStore, Status, Store};

use std::sync::Arc;

use tokio::sync::Notify;

use crate::common::{Server, browser, listener, set_cookie};

/// Routes that exercise every part of the handle.
/// A handler held between its load and its write, for tests that change
/// Redis in between: `loaded` is told once the state is loaded; told
/// `release`, it sets `count` and answers "the handler's answer".
pub(crate) struct Held {
    pub(crate) loaded: Notify,
    pub(crate) release: Notify,
}

/// [`routes`] and `POST /gated`, whose handler is [`Held`] and sets `count`
/// to `value`.
pub(crate) fn routes_with_held(value: u64) -> (Router, Arc<Held>) {
    let held = Arc::new(Held {
        loaded: Notify::new(),
        release: Notify::new(),
    });
    let handler = held.clone();
    let routes = routes().route(
        "/gated",
        post(move |state: PipelineState| {
            let held = handler.clone();
            async move {
                held.loaded.notify_one();
                held.release.notified().await;
                state.set("count", &value).unwrap();
                "the handler's answer"
            }
        }),
    );
    (routes, held)
}

pub(crate) fn routes() -> Router {
    Router::new()
        .route("/noop", get(|| async { "untouched" }))
        .route("/read", get(read))
        .route("/incr", post(incr))
        .route("/set/{field}/{value}", post(set))
        .route("/clear", post(clear))
        .route("/regenerate", post(regenerate))
        .route("/fail", post(fail))
        .route("/status", get(status))
}

/// `count=<n|none>`.
async fn read(state: PipelineState) -> String {
    let count: Option<u64> = state.get("count").unwrap();
    format!(
        "count={}",
        count.map_or("none".to_owned(), |n| n.to_string())
    )
}

/// Adds one to `count`; answers the new value.
async fn incr(state: PipelineState) -> String {
    let count: u64 = state.get("count").unwrap().unwrap_or(0) + 1;
    state.set("count", &count).unwrap();
    count.to_string()
}

async fn set(state: PipelineState, Path((field, value)): Path<(String, String)>) -> &'static str {
    state.set(&field, &value).unwrap();
    "set"
}

async fn clear(state: PipelineState) -> &'static str {
    state.clear().unwrap();
    "cleared"
}

async fn regenerate(state: PipelineState) -> String {
    let mut fields = state
        .read::<serde_json::Map<String, serde_json::Value>>()
        .unwrap();
    fields.insert("regenerated".into(), true.into());
    state.regenerate(&fields).unwrap();
    state.id().unwrap().to_string()
}

/// Changes the state, then fails.
async fn fail(state: PipelineState) -> StatusCode {
    state.set("count", &1_000_000u64).unwrap();
    StatusCode::INTERNAL_SERVER_ERROR
}

/// `<status> <id|none>`.
async fn status(state: PipelineState) -> String {
    let status = match state.status() {
        Status::New => "new",
        Status::Loaded => "loaded",
        Status::Expired => "expired",
        _ => "other",
    };
    format!(
        "{status} {}",
        state.id().map_or("none".to_owned(), |id| id.to_string())
    )
}

/// Serves `router` on a free loopback port.
pub(crate) async fn serve(router: Router) -> Server {
    Server::axum(listener().await, router)
}

/// The test routes behind a layer over `store`, with cookies that work over
/// plain HTTP.
pub(crate) async fn serve_with<St: Store>(layer: PipelineStateLayer<St>) -> Server {
    serve(routes().layer(layer.cookie_secure(false))).await
}

/// A Redis store on a private server.
pub(crate) async fn redis_store(url: &str) -> RedisStore {
    RedisStore::connect(url)
        .await
        .expect("connect to the private redis-server")
}

/// The Redis key (default prefix) of the flow a response created.
pub(crate) fn created_key(response: &reqwest::Response) -> String {
    let cookie = set_cookie(response).expect("the response sets the flow cookie");
    format!("pipeline:{}", cookie.value())
}

/// The Redis key (default prefix) of the engine flow a response started: its
/// own cookie, `pipeline_id.<reference>`, holds the id.
pub(crate) fn started_flow_key(response: &reqwest::Response) -> String {
    let cookie = crate::common::flow_cookie(response).expect("the response sets a flow cookie");
    flow_key(cookie.value())
}

/// The Redis key of the flow whose (plain) cookie value is `value`: the id
/// comes first, before the ticket the cookie also carries.
pub(crate) fn flow_key(value: &str) -> String {
    let id = value.split_once('.').map_or(value, |(id, _)| id);
    format!("pipeline:{id}")
}

/// A private redis-server, the test routes behind a layer over it, and one
/// browser: what most tests start from.
pub(crate) struct Fixture {
    pub(crate) redis: crate::common::RedisServer,
    pub(crate) app: Server,
    pub(crate) browser: reqwest::Client,
}

impl Fixture {
    /// With the default layer.
    pub(crate) async fn new() -> Self {
        Self::with(PipelineStateLayer::new).await
    }

    /// With a layer configured by `configure`.
    pub(crate) async fn with<St: Store>(
        configure: impl FnOnce(RedisStore) -> PipelineStateLayer<St>,
    ) -> Self {
        let redis = crate::common::RedisServer::start();
        let app = serve_with(configure(redis_store(&redis.url()).await)).await;
        Self {
            redis,
            app,
            browser: browser(),
        }
    }
}

/// Sends a request and returns the response body.
pub(crate) async fn text_of(request: reqwest::RequestBuilder) -> String {
    request.send().await.unwrap().text().await.unwrap()
}
