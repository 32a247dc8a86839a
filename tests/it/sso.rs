//! The SSO example end to end: its own routers (from `examples/sso/`), its
//! built-in OpenID provider (on `localhost`, another site than the app's
//! `127.0.0.1`), real servers on loopback, browsers with cookie jars, and a
//! private redis-server. The pages are checked by their plain-word titles
//! (`example::pages`); the request log by its lines. Headless Chromium
//! drives the same demo in `tests/browser/`.

#[allow(dead_code)]
#[path = "../../examples/sso/mod.rs"]
mod example;

use std::{collections::HashMap, time::Duration};

use crate::common::*;
use cookie::SameSite;
use example::pages::{self, Message};
use reqwest::{StatusCode, header::LOCATION};
use tower_pipeline_state::Key;

/// One identity provider and `instances` app servers sharing one Redis, as
/// behind a load balancer: all have the public origin of the first.
struct Deployment {
    settings: example::Settings,
    apps: Vec<Server>,
    _idp: Server,
}

impl Deployment {
    async fn new(redis: &RedisServer, instances: usize, ttl: Duration) -> Self {
        Self::with_mode(redis, instances, ttl, example::ResponseMode::Query).await
    }

    async fn with_mode(
        redis: &RedisServer,
        instances: usize,
        ttl: Duration,
        response_mode: example::ResponseMode,
    ) -> Self {
        // Listeners first: the app must know its own URL, and the provider
        // the app's, before either serves.
        let idp_listener = listener().await;
        let mut listeners = Vec::new();
        for _ in 0..instances {
            listeners.push(listener().await);
        }
        let settings = example::Settings {
            app_origin: format!("http://{}", listeners[0].local_addr().unwrap()),
            provider: example::Provider {
                issuer: format!(
                    "http://localhost:{}",
                    idp_listener.local_addr().unwrap().port()
                ),
                client_id: example::idp::CLIENT_ID.to_owned(),
                client_secret: Some(example::idp::CLIENT_SECRET.to_owned()),
                display_name: "the demo identity provider".to_owned(),
            },
            response_mode,
            ttl,
            key: Key::generate(),
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
        let idp = Server::axum(
            idp_listener,
            example::idp::router(settings.provider.issuer.clone(), settings.redirect_uri()),
        );
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

/// Whether `body` is the page of `message`, and names no engine outcome
/// nor a provider's error code.
fn shows(body: &str, message: &Message) -> bool {
    const CODES: &[&str] = &[
        "no_flow",
        "nonce_mismatch",
        "nonce_replayed",
        "nonce_missing",
        "signature_changed",
        "unknown_flow_kind",
        "missing_layer",
        "invalid_grant",
        "access_denied",
        "Outcome",
    ];
    let title = format!("<h1>{}</h1>", message.title.replace('\'', "&#39;"));
    body.contains(&title) && !CODES.iter().any(|code| body.contains(code))
}

/// The id in a signed flow cookie's value (the signature comes first).
fn flow_id(cookie: &cookie::Cookie) -> String {
    let value = cookie.value();
    value[value.len() - 32..].to_owned()
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
        authorize.starts_with(&format!(
            "{}/authorize?",
            deployment.settings.provider.issuer
        )),
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
    fields.extend([
        ("username", user),
        ("password", password),
        ("action", "sign_in"),
    ]);
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

/// Shows the confirmation on instance `i` and continues on instance `j`,
/// which redirects to the start page; returns that page (a GET).
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
    if done.status() != StatusCode::SEE_OTHER {
        return (done.status(), done.text().await.unwrap());
    }
    assert_eq!(location(&done), "/", "signed in: on to a GET page");
    page(browser.get(deployment.at(j, "/")).send().await.unwrap()).await
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
async fn the_whole_sign_in_runs_end_to_end_and_logs_one_line_per_request() {
    let (logs, _capturing) = Logs::capture();
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
    let key = format!("auth:pipeline:{}", flow_id(&cookie));
    assert_eq!(redis.keys(), std::slice::from_ref(&key));

    let authorize = location(&started);
    assert!(
        authorize.starts_with("http://localhost:"),
        "the provider is another site than the app's 127.0.0.1: {authorize}"
    );
    let params = query(&authorize);
    assert_eq!(params["response_type"], "code");
    assert_eq!(params["client_id"], example::idp::CLIENT_ID);
    assert_eq!(params["redirect_uri"], deployment.settings.redirect_uri());
    assert_eq!(params["scope"], "openid profile email");
    assert_eq!(params["code_challenge_method"], "S256");
    assert!(
        !params.contains_key("response_mode"),
        "query is the default"
    );
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
    assert_eq!(
        record["data"]["oidc_nonce"], params["nonce"],
        "the OIDC nonce is bound, to be checked in the ID token"
    );
    assert_ne!(params["nonce"], params["state"]);
    let verifier = record["data"]["pkce_verifier"].as_str().unwrap();
    assert_eq!(
        example::pkce::challenge(verifier),
        params["code_challenge"],
        "the challenge is the bound verifier's"
    );

    // A wrong password stays at the provider.
    let mut fields: Vec<(&str, &str)> = params
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    fields.extend([("username", "alice"), ("password", "looking-glass")]);
    let refused = post_form(
        &browser,
        &format!("{}/authorize", deployment.settings.provider.issuer),
        form(&fields),
    )
    .await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    let callback = sign_in_at_provider(&browser, &authorize, "alice", "wonderland").await;
    assert!(
        callback.starts_with(&format!("{}?", deployment.settings.redirect_uri())),
        "{callback}"
    );
    let answer = query(&callback);
    assert_eq!(answer["state"], params["state"]);
    assert_eq!(
        answer["iss"], deployment.settings.provider.issuer,
        "RFC 9207"
    );

    let back = follow_callback(&deployment, &browser, &callback, 0).await;
    assert_eq!(back.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&back), "/sso", "back to the flow's clean URL");
    let record = stored(&redis, &key);
    assert_eq!(record["step_index"], 2);
    assert!(record.get("nonce").is_none(), "the nonce was consumed");
    assert_eq!(record["data"]["identity"]["subject"], "alice");
    assert_eq!(record["data"]["identity"]["name"], "Alice Liddell");
    assert_eq!(
        record["data"]["identity"]["issuer"],
        deployment.settings.provider.issuer
    );
    assert!(
        record["data"].get("pkce_verifier").is_none() && record["data"].get("oidc_nonce").is_none(),
        "the verifier and the nonce are dropped once used"
    );

    let (status, body) = confirm(&deployment, &browser, 0, 0).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("Signed in as Alice Liddell"), "{body}");
    assert_eq!(
        redis.keys(),
        Vec::<String>::new(),
        "a finished flow is cleared"
    );

    // Back to the confirmation after signing in: the start page says so.
    let again = browser.get(deployment.at(0, "/sso")).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&again), "/?notice=already_signed_in");

