//! Several flows in one browser, and callbacks that come back as cross-site
//! POSTs: each flow has its own cookie, found by the reference its requests
//! carry (the provider's `state`, the app's links). Real HTTP, cookies on
//! the wire, a private redis-server. The cookie jar here is kept by hand, so
//! a request can carry exactly what a browser sends: everything on a
//! same-site request, only `SameSite=None` cookies on a cross-site POST.

use std::collections::BTreeMap;

use axum::{
    Form, Router,
    body::Body,
    extract::{FromRequest, Request},
    http::{Method, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
};
use cookie::{Cookie, SameSite};
use serde::Deserialize;
use tower_pipeline_state::{
    PipelineStateLayer,
    pipeline::{Flow, FlowError, Pipeline},
};

use crate::common::{
    ended::{self, DEFAULT_WINDOW, ended_record, kept_for},
    *,
};

/// What the provider sends back.
#[derive(Deserialize)]
struct Answer {
    code: String,
}

/// `authorize` (renders `state=<callback state> link=<flow link>`, moves on),
/// `callback` (binds the code, from the query or a posted form), `confirm`
/// (a POST finishes with `finished <code>`).
fn pipeline(cross_site: bool) -> Pipeline<Body, Response> {
    Pipeline::builder("sso")
        .flow_kind("login")
        .cross_site_callbacks(cross_site)
        .step(
            "authorize",
            |_request, flow: Flow<Body, Response>| async move {
                let page = format!(
                    "state={} link={}",
                    flow.callback_state()?,
                    flow.link("/flow")
                );
                flow.advance()?;
                Ok(page.into_response())
            },
        )
        .callback("callback", |request: Request, flow| async move {
            let code = if request.method() == Method::POST {
                let Form(answer) = Form::<Answer>::from_request(request, &())
                    .await
                    .map_err(FlowError::failed)?;
                answer.code
            } else {
                let query = request.uri().query().unwrap_or_default();
                form_urlencoded::parse(query.as_bytes())
                    .find(|(name, _)| name == "code")
                    .map(|(_, code)| code.into_owned())
                    .ok_or_else(|| FlowError::failed("no code"))?
            };
            flow.bind("code", &code)?;
            flow.advance()?;
            Ok(format!("called back with {code}").into_response())
        })
        .step(
            "confirm",
            |request: Request, flow: Flow<Body, Response>| async move {
                if request.method() != Method::POST {
                    return Ok(format!("confirm link={}", flow.link("/flow")).into_response());
                }
                flow.next().await
            },
        )
        .on_finish(|_request, finished| async move {
            let code: String = finished.fetch("code")?.unwrap_or_default();
            Ok(format!("finished {code}").into_response())
        })
        .on_error(|failure| {
            (
                StatusCode::BAD_REQUEST,
                format!("outcome={}", failure.error.kind()),
            )
                .into_response()
        })
        .build()
}

async fn app(redis: &RedisServer, cross_site: bool, max_flows: usize) -> Server {
    let pipeline = pipeline(cross_site);
    let starter = pipeline.clone();
    let router = Router::new()
        .route(
            "/flow/start",
            get(move |request: Request| async move { starter.start(request, "login").await }),
        )
        .route_service("/flow", pipeline)
        .layer(
            PipelineStateLayer::new(redis_store(&redis.url()).await)
                .cookie_secure(false)
                .max_flows(max_flows),
        );
    serve(router).await
}

/// A browser's cookies, kept by hand: name → cookie.
#[derive(Default)]
struct Browser {
    cookies: BTreeMap<String, Cookie<'static>>,
}

/// A started flow as the browser saw it.
struct Started {
    /// The `state` to send to the provider.
    state: String,
    /// The flow's own link (`/flow?flow=<reference>`).
    link: String,
    /// Its cookie's name.
    cookie: String,
}

impl Browser {
    /// Sends `request` with the cookies a browser would send (all of them,
    /// or for a cross-site POST only the `SameSite=None` ones), keeps what
    /// the response sets, and returns its status and text.
    async fn send(
        &mut self,
        request: reqwest::RequestBuilder,
        cross_site_post: bool,
    ) -> (StatusCode, String, Vec<Cookie<'static>>) {
        let header: Vec<String> = self
            .cookies
            .values()
            .filter(|cookie| !cross_site_post || cookie.same_site() == Some(SameSite::None))
            .map(|cookie| format!("{}={}", cookie.name(), cookie.value()))
            .collect();
        let mut request = request;
        if !header.is_empty() {
            request = request.header("cookie", header.join("; "));
        }
        if cross_site_post {
            request = request.header("sec-fetch-site", "cross-site");
        }
        let response = request.send().await.unwrap();
        let set = set_cookies(response.headers());
        for cookie in &set {
            if removes(cookie) {
                self.cookies.remove(cookie.name());
            } else {
                self.cookies
                    .insert(cookie.name().to_owned(), cookie.clone());
            }
        }
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        (status, response.text().await.unwrap(), set)
    }

    async fn start(&mut self, app: &Server) -> Started {
        let (status, body, set) = self.send(client().get(app.url("/flow/start")), false).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (state, link) = body
            .strip_prefix("state=")
            .and_then(|rest| rest.split_once(" link="))
            .expect(&body);
        let cookie = set
            .iter()
            .find(|cookie| cookie.name().starts_with("pipeline_id.") && !removes(cookie))
            .expect("a started flow sets its own cookie");
        Started {
            state: state.to_owned(),
            link: link.to_owned(),
            cookie: cookie.name().to_owned(),
        }
    }

    fn flow_cookies(&self) -> Vec<&str> {
        self.cookies
            .keys()
            .map(String::as_str)
            .filter(|name| name.starts_with("pipeline_id."))
            .collect()
    }

    /// The Redis key of the flow whose cookie is `name`.
    fn key(&self, name: &str) -> String {
        flow_key(self.cookies[name].value())
    }
}

/// A client that keeps no cookies: [`Browser`] sends them.
fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn callback(
    browser: &mut Browser,
    app: &Server,
    code: &str,
    state: &str,
) -> (StatusCode, String) {
    let url = app.url(&format!("/flow?code={code}&state={state}"));
    let (status, body, _) = browser.send(client().get(url), false).await;
    (status, body)
}

/// Shows the confirm page through `link` (the flow's link from any of its
/// pages), then submits it as a person would, through the link that page
/// was made with.
async fn confirm(browser: &mut Browser, app: &Server, link: &str) -> (StatusCode, String) {
    let (status, page, _) = browser.send(client().get(app.url(link)), false).await;
    let Some(form) = page.strip_prefix("confirm link=") else {
        return (status, page);
    };
    let (status, body, _) = browser.send(client().post(app.url(form)), false).await;
    (status, body)
}

fn called_back(code: &str) -> (StatusCode, String) {
    (StatusCode::OK, format!("called back with {code}"))
}

fn finished(code: &str) -> (StatusCode, String) {
    (StatusCode::OK, format!("finished {code}"))
}

/// The provider's auto-submitted form posting `code` and `state` back.
fn form_post(app: &Server, code: &str, state: &str) -> reqwest::RequestBuilder {
    client()
        .post(app.url("/flow"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("code={code}&state={state}"))
}

fn refused(kind: &str) -> (StatusCode, String) {
    (StatusCode::BAD_REQUEST, format!("outcome={kind}"))
}

#[tokio::test]
async fn two_flows_of_one_browser_started_a_then_b_both_finish() {
    let redis = RedisServer::start();
    let app = app(&redis, false, 5).await;
    let mut browser = Browser::default();

    let a = browser.start(&app).await;
    let a_key = browser.key(&a.cookie);
    let b = browser.start(&app).await;
    assert_ne!(a.cookie, b.cookie, "each flow has its own cookie");
    assert_eq!(browser.flow_cookies().len(), 2);
    assert!(
        redis.get(&a_key).is_some(),
        "starting B did not delete A's flow"
    );
    assert_eq!(redis.keys().len(), 2);
    assert!(
        !a.link.contains(browser.cookies[&a.cookie].value()),
        "the flow's id never appears in a URL"
    );
    assert!(!a.state.contains(browser.cookies[&a.cookie].value()));

    assert_eq!(
        callback(&mut browser, &app, "a", &a.state).await,
        called_back("a")
    );
    assert_eq!(
        callback(&mut browser, &app, "b", &b.state).await,
        called_back("b")
    );
    let b_key = browser.key(&b.cookie);
    let b_before = redis.get(&b_key).unwrap();
    assert_eq!(confirm(&mut browser, &app, &a.link).await, finished("a"));
    // A keeps its cookie and an ended record for the replay window; B is
    // untouched.
    kept_for(&browser.cookies[&a.cookie], DEFAULT_WINDOW);
    ended_record(&redis, &a_key, &ended::finished(), DEFAULT_WINDOW);
    assert_eq!(redis.get(&b_key).unwrap(), b_before, "finishing A left B");
    assert_eq!(confirm(&mut browser, &app, &b.link).await, finished("b"));
    kept_for(&browser.cookies[&b.cookie], DEFAULT_WINDOW);
    ended_record(&redis, &b_key, &ended::finished(), DEFAULT_WINDOW);
    assert_eq!(redis.keys().len(), 2, "nothing else is stored");
}

#[tokio::test]
async fn a_callback_replayed_into_the_other_flow_is_refused() {
    let redis = RedisServer::start();
    let app = app(&redis, false, 5).await;
    let mut browser = Browser::default();
    let a = browser.start(&app).await;
    let b = browser.start(&app).await;
    let records = |browser: &Browser| {
        [&a.cookie, &b.cookie].map(|name| redis.get(&browser.key(name)).unwrap())
    };
    let before = records(&browser);

    let (a_ref, a_nonce) = a.state.split_once('.').unwrap();
    let (b_ref, b_nonce) = b.state.split_once('.').unwrap();
    for crossed in [format!("{b_ref}.{a_nonce}"), format!("{a_ref}.{b_nonce}")] {
        assert_eq!(
            callback(&mut browser, &app, "x", &crossed).await,
            refused("nonce_mismatch"),
            "{crossed}"
        );
    }
    assert_eq!(records(&browser), before, "neither flow changed");

    // A's callback, once used, is refused when replayed, into either flow.
    assert_eq!(
        callback(&mut browser, &app, "a", &a.state).await.0,
        StatusCode::OK
    );
    assert_eq!(
        callback(&mut browser, &app, "a", &a.state).await,
        refused("nonce_replayed")
    );
    assert_eq!(
        callback(&mut browser, &app, "a", &format!("{b_ref}.{a_nonce}")).await,
        refused("nonce_mismatch")
    );
    assert_eq!(
        callback(&mut browser, &app, "b", &b.state).await,
        called_back("b"),
        "B's own callback still works"
    );
}

#[tokio::test]
async fn a_callback_from_another_browser_is_refused() {
    let redis = RedisServer::start();
    let app = app(&redis, false, 5).await;
    let mut attacker = Browser::default();
    let planted = attacker.start(&app).await;
    let attacker_key = attacker.key(&planted.cookie);
    let before = redis.get(&attacker_key).unwrap();

    // The victim has no flow, then a flow of their own: either way the
    // attacker's callback finds nothing in the victim's browser.
    let mut victim = Browser::default();
    assert_eq!(
        callback(&mut victim, &app, "evil", &planted.state).await,
        refused("other_browser")
    );
    let own = victim.start(&app).await;
    let own_before = redis.get(&victim.key(&own.cookie)).unwrap();
    assert_eq!(
        callback(&mut victim, &app, "evil", &planted.state).await,
        refused("other_browser")
    );
    // Its link does not reach it either, nor does a bare nonce (which
    // names no flow: the victim's newest is tried, and its nonce differs).
    let (status, body, _) = victim
        .send(client().post(app.url(&planted.link)), false)
        .await;
    assert_eq!((status, body), refused("other_browser"));
    let bare = planted.state.split_once('.').unwrap().1;
    assert_eq!(
        callback(&mut victim, &app, "evil", bare).await,
        refused("nonce_mismatch")
    );

    assert_eq!(
        redis.get(&attacker_key).unwrap(),
        before,
        "the attacker's flow is untouched"
    );
    assert_eq!(
        redis.get(&victim.key(&own.cookie)).unwrap(),
        own_before,
        "so is the victim's"
    );
    assert_eq!(
        callback(&mut attacker, &app, "a", &planted.state).await.0,
        StatusCode::OK,
        "in its own browser the callback works"
    );
}

#[tokio::test]
async fn a_browser_keeps_at_most_max_flows_cookies_and_drops_the_oldest() {
    let redis = RedisServer::start();
    let app = app(&redis, false, 3).await;
    let mut browser = Browser::default();
    let mut flows = Vec::new();
    for _ in 0..3 {
        flows.push(browser.start(&app).await);
        // Flows are ordered by their start, in milliseconds.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(browser.flow_cookies().len(), 3);

    let (status, body, set) = browser
        .send(client().get(app.url("/flow/start")), false)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let expired: Vec<&str> = set
        .iter()
        .filter(|cookie| removes(cookie))
        .map(|cookie| cookie.name())
        .collect();
    assert_eq!(
        expired,
        [flows[0].cookie.as_str()],
        "the oldest flow's cookie goes"
    );
    assert_eq!(browser.flow_cookies().len(), 3, "still three");

    assert_eq!(
        callback(&mut browser, &app, "old", &flows[0].state).await,
        refused("other_browser"),
        "the dropped flow is out of reach"
    );
    for (n, flow) in flows.iter().enumerate().skip(1) {
        let code = format!("c{n}");
        assert_eq!(
            callback(&mut browser, &app, &code, &flow.state).await,
            called_back(&code)
        );
    }
}

#[tokio::test]
async fn a_cross_site_post_callback_finds_its_flow_when_the_pipeline_accepts_it() {
    let redis = RedisServer::start();
    let app = app(&redis, true, 5).await;
    let mut browser = Browser::default();
    let flow = browser.start(&app).await;
    let cookie = &browser.cookies[&flow.cookie];
    assert_eq!(cookie.same_site(), Some(SameSite::None));
    assert_eq!(
        cookie.secure(),
        Some(true),
        "browsers refuse SameSite=None without Secure"
    );

    // The provider's page posts the answer back: a cross-site POST, with
    // only SameSite=None cookies, the state in the form.
    let post = form_post(&app, "posted", &flow.state);
    let (status, body, _) = browser.send(post, true).await;
    assert_eq!((status, body), called_back("posted"));
    assert_eq!(
        confirm(&mut browser, &app, &flow.link).await,
        finished("posted")
    );
}

#[tokio::test]
async fn a_cross_site_post_callback_is_refused_with_its_own_outcome_when_the_pipeline_does_not_accept_it()
 {
    let redis = RedisServer::start();
    let app = app(&redis, false, 5).await;
    let mut browser = Browser::default();
    let flow = browser.start(&app).await;
    assert_eq!(
        browser.cookies[&flow.cookie].same_site(),
        Some(SameSite::Lax)
    );
    let key = browser.key(&flow.cookie);
    let before = redis.get(&key).unwrap();

    let post = form_post(&app, "posted", &flow.state);
    let (status, body, _) = browser.send(post, true).await;
    assert_eq!((status, body), refused("cross_site"));
    assert_eq!(
        redis.get(&key).unwrap(),
        before,
        "nothing changed, the nonce is unused"
    );
    assert_eq!(
        callback(&mut browser, &app, "got", &flow.state).await,
        called_back("got"),
        "the same callback as a GET redirect still works"
    );
}

#[tokio::test]
async fn a_cross_site_post_to_a_step_that_is_not_a_callback_is_refused() {
    let redis = RedisServer::start();
    let app = app(&redis, true, 5).await;
    let mut browser = Browser::default();
    let flow = browser.start(&app).await;
    assert_eq!(
        callback(&mut browser, &app, "c", &flow.state).await.0,
        StatusCode::OK
    );

    // A forged form on another site submits the confirm step: the cookie
    // (SameSite=None) goes along, the browser marks the request cross-site.
    let (status, body, _) = browser.send(client().post(app.url(&flow.link)), true).await;
    assert_eq!((status, body), refused("cross_site"));
    assert_eq!(
        confirm(&mut browser, &app, &flow.link).await,
        finished("c"),
        "the person's own submit still finishes it"
    );
}

#[tokio::test]
async fn starting_a_flow_is_one_set_and_touches_no_other_flow() {
    let redis = RedisServer::start();
    let app = app(&redis, false, 5).await;
    let mut browser = Browser::default();
    browser.start(&app).await;
    redis.reset_stats();
    browser.start(&app).await;
    let calls = redis.command_calls();
    assert_eq!(
        calls,
        BTreeMap::from([("set".to_owned(), 1)]),
        "one SET NX, no load and no delete"
    );
    assert_eq!(redis.keys().len(), 2);
}
