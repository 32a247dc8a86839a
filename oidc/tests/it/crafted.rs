//! The callback's checks, against a provider the tests control: each test
//! crafts one thing wrong in the answer or the ID token and sees the
//! sign-in refused with its kind, through the real engine behind the layer.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;
use tower_pipeline_oidc::{Identity, Limits, Prompt, ResponseMode};
use tower_pipeline_state::MemoryStore;

use crate::common::{App, AtHash, Craft, Idp, Signer, answer, browser, oidc};

/// Starts a sign-in, has the provider grant a code, and brings the answer
/// back with `extra` pairs (the `iss` parameter by default): the
/// application's response.
async fn sign_in(app: &App, idp: &Idp, client: &reqwest::Client) -> reqwest::Response {
    let (_, params) = app.begin(client).await;
    let code = idp.grant(&params);
    let url = answer(
        &params["redirect_uri"],
        &[
            ("code", &code),
            ("state", &params["state"]),
            ("iss", idp.issuer()),
        ],
    );
    client.get(url).send().await.unwrap()
}

/// The kind the application's error handler answered with.
async fn refused(response: reqwest::Response) -> String {
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    response.text().await.unwrap()
}

/// Has the provider answer with `craft`, signs in: the kind the sign-in is
/// refused with.
async fn refusal_after(app: &App, idp: &Idp, craft: Craft) -> String {
    idp.craft(craft);
    refused(sign_in(app, idp, &browser()).await).await
}

/// [`refusal_after`] on a provider and an application started for it.
async fn refusal_of(craft: Craft) -> String {
    let idp = Idp::start(false).await;
    let app = App::start(MemoryStore::new(), |redirect| oidc(&idp, redirect)).await;
    refusal_after(&app, &idp, craft).await
}

#[tokio::test]
async fn a_sign_in_sends_pkce_a_nonce_and_the_flow_state_and_binds_the_verified_identity() {
    let idp = Idp::start(true).await;
    let app = App::start(MemoryStore::new(), |redirect| {
        oidc(&idp, redirect)
            .prompt(Prompt::Login)
            .prompt(Prompt::SelectAccount)
            .login_hint("alice@example.org")
            .max_age(Duration::from_secs(600))
            .acr_value("urn:example:loa:2")
            .user_info(true)
    })
    .await;
    let client = browser();
    let (authorize, params) = app.begin(&client).await;

    assert!(authorize.starts_with(&format!("{}/authorize?", idp.issuer())));
    assert_eq!(params["response_type"], "code");
    assert_eq!(params["client_id"], "test-app");
    assert_eq!(params["redirect_uri"], app.server.url("/sso"));
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(params["code_challenge"].len(), 43);
    assert!(params["nonce"].len() >= 22, "{params:?}");
    let scopes: Vec<&str> = params["scope"].split(' ').collect();
    assert_eq!(scopes, ["openid", "profile", "email"]);
    assert_eq!(params["prompt"], "login select_account");
    assert_eq!(params["login_hint"], "alice@example.org");
    assert_eq!(params["max_age"], "600");
    assert_eq!(params["acr_values"], "urn:example:loa:2");
    assert!(!params.contains_key("response_mode"));
    // The engine's callback state: `<reference>.<nonce>`.
    let (reference, nonce) = params["state"].split_once('.').expect("reference.nonce");
    assert!(!reference.is_empty() && nonce.len() >= 40, "{params:?}");

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
    assert_eq!(response.headers()["referrer-policy"], "no-referrer");
    let identity: Identity = response.json().await.unwrap();
    assert_eq!(identity.issuer, idp.issuer());
    assert_eq!(identity.subject, "alice-sub");
    assert_eq!(identity.email.as_deref(), Some("alice@example.org"));
    assert!(identity.email_verified);
    assert_eq!(identity.name.as_deref(), Some("Alice Liddell"));
    // From user info: the ID token had no preferred_username.
    assert_eq!(identity.username.as_deref(), Some("alice"));
    // The raw claims: the ID token's own (a non-standard one too), and its
    // e-mail wins over user info's.
    assert_eq!(identity.claims["groups"], json!(["readers"]));
    assert_eq!(identity.claims["email"], "alice@example.org");
    assert_eq!(identity.claims["nonce"], params["nonce"]);
    assert_eq!(idp.token_requests(), 1);
}

#[tokio::test]
async fn an_id_token_for_another_audience_is_refused() {
    let idp = Idp::start(false).await;
    let app = App::start(MemoryStore::new(), |redirect| oidc(&idp, redirect)).await;
    let refusal = refusal_after(
        &app,
        &idp,
        Craft {
            aud: Some(json!("another-app")),
            ..Craft::default()
        },
    )
    .await;
    assert_eq!(refusal, "id_token_audience");
    // This client and an untrusted other: refused too.
    let refusal = refusal_after(
        &app,
        &idp,
        Craft {
            aud: Some(json!(["test-app", "another-app"])),
            azp: Some("test-app".to_owned()),
            ..Craft::default()
        },
    )
    .await;
    assert_eq!(refusal, "id_token_audience");
}

