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
use tower_pipeline_state::{Key, LazyPipelineState, MemoryStore, PipelineStateLayer, Status, Store};

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
    /// The state's status as the handler saw it.
    pub state: Status,
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
            let state = lazy.load().await.expect("a memory store never fails");
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
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("pipeline_id="))
        .map(|rest| rest.split(';').next().unwrap_or_default().to_owned());
    let state = seen.lock().unwrap().take();
    Outcome {
        status: response.status(),
        state: state.unwrap_or_else(|| panic!("the handler did not run: {}", response.status())),
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
