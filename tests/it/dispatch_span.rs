//! Each request of a flow runs in one `pipeline.dispatch` span carrying the
//! pipeline, the flow's kind, its reference, the step and the outcome (the
//! funnel's labels), read from the spans as they closed.

use std::collections::BTreeMap;

use crate::common::engine::*;
use crate::common::*;
use reqwest::StatusCode;

/// The fields of the last `pipeline.dispatch` span that closed.
fn last_dispatch(logs: &Logs) -> BTreeMap<String, String> {
    logs.spans("pipeline.dispatch")
        .pop()
        .expect("a pipeline.dispatch span closed")
        .fields
}

fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

#[tokio::test]
async fn every_dispatch_span_carries_pipeline_flow_reference_step_and_outcome() {
    let (logs, _guard) = Logs::capture();
    let redis = RedisServer::start();
    let app = app(&redis, Options::default()).await;
    let browser = browser();

    let started = browser.get(app.url("/flow/start")).send().await.unwrap();
    let cookie = flow_cookie(&started).unwrap();
    let reference = cookie
        .name()
        .strip_prefix("pipeline_id.")
        .unwrap()
        .to_owned();
    let nonce = text(started).await.1.replace("at one nonce=", "");
    let flow = |step: &str, outcome: &str| {
        fields(&[
            ("pipeline", "test"),
            ("flow", "login"),
            ("reference", &reference),
            ("step", step),
            ("outcome", outcome),
        ])
    };

    let shown = browser.get(app.url("/flow")).send().await.unwrap();
    assert_eq!(text(shown).await.0, StatusCode::OK);
    assert_eq!(last_dispatch(&logs), flow("one", "answered"));

    browser.post(app.url("/flow")).send().await.unwrap();
    assert_eq!(last_dispatch(&logs), flow("one", "answered"));

    // A forged `state` is refused before any step runs.
    let forged = browser
        .get(app.url("/flow?state=forged"))
        .send()
        .await
        .unwrap();
    assert_eq!(text(forged).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(last_dispatch(&logs), flow("-", "nonce_mismatch"));

    let back = browser
        .get(app.url(&format!("/flow?state={nonce}")))
        .send()
        .await
        .unwrap();
    assert_eq!(text(back).await.0, StatusCode::OK);
    assert_eq!(last_dispatch(&logs), flow("two", "answered"));

    browser
        .post(app.url("/flow"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(last_dispatch(&logs), flow("three", "answered"));
    let finished = browser.post(app.url("/flow")).send().await.unwrap();
    assert_eq!(text(finished).await.0, StatusCode::OK);
    // Past the last step, the finish hook answered.
    assert_eq!(last_dispatch(&logs), flow("finish", "answered"));

    // The ended flow, asked again: its kind still known.
    browser.get(app.url("/flow")).send().await.unwrap();
    assert_eq!(last_dispatch(&logs), flow("-", "ended"));

    // No flow at all: no kind, no reference.
    let stranger = crate::common::browser();
    stranger.get(app.url("/flow")).send().await.unwrap();
    assert_eq!(
        last_dispatch(&logs),
        fields(&[
            ("pipeline", "test"),
            ("flow", "none"),
            ("step", "-"),
            ("outcome", "no_flow"),
        ])
    );
    assert_eq!(logs.spans("pipeline.dispatch").len(), 8, "one per request");
}
