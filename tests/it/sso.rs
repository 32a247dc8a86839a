//! The SSO example end to end: its own routers (from `examples/sso/`), its
//! identity provider, real servers on loopback, browsers with cookie jars,
//! and a private redis-server.

#[allow(dead_code)]
#[path = "../../examples/sso/mod.rs"]
mod example;

use std::{collections::HashMap, time::Duration};

use crate::common::*;
use cookie::SameSite;
use reqwest::{StatusCode, header::LOCATION};

/// One identity provider and `instances` app servers sharing one Redis, as
/// behind a load balancer: all have the public origin of the first.
struct Deployment {
    settings: example::Settings,
    apps: Vec<Server>,
    _idp: Server,
}

impl Deployment {
    async fn new(redis: &RedisServer, instances: usize, ttl: Duration) -> Self {
        // Listeners first: the app must know its own URL, and the provider
        // the app's, before either serves.
        let idp_listener = listener().await;
        let mut listeners = Vec::new();
        for _ in 0..instances {
            listeners.push(listener().await);
        }
        let settings = example::Settings {
            app_origin: format!("http://{}", listeners[0].local_addr().unwrap()),
            idp_origin: format!("http://{}", idp_listener.local_addr().unwrap()),
            ttl,
        };
        let mut apps = Vec::new();
        for listener in listeners {
            // Each instance has its own connection: only Redis is shared.
            let store = redis_store(&redis.url()).await;
            apps.push(Server::axum(
                listener,
                example::app::router(store, settings.clone()),
            ));
        }
        let idp = Server::axum(idp_listener, example::idp::router(settings.redirect_uri()));
        Self {
            settings,
            apps,
            _idp: idp,
        }
    }

    async fn single(redis: &RedisServer) -> Self {
        Self::new(redis, 1, Duration::from_secs(600)).await
    }

    /// `path` on instance `i`.
    fn at(&self, i: usize, path: &str) -> String {
        self.apps[i].url(path)
    }

