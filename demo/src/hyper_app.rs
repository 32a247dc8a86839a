//! The hyper example's service: a plain tower service (`tower::service_fn`)
//! wrapped by the layer, served over HTTP/1 by [`crate::http1`]. The demo's
//! `tests/it/stacks.rs` runs a flow through exactly this code.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Incoming};
use tower::{Layer, Service, service_fn};
use tower_pipeline_state::{LazyPipelineState, PipelineStateLayer, ResponseBody, Status, Store};

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
    Response = Response<ResponseBody<Full<Bytes>>>,
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
    PipelineStateLayer::new(store)
        .cookie_secure(false)
        .layer(service_fn(wizard))
}

/// The inner service: a plain async function of the request. The layer put
/// a [`LazyPipelineState`] in the request's extensions; a route that needs
/// the flow loads it (one `GETEX`), any other request costs no store command.
async fn wizard(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let Some(lazy) = request.extensions().get::<LazyPipelineState>() else {
        return Ok(text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no PipelineStateLayer".to_owned(),
        ));
    };
    match request.uri().path() {
        // The index needs no flow: no store command.
        "/" => return Ok(html(crate::WIZARD_INDEX)),
        path if path.starts_with("/wizard") => {}
        _ => return Ok(text(StatusCode::NOT_FOUND, "not found".to_owned())),
    }
    let state = match lazy.load().await {
        Ok(state) => state,
        // The store is down or slow: the layer's own 503 (or the page its
        // error hook renders).
        Err(error) => return Ok(lazy.error_response(&error).map(Full::new)),
    };
    let step: Option<u32> = match state.get("step") {
        Ok(step) => step,
        Err(error) => return Ok(text(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())),
    };
    let response = match (request.method(), request.uri().path()) {
        (&Method::GET, "/wizard") => match (state.status(), step) {
            (_, Some(step)) => text(StatusCode::OK, format!("step {step}")),
            (Status::Expired, None) => text(StatusCode::OK, "expired".to_owned()),
            (_, None) => text(StatusCode::OK, "no flow".to_owned()),
        },
        (&Method::POST, "/wizard/start") => match state.set("step", &1u32) {
            Ok(()) => text(StatusCode::OK, "step 1".to_owned()),
            Err(error) => text(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
        },
        (&Method::POST, "/wizard/next") => match step {
            None => text(StatusCode::CONFLICT, "no flow to continue".to_owned()),
            Some(step) => match state.set("step", &(step + 1)) {
                Ok(()) => text(StatusCode::OK, format!("step {}", step + 1)),
                Err(error) => text(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
            },
        },
        (&Method::POST, "/wizard/finish") => match step {
            None => text(StatusCode::CONFLICT, "no flow to finish".to_owned()),
            Some(step) => match state.clear() {
                Ok(()) => text(StatusCode::OK, format!("finished at step {step}")),
                Err(error) => text(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
            },
        },
        _ => text(StatusCode::NOT_FOUND, "not found".to_owned()),
    };
    Ok(response)
}

fn html(body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}
