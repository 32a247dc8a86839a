//! The engine's funnel (feature `metrics`): a scripted sequence of sign-ins
//! (finished, replayed, failed, cancelled, expired and started again,
//! refused) through the layer over a `MemoryStore`, with a recorder
//! installed for this thread; exact counts for every stage, and no label
//! value that is an id, a reference, a nonce or anything the user sent.

use std::{
    collections::{BTreeMap, BTreeSet},
    convert::Infallible,
};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use metrics_util::{
    CompositeKey, MetricKind,
    debugging::{DebugValue, DebuggingRecorder},
};
use tower::{Layer, ServiceExt, service_fn};
use tower_pipeline_state::{
    MemoryStore, PipelineStateLayer, Store,
    pipeline::{Flow, FlowError, Pipeline},
};

type Body = Full<Bytes>;

/// `authorize` renders `state=<callback state>` and moves on (`?cancel`:
/// cancels); `callback` binds the user it was sent (`?fail`: fails); then
/// `confirm`, whose POST finishes, landing on `/home`.
fn pipeline() -> Pipeline<Body, Response<String>> {
    fn answer(text: String) -> Result<Response<String>, FlowError> {
        Ok(Response::new(text))
    }
    Pipeline::builder("sso")
        .flow_kind("login")
        .step(
            "authorize",
            move |request: Request<Body>, flow| async move {
                if request.uri().query() == Some("cancel") {
                    flow.cancel()?;
                    return answer("cancelled".to_owned());
                }
                let state = flow.callback_state()?;
                flow.advance()?;
                answer(format!("state={state}"))
            },
        )
        .callback("callback", |request: Request<Body>, flow| async move {
            let query = request.uri().query().unwrap_or_default();
            if query.contains("fail") {
                return Err(FlowError::failed("the provider refused"));
            }
            flow.bind("user", "alice@example.org")?;
            flow.advance()?;
            answer("called back".to_owned())
        })
        .step(
            "confirm",
            |request: Request<Body>, flow: Flow<_, _>| async move {
                if request.method() != Method::POST {
                    return answer(format!("confirm link={}", flow.link("/flow")));
                }
                flow.next().await
            },
        )
        .on_finish(|_request, finished| async move {
            finished.lands_at("/home");
            Ok(Response::new("finished".to_owned()))
        })
        .on_redirect(|location| {
            let mut redirect = Response::new(String::new());
            *redirect.status_mut() = StatusCode::SEE_OTHER;
            redirect
                .headers_mut()
                .insert(header::LOCATION, location.parse().unwrap());
            redirect
        })
        .on_error(|failure| {
            let mut refused = Response::new(format!("outcome={}", failure.error.kind()));
            *refused.status_mut() = StatusCode::BAD_REQUEST;
            refused
        })
        .build()
}

/// One browser: its cookies, kept from what the answers set.
#[derive(Default)]
struct Browser {
    cookies: BTreeMap<String, String>,
    /// Every cookie value, reference and `state` seen on the wire.
    seen: BTreeSet<String>,
}

impl Browser {
    async fn send(
        &mut self,
        store: &MemoryStore,
        method: Method,
        uri: &str,
    ) -> (StatusCode, String) {
        let pipeline = pipeline();
        let service = PipelineStateLayer::new(store.clone())
            .cookie_secure(false)
            .layer(service_fn(move |request: Request<Body>| {
                let pipeline = pipeline.clone();
                async move {
                    let answer = if request.uri().path() == "/start" {
                        pipeline.start(request, "login").await
                    } else {
                        pipeline.dispatch(request).await
                    };
                    Ok::<_, Infallible>(answer)
                }
            }));
        let mut request = Request::builder().method(method).uri(uri);
        let header: Vec<String> = self
            .cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        if !header.is_empty() {
            request = request.header(header::COOKIE, header.join("; "));
        }
        let response = service
            .oneshot(request.body(Body::default()).unwrap())
            .await
            .unwrap();
        for line in response.headers().get_all(header::SET_COOKIE) {
            let cookie = cookie::Cookie::parse(line.to_str().unwrap().to_owned()).unwrap();
            self.seen.insert(cookie.value().to_owned());
            if let Some((_, reference)) = cookie.name().split_once('.') {
                self.seen.insert(reference.to_owned());
            }
            if cookie.max_age() == Some(cookie::time::Duration::ZERO) {
                self.cookies.remove(cookie.name());
            } else {
                self.cookies
                    .insert(cookie.name().to_owned(), cookie.value().to_owned());
            }
        }
        let status = response.status();
        let bytes = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        let body = String::from_utf8(bytes.to_vec()).unwrap();
        if let Some(state) = body.strip_prefix("state=") {
            self.seen.insert(state.to_owned());
            for part in state.split('.') {
                self.seen.insert(part.to_owned());
            }
        }
        (status, body)
    }