    /// A URL on the public origin, sent to instance `i` (what the load
    /// balancer does).
    fn via(&self, i: usize, url: &str) -> String {
        let path = url
            .strip_prefix(&self.settings.app_origin)
            .unwrap_or_else(|| panic!("{url} is not on the app's origin"));
        self.at(i, path)
    }
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(LOCATION)
        .unwrap_or_else(|| panic!("no Location in a {} answer", response.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

fn query(url: &str) -> HashMap<String, String> {
    let query = url.split_once('?').map_or("", |(_, query)| query);
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        serializer.append_pair(name, value);
    }
    serializer.finish()
}

async fn post_form(browser: &reqwest::Client, url: &str, body: String) -> reqwest::Response {
    browser
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// The outcome kind an error page names, if any.
fn outcome(body: &str) -> Option<&str> {
    let start = body.find("Outcome: <code>")? + "Outcome: <code>".len();
    Some(&body[start..start + body[start..].find('<')?])
}

/// Starts a sign-in on instance `i`; returns the provider's authorize URL.
async fn start(deployment: &Deployment, browser: &reqwest::Client, i: usize) -> String {
    let started = browser
        .post(deployment.at(i, "/sso/start"))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    let authorize = location(&started);
    assert!(
        authorize.starts_with(&format!("{}/authorize?", deployment.settings.idp_origin)),
        "{authorize}"
    );
    authorize
}

/// Signs in at the provider's form; returns the callback URL it redirects to.
async fn sign_in_at_provider(
    browser: &reqwest::Client,
    authorize: &str,
    user: &str,
    password: &str,
) -> String {
    let form_page = browser.get(authorize).send().await.unwrap();
    assert_eq!(form_page.status(), StatusCode::OK);
    assert!(
        form_page
            .text()
            .await
            .unwrap()
            .contains("name=\"password\"")
    );
    let params = query(authorize);
    let mut fields: Vec<(&str, &str)> = params
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    fields.extend([("username", user), ("password", password)]);
    let origin = authorize.split_once("/authorize").unwrap().0;
    let signed_in = post_form(browser, &format!("{origin}/authorize"), form(&fields)).await;
    assert_eq!(
        signed_in.status(),
        StatusCode::SEE_OTHER,
        "signing in as {user}"
    );
    location(&signed_in)
}

/// Follows the provider's redirect back to instance `i`; the app redirects
/// to its flow route.
async fn follow_callback(
    deployment: &Deployment,
    browser: &reqwest::Client,
    callback: &str,
    i: usize,
) -> reqwest::Response {
    browser
        .get(deployment.via(i, callback))
        .send()
        .await
        .unwrap()
}

/// Shows the confirmation on instance `i` and continues on instance `j`;
/// returns the final page.
async fn confirm(
    deployment: &Deployment,
    browser: &reqwest::Client,
    i: usize,
    j: usize,
) -> (StatusCode, String) {
    let asked = browser.get(deployment.at(i, "/sso")).send().await.unwrap();
    assert_eq!(asked.status(), StatusCode::OK);
    let asked = asked.text().await.unwrap();
    assert!(asked.contains("Continue as"), "{asked}");
    let done = post_form(
        browser,
        &deployment.at(j, "/sso"),
        form(&[("action", "continue")]),
    )
    .await;
    (done.status(), done.text().await.unwrap())
}

async fn page(response: reqwest::Response) -> (StatusCode, String) {
    (response.status(), response.text().await.unwrap())
}

fn stored(redis: &RedisServer, key: &str) -> serde_json::Value {
    let raw = redis
        .get(key)
        .unwrap_or_else(|| panic!("no record under {key}"));
    serde_json::from_slice::<serde_json::Value>(&raw).unwrap()["data"].clone()
}

#[tokio::test]
async fn the_whole_sign_in_runs_end_to_end() {
    let redis = RedisServer::start();
    let deployment = Deployment::single(&redis).await;
    let browser = browser();

    let home = browser.get(deployment.at(0, "/")).send().await.unwrap();
    assert!(home.text().await.unwrap().contains("action=\"/sso/start\""));

    let started = browser
        .post(deployment.at(0, "/sso/start"))
        .send()
        .await
        .unwrap();
    let cookie = set_cookie(&started).expect("starting sets the flow cookie");
    assert_eq!(cookie.http_only(), Some(true), "{cookie}");
    assert_eq!(cookie.same_site(), Some(SameSite::Lax), "{cookie}");
    assert_eq!(cookie.path(), Some("/"), "{cookie}");
    assert_eq!(cookie.secure(), None, "plain-HTTP demo: {cookie}");
    let key = format!("auth:pipeline:{}", cookie.value());
    assert_eq!(redis.keys(), std::slice::from_ref(&key));

    let authorize = location(&started);
    let params = query(&authorize);
    assert_eq!(params["response_type"], "code");
    assert_eq!(params["client_id"], example::idp::CLIENT_ID);
    assert_eq!(params["redirect_uri"], deployment.settings.redirect_uri());
    assert_eq!(params["code_challenge_method"], "S256");
    let record = stored(&redis, &key);
    assert_eq!(
        record["step_index"], 1,
        "off to the provider: at the callback step"
    );
    assert_eq!(
        record["nonce"], params["state"],
        "the state sent out is the flow's nonce"
    );
    assert_eq!(params["state"].len(), 43);
    let verifier = record["data"]["pkce_verifier"].as_str().unwrap();
    assert_eq!(
        example::pkce::challenge(verifier),
        params["code_challenge"],
        "the challenge is the bound verifier's"
    );

    // A wrong password stays at the provider.
    let refused = post_form(
        &browser,
        &format!("{}/authorize", deployment.settings.idp_origin),
        form(&[
            ("response_type", "code"),
            ("client_id", &params["client_id"]),
            ("redirect_uri", &params["redirect_uri"]),
            ("state", &params["state"]),
            ("code_challenge", &params["code_challenge"]),
            ("code_challenge_method", "S256"),
            ("username", "alice"),
            ("password", "looking-glass"),
        ]),
    )
    .await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    let callback = sign_in_at_provider(&browser, &authorize, "alice", "wonderland").await;
    assert!(
        callback.starts_with(&format!("{}?", deployment.settings.redirect_uri())),
        "{callback}"
    );
    assert_eq!(query(&callback)["state"], params["state"]);

    let back = follow_callback(&deployment, &browser, &callback, 0).await;
    assert_eq!(back.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&back), "/sso", "back to the flow's clean URL");
    let record = stored(&redis, &key);
    assert_eq!(record["step_index"], 2);
    assert!(record.get("nonce").is_none(), "the nonce was consumed");
    assert_eq!(record["data"]["identity"]["login"], "alice");
    assert!(
        record["data"].get("pkce_verifier").is_none(),
        "the verifier is dropped once used"
    );

    let (status, body) = confirm(&deployment, &browser, 0, 0).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("signed in as alice"), "{body}");
    assert_eq!(
        redis.keys(),
        Vec::<String>::new(),
        "a finished flow is cleared"
    );

    let (status, body) = page(browser.get(deployment.at(0, "/sso")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(outcome(&body), Some("no_flow"), "{body}");
}

#[tokio::test]
async fn a_replayed_callback_and_a_wrong_state_are_rejected_with_the_nonce_outcome() {
    let redis = RedisServer::start();
    let deployment = Deployment::single(&redis).await;
    let browser = browser();

    let authorize = start(&deployment, &browser, 0).await;
    let callback = sign_in_at_provider(&browser, &authorize, "alice", "wonderland").await;
    let key = redis.keys().pop().unwrap();
    let before = redis.get(&key);
    let params = query(&callback);

    // A wrong state: refused before the code is even looked at.
    let forged = format!(
        "{}?{}",
        deployment.settings.redirect_uri(),
        form(&[
            ("code", &params["code"]),
            ("state", &example::pkce::random_token())
        ])
    );
    let (status, body) = page(follow_callback(&deployment, &browser, &forged, 0).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(outcome(&body), Some("nonce_mismatch"), "{body}");
    // No state at all.
    let bare = format!(
        "{}?{}",
        deployment.settings.redirect_uri(),
        form(&[("code", &params["code"])])
    );
    let (_, body) = page(follow_callback(&deployment, &browser, &bare, 0).await).await;
    assert_eq!(outcome(&body), Some("nonce_missing"), "{body}");
    assert_eq!(redis.get(&key), before, "refused callbacks move nothing");

    // The genuine callback still works, once.
    let back = follow_callback(&deployment, &browser, &callback, 0).await;
    assert_eq!(back.status(), StatusCode::SEE_OTHER);
    let after = redis.get(&key);
    let (status, body) = page(follow_callback(&deployment, &browser, &callback, 0).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(outcome(&body), Some("nonce_replayed"), "{body}");
    assert_eq!(redis.get(&key), after, "the replay moved nothing");

    let (status, body) = confirm(&deployment, &browser, 0, 0).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("signed in as alice"), "{body}");

    // After the finish, the flow is gone: a replay finds nothing at all.
    let (_, body) = page(follow_callback(&deployment, &browser, &callback, 0).await).await;
    assert_eq!(outcome(&body), Some("no_flow"), "{body}");
}

#[tokio::test]
async fn a_callback_made_for_another_browser_is_refused() {
    // Login CSRF: the attacker signs in as bob, keeps the callback URL, and
    // gets the victim's browser to open it.
    let redis = RedisServer::start();
    let deployment = Deployment::single(&redis).await;
    let (attacker, victim) = (browser(), browser());

    let authorize = start(&deployment, &attacker, 0).await;
    let planted = sign_in_at_provider(&attacker, &authorize, "bob", "builder").await;

    let authorize = start(&deployment, &victim, 0).await;
    let (status, body) = page(follow_callback(&deployment, &victim, &planted, 0).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(outcome(&body), Some("nonce_mismatch"), "{body}");

    let callback = sign_in_at_provider(&victim, &authorize, "alice", "wonderland").await;
    follow_callback(&deployment, &victim, &callback, 0).await;
    let (_, body) = confirm(&deployment, &victim, 0, 0).await;
    assert!(body.contains("signed in as alice"), "{body}");
}

#[tokio::test]
async fn an_abandoned_flow_expires_after_its_ttl() {
    let redis = RedisServer::start();
    let deployment = Deployment::new(&redis, 1, Duration::from_secs(1)).await;
    let browser = browser();

    let authorize = start(&deployment, &browser, 0).await;
    let callback = sign_in_at_provider(&browser, &authorize, "alice", "wonderland").await;
    let key = redis.keys().pop().expect("the flow is stored");
    assert!(
        (0..=1).contains(&redis.ttl(&key)),
        "TTL {}",
        redis.ttl(&key)
    );

    // The user walks away for longer than the TTL.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(redis.keys(), Vec::<String>::new(), "Redis dropped the flow");

    let late = follow_callback(&deployment, &browser, &callback, 0).await;
    assert!(
        set_cookie(&late).is_some_and(|cookie| removes(&cookie)),
        "the stale cookie is removed"
    );
    let (status, body) = page(late).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(outcome(&body), Some("expired"), "{body}");
}

#[tokio::test]
async fn two_browsers_sign_in_at_once_without_touching_each_other() {
    let redis = RedisServer::start();
    let deployment = Deployment::single(&redis).await;
    let (first, second) = (browser(), browser());

    // Interleaved, step by step.
    let authorize_alice = start(&deployment, &first, 0).await;
    let authorize_bob = start(&deployment, &second, 0).await;
    assert_eq!(redis.keys().len(), 2, "two flows, two records");
    let callback_alice = sign_in_at_provider(&first, &authorize_alice, "alice", "wonderland").await;
    let callback_bob = sign_in_at_provider(&second, &authorize_bob, "bob", "builder").await;
    let back = follow_callback(&deployment, &second, &callback_bob, 0).await;
    assert_eq!(back.status(), StatusCode::SEE_OTHER);
    let back = follow_callback(&deployment, &first, &callback_alice, 0).await;
    assert_eq!(back.status(), StatusCode::SEE_OTHER);
    let (_, alice) = confirm(&deployment, &first, 0, 0).await;
    assert_eq!(redis.keys().len(), 1, "bob's flow is still there");
    let (_, bob) = confirm(&deployment, &second, 0, 0).await;
    assert!(alice.contains("signed in as alice"), "{alice}");
    assert!(bob.contains("signed in as bob"), "{bob}");
    assert_eq!(redis.keys(), Vec::<String>::new());

    // And truly at once.
    let run = |browser: reqwest::Client, user: &'static str, password: &'static str| {
        let deployment = &deployment;
        async move {
            let authorize = start(deployment, &browser, 0).await;
            let callback = sign_in_at_provider(&browser, &authorize, user, password).await;
            follow_callback(deployment, &browser, &callback, 0).await;
            confirm(deployment, &browser, 0, 0).await.1
        }
    };
    let (alice, bob) = tokio::join!(
        run(crate::common::browser(), "alice", "wonderland"),
        run(crate::common::browser(), "bob", "builder")
    );
    assert!(alice.contains("signed in as alice"), "{alice}");
    assert!(bob.contains("signed in as bob"), "{bob}");
}

#[tokio::test]
async fn a_flow_started_on_one_instance_finishes_on_another() {
    let redis = RedisServer::start();
    let deployment = Deployment::new(&redis, 2, Duration::from_secs(600)).await;
    let browser = browser();

    let authorize = start(&deployment, &browser, 0).await;
    let callback = sign_in_at_provider(&browser, &authorize, "alice", "wonderland").await;
    let back = follow_callback(&deployment, &browser, &callback, 1).await;
    assert_eq!(
        back.status(),
        StatusCode::SEE_OTHER,
        "instance 1 took the callback"
    );
    let (status, body) = confirm(&deployment, &browser, 0, 1).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("signed in as alice"), "{body}");
    assert_eq!(redis.keys(), Vec::<String>::new());
}

#[tokio::test]
async fn the_provider_checks_the_pkce_verifier() {
    let redis = RedisServer::start();
    let deployment = Deployment::single(&redis).await;
    let browser = browser();
    let token_url = format!("{}/token", deployment.settings.idp_origin);
    let exchange = |code: String, verifier: String| {
        form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &deployment.settings.redirect_uri()),
            ("client_id", example::idp::CLIENT_ID),
            ("code_verifier", &verifier),
        ])
    };

    // Someone who intercepted the code but not the verifier gets nothing,
    // and burns the code: the app's callback then fails too.
    let authorize = start(&deployment, &browser, 0).await;
    let callback = sign_in_at_provider(&browser, &authorize, "alice", "wonderland").await;
    let code = query(&callback)["code"].clone();
    let stolen = post_form(
        &browser,
        &token_url,
        exchange(code, example::pkce::verifier()),
    )
    .await;
    assert_eq!(stolen.status(), StatusCode::BAD_REQUEST);
    assert!(stolen.text().await.unwrap().contains("invalid_grant"));
    let (status, body) = page(follow_callback(&deployment, &browser, &callback, 0).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(outcome(&body), Some("failed"), "{body}");
    assert_eq!(
        redis.keys(),
        Vec::<String>::new(),
        "a failed flow is cleared"
    );

    // The right verifier (the one the flow bound) gets the identity.
    let authorize = start(&deployment, &browser, 0).await;
    let key = redis.keys().pop().unwrap();
    let verifier = stored(&redis, &key)["data"]["pkce_verifier"]
        .as_str()
        .unwrap()
        .to_owned();
    let callback = sign_in_at_provider(&browser, &authorize, "bob", "builder").await;
    let code = query(&callback)["code"].clone();
    let token = post_form(
        &browser,
        &token_url,
        exchange(code.clone(), verifier.clone()),
    )
    .await;
    assert_eq!(token.status(), StatusCode::OK);
    let token: example::idp::TokenResponse =
        serde_json::from_str(&token.text().await.unwrap()).unwrap();
    assert_eq!(token.user.login, "bob");
    let again = post_form(&browser, &token_url, exchange(code, verifier)).await;
    assert_eq!(
        again.status(),
        StatusCode::BAD_REQUEST,
        "a code is used once"
    );
}
