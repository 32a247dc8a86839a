//! A plain OAuth 2.0 provider (no ID token): the code exchange with PKCE,
//! then the user info mapped to an `Identity` by a description.

use axum::http::StatusCode;
use tower_pipeline_oidc::{Identity, OAuthDescription, Provider, UserInfoMapping};
use tower_pipeline_state::MemoryStore;

use crate::common::{App, CLIENT_ID, CLIENT_SECRET, Idp, answer, browser};

/// GitHub's description, pointed at the test provider: the mapping is
/// GitHub's (numeric `id`, `login`, `name`, `email`).
fn github_like(idp: &Idp) -> OAuthDescription {
    let issuer = idp.issuer();
    OAuthDescription::new(
        "https://github.com",
        &format!("{issuer}/oauth/authorize"),
        &format!("{issuer}/oauth/token"),
        &format!("{issuer}/oauth/user"),
        UserInfoMapping::fields("id")
            .username("login")
            .name("name")
            .email("email"),
    )
    .unwrap()
    .scopes(["read:user"])
    .client_secret_in_body(true)
    .login_hint_param("login")
}

#[tokio::test]
async fn a_plain_oauth_provider_signs_in_through_its_user_info_mapping() {
    let idp = Idp::start(false).await;
    let app = App::start(MemoryStore::new(), |redirect| {
        Provider::oauth(github_like(&idp), CLIENT_ID, redirect)
            .client_secret(CLIENT_SECRET)
            .login_hint("octocat")
    })
    .await;
    assert_eq!(app.provider.display_name(), "github.com");
    let client = browser();
    let (authorize, params) = app.begin(&client).await;
    assert!(authorize.starts_with(&format!("{}/oauth/authorize?", idp.issuer())));
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(params["scope"], "read:user");
    assert_eq!(params["login"], "octocat");
    assert!(
        !params.contains_key("nonce"),
        "no OIDC nonce for plain OAuth"
    );

    let code = idp.grant(&params);
    let url = answer(
        &params["redirect_uri"],
        &[("code", &code), ("state", &params["state"])],
    );
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let identity: Identity = response.json().await.unwrap();
    assert_eq!(identity.issuer, "https://github.com");
    assert_eq!(identity.subject, "583231");
    assert_eq!(identity.username.as_deref(), Some("octocat"));
    assert_eq!(identity.name.as_deref(), Some("The Octocat"));
    assert_eq!(identity.email.as_deref(), Some("octocat@example.org"));
    assert!(!identity.email_verified, "GitHub's /user does not say");
    assert_eq!(identity.claims["login"], "octocat");
    assert_eq!(idp.token_requests(), 1);
}

#[tokio::test]
async fn a_plain_oauth_answer_with_another_iss_or_an_error_is_refused() {
    let idp = Idp::start(false).await;
    let app = App::start(MemoryStore::new(), |redirect| {
        Provider::oauth(github_like(&idp), CLIENT_ID, redirect).client_secret(CLIENT_SECRET)
    })
    .await;
    let client = browser();
    let (_, params) = app.begin(&client).await;
    let code = idp.grant(&params);
    let url = answer(
        &params["redirect_uri"],
        &[
            ("code", &code),
            ("state", &params["state"]),
            ("iss", "https://gitlab.com"),
        ],
    );
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.text().await.unwrap(), "mix_up");

    let (_, params) = app.begin(&client).await;
    let url = answer(
        &params["redirect_uri"],
        &[("error", "access_denied"), ("state", &params["state"])],
    );
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "access_denied");
    assert_eq!(idp.token_requests(), 0);
}

#[tokio::test]
async fn a_user_info_answer_without_the_subject_is_refused() {
    let idp = Idp::start(false).await;
    let description = OAuthDescription::new(
        "https://github.com",
        &format!("{}/oauth/authorize", idp.issuer()),
        &format!("{}/oauth/token", idp.issuer()),
        &format!("{}/oauth/user", idp.issuer()),
        UserInfoMapping::fields("uuid"),
    )
    .unwrap();
    let app = App::start(MemoryStore::new(), |redirect| {
        Provider::oauth(description, CLIENT_ID, redirect).client_secret(CLIENT_SECRET)
    })
    .await;
    let client = browser();
    let (_, params) = app.begin(&client).await;
    let code = idp.grant(&params);
    let url = answer(
        &params["redirect_uri"],
        &[("code", &code), ("state", &params["state"])],
    );
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "user_info");
}
