//! Against node `oidc-provider`, which nobody here wrote (the test kit's
//! fixture): discovery, the code flow with PKCE by `query` and by
//! `form_post`, its `iss` parameter, `access_denied`, a key rotation
//! between two sign-ins, `prompt=login`, RP-initiated logout. Its login
//! and consent pages are followed over HTTP with a cookie-keeping client,
//! as a browser would; the flows run over a private `redis-server`.

use std::collections::HashMap;

use axum::http::StatusCode;
use test_kit::{OidcProvider, OidcProviderSettings};
use tower_pipeline_oidc::{Identity, Prompt, Provider, ProviderBuilder, ResponseMode};
use tower_pipeline_state::RedisStore;

use crate::common::{App, RedisServer, browser, flow_cookie, location, query};

/// The application, its store's server and the provider, started together
/// (the provider needs the application's redirect URI, the application the
/// provider's issuer).
async fn deploy(
    settings: OidcProviderSettings,
    configure: impl FnOnce(ProviderBuilder) -> ProviderBuilder,
) -> (App, OidcProvider, RedisServer) {
    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url()).await.unwrap();
    let mut op = None;
    let app = App::start(store, |redirect_uri| {
        let started = OidcProvider::start_with(&redirect_uri, &settings);
        let builder = Provider::oidc(&started.issuer, OidcProvider::CLIENT_ID, redirect_uri)
            .client_secret(OidcProvider::CLIENT_SECRET)
            .display_name("oidc-provider");
        op = Some(started);
        configure(builder)
    })
    .await;
    (app, op.expect("the provider started"), redis)
}

/// Where oidc-provider's pages leave the browser.
enum Ending {
    /// Redirected back to the application with the answer in the query.
    Redirect(String),
    /// An auto-submitted form to the application (`form_post`): its fields.
    Form(Vec<(String, String)>),
}

/// The value of attribute `name` in `tag`'s text.
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
    let end = tag[start..].find('"')? + start;
    Some(&tag[start..end])
}

fn unescape(text: &str) -> String {
    text.replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The hidden fields of a page's form.
fn hidden_fields(page: &str) -> Vec<(String, String)> {
    page.match_indices("<input type=\"hidden\"")
        .map(|(at, _)| {
            let tag = &page[at..at + page[at..].find('>').unwrap()];
            (
                unescape(attribute(tag, "name").unwrap()),
                unescape(attribute(tag, "value").unwrap()),
            )
        })
        .collect()
}

/// Follows oidc-provider from `authorize` through its development login
/// (as `login`, any password) and consent pages, as a browser would, until
/// it sends the browser back to `redirect_uri`. `abort` cancels at the
/// login page instead (its "[ Cancel ]" link).
async fn follow(
    client: &reqwest::Client,
    op: &OidcProvider,
    authorize: &str,
    redirect_uri: &str,
    login: &str,
    abort: bool,
) -> (Ending, Vec<&'static str>) {
    let mut seen = Vec::new();
    let mut response = client.get(authorize).send().await.unwrap();
    for _ in 0..20 {
        if response.status().is_redirection() {
            let next = location(&response);
            if next.starts_with(redirect_uri) {
                return (Ending::Redirect(next), seen);
            }
            let next = url::Url::parse(&op.issuer).unwrap().join(&next).unwrap();
            response = client.get(next).send().await.unwrap();
            continue;
        }
        assert_eq!(response.status(), StatusCode::OK);
        let page = response.text().await.unwrap();
        let form_start = page.find("<form").expect("a page with a form");
        let form_tag = &page[form_start..page[form_start..].find('>').unwrap() + form_start];
        let action = unescape(attribute(form_tag, "action").expect("a form action"));
        if action.starts_with(redirect_uri) {
            return (Ending::Form(hidden_fields(&page)), seen);
        }
        // An auto-submitted form of the provider's own (ending its session
        // for the previous account before another logs in): submitted as
        // the browser's script would.
        if page.contains("document.forms[0].submit()") {
            let url = url::Url::parse(&op.issuer).unwrap().join(&action).unwrap();
            response = client
                .post(url)
                .form(&hidden_fields(&page))
                .send()
                .await
                .unwrap();
            continue;
        }
        let url = url::Url::parse(&op.issuer).unwrap().join(&action).unwrap();
        let prompt = if page.contains("name=\"prompt\" value=\"login\"") {
            "login"
        } else if page.contains("name=\"prompt\" value=\"consent\"") {
            "consent"
        } else {
            panic!("an oidc-provider page this test does not know: {page}");
        };
        seen.push(prompt);
        response = if prompt == "login" && abort {
            client.get(format!("{url}/abort")).send().await.unwrap()
        } else if prompt == "login" {
            let form = [
                ("prompt", "login"),
                ("login", login),
                ("password", "any password"),
            ];
            client.post(url).form(&form).send().await.unwrap()
        } else {
            client
                .post(url)
                .form(&[("prompt", "consent")])
                .send()
                .await
                .unwrap()
        };
    }
    panic!("oidc-provider did not send the browser back within 20 pages");
}

/// A whole sign-in by `query`: the identity the application ended with.
async fn sign_in(
    app: &App,
    op: &OidcProvider,
    client: &reqwest::Client,
    login: &str,
) -> (Identity, Vec<&'static str>, HashMap<String, String>) {
    sign_in_at(app, op, client, "/start", login).await
}

/// [`sign_in`], started at the application's route `start`.
async fn sign_in_at(
    app: &App,
    op: &OidcProvider,
    client: &reqwest::Client,
    start: &str,
    login: &str,
) -> (Identity, Vec<&'static str>, HashMap<String, String>) {
    let (authorize, _) = app.begin_at(client, start).await;
    let (ending, seen) = follow(
        client,
        op,
        &authorize,
        app.provider.redirect_uri(),
        login,
        false,
    )
    .await;
    let Ending::Redirect(answer) = ending else {
        panic!("a redirect back with `query`");
    };
    let answer_params = query(&answer);
    let response = client.get(&answer).send().await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{:?}",
        response.text().await
    );
    (response.json().await.unwrap(), seen, answer_params)
}