#[tokio::test]
async fn an_azp_naming_another_client_is_refused() {
    let refusal = refusal_of(Craft {
        azp: Some("another-app".to_owned()),
        ..Craft::default()
    })
    .await;
    assert_eq!(refusal, "id_token_audience");
}

#[tokio::test]
async fn an_id_token_from_another_issuer_is_refused() {
    let refusal = refusal_of(Craft {
        iss: Some("https://evil.example".to_owned()),
        ..Craft::default()
    })
    .await;
    assert_eq!(refusal, "id_token_issuer");
}

#[tokio::test]
async fn an_id_token_with_another_nonce_is_refused() {
    let refusal = refusal_of(Craft {
        nonce: Some("a-nonce-of-another-sign-in".to_owned()),
        ..Craft::default()
    })
    .await;
    assert_eq!(refusal, "id_token_nonce");
}

#[tokio::test]
async fn an_expired_id_token_is_refused_past_the_clock_skew() {
    let idp = Idp::start(false).await;
    let app = App::start(MemoryStore::new(), |redirect| {
        oidc(&idp, redirect).clock_skew(Duration::from_secs(60))
    })
    .await;
    // Expired 30 s ago: within the skew, it passes.
    idp.craft(Craft {
        exp: -30,
        ..Craft::default()
    });
    assert_eq!(
        sign_in(&app, &idp, &browser()).await.status(),
        StatusCode::OK
    );
    // Expired 90 s ago: past it.
    let refusal = refusal_after(
        &app,
        &idp,
        Craft {
            exp: -90,
            iat: -200,
            ..Craft::default()
        },
    )
    .await;
    assert_eq!(refusal, "id_token_expired");
}

#[tokio::test]
async fn an_id_token_issued_in_the_future_or_long_ago_is_refused() {
    let idp = Idp::start(false).await;
    let app = App::start(MemoryStore::new(), |redirect| {
        oidc(&idp, redirect).clock_skew(Duration::from_secs(60))
    })
    .await;
    let refusal = refusal_after(
        &app,
        &idp,
        Craft {
            iat: 120,
            exp: 600,
            ..Craft::default()
        },
    )
    .await;
    assert_eq!(refusal, "id_token_issued_at");
    let refusal = refusal_after(
        &app,
        &idp,
        Craft {
            iat: -3600,
            ..Craft::default()
        },
    )
    .await;
    assert_eq!(refusal, "id_token_issued_at");
}

#[tokio::test]
async fn an_id_token_signed_by_an_unknown_key_is_refused_after_one_fetch_of_the_keys() {
    let idp = Idp::start(false).await;
    let app = App::start(MemoryStore::new(), |redirect| oidc(&idp, redirect)).await;
    let refusal = refusal_after(
        &app,
        &idp,
        Craft {
            signer: Signer::Unknown,
            ..Craft::default()
        },
    )
    .await;
    assert_eq!(refusal, "id_token_unknown_key");
    // Discovery's fetch, and one more for the unknown key: not a loop.
    assert_eq!(idp.jwks_fetches(), 2);
}

