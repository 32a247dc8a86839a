//! Every outcome of the engine is a `tracing` event carrying its kind. In a
//! test binary of its own: tracing caches per call site whether anyone
//! listens, and tests running on other threads would race with it.

mod common;
mod engine;

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
};

use common::*;
use engine::*;

/// Records the `outcome` field of every `tracing` event.
struct Outcomes(Arc<Mutex<Vec<String>>>);

impl tracing::Subscriber for Outcomes {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Visit<'a>(&'a Mutex<Vec<String>>);
        impl tracing::field::Visit for Visit<'_> {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "outcome" {
                    self.0.lock().unwrap().push(value.to_owned());
                }
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        event.record(&mut Visit(&self.0));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test]
async fn every_outcome_is_a_tracing_event_with_its_kind() {
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    tracing::subscriber::set_global_default(Outcomes(outcomes.clone())).unwrap();
    let redis = RedisServer::start();
    let app = app(&redis, Options::default()).await;

    // no_flow
    let browser = browser();
    browser.get(app.url("/flow")).send().await.unwrap();
    // user_mismatch, nonce_mismatch, nonce_missing (the callback step
    // without the nonce), nonce_replayed
    let started = browser.get(app.url("/flow/start")).send().await.unwrap();
    let key = format!("pipeline:{}", cookie_value(&set_cookie(&started).unwrap()));
    let nonce = text(started).await.1.replace("at one nonce=", "");
    as_user(browser.get(app.url("/flow")), Some("mallory"))
        .send()
        .await
        .unwrap();
    browser
        .get(app.url("/flow?state=forged"))
        .send()
        .await
        .unwrap();
    browser.post(app.url("/flow")).send().await.unwrap();
    browser.get(app.url("/flow")).send().await.unwrap();
    browser
        .get(app.url(&format!("/flow?state={nonce}")))
        .send()
        .await
        .unwrap();
    browser
        .get(app.url(&format!("/flow?state={nonce}")))
        .send()
        .await
        .unwrap();
    // corrupt: a record whose step index is not a number
    // (written with the record's fixed header, so only the engine's field is
    // wrong, not the record).
    let mut record: serde_json::Value = serde_json::from_slice(&redis.get(&key).unwrap()).unwrap();
    record["data"]["step_index"] = "two".into();
    let planted = format!(
        r#"{{"format":1,"version":{},"data":{}}}"#,
        record["version"], record["data"]
    );
    redis.set(&key, planted.as_bytes());
    browser.get(app.url("/flow")).send().await.unwrap();
    // expired: a flow whose record is gone
    let browser = common::browser();
    let started = browser.get(app.url("/flow/start")).send().await.unwrap();
    let key = format!("pipeline:{}", cookie_value(&set_cookie(&started).unwrap()));
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query(&mut redis.admin())
        .unwrap();
    browser.get(app.url("/flow")).send().await.unwrap();
    // unknown_flow_kind
    browser
        .get(app.url("/flow/start?kind=nope"))
        .send()
        .await
        .unwrap();

    let seen: BTreeSet<String> = outcomes.lock().unwrap().iter().cloned().collect();
    for kind in [
        "no_flow",
        "user_mismatch",
        "nonce_mismatch",
        "nonce_missing",
        "nonce_replayed",
        "corrupt",
        "expired",
        "unknown_flow_kind",
        "started",
    ] {
        assert!(seen.contains(kind), "no `{kind}` event among {seen:?}");
    }
}