    // Signed out, the same URL says plainly that nothing is going on.
    let out = browser
        .post(deployment.at(0, "/signout"))
        .send()
        .await
        .unwrap();
    assert_eq!(location(&out), "/?notice=signed_out");
    let (status, body) = page(browser.get(deployment.at(0, "/sso")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(shows(&body, &pages::NO_SIGN_IN), "{body}");

    // One line per request, with its outcome; never the query (codes).
    let log = logs.text();
    for line in [
        "app: POST /sso/start -> 303 to_provider",
        "app: GET /sso/callback -> 303 verified",
        "app: GET /sso -> 200 asked_to_confirm",
        "app: POST /sso -> 303 signed_in",
        "app: GET /sso -> 303 already_signed_in",
        "app: POST /signout -> 303 signed_out",
        "app: GET /sso -> 400 no_sign_in",
    ] {
        assert_eq!(logs.matching(&[line]).len(), 1, "{line:?} in\n{log}");
    }
    assert_eq!(logs.matching(&["app: GET / -> 200 home"]).len(), 2, "{log}");
    assert!(!log.contains(&answer["code"]), "{log}");
}

#[tokio::test]
async fn pages_of_its_own_for_unknown_addresses_and_methods() {
    let redis = RedisServer::start();
    let deployment = Deployment::single(&redis).await;
    let browser = browser();
    for (method, path, message) in [
        (reqwest::Method::GET, "/nowhere", &pages::NOT_FOUND),
        (
            reqwest::Method::GET,
            "/sso/start",
            &pages::METHOD_NOT_ALLOWED,
        ),
        (reqwest::Method::DELETE, "/sso", &pages::METHOD_NOT_ALLOWED),
    ] {
        let response = browser
            .request(method.clone(), deployment.at(0, path))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.headers()["content-type"],
            "text/html; charset=utf-8",
            "{method} {path}"
        );
        let (status, body) = page(response).await;
        assert_eq!(status, message.status, "{method} {path}");
        assert!(shows(&body, message), "{method} {path}: {body}");
    }
}

#[tokio::test]
async fn a_replayed_callback_and_a_wrong_state_get_plain_pages() {
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
    assert_eq!(status, pages::REPLACED.status);
    assert!(shows(&body, &pages::REPLACED), "{body}");
    // No state at all.
    let bare = format!(
        "{}?{}",
        deployment.settings.redirect_uri(),
        form(&[("code", &params["code"])])
    );
    let (_, body) = page(follow_callback(&deployment, &browser, &bare, 0).await).await;
    assert!(shows(&body, &pages::MISSING_ANSWER), "{body}");
    assert_eq!(redis.get(&key), before, "refused callbacks move nothing");

    // The genuine callback still works, once.
    let back = follow_callback(&deployment, &browser, &callback, 0).await;
    assert_eq!(back.status(), StatusCode::SEE_OTHER);
    let after = redis.get(&key);
    let (status, body) = page(follow_callback(&deployment, &browser, &callback, 0).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(shows(&body, &pages::ALREADY_USED), "{body}");
    assert_eq!(redis.get(&key), after, "the replay moved nothing");

    let (status, body) = confirm(&deployment, &browser, 0, 0).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Signed in as Alice Liddell"), "{body}");

    // After the finish the flow is gone; signed in, a replay lands on the
    // start page.
    let replay = follow_callback(&deployment, &browser, &callback, 0).await;
    assert_eq!(location(&replay), "/?notice=already_signed_in");
    // In a browser that is not signed in, it says there is no sign-in.
    let (_, body) =
        page(follow_callback(&deployment, &crate::common::browser(), &callback, 0).await).await;
    assert!(shows(&body, &pages::NO_SIGN_IN), "{body}");
}

#[tokio::test]
async fn cancel_is_not_a_failure() {
    let redis = RedisServer::start();
    let deployment = Deployment::single(&redis).await;
    let browser = browser();

    // Cancelled at the app's confirmation.
    let authorize = start(&deployment, &browser, 0).await;
    let callback = sign_in_at_provider(&browser, &authorize, "alice", "wonderland").await;
    follow_callback(&deployment, &browser, &callback, 0).await;
    let cancelled = post_form(
        &browser,
        &deployment.at(0, "/sso"),
        form(&[("action", "cancel")]),
    )
    .await;
    assert_eq!(location(&cancelled), "/?notice=cancelled");
    assert_eq!(redis.keys(), Vec::<String>::new(), "the flow ended");
    let (status, body) = page(
        browser
            .get(deployment.at(0, "/?notice=cancelled"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("You cancelled the sign-in"), "{body}");

    // Cancelled at the provider: `access_denied` comes back.
    let authorize = start(&deployment, &browser, 0).await;
    let mut fields: Vec<(String, String)> = query(&authorize).into_iter().collect();
    fields.push(("action".to_owned(), "cancel".to_owned()));
    let pairs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let denied = post_form(
        &browser,
        &format!("{}/authorize", deployment.settings.provider.issuer),
        form(&pairs),
    )
    .await;
    let callback = location(&denied);
    assert_eq!(query(&callback)["error"], "access_denied");
    let back = follow_callback(&deployment, &browser, &callback, 0).await;
    assert_eq!(location(&back), "/?notice=cancelled");
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
    assert_eq!(status, pages::REPLACED.status);
    assert!(shows(&body, &pages::REPLACED), "{body}");

    let callback = sign_in_at_provider(&victim, &authorize, "alice", "wonderland").await;
    follow_callback(&deployment, &victim, &callback, 0).await;
    let (_, body) = confirm(&deployment, &victim, 0, 0).await;
    assert!(body.contains("Signed in as Alice Liddell"), "{body}");
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
    assert!(shows(&body, &pages::EXPIRED), "{body}");
    assert!(body.contains("waits 1 second"), "{body}");
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
    assert!(alice.contains("Signed in as Alice Liddell"), "{alice}");
    assert!(bob.contains("Signed in as Bob the Builder"), "{bob}");
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
    assert!(alice.contains("Signed in as Alice Liddell"), "{alice}");
    assert!(bob.contains("Signed in as Bob the Builder"), "{bob}");
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
    assert!(body.contains("Signed in as Alice Liddell"), "{body}");
    assert_eq!(redis.keys(), Vec::<String>::new());
}

#[tokio::test]
async fn a_form_post_callback_comes_back_cross_site_with_a_same_site_none_cookie() {
    let redis = RedisServer::start();
    let deployment = Deployment::with_mode(
        &redis,
        1,
        Duration::from_secs(600),
        example::ResponseMode::FormPost,
    )
    .await;
    // No cookie store: the test sends what a browser sends on a cross-site
    // POST, by hand.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let started = client
        .post(deployment.at(0, "/sso/start"))
        .send()
        .await
        .unwrap();
    let cookie = set_cookie(&started).expect("the flow cookie");
    assert_eq!(cookie.same_site(), Some(SameSite::None), "{cookie}");
    assert_eq!(cookie.secure(), Some(true), "None needs Secure: {cookie}");
    let authorize = location(&started);
    let params = query(&authorize);
    assert_eq!(params["response_mode"], "form_post");

    // The provider answers with a form that posts to the callback.
    let mut fields: Vec<(&str, &str)> = params
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    fields.extend([("username", "bob"), ("password", "builder")]);
    let answer = post_form(
        &client,
        &format!("{}/authorize", deployment.settings.provider.issuer),
        form(&fields),
    )
    .await;
    assert_eq!(answer.status(), StatusCode::OK);
    let html = answer.text().await.unwrap();
    assert!(
        html.contains(&format!(
            "<form method=\"post\" action=\"{}\">",
            deployment.settings.redirect_uri()
        )),
        "{html}"
    );
    let hidden = |name: &str| -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = html
            .find(&marker)
            .unwrap_or_else(|| panic!("{name} in {html}"))
            + marker.len();
        html[start..start + html[start..].find('"').unwrap()].replace("&#39;", "'")
    };
    let body = form(&[
        ("code", &hidden("code")),
        ("state", &hidden("state")),
        ("iss", &hidden("iss")),
    ]);
    assert_eq!(hidden("state"), params["state"]);

    // Without the cookie (what a `Lax` one would mean on a cross-site
    // POST), the flow is not found.
    let lost = post_form(&client, &deployment.at(0, "/sso/callback"), body.clone()).await;
    let (_, page_text) = page(lost).await;
    assert!(shows(&page_text, &pages::NO_SIGN_IN), "{page_text}");

    // With it, the callback goes through.
    let flow_cookie = format!("{}={}", cookie.name(), cookie.value());
    let back = client
        .post(deployment.at(0, "/sso/callback"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", &flow_cookie)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&back), "/sso");
    let record = stored(&redis, &format!("auth:pipeline:{}", flow_id(&cookie)));
    assert_eq!(record["data"]["identity"]["subject"], "bob");

    // The same POST again is a replay.
    let replay = client
        .post(deployment.at(0, "/sso/callback"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", &flow_cookie)
        .body(body)
        .send()
        .await
        .unwrap();
    let (_, page_text) = page(replay).await;
    assert!(shows(&page_text, &pages::ALREADY_USED), "{page_text}");
}

#[tokio::test]
async fn the_provider_checks_the_client_and_the_pkce_verifier() {
    let redis = RedisServer::start();
    let deployment = Deployment::single(&redis).await;
    let browser = browser();
    let token_url = format!("{}/token", deployment.settings.provider.issuer);
    let exchange = |code: String, verifier: String, secret: &str| {
        form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &deployment.settings.redirect_uri()),
            ("client_id", example::idp::CLIENT_ID),
            ("client_secret", secret),
            ("code_verifier", &verifier),
        ])
    };

    // Someone who intercepted the code but not the verifier gets nothing,
    // and burns the code: the app's callback then fails too, in plain words.
    let authorize = start(&deployment, &browser, 0).await;
    let callback = sign_in_at_provider(&browser, &authorize, "alice", "wonderland").await;
    let code = query(&callback)["code"].clone();
    let stolen = post_form(
        &browser,
        &token_url,
        exchange(code, example::pkce::verifier(), example::idp::CLIENT_SECRET),
    )
    .await;
    assert_eq!(stolen.status(), StatusCode::BAD_REQUEST);
    assert!(stolen.text().await.unwrap().contains("invalid_grant"));
    let (status, body) = page(follow_callback(&deployment, &browser, &callback, 0).await).await;
    assert_eq!(status, pages::CODE_REFUSED.status);
    assert!(shows(&body, &pages::CODE_REFUSED), "{body}");
    assert!(
        !body.contains("invalid_grant"),
        "never the provider's words: {body}"
    );
    assert_eq!(
        redis.keys(),
        Vec::<String>::new(),
        "a failed flow is cleared"
    );

    // The right verifier (the one the flow bound) gets an ID token, with
    // the client's secret only.
    let authorize = start(&deployment, &browser, 0).await;
    let key = redis.keys().pop().unwrap();
    let verifier = stored(&redis, &key)["data"]["pkce_verifier"]
        .as_str()
        .unwrap()
        .to_owned();
    let callback = sign_in_at_provider(&browser, &authorize, "bob", "builder").await;
    let code = query(&callback)["code"].clone();
    let wrong_secret = post_form(
        &browser,
        &token_url,
        exchange(code.clone(), verifier.clone(), "guess"),
    )
    .await;
    assert_eq!(wrong_secret.status(), StatusCode::UNAUTHORIZED);
    let token = post_form(
        &browser,
        &token_url,
        exchange(code.clone(), verifier.clone(), example::idp::CLIENT_SECRET),
    )
    .await;
    assert_eq!(token.status(), StatusCode::OK);
    let token: serde_json::Value = serde_json::from_str(&token.text().await.unwrap()).unwrap();
    let id_token = token["id_token"].as_str().expect("an ID token");
    assert_eq!(id_token.split('.').count(), 3, "a signed JWT");
    let again = post_form(
        &browser,
        &token_url,
        exchange(code, verifier, example::idp::CLIENT_SECRET),
    )
    .await;
    assert_eq!(
        again.status(),
        StatusCode::BAD_REQUEST,
        "a code is used once"
    );
}

#[tokio::test]
async fn an_id_token_signed_with_a_key_the_provider_does_not_publish_is_refused() {
    // The provider publishes another key than the one it signs with (a
    // forged or mixed-up token): the signature check against the JWKS
    // refuses it, and the person reads that they were not signed in.
    let (logs, _capturing) = Logs::capture();
    let redis = RedisServer::start();
    let idp_listener = listener().await;
    let app_listener = listener().await;
    let settings = example::Settings {
        app_origin: format!("http://{}", app_listener.local_addr().unwrap()),
        provider: example::Provider {
            issuer: format!(
                "http://localhost:{}",
                idp_listener.local_addr().unwrap().port()
            ),
            client_id: example::idp::CLIENT_ID.to_owned(),
            client_secret: Some(example::idp::CLIENT_SECRET.to_owned()),
            display_name: "the demo identity provider".to_owned(),
        },
        response_mode: example::ResponseMode::Query,
        ttl: Duration::from_secs(600),
        key: Key::generate(),
    };
    // Another instance of the provider, with a key of its own: its JWKS is
    // what the signing one publishes.
    let impostor = example::idp::router(settings.provider.issuer.clone(), settings.redirect_uri());
    let idp = example::idp::router(settings.provider.issuer.clone(), settings.redirect_uri())
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let impostor = impostor.clone();
                async move {
                    if request.uri().path() == "/jwks" {
                        tower::ServiceExt::oneshot(impostor, request).await.unwrap()
                    } else {
                        next.run(request).await
                    }
                }
            },
        ));
    let _idp = Server::axum(idp_listener, idp);
    let app = Server::axum(
        app_listener,
        example::app::router(redis_store(&redis.url()).await, settings.clone()),
    );
    let browser = browser();

    let started = browser.post(app.url("/sso/start")).send().await.unwrap();
    let callback = sign_in_at_provider(&browser, &location(&started), "alice", "wonderland").await;
    let path = callback
        .strip_prefix(&settings.app_origin)
        .unwrap()
        .to_owned();
    let (status, body) = page(browser.get(app.url(&path)).send().await.unwrap()).await;
    assert_eq!(status, pages::NOT_VERIFIED.status);
    assert!(shows(&body, &pages::NOT_VERIFIED), "{body}");
    assert_eq!(redis.keys(), Vec::<String>::new(), "the flow ended");
    let log = logs.text();
    assert_eq!(
        logs.matching(&["sign-in with the provider failed: ID token invalid"])
            .len(),
        1,
        "{log}"
    );
    assert_eq!(
        logs.matching(&["app: GET /sso/callback -> 502 identity_not_verified"])
            .len(),
        1,
        "{log}"
    );
}

#[tokio::test]
async fn the_layers_own_answer_is_the_apps_page() {
    // Redis goes away while the callback step talks to the provider: the
    // step's changes cannot be written, and the layer answers "not
    // confirmed" (503) through the app's on_error hook, as a page of the
    // app's, with the layer's status.
    let (logs, _capturing) = Logs::capture();
    let mut redis = RedisServer::start();
    let idp_listener = listener().await;
    let app_listener = listener().await;
    let settings = example::Settings {
        app_origin: format!("http://{}", app_listener.local_addr().unwrap()),
        provider: example::Provider {
            issuer: format!(
                "http://localhost:{}",
                idp_listener.local_addr().unwrap().port()
            ),
            client_id: example::idp::CLIENT_ID.to_owned(),
            client_secret: Some(example::idp::CLIENT_SECRET.to_owned()),
            display_name: "the demo identity provider".to_owned(),
        },
        response_mode: example::ResponseMode::Query,
        ttl: Duration::from_secs(600),
        key: Key::generate(),
    };
    // The token endpoint says when a request arrived, and answers when
    // the test lets it.
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::unbounded_channel::<()>();
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let gate = release.clone();
    let idp = example::idp::router(settings.provider.issuer.clone(), settings.redirect_uri())
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let (arrived_tx, gate) = (arrived_tx.clone(), gate.clone());
                async move {
                    if request.uri().path() == "/token" {
                        let released = gate.notified();
                        arrived_tx.send(()).unwrap();
                        released.await;
                    }
                    next.run(request).await
                }
            },
        ));
    let _idp = Server::axum(idp_listener, idp);
    let app = Server::axum(
        app_listener,
        example::app::router(redis_store(&redis.url()).await, settings.clone()),
    );
    let browser = browser();

    let started = browser.post(app.url("/sso/start")).send().await.unwrap();
    let callback = sign_in_at_provider(&browser, &location(&started), "alice", "wonderland").await;
    let url = app.url(callback.strip_prefix(&settings.app_origin).unwrap());
    let pending = tokio::spawn({
        let browser = browser.clone();
        async move { browser.get(url).send().await.unwrap() }
    });
    arrived.recv().await.unwrap();
    redis.stop();
    release.notify_one();
    let response = pending.await.unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    let (status, body) = page(response).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(shows(&body, &pages::NOT_SAVED), "{body}");
    let log = logs.text();
    assert_eq!(
        logs.matching(&["app: GET /sso/callback -> 503 store_not_confirmed"])
            .len(),
        1,
        "{log}"
    );
}
