//! No log line of the demo carries a secret: a whole sign-in over HTTP, its
//! callback replayed, and a start with Redis stopped run while every line
//! of every level is captured (the app's, the provider crate's, the
//! layer's, the engine's, the HTTP stacks'); every cookie value, flow id,
//! `state`, nonce, code, PKCE challenge and token that went over the wire
//! (the browser's, and the provider's token answer to the app) is noted,
//! and no line may contain one.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
};

use crate::{common::*, sso_kit::*};
use axum::{body::Body, extract::Request, middleware::Next, response::Response};
use reqwest::StatusCode;
use tower_pipeline_state::Store;

type Seen = Arc<Mutex<BTreeSet<String>>>;

/// Notes the tokens of the provider's `/token` answers.
async fn note_tokens(seen: Seen, request: Request, next: Next) -> Response {
    let token = request.uri().path().ends_with("/token");
    let response = next.run(request).await;
    if !token {
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    for field in ["access_token", "id_token", "refresh_token"] {
        if let Some(token) = answer[field].as_str() {
            seen.lock().unwrap().insert(token.to_owned());
        }
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// Notes the cookie values (and the flow ids in them) `response` sets.
fn note_cookies(seen: &Seen, response: &reqwest::Response) {
    for cookie in set_cookies(response.headers()) {
        let value = cookie.value();
        if value.len() >= 8 {
            let mut seen = seen.lock().unwrap();
            seen.insert(value.to_owned());
            // A signed flow cookie: 44 characters of signature, then
            // `<id>.<ticket>`.
            if cookie.name().starts_with("pipeline_id.") && value.len() > 44 {
                seen.insert(flow_id(&cookie));
            }
        }
    }
}

/// Notes the secret parameters of a URL's query.
fn note_query(seen: &Seen, url: &str) {
    for (name, value) in query(url) {
        if ["state", "code", "nonce", "code_challenge"].contains(&name.as_str()) {
            seen.lock().unwrap().insert(value.clone());
            if let Some((_, nonce)) = value.split_once('.') {
                seen.lock().unwrap().insert(nonce.to_owned());
            }
        }
    }
}

#[tokio::test]
async fn no_line_the_demo_logs_carries_a_cookie_a_state_a_code_or_a_token() {
    let (logs, _capturing) = Logs::capture();
    let mut redis = RedisServer::start();
    let store = redis_store(&redis.url()).await;
    let seen: Seen = Arc::default();
    let deployment = Deployment::over_with(
        vec![store.clone()],
        |_| {},
        |idp, _| {
            let seen = seen.clone();
            idp.layer(axum::middleware::from_fn(move |request, next| {
                note_tokens(seen.clone(), request, next)
            }))
        },
    )
    .await;
    let browser = browser();

    // A whole sign-in.
    let started = start_with(
        &deployment,
        &browser,
        0,
        "/sso/start",
        &[("return_to", "/")],
    )
    .await;
    note_cookies(&seen, &started);
    let authorize = location(&started);
    note_query(&seen, &authorize);
    let callback = sign_in_at_provider(&browser, &authorize, "alice", "wonderland").await;
    note_query(&seen, &callback);
    let back = follow_callback(&deployment, &browser, &callback, 0).await;
    note_cookies(&seen, &back);
    let link = flow_link(&back);
    let done = continue_and_stay(&deployment, &browser, &link, 0, 0).await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    note_cookies(&seen, &done);
    // Its callback again, from this browser (answered) and another (refused).
    let replay = follow_callback(&deployment, &browser, &callback, 0).await;
    note_cookies(&seen, &replay);
    let other = follow_callback(&deployment, &crate::common::browser(), &callback, 0).await;
    note_cookies(&seen, &other);
    // A start with Redis stopped, and again once it is back.
    redis.stop();
    assert!(store.load("auth:pipeline:probe", None).await.is_err());
    let down = start_with(
        &deployment,
        &browser,
        0,
        "/sso/start",
        &[("return_to", "/")],
    )
    .await;
    assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    redis.restart();
    let again = start_with(
        &deployment,
        &browser,
        0,
        "/sso/start",
        &[("return_to", "/")],
    )
    .await;
    note_cookies(&seen, &again);
    note_query(&seen, &location(&again));

    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(|value| value.starts_with("eyJ")),
        "the ID token was noted: {seen:?}"
    );
    assert!(seen.len() >= 10, "{seen:?}");
    let text = logs.text();
    assert!(text.contains("signed in"), "the sign-in was logged: {text}");
    for line in text.lines() {
        for secret in &seen {
            assert!(
                !line.contains(secret.as_str()),
                "a log line carries {secret:?} from the wire: {line}"
            );
        }
    }
}
