//! What the fuzz targets share: [`PipelineStateLayer`] over a
//! [`MemoryStore`], driven through its public `tower` API exactly as a
//! server drives it, with a handler that reads and changes the state.
#![forbid(unsafe_code)]

use std::{
    convert::Infallible,
    sync::{Arc, LazyLock, Mutex},
    time::Duration,
};

use http::{HeaderValue, Request, Response, StatusCode, header::COOKIE, header::SET_COOKIE};
use serde_json::{Map, Value};
use tower::{Layer, ServiceExt, service_fn};
use tower_pipeline_state::{
    Key, LazyPipelineState, MemoryStore, PipelineStateLayer, Status, Store,
};

/// A live flow's id, planted in every fresh store (and listed in the
/// dictionaries, so the fuzzer can find it).
pub const LIVE_ID: &str = "0123456789abcdef0123456789abcdef";

/// The key of [`LIVE_ID`] under the default prefix.
pub fn live_key() -> String {
    format!("pipeline:{LIVE_ID}")
}

/// How long planted records live: far longer than one run.
pub const TTL: Duration = Duration::from_secs(3600);

/// One runtime for the whole process; the store's futures are ready at once
/// and only the layer's timeout needs a timer.
pub static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime")
});

/// The signing and encryption key of the signed and private layers.
pub fn key() -> Key {
    Key::from(&[42u8; 64])
}

/// What the handler saw and what came back.
#[derive(Debug)]
pub struct Outcome {
    /// The response status.
    pub status: StatusCode,
    /// The state's status as the handler saw it; `None` when the load was
    /// refused (a record of a newer format) and the handler did not run.
    pub state: Option<Status>,
    /// The `pipeline_id` value of a `Set-Cookie`, if one was sent.
    pub cookie: Option<String>,
}

/// Sends one request carrying `cookies`; the handler reads the whole state,
/// then sets `touched` when `touch` is on.
pub async fn request(
    layer: &PipelineStateLayer<MemoryStore>,
    cookies: &[HeaderValue],
    touch: bool,
) -> Outcome {
    let seen = Arc::new(Mutex::new(None));
    let sink = seen.clone();
    let handler = service_fn(move |request: Request<()>| {
        let sink = sink.clone();
        async move {
            let lazy = request
                .extensions()
                .get::<LazyPipelineState>()
                .expect("the layer inserts the state")
                .clone();
            // A memory store never fails; a record of a newer format is
            // refused with a 503 and the handler never sees it.
            let Ok(state) = lazy.load().await else {
                let mut refused = Response::new(String::new());
                *refused.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                return Ok::<_, Infallible>(refused);
            };
            *sink.lock().unwrap() = Some(state.status());
            let _: Map<String, Value> = state.read().expect("a state is always a map");
            if touch {
                state.set("touched", &true).expect("the request is running");
            }
            Ok::<_, Infallible>(Response::new(String::new()))
        }
    });
    let mut request = Request::new(());
    for cookie in cookies {
        request.headers_mut().append(COOKIE, cookie.clone());
    }
    let response = layer
        .layer(handler)
        .oneshot(request)
        .await
        .unwrap_or_else(|never| match never {});
    let cookie = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| cookie::Cookie::parse(v.to_str().ok()?).ok())
        .find(|c| c.name() == "pipeline_id")
        .map(|c| c.value().to_owned());
    let state = seen.lock().unwrap().take();
    Outcome {
        status: response.status(),
        state,
        cookie,
    }
}

/// A store holding one live flow, under [`LIVE_ID`].
pub async fn store_with_live_flow() -> MemoryStore {
    let store = MemoryStore::new();
    let record = br#"{"format":1,"version":1,"data":{"step":1}}"#;
    assert!(store.create(&live_key(), record, TTL).await.unwrap());
    store
}

/// The flow-cookie limit of [`engine_request`]'s layer.
pub const MAX_FLOWS: usize = 3;

/// What [`engine_request`] saw.
#[derive(Debug)]
pub struct EngineOutcome {
    /// The response status.
    pub status: StatusCode,
    /// How many `Set-Cookie`s the response carries.
    pub set_cookies: usize,
    /// Whether the pipeline's callback step ran.
    pub called_back: bool,
}

/// Sends a form POST carrying `cookies` (one `Cookie` header) and `form` to
/// a pipeline with a callback step and cross-site callbacks, behind a
/// signed layer with [`MAX_FLOWS`] over an empty `MemoryStore`: to its
/// `start` when `start` is on, else to its `dispatch`; marked
/// `Sec-Fetch-Site: cross-site` when `cross_site` is on.
pub async fn engine_request(
    cookies: &HeaderValue,
    form: &[u8],
    start: bool,
    cross_site: bool,
) -> EngineOutcome {
    use std::sync::atomic::{AtomicBool, Ordering};

    use bytes::Bytes;
    use http::header::CONTENT_TYPE;
    use http_body_util::Full;
    use tower_pipeline_state::pipeline::{Flow, Pipeline};

    type Body = Full<Bytes>;
    let called_back = Arc::new(AtomicBool::new(false));
    let seen = called_back.clone();
    let pipeline = Pipeline::<Body, StatusCode>::builder("fuzz")
        .flow_kind("login")
        .cross_site_callbacks(true)
        .step("authorize", |_request, flow: Flow<Body, StatusCode>| async move {
            flow.advance()?;
            Ok(StatusCode::OK)
        })
        .callback("callback", move |_request, _flow| {
            seen.store(true, Ordering::SeqCst);
            async { Ok(StatusCode::OK) }
        })
        .on_finish(|_request, _finished| async { Ok(StatusCode::OK) })
        .on_error(|_failure| StatusCode::BAD_REQUEST)
        .build();
    let handler = service_fn(move |request: Request<Body>| {
        let pipeline = pipeline.clone();
        async move {
            let status = if start {
                pipeline.start(request, "login").await
            } else {
                pipeline.dispatch(request).await
            };
            let mut response = Response::new(String::new());
            *response.status_mut() = status;
            Ok::<_, Infallible>(response)
        }
    });
    let mut request = Request::post("/flow")
        .header(COOKIE, cookies.clone())
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::copy_from_slice(form)))
        .expect("a valid request");
    if cross_site {
        request
            .headers_mut()
            .insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
    }
    let layer = PipelineStateLayer::new(MemoryStore::new())
        .signed(key(), [])
        .max_flows(MAX_FLOWS);
    let response = layer
        .layer(handler)
        .oneshot(request)
        .await
        .unwrap_or_else(|never| match never {});
    EngineOutcome {
        status: response.status(),
        set_cookies: response.headers().get_all(SET_COOKIE).iter().count(),
        called_back: called_back.load(Ordering::SeqCst),
    }
}
