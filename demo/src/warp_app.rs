//! The warp example's service: warp filters turned into a tower service
//! (`warp::service`), wrapped by the layer, served over HTTP/1 by
//! [`crate::http1`]. The demo's `tests/it/stacks.rs` runs a flow through
//! exactly this code.

use std::convert::Infallible;

use bytes::Bytes;
use http_body::Body;
use hyper::{Request, Response, StatusCode, body::Incoming};
use tower::{Layer, Service};
use tower_pipeline_state::{LoadMode, PipelineState, PipelineStateLayer, Status, Store};
use warp::{
    Filter, Rejection, Reply,
    reply::{WithStatus, with_status},
};

/// The application: a three-step wizard whose progress lives in the flow
/// state.
///
/// | request | does |
/// | --- | --- |
/// | `GET /` | an index page with the requests below as buttons |
/// | `GET /wizard` | reads the state: `step <n>`, `no flow`, or `expired` |
/// | `POST /wizard/start` | creates the flow at step 1 |
/// | `POST /wizard/next` | changes it: one step further |
/// | `POST /wizard/finish` | clears it |
pub fn service<St: Store>(
    store: St,
) -> impl Service<
    Request<Incoming>,
    Response = Response<impl Body<Data = Bytes, Error = warp::Error> + Send + 'static>,
    Error = Infallible,
    Future: Send,
> + Clone
+ Send
+ 'static {
    // `cookie_secure(false)`: this example speaks plain HTTP, and a `Secure`
    // cookie travels only over HTTPS. Some clients make an exception for
    // `localhost`, but not all do, and none does for another host (a LAN
    // address, a dev hostname), where the flow would silently restart on
    // every request. Keep the default (on) in production, behind TLS.
    //
    // `LoadMode::Eager`: warp's filters are synchronous here, so the state is
    // loaded before the service runs and taken from the extensions as it is.
    PipelineStateLayer::new(store)
        .cookie_secure(false)
        .load_mode(LoadMode::Eager)
        .layer(warp::service(routes()))
}

/// The filters. Each handler takes the flow's [`PipelineState`] from the
/// request's extensions, where the layer put it, loaded (eager mode).
fn routes()
-> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone + Send + Sync + 'static {
    let state = warp::ext::get::<PipelineState>();
    let read = warp::path!("wizard").and(warp::get()).and(state).map(read);
    let start = warp::path!("wizard" / "start")
        .and(warp::post())
        .and(state)
        .map(start);
    let next = warp::path!("wizard" / "next")
        .and(warp::post())
        .and(state)
        .map(next);
    let finish = warp::path!("wizard" / "finish")
        .and(warp::post())
        .and(state)
        .map(finish);
    let index = warp::path::end()
        .and(warp::get())
        .map(|| warp::reply::html(crate::WIZARD_INDEX));
    index.or(read).or(start).or(next).or(finish)
}

type Text = WithStatus<String>;

fn read(state: PipelineState) -> Text {
    match (state.status(), state.get::<u32>("step")) {
        (_, Ok(Some(step))) => ok(format!("step {step}")),
        (Status::Expired, Ok(None)) => ok("expired".to_owned()),
        (_, Ok(None)) => ok("no flow".to_owned()),
        (_, Err(error)) => failed(error),
    }
}

fn start(state: PipelineState) -> Text {
    match state.set("step", &1u32) {
        Ok(()) => ok("step 1".to_owned()),
        Err(error) => failed(error),
    }
}

fn next(state: PipelineState) -> Text {
    let step = match state.get::<u32>("step") {
        Ok(Some(step)) => step + 1,
        Ok(None) => return with_status("no flow to continue".to_owned(), StatusCode::CONFLICT),
        Err(error) => return failed(error),
    };
    match state.set("step", &step) {
        Ok(()) => ok(format!("step {step}")),
        Err(error) => failed(error),
    }
}

fn finish(state: PipelineState) -> Text {
    let step = match state.get::<u32>("step") {
        Ok(Some(step)) => step,
        Ok(None) => return with_status("no flow to finish".to_owned(), StatusCode::CONFLICT),
        Err(error) => return failed(error),
    };
    match state.clear() {
        Ok(()) => ok(format!("finished at step {step}")),
        Err(error) => failed(error),
    }
}

fn ok(body: String) -> Text {
    with_status(body, StatusCode::OK)
}

fn failed(error: impl std::fmt::Display) -> Text {
    with_status(error.to_string(), StatusCode::INTERNAL_SERVER_ERROR)
}
