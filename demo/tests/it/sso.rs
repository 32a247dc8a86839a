//! The SSO example end to end: its own routers (`demo::sso`), its
//! built-in provider (on `localhost`, another site than the app's
//! `127.0.0.1`), real servers on loopback, browsers with cookie jars, and a
//! private redis-server. The pages are checked by their plain-word titles
//! (`example::pages`); the request log by its lines. How the sign-in
//! forgives Back, refresh, waiting and retries is in `sso_forgives.rs`, the
//! providers (plain OAuth 2.0, `oidc-provider`, sign-out) and the demo's
//! own defences in `sso_providers.rs`; headless Chromium drives the same
//! demo in `tests/browser/`.

use std::time::Duration;

use crate::{common::*, sso_kit::*};
use cookie::SameSite;
use demo::sso::{self as example, idp};
use example::pages;
use reqwest::StatusCode;
use tower_pipeline_oidc::ResponseMode;

#[tokio::test]
async fn the_whole_sign_in_runs_end_to_end_and_logs_one_line_per_request() {
    let (logs, _capturing) = Logs::capture();
    let redis = RedisServer::start();
    let deployment = Deployment::single(&redis).await;
    let browser = browser();

    let home = browser.get(deployment.at(0, "/")).send().await.unwrap();
    let home = home.text().await.unwrap();
    assert!(home.contains("action=\"/sso/start\""), "{home}");
    assert!(home.contains("Sign in with Demo ID</button>"), "{home}");
    assert!(home.contains("in Redis"), "the flows are in Redis: {home}");
    speaks_plainly(&home);

    let started = start_with(
        &deployment,
        &browser,
        0,
        "/sso/start",
        &[("return_to", "/")],
    )
    .await;
    let cookie = flow_cookie(&started).expect("starting sets the flow's own cookie");
    let reference = cookie
        .name()
        .strip_prefix("pipeline_id.")
        .unwrap()
        .to_owned();
    assert_eq!(reference.len(), 20, "{cookie}");
    assert_eq!(set_cookie(&started), None, "no browser-wide cookie");
    assert_eq!(cookie.http_only(), Some(true), "{cookie}");
    assert_eq!(cookie.same_site(), Some(SameSite::Lax), "{cookie}");
    assert_eq!(cookie.path(), Some("/"), "{cookie}");
    assert_eq!(cookie.secure(), None, "plain-HTTP demo: {cookie}");
    assert_eq!(
        cookie.max_age(),
        None,
        "a live flow's cookie is a session cookie"
    );
    let key = format!("auth:pipeline:{}", flow_id(&cookie));
    assert_eq!(redis.keys(), std::slice::from_ref(&key));

    let authorize = location(&started);
    assert!(
        authorize.starts_with("http://localhost:"),
        "the provider is another site than the app's 127.0.0.1: {authorize}"
    );
    let params = query(&authorize);
    assert_eq!(params["response_type"], "code");
    assert_eq!(params["client_id"], idp::CLIENT_ID);
    assert_eq!(params["redirect_uri"], deployment.settings.redirect_uri());
    assert_eq!(params["scope"], "openid profile email");
    assert_eq!(params["code_challenge_method"], "S256");
    assert!(
        !params.contains_key("prompt"),
        "a plain sign-in: {authorize}"
    );
    assert!(
        !params.contains_key("response_mode"),
        "query is the default"
    );
    let record = stored(&redis, &key);
    assert_eq!(
        record["step_index"], 1,
        "off to the provider: at the callback step"
    );
    assert_eq!(record["return_to"], "/", "where the person was going");
    let nonce = record["nonce"].as_str().unwrap();
    assert_eq!(nonce.len(), 43);
    assert_eq!(
        params["state"],
        format!("{reference}.{nonce}"),
        "the state sent out names the flow and carries its nonce"
    );
    let pending = &record["data"]["oidc.pending"];
    assert_eq!(
        pending["nonce"], params["nonce"],
        "the OIDC nonce is bound, to be checked in the ID token"
    );
    assert_ne!(params["nonce"], params["state"]);
    let verifier = pending["pkce_verifier"].as_str().unwrap();
    assert_eq!(
        idp::s256(verifier),
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
        &format!("{}/authorize", deployment.issuer()),
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
    assert_eq!(answer["iss"], deployment.issuer(), "RFC 9207");

    let back = follow_callback(&deployment, &browser, &callback, 0).await;
    assert_eq!(
        back.headers()["referrer-policy"],
        "no-referrer",
        "the callback's URL carries the code"
    );
    let link = flow_link(&back);
    assert_eq!(
        link,
        format!("/sso?flow={reference}.2"),
        "back to the flow's link, without the provider's answer"
    );
    let record = stored(&redis, &key);
    assert_eq!(record["step_index"], 2);
    assert!(record.get("nonce").is_none(), "the nonce was consumed");
    let identity = &record["data"]["oidc.identity"];
    assert_eq!(identity["subject"], "alice");
    assert_eq!(identity["name"], "Alice Liddell");
    assert_eq!(identity["issuer"], deployment.issuer());
    assert!(
        record["data"].get("oidc.pending").is_none(),
        "the verifier and the nonce are dropped once used"
    );

    let (status, body) = confirm(&deployment, &browser, &link, 0, 0).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("Signed in as Alice Liddell"), "{body}");
    assert!(
        body.contains("According to Demo ID, you are <strong>Alice Liddell</strong>"),
        "{body}"
    );
    speaks_plainly(&body);
    assert_eq!(
        ended_as(&redis, &key),
        "finished",
        "a finished flow keeps only how it ended, for its replays"
    );

    // Back to the confirmation after signing in, or the flow route bare
    // (the browser's newest flow is the finished one): the finished
    // sign-in answers, sending the browser where it landed.
    for path in [link.as_str(), &at_step(&link, 3), "/sso"] {
        let again = browser.get(deployment.at(0, path)).send().await.unwrap();
        assert_eq!(again.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(location(&again), "/", "{path}");
    }

    // Signed out: Back to the sign-in's pages lands on the start page
    // (signed out), never "another browser".
    let out = browser
        .post(deployment.at(0, "/signout"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        location(&out),
        "/?notice=signed_out&provider=sso",
        "the built-in provider has no end_session_endpoint"
    );
    let again = browser.get(deployment.at(0, &link)).send().await.unwrap();
    assert_eq!(location(&again), "/");
    let (status, body) = page(browser.get(deployment.at(0, "/")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("<h1>Welcome</h1>"), "{body}");

    // One line per request, with its outcome; never the query (codes).
    let log = logs.text();
    for line in [
        "app: POST /sso/start -> 303 to_provider",
        "app: GET /sso/callback -> 303 verified",
        "app: GET /sso -> 200 asked_to_confirm",
        "app: POST /sso -> 303 confirmed",
        "app: GET /sso -> 200 asked_to_remember",
        "app: POST /sso -> 303 signed_in",
        "app: POST /signout -> 303 signed_out",
    ] {
        assert_eq!(logs.matching(&[line]).len(), 1, "{line:?} in\n{log}");
    }
    assert_eq!(
        logs.matching(&["app: GET /sso -> 303 replay_answered"])
            .len(),
        4,
        "{log}"
    );
    assert_eq!(logs.matching(&["app: GET / -> 200 home"]).len(), 3, "{log}");
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

    // A wrong state, naming this browser's flow or none: refused before
    // the code is even looked at.
    let (reference, _) = params["state"].split_once('.').unwrap();
    let random = idp::random_token();
    for state in [format!("{reference}.{random}"), random.clone()] {
        let forged = format!(
            "{}?{}",
            deployment.settings.redirect_uri(),
            form(&[("code", &params["code"]), ("state", &state)])
        );
        let (status, body) = page(follow_callback(&deployment, &browser, &forged, 0).await).await;
        assert_eq!(status, pages::NOT_THIS_SIGN_IN.status, "{state}");
        assert!(shows(&body, &pages::NOT_THIS_SIGN_IN), "{state}: {body}");
    }
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
    let link = flow_link(&back);
    let after = redis.get(&key);
    let (status, body) = page(follow_callback(&deployment, &browser, &callback, 0).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(shows(&body, &pages::ALREADY_USED), "{body}");
    assert_eq!(redis.get(&key), after, "the replay moved nothing");

    let (status, body) = confirm(&deployment, &browser, &link, 0, 0).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Signed in as Alice Liddell"), "{body}");

    // After the finish, the callback again (a refresh, Back, a proxy
    // delivering it twice) lands where the sign-in did, signed in; the
    // finish did not run again.
    let replay = follow_callback(&deployment, &browser, &callback, 0).await;
    assert_eq!(replay.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&replay), "/");
    assert!(
        set_cookie_named(replay.headers(), example::app::SESSION_COOKIE).is_none(),
        "no second login session"
    );
    // Forged, it is still refused.
    let forged = format!(
        "{}?{}",
        deployment.settings.redirect_uri(),
        form(&[
            ("code", &params["code"]),
            ("state", &format!("{reference}.{random}"))
        ])
    );
    let (status, body) = page(follow_callback(&deployment, &browser, &forged, 0).await).await;
    assert_eq!(status, pages::NOT_THIS_SIGN_IN.status);
    assert!(shows(&body, &pages::NOT_THIS_SIGN_IN), "{body}");
    // In a browser that is not signed in (and never held that flow), it
    // says the sign-in is not going on here.
    let (status, body) =
        page(follow_callback(&deployment, &crate::common::browser(), &callback, 0).await).await;
    assert_eq!(status, pages::OTHER_BROWSER.status);
    assert!(shows(&body, &pages::OTHER_BROWSER), "{body}");
}

#[tokio::test]
async fn cancel_is_not_a_failure() {
    let redis = RedisServer::start();
    let deployment = Deployment::single(&redis).await;
    let browser = browser();

    // Cancelled at the app's confirmation.
    let authorize = start(&deployment, &browser, 0).await;
    let key = redis.keys().pop().unwrap();
    let callback = sign_in_at_provider(&browser, &authorize, "alice", "wonderland").await;
    let link = flow_link(&follow_callback(&deployment, &browser, &callback, 0).await);
    let cancelled = post_form(
        &browser,
        &deployment.at(0, &link),
        form(&[("action", "cancel")]),
    )
    .await;
    assert_eq!(location(&cancelled), "/?notice=cancelled");
    assert_eq!(ended_as(&redis, &key), "cancelled", "the flow ended");
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
    // Back to the confirmation, or its answer sent again: the sign-in was
    // cancelled, says the page (not "another browser"), nothing moved.
    let before = redis.get(&key);
    let (status, body) = page(browser.get(deployment.at(0, &link)).send().await.unwrap()).await;
    assert_eq!(status, pages::CANCELLED.status);
    assert!(shows(&body, &pages::CANCELLED), "{body}");
    let again = post_form(
        &browser,
        &deployment.at(0, &link),
        form(&[("action", "continue")]),
    )
    .await;
    assert!(shows(&again.text().await.unwrap(), &pages::CANCELLED));
    assert_eq!(redis.get(&key), before);

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
        &format!("{}/authorize", deployment.issuer()),
        form(&pairs),
    )
    .await;
    let callback = location(&denied);
    assert_eq!(query(&callback)["error"], "access_denied");
    let back = follow_callback(&deployment, &browser, &callback, 0).await;
    assert_eq!(location(&back), "/?notice=cancelled");
    // The provider's answer again: the sign-in has ended, says the page.
    let (status, body) = page(follow_callback(&deployment, &browser, &callback, 0).await).await;
    assert_eq!(status, pages::ENDED.status);
    assert!(shows(&body, &pages::ENDED), "{body}");
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
    let records = || {
        let mut keys = redis.keys();
        keys.sort();
        keys.into_iter()
            .map(|key| redis.get(&key))
            .collect::<Vec<_>>()
    };
    let before = records();
    // Its `state` names the attacker's flow, whose cookie the victim's
    // browser does not have.
    let (status, body) = page(follow_callback(&deployment, &victim, &planted, 0).await).await;
    assert_eq!(status, pages::OTHER_BROWSER.status);
    assert!(shows(&body, &pages::OTHER_BROWSER), "{body}");
    assert_eq!(records(), before, "neither flow moved");

    let callback = sign_in_at_provider(&victim, &authorize, "alice", "wonderland").await;
    let link = flow_link(&follow_callback(&deployment, &victim, &callback, 0).await);
    let (_, body) = confirm(&deployment, &victim, &link, 0, 0).await;
    assert!(body.contains("Signed in as Alice Liddell"), "{body}");
}

#[tokio::test]
async fn an_abandoned_sign_in_goes_back_to_the_provider_by_itself() {
    let (logs, _capturing) = Logs::capture();
    let redis = RedisServer::start();
    // Short, for the test to wait past it; long enough for the sign-in
    // that starts again to go on without waiting (each request slides it).
    let idle = Duration::from_secs(2);
    let deployment =
        Deployment::configured(&redis, 1, |settings| settings.idle_timeout = idle).await;
    let browser = browser();

    let started = start_with(
        &deployment,
        &browser,
        0,
        "/sso/start",
        &[("return_to", "/account")],
    )
    .await;
    let authorize = location(&started);
    let callback = sign_in_at_provider(&browser, &authorize, "alice", "wonderland").await;
    let key = redis.keys().pop().expect("the flow is stored");
    assert!(
        (0..=2).contains(&redis.ttl(&key)),
        "TTL {}",
        redis.ttl(&key)
    );

    // The person walks away for longer than a sign-in waits.
    outlive(idle).await;
    assert_eq!(redis.keys(), Vec::<String>::new(), "Redis dropped the flow");

    // A request the browser makes in the background (a script's fetch)
    // cannot start it again: it reads that the sign-in expired, and the
    // cookie stays for the person's own next page.
    let fetched = as_fetch(browser.get(deployment.via(0, &callback)))
        .send()
        .await
        .unwrap();
    assert!(flow_cookie(&fetched).is_none(), "the cookie is left");
    let (status, body) = page(fetched).await;
    assert_eq!(status, pages::EXPIRED.status);
    assert!(shows(&body, &pages::EXPIRED), "{body}");
    assert!(body.contains("waits 2 seconds"), "{body}");
    assert!(redis.keys().is_empty(), "nothing started");

    // The provider's answer, as the browser follows it: the sign-in starts
    // again by itself, back to the provider with a new state (the old code
    // is never exchanged), towards the same page.
    let late = follow_callback(&deployment, &browser, &callback, 0).await;
    assert_eq!(late.status(), StatusCode::SEE_OTHER);
    let again = location(&late);
    assert!(
        again.starts_with(&format!("{}/authorize?", deployment.issuer())),
        "{again}"
    );
    assert_ne!(query(&again)["state"], query(&callback)["state"]);
    let cookies = set_cookies(late.headers());
    assert!(
        cookies
            .iter()
            .any(|cookie| cookie.name().starts_with("pipeline_id.") && removes(cookie)),
        "the expired flow's cookie goes: {cookies:?}"
    );
    let [key] = &redis.keys()[..] else {
        panic!("one new flow: {:?}", redis.keys());
    };
    assert_eq!(stored(&redis, key)["return_to"], "/account");
    let callback = sign_in_at_provider(&browser, &again, "alice", "wonderland").await;
    let link = flow_link(&follow_callback(&deployment, &browser, &callback, 0).await);
    let done = continue_and_stay(&deployment, &browser, &link, 0, 0).await;
    assert_eq!(location(&done), "/account", "where the person was going");
    let (_, body) = page(
        browser
            .get(deployment.at(0, "/account"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        body.contains("Signed in as <strong>Alice Liddell</strong>"),
        "{body}"
    );
    assert_eq!(
        logs.matching(&["app: GET /sso/callback -> 303 to_provider"])
            .len(),
        1,
        "{}",
        logs.text()
    );
}

#[tokio::test]
async fn a_sign_in_past_its_max_lifetime_starts_again_however_busy() {
    let redis = RedisServer::start();
    let max = Duration::from_secs(2);
    let deployment =
        Deployment::configured(&redis, 1, |settings| settings.max_lifetime = max).await;
    let browser = browser();

    let started = start_with(
        &deployment,
        &browser,
        0,
        "/sso/start",
        &[("return_to", "/account")],
    )
    .await;
    let callback = sign_in_at_provider(&browser, &location(&started), "bob", "builder").await;
    let link = flow_link(&follow_callback(&deployment, &browser, &callback, 0).await);
    let key = redis.keys().pop().unwrap();
    assert!(
        redis.ttl(&key) <= 2,
        "TTL {}: never past the deadline",
        redis.ttl(&key)
    );
    // Clicking on keeps the flow busy, but not alive past its lifetime.
    let shown = browser.get(deployment.at(0, &link)).send().await.unwrap();
    assert_eq!(shown.status(), StatusCode::OK);
    outlive(max).await;
    let late = post_form(
        &browser,
        &deployment.at(0, &link),
        form(&[("action", "continue")]),
    )
    .await;
    assert_eq!(late.status(), StatusCode::SEE_OTHER);
    let again = location(&late);
    assert!(
        again.starts_with(&format!("{}/authorize?", deployment.issuer())),
        "back to the provider: {again}"
    );
    // A new flow in its place, towards the same page, with a deadline of
    // its own.
    let keys = redis.keys();
    assert!(!keys.contains(&key), "the old record is gone: {keys:?}");
    let [key] = &keys[..] else {
        panic!("one new flow: {keys:?}");
    };
    let record = stored(&redis, key);
    assert_eq!(record["step_index"], 1, "at the provider's callback");
    assert_eq!(record["return_to"], "/account");
    assert!(record["deadline"].is_u64(), "{record}");
    assert_eq!(
        query(&again)["state"].split_once('.').unwrap().1,
        record["nonce"]
    );
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
    let link_bob = flow_link(&follow_callback(&deployment, &second, &callback_bob, 0).await);
    let link_alice = flow_link(&follow_callback(&deployment, &first, &callback_alice, 0).await);
    let (_, alice) = confirm(&deployment, &first, &link_alice, 0, 0).await;
    assert_eq!(live_flows(&redis).len(), 1, "bob's flow is still there");
    let (_, bob) = confirm(&deployment, &second, &link_bob, 0, 0).await;
    assert!(alice.contains("Signed in as Alice Liddell"), "{alice}");
    assert!(bob.contains("Signed in as Bob the Builder"), "{bob}");
    assert_eq!(live_flows(&redis), Vec::<String>::new());

    // And truly at once.
    let run = |browser: reqwest::Client, user: &'static str, password: &'static str| {
        let deployment = &deployment;
        async move {
            let authorize = start(deployment, &browser, 0).await;
            let callback = sign_in_at_provider(&browser, &authorize, user, password).await;
            let link = flow_link(&follow_callback(deployment, &browser, &callback, 0).await);
            confirm(deployment, &browser, &link, 0, 0).await.1
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
async fn two_sign_ins_in_one_browser_each_finish_as_started() {
    // Two tabs of one browser (one cookie jar): A starts, then B; A
    // finishes, then B. Each has its own flow and cookie; the provider's
    // `state` and the flow's links say which one a request continues.
    let (logs, _capturing) = Logs::capture();
    let redis = RedisServer::start();
    let deployment = Deployment::single(&redis).await;
    let browser = browser();

    let authorize_a = start(&deployment, &browser, 0).await;
    let authorize_b = start(&deployment, &browser, 0).await;
    assert_eq!(
        redis.keys().len(),
        2,
        "B's start left A's flow: {:?}",
        redis.keys()
    );
    let (state_a, state_b) = (&query(&authorize_a)["state"], &query(&authorize_b)["state"]);
    let (reference_a, reference_b) = (
        state_a.split_once('.').unwrap().0,
        state_b.split_once('.').unwrap().0,
    );
    assert_ne!(reference_a, reference_b);

    // A first: its callback, then its confirmation (B, the newest flow, is
    // still at its callback step: a page without A's link would be B's).
    let callback_a = sign_in_at_provider(&browser, &authorize_a, "alice", "wonderland").await;
    let link_a = flow_link(&follow_callback(&deployment, &browser, &callback_a, 0).await);
    assert_eq!(link_a, format!("/sso?flow={reference_a}.2"));
    let (status, body) = confirm(&deployment, &browser, &link_a, 0, 0).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("Signed in as Alice Liddell"), "{body}");
    assert_eq!(live_flows(&redis).len(), 1, "B's flow is still there");

    // Then B, in the same browser, now signed in as Alice.
    let callback_b = sign_in_at_provider(&browser, &authorize_b, "bob", "builder").await;
    let link_b = flow_link(&follow_callback(&deployment, &browser, &callback_b, 0).await);
    assert_eq!(link_b, format!("/sso?flow={reference_b}.2"));
    let (status, body) = confirm(&deployment, &browser, &link_b, 0, 0).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("Signed in as Bob the Builder"), "{body}");
    assert_eq!(
        live_flows(&redis),
        Vec::<String>::new(),
        "both flows finished"
    );

    let log = logs.text();
    for line in [
        "app: GET /sso/callback -> 303 verified",
        "app: POST /sso -> 303 signed_in",
    ] {
        assert_eq!(logs.matching(&[line]).len(), 2, "{line:?} in\n{log}");
    }
    for failed in ["app: GET", "app: POST"].map(|request| [request, " -> 4"]) {
        assert_eq!(logs.matching(&failed).len(), 0, "no failure: {log}");
    }
}

#[tokio::test]
async fn a_flow_started_on_one_instance_finishes_on_another() {
    let redis = RedisServer::start();
    let deployment = Deployment::configured(&redis, 2, |_| {}).await;
    let browser = browser();

    let authorize = start(&deployment, &browser, 0).await;
    let callback = sign_in_at_provider(&browser, &authorize, "alice", "wonderland").await;
    let back = follow_callback(&deployment, &browser, &callback, 1).await;
    let link = flow_link(&back);
    let (status, body) = confirm(&deployment, &browser, &link, 0, 1).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Signed in as Alice Liddell"), "{body}");
    assert_eq!(live_flows(&redis), Vec::<String>::new());
}

/// Signs in at the provider with `response_mode=form_post`; checks that
/// it answers with a form that posts to the app's callback, and returns
/// that form's fields as the body the browser would post.
async fn form_post_answer(
    deployment: &Deployment,
    client: &reqwest::Client,
    authorize: &str,
    user: &str,
    password: &str,
) -> String {
    let params = query(authorize);
    assert_eq!(params["response_mode"], "form_post");
    let mut fields: Vec<(&str, &str)> = params
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    fields.extend([("username", user), ("password", password)]);
    let answer = post_form(
        client,
        &format!("{}/authorize", deployment.issuer()),
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
    assert_eq!(hidden("state"), params["state"]);
    form(&[
        ("code", &hidden("code")),
        ("state", &hidden("state")),
        ("iss", &hidden("iss")),
    ])
}

/// A client without a cookie store: the tests send by hand what a browser
/// sends on a cross-site POST.
fn bare_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// POSTs `body` as a form to `url`, with `cookie` (if any) and the
/// `Sec-Fetch-Site` a browser would send.
async fn post_as_browser(
    client: &reqwest::Client,
    url: &str,
    cookie: Option<&str>,
    site: &str,
    body: String,
) -> reqwest::Response {
    let mut request = client
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("sec-fetch-site", site)
        .body(body);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn a_form_post_callback_finds_its_flow_by_the_state_in_its_form() {
    let (logs, _capturing) = Logs::capture();
    let redis = RedisServer::start();
    let deployment = Deployment::configured(&redis, 1, |settings| {
        // As the binary runs with SSO_RESPONSE_MODE=form_post.
        settings.oidc.response_mode = ResponseMode::FormPost;
        settings.cross_site_callbacks = true;
    })
    .await;
    assert!(deployment.settings.cross_site_callbacks);
    let client = bare_client();

    // The pipeline accepts cross-site callbacks: the flow's own cookie is
    // `SameSite=None; Secure`, though the layer's stays `Lax` and not Secure.
    let started = client
        .post(deployment.at(0, "/sso/start"))
        .send()
        .await
        .unwrap();
    let cookie = flow_cookie(&started).expect("the flow's cookie");
    assert_eq!(cookie.same_site(), Some(SameSite::None), "{cookie}");
    assert_eq!(cookie.secure(), Some(true), "None needs Secure: {cookie}");
    assert_eq!(cookie.http_only(), Some(true), "{cookie}");
    assert_eq!(set_cookie(&started), None, "no browser-wide cookie");
    let reference = cookie
        .name()
        .strip_prefix("pipeline_id.")
        .unwrap()
        .to_owned();
    let key = format!("auth:pipeline:{}", flow_id(&cookie));
    let authorize = location(&started);
    assert!(
        query(&authorize)["state"].starts_with(&format!("{reference}.")),
        "{authorize}"
    );
    let body = form_post_answer(&deployment, &client, &authorize, "bob", "builder").await;
    let before = redis.get(&key);

    // Without the cookie, which this browser would have sent: the flow the
    // form's `state` names is not this browser's.
    let lost = post_as_browser(
        &client,
        &deployment.at(0, "/sso/callback"),
        None,
        "cross-site",
        body.clone(),
    )
    .await;
    let (status, page_text) = page(lost).await;
    assert_eq!(status, pages::OTHER_BROWSER.status);
    assert!(shows(&page_text, &pages::OTHER_BROWSER), "{page_text}");
    assert_eq!(redis.get(&key), before, "nothing moved");

    // As a browser posts it from the provider's page: cross-site, with the
    // `SameSite=None` cookie. The engine reads `state` from the form, the
    // step reads `code` and `iss` from it too.
    let flow_cookie = format!("{}={}", cookie.name(), cookie.value());
    let back = post_as_browser(
        &client,
        &deployment.at(0, "/sso/callback"),
        Some(&flow_cookie),
        "cross-site",
        body.clone(),
    )
    .await;
    let link = flow_link(&back);
    assert_eq!(link, format!("/sso?flow={reference}.2"));
    let record = stored(&redis, &key);
    assert_eq!(record["data"]["oidc.identity"]["subject"], "bob");
    assert!(record.get("nonce").is_none(), "the nonce was consumed");

    // The same POST again is a replay.
    let replay = post_as_browser(
        &client,
        &deployment.at(0, "/sso/callback"),
        Some(&flow_cookie),
        "cross-site",
        body,
    )
    .await;
    let (_, page_text) = page(replay).await;
    assert!(shows(&page_text, &pages::ALREADY_USED), "{page_text}");

    // The cookie now goes with cross-site requests, so another site could
    // submit the confirmation's form; the engine refuses a cross-site POST
    // to any step but the callback.
    let before = redis.get(&key);
    let forged = post_as_browser(
        &client,
        &deployment.at(0, &link),
        Some(&flow_cookie),
        "cross-site",
        form(&[("action", "continue")]),
    )
    .await;
    let (status, page_text) = page(forged).await;
    assert_eq!(status, pages::CROSS_SITE.status);
    assert!(shows(&page_text, &pages::CROSS_SITE), "{page_text}");
    assert_eq!(redis.get(&key), before, "nothing moved");

    // From the app's own pages, it signs in.
    let confirmed = post_as_browser(
        &client,
        &deployment.at(0, &link),
        Some(&flow_cookie),
        "same-origin",
        form(&[("action", "continue")]),
    )
    .await;
    assert_eq!(location(&confirmed), at_step(&link, 3));
    let done = post_as_browser(
        &client,
        &deployment.at(0, &at_step(&link, 3)),
        Some(&flow_cookie),
        "same-origin",
        form(&[("action", "stay")]),
    )
    .await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&done), "/");
    assert!(
        set_cookies(done.headers())
            .iter()
            .any(|cookie| cookie.name() == example::app::SESSION_COOKIE),
        "the login session starts"
    );
    assert_eq!(ended_as(&redis, &key), "finished");

    let log = logs.text();
    for line in [
        "app: POST /sso/callback -> 400 not_this_browsers_sign_in",
        "app: POST /sso/callback -> 303 verified",
        "app: POST /sso/callback -> 400 link_already_used",
        "app: POST /sso -> 403 posted_from_another_site",
        "app: POST /sso -> 303 confirmed",
        "app: POST /sso -> 303 signed_in",
    ] {
        assert_eq!(logs.matching(&[line]).len(), 1, "{line:?} in\n{log}");
    }
}

#[tokio::test]
async fn a_form_post_callback_to_a_pipeline_without_cross_site_callbacks_is_refused_plainly() {
    let (logs, _capturing) = Logs::capture();
    let redis = RedisServer::start();
    let deployment = Deployment::configured(&redis, 1, |settings| {
        settings.oidc.response_mode = ResponseMode::FormPost;
        settings.cross_site_callbacks = false;
    })
    .await;
    let client = bare_client();

    let started = client
        .post(deployment.at(0, "/sso/start"))
        .send()
        .await
        .unwrap();
    let cookie = flow_cookie(&started).expect("the flow's cookie");
    assert_eq!(cookie.same_site(), Some(SameSite::Lax), "{cookie}");
    let key = format!("auth:pipeline:{}", flow_id(&cookie));
    let body = form_post_answer(
        &deployment,
        &client,
        &location(&started),
        "alice",
        "wonderland",
    )
    .await;
    let before = redis.get(&key);

    // A browser does not send a `Lax` cookie on the provider's cross-site
    // POST: the person reads that the step came from another site.
    let refused = post_as_browser(
        &client,
        &deployment.at(0, "/sso/callback"),
        None,
        "cross-site",
        body,
    )
    .await;
    let (status, page_text) = page(refused).await;
    assert_eq!(status, pages::CROSS_SITE.status);
    assert!(shows(&page_text, &pages::CROSS_SITE), "{page_text}");
    assert_eq!(redis.get(&key), before, "the flow is left as it was");
    let log = logs.text();
    assert_eq!(
        logs.matching(&["app: POST /sso/callback -> 403 posted_from_another_site"])
            .len(),
        1,
        "{log}"
    );
}

#[tokio::test]
async fn the_provider_checks_the_client_and_the_pkce_verifier() {
    let redis = RedisServer::start();
    let deployment = Deployment::single(&redis).await;
    let browser = browser();
    let token_url = format!("{}/token", deployment.issuer());
    let exchange = |code: String, verifier: String, secret: &str| {
        form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &deployment.settings.redirect_uri()),
            ("client_id", idp::CLIENT_ID),
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
        exchange(code, idp::random_token(), idp::CLIENT_SECRET),
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
    let [key] = &redis.keys()[..] else {
        panic!("one flow");
    };
    assert_eq!(ended_as(&redis, key), "failed", "a failed flow ended");

    // The right verifier (the one the flow bound) gets an ID token, with
    // the client's secret only.
    let authorize = start(&deployment, &browser, 0).await;
    let key = live_flows(&redis).pop().unwrap();
    let verifier = stored(&redis, &key)["data"]["oidc.pending"]["pkce_verifier"]
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
        exchange(code.clone(), verifier.clone(), idp::CLIENT_SECRET),
    )
    .await;
    assert_eq!(token.status(), StatusCode::OK);
    let token: serde_json::Value = serde_json::from_str(&token.text().await.unwrap()).unwrap();
    let id_token = token["id_token"].as_str().expect("an ID token");
    assert_eq!(id_token.split('.').count(), 3, "a signed JWT");
    let again = post_form(
        &browser,
        &token_url,
        exchange(code, verifier, idp::CLIENT_SECRET),
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
    let store = redis_store(&redis.url()).await;
    let deployment = Deployment::over_with(
        vec![store],
        |_| {},
        |idp, settings| {
            // Another instance of the provider, with a key of its own: its
            // JWKS is what the signing one publishes.
            let impostor = settings.builtin_provider();
            idp.layer(axum::middleware::from_fn(
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
            ))
        },
    )
    .await;
    let browser = browser();

    let authorize = start(&deployment, &browser, 0).await;
    let callback = sign_in_at_provider(&browser, &authorize, "alice", "wonderland").await;
    let (status, body) = page(follow_callback(&deployment, &browser, &callback, 0).await).await;
    assert_eq!(status, pages::NOT_VERIFIED.status);
    assert!(shows(&body, &pages::NOT_VERIFIED), "{body}");
    let [key] = &redis.keys()[..] else {
        panic!("one flow");
    };
    assert_eq!(ended_as(&redis, key), "failed", "the flow ended");
    let log = logs.text();
    // The provider crate's line, with the failure's kind and detail.
    assert_eq!(
        logs.matching(&["sign-in failed", "id_token_unknown_key"])
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
    // Redis freezes while the callback step talks to the provider: the
    // step's write goes out and no answer comes, so the layer answers "not
    // confirmed" (503) through the app's on_error hook, as a page of the
    // app's, with the layer's status. (Redis stopped instead would refuse
    // the write before it is sent: "unavailable", `sso_failures.rs`.)
    let (logs, _capturing) = Logs::capture();
    let redis = RedisServer::start();
    // The token endpoint says when a request arrived, and answers when
    // the test lets it.
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::unbounded_channel::<()>();
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let gate = release.clone();
    let store = redis_store(&redis.url()).await;
    let deployment = Deployment::over_with(
        vec![store],
        |_| {},
        |idp, _| {
            idp.layer(axum::middleware::from_fn(
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
            ))
        },
    )
    .await;
    let browser = browser();

    let authorize = start(&deployment, &browser, 0).await;
    let callback = sign_in_at_provider(&browser, &authorize, "alice", "wonderland").await;
    let url = deployment.via(0, &callback);
    let pending = tokio::spawn({
        let browser = browser.clone();
        async move { browser.get(url).send().await.unwrap() }
    });
    arrived.recv().await.unwrap();
    redis.pause();
    release.notify_one();
    let response = pending.await.unwrap();
    redis.resume();
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