#[tokio::test]
async fn signs_in_at_oidc_provider_by_query_with_its_iss_parameter() {
    let (app, op, redis) = deploy(OidcProviderSettings::default(), |builder| builder).await;
    let client = browser();
    let (identity, seen, answer) = sign_in(&app, &op, &client, "carol").await;
    assert_eq!(seen, ["login", "consent"]);
    // oidc-provider sends RFC 9207's `iss` and promises it in discovery.
    assert_eq!(answer["iss"], op.issuer);
    assert_eq!(identity.issuer, op.issuer);
    assert_eq!(identity.subject, "carol");
    assert_eq!(identity.email.as_deref(), Some("carol@example.org"));
    assert_eq!(identity.name.as_deref(), Some("carol at oidc-provider"));
    assert_eq!(identity.username.as_deref(), Some("carol"));
    // The finished flow keeps only its ended record, for its replays.
    let keys = redis.keys();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let record: serde_json::Value = serde_json::from_slice(&redis.get(&keys[0]).unwrap()).unwrap();
    let ended = &record["data"];
    assert_eq!(ended["ended"]["how"]["as"], "finished", "{ended}");
    assert_eq!(ended["data"], serde_json::json!({}), "{ended}");
}

#[tokio::test]
async fn an_answer_stripped_of_the_iss_oidc_provider_promises_is_refused() {
    let (app, op, _redis) = deploy(OidcProviderSettings::default(), |builder| builder).await;
    let client = browser();
    let (authorize, _) = app.begin(&client).await;
    let (ending, _) = follow(
        &client,
        &op,
        &authorize,
        app.provider.redirect_uri(),
        "carol",
        false,
    )
    .await;
    let Ending::Redirect(answer) = ending else {
        panic!("a redirect back");
    };
    let mut url = url::Url::parse(&answer).unwrap();
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(name, _)| name != "iss")
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    url.query_pairs_mut().clear().extend_pairs(kept);
    let response = client.get(url.as_str()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.text().await.unwrap(), "mix_up");
}

#[tokio::test]
async fn signs_in_at_oidc_provider_by_form_post() {
    let (app, op, _redis) = deploy(OidcProviderSettings::default(), |builder| {
        builder.response_mode(ResponseMode::FormPost)
    })
    .await;
    let client = browser();
    let start = client.post(app.server.url("/start")).send().await.unwrap();
    assert_eq!(start.status(), StatusCode::SEE_OTHER);
    // `steps` turned on cross-site callbacks: the flow's cookie goes with a
    // cross-site POST.
    let cookie = flow_cookie(&start).expect("the flow's cookie");
    assert_eq!(cookie.same_site(), Some(cookie::SameSite::None));
    assert_eq!(cookie.secure(), Some(true));
    let authorize = location(&start);
    assert_eq!(query(&authorize)["response_mode"], "form_post");
    let (ending, _) = follow(
        &client,
        &op,
        &authorize,
        app.provider.redirect_uri(),
        "dave",
        false,
    )
    .await;
    let Ending::Form(fields) = ending else {
        panic!("an auto-submitted form with `form_post`");
    };
    let names: Vec<&str> = fields.iter().map(|(name, _)| name.as_str()).collect();
    assert!(
        names.contains(&"code") && names.contains(&"state") && names.contains(&"iss"),
        "{names:?}"
    );
    // As the browser posts it from the provider's page: cross-site, with
    // the `SameSite=None` cookie (set by hand: the test client keeps no
    // `Secure` cookie over plain HTTP).
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(app.provider.redirect_uri())
        .header("cookie", format!("{}={}", cookie.name(), cookie.value()))
        .header("sec-fetch-site", "cross-site")
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let identity: Identity = response.json().await.unwrap();
    assert_eq!(identity.subject, "dave");
}

