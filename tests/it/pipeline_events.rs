//! Every outcome of the engine is a `tracing` event carrying its kind.

use std::collections::BTreeSet;

use crate::common::engine::*;
use crate::common::*;

/// The `outcome` field of every captured event.
fn outcomes(logs: &Logs) -> BTreeSet<String> {
    logs.text()
        .split(" outcome=")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|value| value.trim_matches('"').to_owned())
        .collect()
}

#[tokio::test]
async fn every_outcome_is_a_tracing_event_with_its_kind() {
    let (logs, _guard) = Logs::capture();
    let redis = RedisServer::start();
    let app = app(&redis, Options::default()).await;

    // no_flow
    let browser = browser();
    browser.get(app.url("/flow")).send().await.unwrap();
    // user_mismatch, nonce_mismatch, nonce_missing (the callback step
    // without the nonce), nonce_replayed
    let started = browser.get(app.url("/flow/start")).send().await.unwrap();
    let key = flow_key(flow_cookie(&started).unwrap().value());
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
    let browser = crate::common::browser();
    let started = browser.get(app.url("/flow/start")).send().await.unwrap();
    let key = flow_key(flow_cookie(&started).unwrap().value());
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

    let seen = outcomes(&logs);
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