    /// Starts a sign-in: its `state`.
    async fn start(&mut self, store: &MemoryStore) -> String {
        let (status, body) = self.send(store, Method::GET, "/start").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body.strip_prefix("state=").expect(&body).to_owned()
    }
}

/// Counters by `name{label=value,...}`, histograms by their samples, and
/// every label value.
fn snapshot(recorder: &DebuggingRecorder) -> (BTreeMap<String, u64>, BTreeSet<String>) {
    let mut values = BTreeMap::new();
    let mut label_values = BTreeSet::new();
    for (key, _, _, value) in recorder.snapshotter().snapshot().into_vec() {
        let (kind, key): (MetricKind, _) = (key.kind(), CompositeKey::key(&key).clone());
        if !key.name().starts_with("pipeline_flows")
            && !key.name().starts_with("pipeline_step")
            && !key.name().starts_with("pipeline_replays")
        {
            continue;
        }
        let mut labels: Vec<String> = key
            .labels()
            .map(|label| {
                label_values.insert(label.value().to_owned());
                format!("{}={}", label.key(), label.value())
            })
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
    (values, label_values)
}

#[test]
fn every_stage_of_the_funnel_is_counted_with_bounded_labels_only() {
    let recorder = DebuggingRecorder::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = MemoryStore::new();
    let mut browsers: Vec<Browser> = Vec::new();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            // A sign-in that finishes, then is replayed.
            let mut done = Browser::default();
            let state = done.start(&store).await;
            let back = format!("/flow?state={state}");
            assert_eq!(done.send(&store, Method::GET, &back).await.1, "called back");
            let (_, page) = done.send(&store, Method::GET, "/flow").await;
            let link = page.strip_prefix("confirm link=").expect(&page).to_owned();
            assert_eq!(done.send(&store, Method::POST, &link).await.1, "finished");
            let (status, _) = done.send(&store, Method::GET, &back).await;
            assert_eq!(status, StatusCode::SEE_OTHER, "the replay lands");

            // A sign-in the provider refuses.
            let mut failed = Browser::default();
            let state = failed.start(&store).await;
            let refused = failed
                .send(&store, Method::GET, &format!("/flow?fail&state={state}"))
                .await;
            assert_eq!(refused.1, "outcome=failed");

            // A sign-in cancelled at its first step.
            let mut cancelled = Browser::default();
            assert_eq!(
                cancelled.send(&store, Method::GET, "/start?cancel").await.1,
                "cancelled"
            );

            // A sign-in whose record expired: refused without the option.
            let mut expired = Browser::default();
            expired.start(&store).await;
            for key in flow_keys(&expired) {
                store.delete(&key).await.unwrap();
            }
            let gone = expired.send(&store, Method::GET, "/flow").await;
            assert_eq!(gone.1, "outcome=expired");

            // No flow at all, and a forged state on a live one.
            let mut stranger = Browser::default();
            assert_eq!(
                stranger.send(&store, Method::GET, "/flow").await.1,
                "outcome=no_flow"
            );
            let mut forger = Browser::default();
            let state = forger.start(&store).await;
            let (reference, _) = state.split_once('.').unwrap();
            let forged = format!("{reference}.{}", "x".repeat(43));
            assert_eq!(
                forger
                    .send(&store, Method::GET, &format!("/flow?state={forged}"))
                    .await
                    .1,
                "outcome=nonce_mismatch"
            );
            browsers.extend([done, failed, cancelled, expired, stranger, forger]);
        });
    });

    let (counts, label_values) = snapshot(&recorder);
    let expected: BTreeMap<String, u64> = [
        ("pipeline_flows_started_total{flow=login,pipeline=sso}", 5),
        (
            "pipeline_steps_entered_total{flow=login,pipeline=sso,step=authorize}",
            5,
        ),
        (
            "pipeline_steps_entered_total{flow=login,pipeline=sso,step=callback}",
            2,
        ),
        (
            "pipeline_steps_entered_total{flow=login,pipeline=sso,step=confirm}",
            2,
        ),
        (
            "pipeline_step_outcomes_total{flow=login,outcome=answered,pipeline=sso,step=authorize}",
            5,
        ),
        (
            "pipeline_step_outcomes_total{flow=login,outcome=answered,pipeline=sso,step=callback}",
            1,
        ),
        (
            "pipeline_step_outcomes_total{flow=login,outcome=failed,pipeline=sso,step=callback}",
            1,
        ),
        (
            "pipeline_step_outcomes_total{flow=login,outcome=answered,pipeline=sso,step=confirm}",
            1,
        ),
        (
            "pipeline_step_outcomes_total{flow=login,outcome=answered,pipeline=sso,step=finish}",
            1,
        ),
        (
            "pipeline_step_outcomes_total{flow=login,outcome=replay_answered,pipeline=sso,step=-}",
            1,
        ),
        (
            "pipeline_step_outcomes_total{flow=login,outcome=expired,pipeline=sso,step=-}",
            1,
        ),
        (
            "pipeline_step_outcomes_total{flow=none,outcome=no_flow,pipeline=sso,step=-}",
            1,
        ),
        (
            "pipeline_step_outcomes_total{flow=login,outcome=nonce_mismatch,pipeline=sso,step=-}",
            1,
        ),
        (
            "pipeline_step_duration_seconds{pipeline=sso,step=authorize}",
            5,
        ),
        (
            "pipeline_step_duration_seconds{pipeline=sso,step=callback}",
            2,
        ),
        (
            "pipeline_step_duration_seconds{pipeline=sso,step=confirm}",
            1,
        ),
        (
            "pipeline_step_duration_seconds{pipeline=sso,step=finish}",
            1,
        ),
        (
            "pipeline_flows_ended_total{flow=login,how=finished,pipeline=sso}",
            1,
        ),
        (
            "pipeline_flows_ended_total{flow=login,how=failed,pipeline=sso}",
            1,
        ),
        (
            "pipeline_flows_ended_total{flow=login,how=cancelled,pipeline=sso}",
            1,
        ),
        (
            "pipeline_flows_ended_total{flow=login,how=expired,pipeline=sso}",
            1,
        ),
        (
            "pipeline_replays_answered_total{flow=login,pipeline=sso}",
            1,
        ),
    ]
    .into_iter()
    .map(|(name, count)| (name.to_owned(), count))
    .collect();
    assert_eq!(counts, expected);

    let seen: BTreeSet<&String> = browsers.iter().flat_map(|b| b.seen.iter()).collect();
    assert!(!seen.is_empty());
    for value in &label_values {
        assert!(
            !seen.contains(value) && !value.contains("alice"),
            "label value {value:?} was seen on the wire or came from the user"
        );
    }
}

/// The store keys of the flows `browser` holds, read from its plain cookie
/// values (the id comes before the ticket).
fn flow_keys(browser: &Browser) -> Vec<String> {
    browser
        .cookies
        .iter()
        .filter(|(name, _)| name.starts_with("pipeline_id."))
        .map(|(_, value)| crate::common::flow_key(value))
        .collect()
}
