//! The layer's own cost, in process: the same inner service called directly
//! (`oneshot`, no HTTP, no network) bare and behind the layer over a
//! `MemoryStore`. The difference between `layer/<case>` and `bare/<case>` is
//! what the layer adds per request.
//!
//! ```text
//! cargo bench --bench overhead
//! ```
//!
//! | case | request | handler |
//! | --- | --- | --- |
//! | `no_id` | no cookie | does not touch the state |
//! | `untouched` | a live flow's cookie | does not touch the state (lazy: no load) |
//! | `read` | a live flow's cookie | reads one field |
//! | `changed` | a live flow's cookie | reads one field and sets it (compare-and-set) |
//! | `step` | a live flow's cookie | a realistic step: reads a map of 8 entries and a counter, replaces one entry, increments the counter, writes both |

use std::{collections::BTreeMap, convert::Infallible, hint::black_box, time::Duration};

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{Request, Response, header};
use http_body_util::{Empty, Full};
use tower::{Layer, ServiceExt, service_fn};
use tower_pipeline_state::{LazyPipelineState, MemoryStore, PipelineStateLayer};

/// One handler for both services: it touches the state when the layer put
/// one in the extensions, so the bare service does all the same work except
/// the layer's.
async fn handler(request: Request<Empty<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    let lazy = request.extensions().get::<LazyPipelineState>();
    match (request.uri().path(), lazy) {
        ("/read", Some(lazy)) => {
            let state = lazy.load().await.unwrap();
            black_box(state.get::<u64>("count").unwrap());
        }
        ("/change", Some(lazy)) => {
            let state = lazy.load().await.unwrap();
            let count: u64 = state.get("count").unwrap().unwrap_or(0);
            state.set("count", &(count + 1)).unwrap();
        }
        ("/step", Some(lazy)) => {
            let state = lazy.load().await.unwrap();
            let mut answers: BTreeMap<String, String> = state.get("answers").unwrap().unwrap();
            let count: u64 = state.get("count").unwrap().unwrap_or(0) + 1;
            answers.insert(format!("q{}", count % 8), format!("answer {count}"));
            state.set("answers", &answers).unwrap();
            state.set("count", &count).unwrap();
        }
        ("/start", Some(lazy)) => {
            let state = lazy.load().await.unwrap();
            let answers: BTreeMap<String, String> = (0..8)
                .map(|i| (format!("q{i}"), format!("answer {i}")))
                .collect();
            state.set("answers", &answers).unwrap();
            state.set("count", &0u64).unwrap();
        }
        _ => {}
    }
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

fn request(path: &str, cookie: Option<&str>) -> Request<Empty<Bytes>> {
    let mut builder = Request::builder().uri(path);
    if let Some(cookie) = cookie {
        builder = builder.header(header::COOKIE, cookie);
    }
    builder.body(Empty::new()).unwrap()
}

fn overhead(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bare = service_fn(handler);
    let layered = PipelineStateLayer::new(MemoryStore::new())
        .cookie_secure(false)
        .layer(service_fn(handler));

    // A live flow to read and change, shaped as a real flow's (a map of 8
    // answers and a counter): create it through the layer, keep the cookie
    // it sets.
    let cookie = runtime.block_on(async {
        let response = layered
            .clone()
            .oneshot(request("/start", None))
            .await
            .unwrap();
        let set_cookie = response.headers()[header::SET_COOKIE].to_str().unwrap();
        let cookie = cookie::Cookie::parse(set_cookie).unwrap();
        format!("{}={}", cookie.name(), cookie.value())
    });

    let cases = [
        ("no_id", "/noop", None),
        ("untouched", "/noop", Some(cookie.as_str())),
        ("read", "/read", Some(cookie.as_str())),
        ("changed", "/change", Some(cookie.as_str())),
        ("step", "/step", Some(cookie.as_str())),
    ];
    let mut group = c.benchmark_group("overhead");
    for (name, path, cookie) in cases {
        group.bench_function(format!("bare/{name}"), |b| {
            b.to_async(&runtime).iter_batched(
                || request(path, cookie),
                |request| bare.oneshot(request),
                BatchSize::SmallInput,
            )
        });
        group.bench_function(format!("layer/{name}"), |b| {
            b.to_async(&runtime).iter_batched(
                || request(path, cookie),
                |request| layered.clone().oneshot(request),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Sized for a small shared machine: the whole file runs in about 30 s.
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = overhead
}
criterion_main!(benches);