#[tokio::test]
async fn access_denied_at_oidc_provider_is_a_typed_failure() {
    let (app, op, _redis) = deploy(OidcProviderSettings::default(), |builder| builder).await;
    let client = browser();
    let (authorize, _) = app.begin(&client).await;
    let (ending, _) = follow(
        &client,
        &op,
        &authorize,
        app.provider.redirect_uri(),
        "erin",
        true,
    )
    .await;
    let Ending::Redirect(answer) = ending else {
        panic!("a redirect back");
    };
    assert_eq!(query(&answer)["error"], "access_denied");
    let response = client.get(&answer).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.text().await.unwrap(), "access_denied");
}

#[tokio::test]
async fn a_key_rotation_at_oidc_provider_between_two_sign_ins_is_followed() {
    let settings = OidcProviderSettings {
        key_id: Some("first-key".to_owned()),
        ..OidcProviderSettings::default()
    };
    let (app, op, _redis) = deploy(settings, |builder| builder).await;
    let (identity, _, _) = sign_in(&app, &op, &browser(), "frank").await;
    assert_eq!(identity.subject, "frank");
    // The provider comes back on the same issuer with a new signing key
    // (and without the old one): the application's keys are stale.
    let port = op.port;
    drop(op);
    let rotated = OidcProvider::start_with(
        app.provider.redirect_uri(),
        &OidcProviderSettings {
            port: Some(port),
            key_id: Some("second-key".to_owned()),
            ..OidcProviderSettings::default()
        },
    );
    let (identity, _, _) = sign_in(&app, &rotated, &browser(), "grace").await;
    assert_eq!(identity.subject, "grace");
}

#[tokio::test]
async fn prompt_login_at_oidc_provider_asks_for_the_login_again() {
    let (app, op, _redis) = deploy(OidcProviderSettings::default(), |builder| {
        builder.prompt(Prompt::Login)
    })
    .await;
    let client = browser();
    let (_, seen, _) = sign_in(&app, &op, &client, "heidi").await;
    assert_eq!(seen, ["login", "consent"]);
    // The same browser, with its session at the provider: asked to log in
    // again (without `prompt=login` it would go straight back).
    let (identity, seen, _) = sign_in(&app, &op, &client, "ivan").await;
    assert_eq!(seen.first(), Some(&"login"), "{seen:?}");
    assert_eq!(identity.subject, "ivan");
}

#[tokio::test]
async fn a_prompt_for_one_flow_kind_lets_a_known_browser_use_another_account() {
    let (app, op, _redis) = deploy(OidcProviderSettings::default(), |builder| {
        builder.prompt_for("another_account", Prompt::Login)
    })
    .await;
    let client = browser();
    let (_, seen, _) = sign_in(&app, &op, &client, "kate").await;
    assert_eq!(seen, ["login", "consent"]);
    // A sign-in of kind `login` sends no prompt: the provider knows this
    // browser and signs kate in again at once.
    let (authorize, params) = app.begin(&client).await;
    assert!(!params.contains_key("prompt"), "{authorize}");
    let (identity, seen, _) = sign_in(&app, &op, &client, "nobody-asked").await;
    assert!(seen.is_empty(), "{seen:?}");
    assert_eq!(identity.subject, "kate");
    // "Use another account": a flow of kind `another_account` asks for the
    // login again, and someone else signs in.
    let (_, params) = app.begin_at(&client, "/start/another-account").await;
    assert_eq!(params["prompt"], "login");
    let (identity, seen, _) = sign_in_at(&app, &op, &client, "/start/another-account", "leo").await;
    assert_eq!(seen.first(), Some(&"login"), "{seen:?}");
    assert_eq!(identity.subject, "leo");
}

#[tokio::test]
async fn without_prompt_oidc_provider_signs_a_known_browser_in_at_once() {
    let (app, op, _redis) = deploy(OidcProviderSettings::default(), |builder| builder).await;
    let client = browser();
    sign_in(&app, &op, &client, "judy").await;
    let (identity, seen, _) = sign_in(&app, &op, &client, "someone-else").await;
    assert!(seen.is_empty(), "{seen:?}");
    assert_eq!(identity.subject, "judy");
}

#[tokio::test]
async fn the_logout_url_at_oidc_provider_is_its_end_session_endpoint() {
    let settings = OidcProviderSettings {
        post_logout_redirect_uri: Some("http://127.0.0.1:9/signed-out".to_owned()),
        ..OidcProviderSettings::default()
    };
    let (app, op, _redis) = deploy(settings, |builder| builder).await;
    let url = app
        .provider
        .logout_url(Some("http://127.0.0.1:9/signed-out"), None)
        .await
        .unwrap()
        .expect("oidc-provider has an end_session_endpoint");
    assert!(url.as_str().starts_with(&op.issuer), "{url}");
    // The provider takes it: its "sign out?" confirmation page.
    let response = browser().get(url.as_str()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.text().await.unwrap().contains("logout"));
}