#[tokio::test]
async fn a_rotated_key_is_fetched_once_and_the_next_sign_in_passes() {
    let idp = Idp::start(false).await;
    let app = App::start(MemoryStore::new(), |redirect| oidc(&idp, redirect)).await;
    assert_eq!(
        sign_in(&app, &idp, &browser()).await.status(),
        StatusCode::OK
    );
    assert_eq!(idp.jwks_fetches(), 1);

    idp.rotate("key-2");
    let response = sign_in(&app, &idp, &browser()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(idp.jwks_fetches(), 2);
    // The new keys are kept: the next sign-in fetches nothing.
    assert_eq!(
        sign_in(&app, &idp, &browser()).await.status(),
        StatusCode::OK
    );
    assert_eq!(idp.jwks_fetches(), 2);
}

#[tokio::test]
async fn an_at_hash_that_does_not_match_the_access_token_is_refused() {
    let idp = Idp::start(false).await;
    let app = App::start(MemoryStore::new(), |redirect| oidc(&idp, redirect)).await;
    let refusal = refusal_after(
        &app,
        &idp,
        Craft {
            at_hash: AtHash::Wrong,
            ..Craft::default()
        },
    )
    .await;
    assert_eq!(refusal, "at_hash");
    // Absent, it is not asked for (the code flow makes it optional).
    idp.craft(Craft {
        at_hash: AtHash::Absent,
        ..Craft::default()
    });
    assert_eq!(
        sign_in(&app, &idp, &browser()).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn access_denied_is_a_typed_failure_and_no_code_is_exchanged() {
    let idp = Idp::start(true).await;
    let app = App::start(MemoryStore::new(), |redirect| oidc(&idp, redirect)).await;
    let client = browser();
    let (_, params) = app.begin(&client).await;
    let url = answer(
        &params["redirect_uri"],
        &[
            ("error", "access_denied"),
            ("error_description", "The user said no"),
            ("state", &params["state"]),
            ("iss", idp.issuer()),
        ],
    );
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(refused(response).await, "access_denied");
    // The flow ended: the same answer again finds nothing to continue.
    let again = client.get(&url).send().await.unwrap();
    assert!(refused(again).await.starts_with("flow:"));
    assert_eq!(idp.token_requests(), 0);

    let (_, params) = app.begin(&client).await;
    let url = answer(
        &params["redirect_uri"],
        &[
            ("error", "login_required"),
            ("state", &params["state"]),
            ("iss", idp.issuer()),
        ],
    );
    let response = client.get(url).send().await.unwrap();
    assert_eq!(refused(response).await, "interaction_required");
}

#[tokio::test]
async fn a_callback_carrying_another_providers_iss_is_refused() {
    // A provider that does not promise `iss`: one that is sent must still
    // be its own.
    let idp = Idp::start(false).await;
    let app = App::start(MemoryStore::new(), |redirect| oidc(&idp, redirect)).await;
    let client = browser();
    let (_, params) = app.begin(&client).await;
    let code = idp.grant(&params);
    let url = answer(
        &params["redirect_uri"],
        &[
            ("code", &code),
            ("state", &params["state"]),
            ("iss", "https://attacker.example"),
        ],
    );
    assert_eq!(
        refused(client.get(url).send().await.unwrap()).await,
        "mix_up"
    );
    // The code went to no token endpoint.
    assert_eq!(idp.token_requests(), 0);
}

#[tokio::test]
async fn a_callback_without_the_iss_its_provider_promises_is_refused() {
    let idp = Idp::start(true).await;
    let app = App::start(MemoryStore::new(), |redirect| oidc(&idp, redirect)).await;
    let client = browser();
    let (_, params) = app.begin(&client).await;
    let code = idp.grant(&params);
    let url = answer(
        &params["redirect_uri"],
        &[("code", &code), ("state", &params["state"])],
    );
    assert_eq!(
        refused(client.get(url).send().await.unwrap()).await,
        "mix_up"
    );
    assert_eq!(idp.token_requests(), 0);
}

#[tokio::test]
async fn a_replayed_answer_is_refused_by_the_engine_and_its_code_exchanged_once() {
    let idp = Idp::start(true).await;
    let app = App::start(MemoryStore::new(), |redirect| oidc(&idp, redirect)).await;
    let client = browser();
    let (_, params) = app.begin(&client).await;
    let code = idp.grant(&params);
    let url = answer(
        &params["redirect_uri"],
        &[
            ("code", &code),
            ("state", &params["state"]),
            ("iss", idp.issuer()),
        ],
    );
    assert_eq!(
        client.get(&url).send().await.unwrap().status(),
        StatusCode::OK
    );
    let replay = client.get(&url).send().await.unwrap();
    assert!(refused(replay).await.starts_with("flow:"));
    assert_eq!(idp.token_requests(), 1);
}

#[tokio::test]
async fn a_token_answer_over_the_size_limit_is_refused() {
    let idp = Idp::start(false).await;
    let app = App::start(MemoryStore::new(), |redirect| {
        oidc(&idp, redirect).limits(Limits::default().max_response_bytes(16 * 1024))
    })
    .await;
    *idp.state.token_padding.lock().unwrap() = 64 * 1024;
    assert_eq!(
        refused(sign_in(&app, &idp, &browser()).await).await,
        "bad_response"
    );
}

#[tokio::test]
async fn a_provider_slower_than_the_timeout_is_cut_off() {
    let idp = Idp::start(false).await;
    let app = App::start(MemoryStore::new(), |redirect| {
        oidc(&idp, redirect).limits(Limits::default().timeout(Duration::from_millis(500)))
    })
    .await;
    *idp.state.token_delay.lock().unwrap() = Duration::from_secs(3);
    assert_eq!(
        refused(sign_in(&app, &idp, &browser()).await).await,
        "unreachable"
    );
}

#[tokio::test]
async fn form_post_needs_the_providers_offer_and_is_asked_for() {
    let idp = Idp::start(false).await;
    let app = App::start(MemoryStore::new(), |redirect| {
        oidc(&idp, redirect).response_mode(ResponseMode::FormPost)
    })
    .await;
    let (_, params) = app.begin(&browser()).await;
    assert_eq!(params["response_mode"], "form_post");
}

#[tokio::test]
async fn the_logout_url_is_the_providers_end_session_endpoint() {
    let idp = Idp::start(false).await;
    let app = App::start(MemoryStore::new(), |redirect| oidc(&idp, redirect)).await;
    let url = app
        .provider
        .logout_url(Some("http://127.0.0.1:1/"), Some("bye"))
        .await
        .unwrap()
        .expect("the provider has an end_session_endpoint");
    assert_eq!(url.path(), "/logout");
    let params = crate::common::query(url.as_str());
    assert_eq!(params["client_id"], "test-app");
    assert_eq!(params["post_logout_redirect_uri"], "http://127.0.0.1:1/");
    assert_eq!(params["state"], "bye");
    assert!(!params.contains_key("id_token_hint"));
}
