//! Tokens stay in the back channel: none reaches the browser, the flow's
//! record in Redis, or a log line; nor do the PKCE verifier and the nonce
//! outlive the callback.

use axum::http::StatusCode;
use tower_pipeline_state::RedisStore;

use crate::common::{App, Idp, Logs, RedisServer, answer, browser, oidc};

#[tokio::test]
async fn tokens_never_reach_the_browser_the_flow_record_or_the_log() {
    let (logs, _capturing) = Logs::capture();
    let redis = RedisServer::start();
    let idp = Idp::start(true).await;
    let store = RedisStore::connect(&redis.url()).await.unwrap();
    let app = App::start(store, |redirect| oidc(&idp, redirect).user_info(true)).await;
    let client = browser();
    let (_, params) = app.begin(&client).await;

    // Between the steps the flow's record holds the PKCE verifier and the
    // nonce, on the server; the browser holds only the flow's id.
    let keys = redis.keys();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let record = String::from_utf8(redis.get(&keys[0]).unwrap()).unwrap();
    assert!(record.contains("pkce_verifier"), "{record}");
    assert!(record.contains(&params["nonce"]), "{record}");

    let code = idp.grant(&params);
    let url = answer(
        &params["redirect_uri"],
        &[
            ("code", &code),
            ("state", &params["state"]),
            ("iss", idp.issuer()),
        ],
    );
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = format!("{:?}", response.headers());
    let body = response.text().await.unwrap();
    // The finish ended the flow: what is left in Redis, for the flow's
    // replays, is the ended record, which keeps no data, no verifier and
    // no nonce.
    let keys = redis.keys();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let ended = String::from_utf8(redis.get(&keys[0]).unwrap()).unwrap();
    // The layer's record holds the flow's fields under `data`.
    let fields = &serde_json::from_str::<serde_json::Value>(&ended).unwrap()["data"];
    assert_eq!(fields["ended"]["how"]["as"], "finished", "{ended}");
    assert_eq!(fields["data"], serde_json::json!({}), "{ended}");
    for secret in ["pkce_verifier", "oidc.", params["nonce"].as_str(), &code] {
        assert!(!ended.contains(secret), "{secret:?} in {ended}");
    }

    let access_tokens = idp.access_tokens();
    assert_eq!(access_tokens.len(), 1);
    let log = logs.text();
    assert!(log.contains("signed in"), "{log}");
    for token in &access_tokens {
        assert!(!body.contains(token.as_str()), "{body}");
        assert!(!headers.contains(token.as_str()), "{headers}");
        assert!(!log.contains(token.as_str()), "{log}");
        assert!(!record.contains(token.as_str()), "{record}");
        assert!(!ended.contains(token.as_str()), "{ended}");
    }
    // No ID token either (a JWS starts `eyJ`; the claims are in the body,
    // the token is not).
    assert!(!body.contains("eyJ"), "{body}");
    assert!(!log.contains("eyJ"), "{log}");
    assert!(!log.contains(&code), "{log}");
}

#[tokio::test]
async fn a_failure_logs_the_providers_detail_and_shows_only_its_kind() {
    let (logs, _capturing) = Logs::capture();
    let idp = Idp::start(true).await;
    let app = App::start(tower_pipeline_state::MemoryStore::new(), |redirect| {
        oidc(&idp, redirect)
    })
    .await;
    let client = browser();
    let (_, params) = app.begin(&client).await;
    let url = answer(
        &params["redirect_uri"],
        &[
            ("error", "temporarily_unavailable"),
            ("error_description", "maintenance <script>"),
            ("state", &params["state"]),
            ("iss", idp.issuer()),
        ],
    );
    let response = client.get(url).send().await.unwrap();
    let body = response.text().await.unwrap();
    assert_eq!(body, "provider_error");
    let lines = logs.matching(&[
        "sign-in failed",
        "provider_error",
        "temporarily_unavailable",
        "maintenance",
    ]);
    assert_eq!(lines.len(), 1, "{}", logs.text());
}
