//! The `metrics` feature: a scripted sequence of requests against a private
//! redis-server, with a recorder installed for this thread, and the exact
//! counts each request must leave.

use std::{collections::BTreeMap, convert::Infallible, sync::Arc, time::Duration};

use http::{Request, Response, header};
use metrics_util::{
    CompositeKey, MetricKind,
    debugging::{DebugValue, DebuggingRecorder},
};
use redis::Commands;
use serde_json::json;
use tokio::sync::Barrier;
use tower::{Layer, ServiceExt, service_fn};
use tower_pipeline_state::{LazyPipelineState, PipelineStateLayer, RedisStore};

use crate::common::RedisServer;

/// What a request asks of its flow.
#[derive(Clone, Copy)]
enum Act {
    Read,
    Set(&'static str, u64),
    Regenerate,
    Clear,
    /// Waits at the barrier after loading, then sets the field: two such
    /// requests load the same version and race.
    RaceSet(&'static str, u64),
}

/// The handler: loads the state, does what the request says.
async fn handle(
    barrier: Arc<Barrier>,
    request: Request<Act>,
) -> Result<Response<String>, Infallible> {
    let lazy = request
        .extensions()
        .get::<LazyPipelineState>()
        .unwrap()
        .clone();
    let state = match lazy.load().await {
        Ok(state) => state,
        Err(error) => {
            return Ok(Response::builder()
                .status(503)
                .body(error.to_string())
                .unwrap());
        }
    };
    match *request.body() {
        Act::Read => drop(state.get::<u64>("a").unwrap()),
        Act::Set(field, value) => state.set(field, &value).unwrap(),
        Act::Regenerate => state.regenerate(&json!({"a": 0})).unwrap(),
        Act::Clear => state.clear().unwrap(),
        Act::RaceSet(field, value) => {
            barrier.wait().await;
            state.set(field, &value).unwrap();
        }
    }
    Ok(Response::new(String::new()))
}

/// Counters by `name{label=value,...}`, histograms by the number of samples.
fn snapshot(recorder: &DebuggingRecorder) -> BTreeMap<String, u64> {
    let mut values = BTreeMap::new();
    for (key, _, _, value) in recorder.snapshotter().snapshot().into_vec() {
        let (kind, key): (MetricKind, _) = (key.kind(), CompositeKey::key(&key).clone());
        let mut labels: Vec<String> = key
            .labels()
            .map(|label| format!("{}={}", label.key(), label.value()))
            .collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        let count = match (kind, value) {
            (MetricKind::Counter, DebugValue::Counter(n)) => n,
            (MetricKind::Histogram, DebugValue::Histogram(samples)) => samples.len() as u64,
            (kind, value) => panic!("unexpected {kind:?} {value:?} for {name}"),
        };
        values.insert(name, count);
    }
    values
}

#[test]
fn a_scripted_sequence_leaves_exact_counts() {
    let mut server = RedisServer::start();
    let recorder = DebuggingRecorder::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Thread-local: every task of this current-thread runtime records to it.
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let store = RedisStore::connect(&server.url()).await.unwrap();
            let barrier = Arc::new(Barrier::new(2));
            let service = PipelineStateLayer::new(store)
                .cookie_secure(false)
                .store_timeout(Duration::from_millis(300))
                .layer(service_fn(move |request| handle(barrier.clone(), request)));
            let send = |act: Act, cookie: Option<&str>| {
                let mut request = Request::new(act);
                if let Some(cookie) = cookie {
                    request
                        .headers_mut()
                        .insert(header::COOKIE, cookie.parse().unwrap());
                }
                service.clone().oneshot(request)
            };
            let cookie_of = |response: &Response<_>| -> String {
                let line = response.headers()[header::SET_COOKIE].to_str().unwrap();
                let cookie = cookie::Cookie::parse(line.to_owned()).unwrap();
                format!("{}={}", cookie.name(), cookie.value())
            };

            // No id: nothing loaded from the store.
            send(Act::Read, None).await.unwrap();
            // Created.
            let created = send(Act::Set("a", 1), None).await.unwrap();
            let flow = cookie_of(&created);
            // Loaded and read; loaded and updated.
            send(Act::Read, Some(&flow)).await.unwrap();
            send(Act::Set("a", 2), Some(&flow)).await.unwrap();
            // Two racing writers on other fields: one updates, one merges.
            let (x, y) = tokio::join!(
                send(Act::RaceSet("b", 1), Some(&flow)),
                send(Act::RaceSet("c", 1), Some(&flow)),
            );
            assert_eq!(
                (x.unwrap().status().as_u16(), y.unwrap().status().as_u16()),
                (200, 200)
            );
            // Two racing writers on the same field: one conflict.
            let (x, y) = tokio::join!(
                send(Act::RaceSet("a", 3), Some(&flow)),
                send(Act::RaceSet("a", 4), Some(&flow)),
            );
            let mut statuses = [x.unwrap().status().as_u16(), y.unwrap().status().as_u16()];
            statuses.sort();
            assert_eq!(statuses, [200, 409]);
            // Regenerated under a new id, then cleared.
            let regenerated = send(Act::Regenerate, Some(&flow)).await.unwrap();
            let flow = cookie_of(&regenerated);
            send(Act::Clear, Some(&flow)).await.unwrap();
            // The cleared flow's id again: expired.
            send(Act::Read, Some(&flow)).await.unwrap();
            // A record that does not decode: corrupt.
            let corrupt = "0123456789abcdef0123456789abcdef";
            let _: () = server
                .admin()
                .set(format!("pipeline:{corrupt}"), "not a record")
                .unwrap();
            send(Act::Read, Some(&format!("pipeline_id={corrupt}")))
                .await
                .unwrap();
            // Redis paused past the timeout, then gone: a timeout, then an
            // unreachable store (the load sent again after the dropped
            // connection is refused one), both at load.
            let _: () = redis::cmd("CLIENT")
                .arg("PAUSE")
                .arg(1000)
                .query(&mut server.admin())
                .unwrap();
            let paused = send(Act::Read, Some(&flow)).await.unwrap();
            assert_eq!(paused.status(), 503);
            tokio::time::sleep(Duration::from_millis(800)).await;
            server.stop();
            let stopped = send(Act::Read, Some(&flow)).await.unwrap();
            assert_eq!(stopped.status(), 503);
        });
    });

    let loads_with_id = 2 + 2 + 2 + 1 + 1 + 1 + 1 + 1 + 1; // every request that loaded
    let expected: BTreeMap<String, u64> = [
        ("pipeline_state_loads_total{outcome=no_id}", 2),
        (
            "pipeline_state_loads_total{outcome=loaded}",
            2 + 2 + 2 + 1 + 1,
        ),
        ("pipeline_state_loads_total{outcome=expired}", 1),
        ("pipeline_state_loads_total{outcome=corrupt}", 1),
        ("pipeline_state_writes_total{outcome=created}", 1),
        ("pipeline_state_writes_total{outcome=updated}", 1 + 1 + 1),
        ("pipeline_state_writes_total{outcome=merged}", 1),
        ("pipeline_state_writes_total{outcome=regenerated}", 1),
        ("pipeline_state_writes_total{outcome=cleared}", 1),
        ("pipeline_state_conflicts_total{}", 1),
        (
            "pipeline_state_store_failures_total{kind=timeout,operation=load}",
            1,
        ),
        (
            "pipeline_state_store_failures_total{kind=unreachable,operation=load}",
            1,
        ),
        (
            "pipeline_state_store_duration_seconds{operation=load}",
            loads_with_id,
        ),
        ("pipeline_state_store_duration_seconds{operation=create}", 2),
        // The first update; the race on other fields: the winner's one and
        // the merge's two; the race on one field: the winner's one and the
        // loser's one, which finds the field changed.
        (
            "pipeline_state_store_duration_seconds{operation=update}",
            1 + 3 + 2,
        ),
        // The regenerate's compare-and-delete of the old record, the clear's.
        (
            "pipeline_state_store_duration_seconds{operation=delete_if_version}",
            2,
        ),
    ]
    .into_iter()
    .map(|(name, count)| (name.to_owned(), count))
    .collect();
    assert_eq!(snapshot(&recorder), expected);
}
