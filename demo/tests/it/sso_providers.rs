//! The SSO demo's providers and its own defences (issue 17), over HTTP:
//! the plain OAuth 2.0 sign-in (Demo Hub), sign-in and RP-initiated
//! sign-out at node `oidc-provider` (whose pages are followed as a browser
//! would), "Use another account", posts from other sites refused, no page
//! framed, the start page telling Redis from memory, the login session's
//! own key, and a bad setting stopping the binary with one line.

use std::collections::HashMap;

use crate::{common::*, sso_kit::*};
use cookie::{Cookie, CookieJar};
use demo::sso::{Storage, app::SESSION_COOKIE, pages};
use reqwest::StatusCode;
use test_kit::OidcProvider;
use tower_pipeline_state::MemoryStore;

#[tokio::test]
async fn signs_in_with_the_plain_oauth_provider() {
    let (logs, _capturing) = Logs::capture();
    let redis = RedisServer::start();
    let deployment = Deployment::single(&redis).await;
    let browser = browser();

    let home = page(browser.get(deployment.at(0, "/")).send().await.unwrap())
        .await
        .1;
    assert!(home.contains("Sign in with Demo Hub</button>"), "{home}");
    assert!(home.contains("Demo Hub (plain OAuth 2.0)"), "{home}");

    let started = start_with(
        &deployment,
        &browser,
        0,
        "/oauth/start",
        &[("return_to", "/")],
    )
    .await;
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    let authorize = location(&started);
    assert!(
        authorize.starts_with(&format!("{}/hub/authorize?", deployment.issuer())),
        "{authorize}"
    );
    let params = query(&authorize);
    assert_eq!(params["scope"], "read:user");
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(
        params["redirect_uri"],
        deployment.settings.oauth_redirect_uri()
    );
    assert!(!params.contains_key("nonce"), "no ID token, no OIDC nonce");

    let callback = sign_in_at_provider(&browser, &authorize, "alice", "wonderland").await;
    assert!(
        callback.starts_with(&format!("{}?", deployment.settings.oauth_redirect_uri())),
        "{callback}"
    );
    let link = flow_link_at(
        &follow_callback(&deployment, &browser, &callback, 0).await,
        "/oauth",
    );
    let confirm_page = page(browser.get(deployment.at(0, &link)).send().await.unwrap())
        .await
        .1;
    assert!(
        confirm_page.contains("According to Demo Hub, you are <strong>Alice Liddell</strong>"),
        "{confirm_page}"
    );
    let done = continue_and_stay(&deployment, &browser, &link, 0, 0).await;
    assert_eq!(location(&done), "/");
    let (_, body) = page(
        browser
            .get(deployment.at(0, "/account"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    speaks_plainly(&body);
    assert!(
        body.contains("Signed in as <strong>Alice Liddell</strong> with Demo Hub"),
        "{body}"
    );
    // GitHub's way: the numeric id is the subject, the issuer the
    // description's name.
    assert!(
        body.contains(&format!("<td>{}/hub</td>", deployment.issuer())),
        "{body}"
    );
    assert!(body.contains("<td>1001</td>"), "{body}");

    // Demo Hub has no sign-out address: the page says so.
    let (_, home) = page(browser.get(deployment.at(0, "/")).send().await.unwrap()).await;
    assert!(
        home.contains("Signing out ends your session on this site only: Demo Hub offers"),
        "{home}"
    );
    let out = browser
        .post(deployment.at(0, "/signout"))
        .send()
        .await
        .unwrap();
    let to = location(&out);
    assert_eq!(to, "/?notice=signed_out&provider=oauth");
    let (_, home) = page(browser.get(deployment.at(0, &to)).send().await.unwrap()).await;
    assert!(
        home.contains("You are signed out of this site, but not at Demo Hub"),
        "{home}"
    );
    let log = logs.text();
    for line in [
        "app: POST /oauth/start -> 303 to_provider",
        "app: GET /oauth/callback -> 303 verified",
        "app: POST /oauth -> 303 signed_in",
    ] {
        assert_eq!(logs.matching(&[line]).len(), 1, "{line:?} in\n{log}");
    }
}

/// Where `oidc-provider`'s pages leave a browser that starts at `url`: its
/// development login (as `login`, any password) and consent pages
/// followed, until it sends the browser back to `back_to`; the pages it
/// showed on the way (`login`, `consent`).
async fn through_oidc_provider(
    browser: &reqwest::Client,
    op: &OidcProvider,
    url: &str,
    back_to: &str,
    login: &str,
) -> (String, Vec<&'static str>) {
    let mut seen = Vec::new();
    let mut response = browser.get(url).send().await.unwrap();
    for _ in 0..20 {
        if response.status().is_redirection() {
            let next = location(&response);
            if next.starts_with(back_to) {
                return (next, seen);
            }
            let next = reqwest::Url::parse(&op.issuer)
                .unwrap()
                .join(&next)
                .unwrap();
            response = browser.get(next).send().await.unwrap();
            continue;
        }
        assert_eq!(response.status(), StatusCode::OK);
        let html = response.text().await.unwrap();
        let action = attribute(&html, "<form", "action").expect("a page with a form");
        let action = reqwest::Url::parse(&op.issuer)
            .unwrap()
            .join(&action)
            .unwrap();
        let (prompt, mut fields) = if html.contains("name=\"prompt\" value=\"login\"") {
            (
                "login",
                vec![
                    ("prompt".to_owned(), "login".to_owned()),
                    ("login".to_owned(), login.to_owned()),
                    ("password".to_owned(), "any password".to_owned()),
                ],
            )
        } else if html.contains("name=\"prompt\" value=\"consent\"") {
            ("consent", vec![("prompt".to_owned(), "consent".to_owned())])
        } else if html.contains("document.forms[0].submit()") {
            // A form of its own the page's script submits.
            ("", Vec::new())
        } else {
            panic!("an oidc-provider page this test does not know: {html}");
        };
        if prompt.is_empty() {
            fields = hidden_fields(&html);
        } else {
            seen.push(prompt);
        }
        response = browser.post(action).form(&fields).send().await.unwrap();
    }
    panic!("oidc-provider did not send the browser back within 20 pages");
}

/// The value of `name` in the first `tag` of `html`.
fn attribute(html: &str, tag: &str, name: &str) -> Option<String> {
    let at = html.find(tag)?;
    let element = &html[at..at + html[at..].find('>')?];
    let start = element.find(&format!("{name}=\""))? + name.len() + 2;
    let end = element[start..].find('"')? + start;
    Some(unescape(&element[start..end]))
}

fn unescape(text: &str) -> String {
    text.replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The hidden fields of a page.
fn hidden_fields(html: &str) -> Vec<(String, String)> {
    html.match_indices("<input type=\"hidden\"")
        .map(|(at, _)| {
            let element = &html[at..=at + html[at..].find('>').unwrap()];
            let value = |name: &str| attribute(element, "<input", name).unwrap_or_default();
            (value("name"), value("value"))
        })
        .collect()
}

/// A whole sign-in at `oidc-provider` started with the start form's
/// `fields`: the pages it showed, and the start page signed in.
async fn sign_in_at_oidc_provider(
    deployment: &Deployment,
    op: &OidcProvider,
    browser: &reqwest::Client,
    fields: &[(&str, &str)],
    login: &str,
) -> (Vec<&'static str>, HashMap<String, String>, String) {
    let started = start_with(deployment, browser, 0, "/sso/start", fields).await;
    assert_eq!(
        started.status(),
        StatusCode::SEE_OTHER,
        "{:?}",
        page(started).await
    );
    let authorize = location(&started);
    assert!(authorize.starts_with(&op.issuer), "{authorize}");
    let params = query(&authorize);
    let (callback, seen) = through_oidc_provider(
        browser,
        op,
        &authorize,
        &deployment.settings.redirect_uri(),
        login,
    )
    .await;
    let link = flow_link(&follow_callback(deployment, browser, &callback, 0).await);
    let (_, home) = confirm(deployment, browser, &link, 0, 0).await;
    (seen, params, home)
}

#[tokio::test]
async fn signs_in_and_out_at_oidc_provider_through_its_end_session_endpoint() {
    let (logs, _capturing) = Logs::capture();
    let redis = RedisServer::start();
    let (deployment, op) = Deployment::with_oidc_provider(&redis).await;
    let browser = browser();

    let (seen, _, home) =
        sign_in_at_oidc_provider(&deployment, &op, &browser, &[("return_to", "/")], "carol").await;
    assert_eq!(seen, ["login", "consent"]);
    assert!(
        home.contains("Signed in as carol at oidc-provider"),
        "{home}"
    );
    assert!(
        home.contains("Signing out signs you out at oidc-provider too."),
        "it has an end_session_endpoint: {home}"
    );

    // Sign-out: the session here ends, and the browser goes to the
    // provider's end_session_endpoint.
    let out = browser
        .post(deployment.at(0, "/signout"))
        .send()
        .await
        .unwrap();
    assert!(
        set_cookie_named(out.headers(), SESSION_COOKIE).is_some_and(|cookie| removes(&cookie)),
        "the session here ends"
    );
    let end_session = location(&out);
    assert!(end_session.starts_with(&op.issuer), "{end_session}");
    let params = query(&end_session);
    assert_eq!(params["client_id"], OidcProvider::CLIENT_ID);
    assert_eq!(
        params["post_logout_redirect_uri"],
        deployment.settings.post_logout_redirect_uri()
    );
    assert_eq!(params["state"], "sso");
    assert!(
        !params.contains_key("id_token_hint"),
        "no token leaves the server"
    );
    // The provider asks; "Yes, sign me out".
    let asked = browser.get(&end_session).send().await.unwrap();
    assert_eq!(asked.status(), StatusCode::OK);
    let html = asked.text().await.unwrap();
    assert!(html.contains("Yes, sign me out"), "{html}");
    let action = attribute(&html, "<form", "action").unwrap();
    let mut fields = hidden_fields(&html);
    fields.push(("logout".to_owned(), "yes".to_owned()));
    let confirmed = browser
        .post(
            reqwest::Url::parse(&op.issuer)
                .unwrap()
                .join(&action)
                .unwrap(),
        )
        .form(&fields)
        .send()
        .await
        .unwrap();
    let back = location(&confirmed);
    assert_eq!(
        back,
        format!(
            "{}?state=sso",
            deployment.settings.post_logout_redirect_uri()
        )
    );
    let landed = browser.get(&back).send().await.unwrap();
    let to = location(&landed);
    assert_eq!(to, "/?notice=signed_out_everywhere&provider=sso");
    let (_, home) = page(browser.get(deployment.at(0, &to)).send().await.unwrap()).await;
    speaks_plainly(&home);
    assert!(home.contains("<h1>Welcome</h1>"), "{home}");
    assert!(
        home.contains("went through oidc-provider&#39;s own sign-out too"),
        "{home}"
    );

    // Signed out there too: the next sign-in asks for the login.
    let (seen, _, home) =
        sign_in_at_oidc_provider(&deployment, &op, &browser, &[("return_to", "/")], "dave").await;
    assert_eq!(seen.first(), Some(&"login"), "{seen:?}");
    assert!(
        home.contains("Signed in as dave at oidc-provider"),
        "{home}"
    );
    let log = logs.text();
    assert_eq!(
        logs.matching(&["app: POST /signout -> 303 to_provider_sign_out"])
            .len(),
        1,
        "{log}"
    );
}

#[tokio::test]
async fn after_a_sign_out_use_another_account_asks_oidc_provider_for_the_login_again() {
    let redis = RedisServer::start();
    let (deployment, op) = Deployment::with_oidc_provider(&redis).await;
    let browser = browser();

    let (seen, params, _) =
        sign_in_at_oidc_provider(&deployment, &op, &browser, &[("return_to", "/")], "carol").await;
    assert_eq!(seen, ["login", "consent"]);
    assert!(!params.contains_key("prompt"), "{params:?}");

    // Signed out here, but the person keeps the provider's session ("No,
    // stay signed in" at its end_session page).
    let out = browser
        .post(deployment.at(0, "/signout"))
        .send()
        .await
        .unwrap();
    let asked = browser.get(location(&out)).send().await.unwrap();
    let html = asked.text().await.unwrap();
    let action = attribute(&html, "<form", "action").unwrap();
    let declined = browser
        .post(
            reqwest::Url::parse(&op.issuer)
                .unwrap()
                .join(&action)
                .unwrap(),
        )
        .form(&hidden_fields(&html))
        .send()
        .await
        .unwrap();
    let landed = browser.get(location(&declined)).send().await.unwrap();
    let (_, home) = page(
        browser
            .get(deployment.at(0, &location(&landed)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    // The start page offers another account.
    assert!(home.contains("Use another account</button>"), "{home}");
    assert!(
        home.contains("<input type=\"hidden\" name=\"account\" value=\"another\">"),
        "{home}"
    );

    // A plain sign-in: oidc-provider knows the browser, asks no login, and
    // it is carol again.
    let (seen, _, home) = sign_in_at_oidc_provider(
        &deployment,
        &op,
        &browser,
        &[("return_to", "/")],
        "nobody-asked",
    )
    .await;
    assert!(!seen.contains(&"login"), "{seen:?}");
    assert!(
        home.contains("Signed in as carol at oidc-provider"),
        "{home}"
    );
    browser
        .post(deployment.at(0, "/signout"))
        .send()
        .await
        .unwrap();

    // "Use another account": a flow of its own kind, with prompt=login.
    let (seen, params, home) = sign_in_at_oidc_provider(
        &deployment,
        &op,
        &browser,
        &[("return_to", "/"), ("account", "another")],
        "dave",
    )
    .await;
    assert_eq!(params["prompt"], "login");
    assert_eq!(seen.first(), Some(&"login"), "{seen:?}");
    assert!(
        home.contains("Signed in as dave at oidc-provider"),
        "{home}"
    );
}

#[tokio::test]
async fn posts_from_other_sites_to_sign_out_and_start_are_refused() {
    let redis = RedisServer::start();
    let deployment = Deployment::single(&redis).await;
    let browser = browser();
    let authorize = start(&deployment, &browser, 0).await;
    let callback = sign_in_at_provider(&browser, &authorize, "alice", "wonderland").await;
    let link = flow_link(&follow_callback(&deployment, &browser, &callback, 0).await);
    confirm(&deployment, &browser, &link, 0, 0).await;
    let keys = redis.keys();

    // As a browser marks a form posted from another site's page, or (too
    // old for Sec-Fetch-Site) by its Origin.
    let marks: [&[(&str, &str)]; 4] = [
        &[("sec-fetch-site", "cross-site")],
        &[("sec-fetch-site", "same-site")],
        &[("origin", "http://attacker.example")],
        &[("origin", "null")],
    ];
    for path in ["/signout", "/sso/start", "/oauth/start"] {
        for headers in marks {
            let mut request = browser
                .post(deployment.at(0, path))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("return_to=%2F");
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            let response = request.send().await.unwrap();
            assert!(
                set_cookies(response.headers()).is_empty(),
                "{path} {headers:?}: no cookie set or removed"
            );
            let (status, body) = page(response).await;
            assert_eq!(
                status,
                pages::FORM_FROM_ANOTHER_SITE.status,
                "{path} {headers:?}"
            );
            assert!(shows(&body, &pages::FORM_FROM_ANOTHER_SITE), "{body}");
        }
    }
    assert_eq!(redis.keys(), keys, "no sign-in started");
    let (_, home) = page(browser.get(deployment.at(0, "/")).send().await.unwrap()).await;
    assert!(
        home.contains("Signed in as Alice Liddell"),
        "still signed in"
    );

    // From the site's own page, as a browser marks it: signed out.
    let out = browser
        .post(deployment.at(0, "/signout"))
        .header("sec-fetch-site", "same-origin")
        .header("origin", &deployment.settings.app_origin)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert!(set_cookie_named(out.headers(), SESSION_COOKIE).is_some_and(|cookie| removes(&cookie)));
}

#[tokio::test]
async fn no_page_of_the_app_or_its_provider_can_be_framed() {
    let redis = RedisServer::start();
    let deployment = Deployment::single(&redis).await;
    let browser = browser();
    let authorize = start(&deployment, &browser, 0).await;
    let hub = location(
        &start_with(
            &deployment,
            &browser,
            0,
            "/oauth/start",
            &[("return_to", "/")],
        )
        .await,
    );
    let callback = sign_in_at_provider(&browser, &authorize, "alice", "wonderland").await;
    let link = flow_link(&follow_callback(&deployment, &browser, &callback, 0).await);
    let urls = [
        deployment.at(0, "/"),
        deployment.at(0, "/account"),
        deployment.at(0, &link),
        deployment.at(0, "/sso"),
        deployment.at(0, "/nowhere"),
        authorize,
        hub,
    ];
    for url in urls {
        let response = browser.get(&url).send().await.unwrap();
        let headers = response.headers();
        assert_eq!(
            headers["content-security-policy"], "frame-ancestors 'none'",
            "{url}"
        );
        assert_eq!(headers["x-frame-options"], "DENY", "{url}");
        let (_, body) = page(response).await;
        speaks_plainly(&body);
    }
}

#[tokio::test]
async fn the_start_page_says_where_sign_ins_in_progress_are_kept() {
    let on_memory = Deployment::over(vec![MemoryStore::new()], |settings| {
        settings.storage = Storage::Memory;
    })
    .await;
    let (_, home) = page(browser().get(on_memory.at(0, "/")).send().await.unwrap()).await;
    assert!(home.contains("in its memory"), "{home}");
    assert!(!home.contains("in Redis"), "not in Redis: {home}");

    let redis = RedisServer::start();
    let on_redis = Deployment::single(&redis).await;
    let (_, home) = page(browser().get(on_redis.at(0, "/")).send().await.unwrap()).await;
    assert!(home.contains("on the server, in Redis"), "{home}");
}

#[tokio::test]
async fn the_login_session_is_sealed_with_a_key_of_its_own() {
    let redis = RedisServer::start();
    let deployment = Deployment::single(&redis).await;
    let browser = browser();
    let authorize = start(&deployment, &browser, 0).await;
    let callback = sign_in_at_provider(&browser, &authorize, "alice", "wonderland").await;
    let link = flow_link(&follow_callback(&deployment, &browser, &callback, 0).await);
    let done = continue_and_stay(&deployment, &browser, &link, 0, 0).await;
    let session = set_cookie_named(done.headers(), SESSION_COOKIE).expect("a login session");
    let settings = &deployment.settings;

    // It opens with the session's key only, not the layer's.
    let opened = |key: &tower_pipeline_state::Key| {
        let mut jar = CookieJar::new();
        jar.add_original(session.clone());
        jar.private(key)
            .get(SESSION_COOKIE)
            .map(|cookie| cookie.value().to_owned())
    };
    let value = opened(&settings.session_key).expect("sealed with the session's key");
    assert!(value.contains("\"subject\":\"alice\""), "{value}");
    assert_eq!(opened(&settings.flow_key), None, "not with the layer's key");

    // The same session sealed with the layer's key (which signs the flow
    // cookies) is not taken.
    let mut jar = CookieJar::new();
    jar.private_mut(&settings.flow_key)
        .add(Cookie::new(SESSION_COOKIE, value.clone()));
    let forged = jar.delta().next().unwrap().clone();
    let (_, home) = page(
        bare()
            .get(deployment.at(0, "/"))
            .header("cookie", format!("{}={}", forged.name(), forged.value()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(home.contains("<h1>Welcome</h1>"), "{home}");
    let mut jar = CookieJar::new();
    jar.private_mut(&settings.session_key)
        .add(Cookie::new(SESSION_COOKIE, value));
    let sealed = jar.delta().next().unwrap().clone();
    let (_, home) = page(
        bare()
            .get(deployment.at(0, "/"))
            .header("cookie", format!("{}={}", sealed.name(), sealed.value()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(home.contains("Signed in as Alice Liddell"), "{home}");
}

/// A client that keeps no cookies.
fn bare() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_bad_setting_stops_the_demo_with_one_line_and_no_backtrace() {
    for (name, value, says) in [
        (
            "SSO_FLOW_TTL_SECS",
            "0",
            "error: SSO_FLOW_TTL_SECS=0: expected whole seconds from 1 to 2592000 (30 days)\n",
        ),
        (
            "SSO_FLOW_MAX_SECS",
            "ten",
            "error: SSO_FLOW_MAX_SECS=ten: expected whole seconds from 1 to 2592000 (30 days)\n",
        ),
        (
            "SSO_RESPONSE_MODE",
            "fragment",
            "error: SSO_RESPONSE_MODE=fragment: expected query or form_post\n",
        ),
    ] {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_sso"))
            .env(name, value)
            // Never a Redis the machine runs: the demo stops before it
            // connects, and would not find one here anyway.
            .env("REDIS_URL", "redis://127.0.0.1:1")
            .env("PORT", "0")
            .env("RUST_BACKTRACE", "1")
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        assert!(!output.status.success(), "{name}={value}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr, says, "{name}={value}");
        assert!(
            output.stdout.is_empty(),
            "{name}={value}: it stopped at once"
        );
    }
}
