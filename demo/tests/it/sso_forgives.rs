//! The SSO demo forgives what people do (issue 16), over HTTP: a finished
//! sign-in answers its replays by landing where it did, and past its replay
//! window its pages say plainly that it is gone; a form of an earlier step
//! is not used, and the current step is shown; a background request to a
//! start route starts nothing and pushes out no sign-in. (An expired
//! sign-in starting again, and Back after Cancel, are in `sso.rs`.)

use std::time::Duration;

use crate::{common::*, sso_kit::*};
use demo::sso::{app::SESSION_COOKIE, pages};
use reqwest::StatusCode;

#[tokio::test]
async fn replays_of_a_finished_sign_in_land_where_it_did_and_it_finishes_once() {
    let (logs, _capturing) = Logs::capture();
    let redis = RedisServer::start();
    let deployment = Deployment::single(&redis).await;
    let browser = browser();

    let started = start_with(
        &deployment,
        &browser,
        0,
        "/sso/start",
        &[("return_to", "/account")],
    )
    .await;
    let key = redis.keys().pop().unwrap();
    let callback = sign_in_at_provider(&browser, &location(&started), "alice", "wonderland").await;
    let link = flow_link(&follow_callback(&deployment, &browser, &callback, 0).await);
    let done = continue_and_stay(&deployment, &browser, &link, 0, 0).await;
    assert_eq!(location(&done), "/account");
    assert_eq!(ended_as(&redis, &key), "finished");
    let ended = redis.get(&key);

    // Everything a browser may send again: the provider's answer (a
    // refresh of the callback, Back to it, a proxy's retry), the
    // confirmation's page and answer, the last step's answer (a resubmit).
    let replays = [
        browser.get(deployment.via(0, &callback)),
        browser.get(deployment.at(0, &link)),
        browser
            .post(deployment.at(0, &link))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("action=continue"),
        browser.get(deployment.at(0, &at_step(&link, 3))),
        browser
            .post(deployment.at(0, &at_step(&link, 3)))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("action=stay"),
    ];
    for replay in replays {
        let response = replay.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&response), "/account", "where the sign-in landed");
        assert!(
            set_cookie_named(response.headers(), SESSION_COOKIE).is_none(),
            "no second login session"
        );
    }
    assert_eq!(redis.get(&key), ended, "replays write nothing");
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

    // Another browser holds no cookie for the flow: not its sign-in.
    let (status, body) = page(
        crate::common::browser()
            .get(deployment.via(0, &callback))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, pages::OTHER_BROWSER.status);
    assert!(shows(&body, &pages::OTHER_BROWSER), "{body}");

    let log = logs.text();
    assert_eq!(
        logs.matching(&["signed in: alice at"]).len(),
        1,
        "the finish ran once: {log}"
    );
    assert_eq!(logs.matching(&["-> 303 replay_answered"]).len(), 5, "{log}");
}

#[tokio::test]
async fn past_its_replay_window_an_ended_sign_in_is_gone_and_its_pages_say_so() {
    let redis = RedisServer::start();
    let window = Duration::from_secs(1);
    let deployment =
        Deployment::configured(&redis, 1, |settings| settings.replay_window = window).await;
    let browser = browser();

    let authorize = start(&deployment, &browser, 0).await;
    let callback = sign_in_at_provider(&browser, &authorize, "alice", "wonderland").await;
    let link = flow_link(&follow_callback(&deployment, &browser, &callback, 0).await);
    let (_, body) = confirm(&deployment, &browser, &link, 0, 0).await;
    assert!(body.contains("Signed in as Alice Liddell"), "{body}");

    // The ended flow's record and cookie are gone with the window.
    outlive(window).await;
    assert!(redis.keys().is_empty(), "{:?}", redis.keys());
    // Signed in, the sign-in's old pages say so.
    for path in [link.as_str(), "/sso"] {
        let again = browser.get(deployment.at(0, path)).send().await.unwrap();
        assert_eq!(again.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(location(&again), "/?notice=already_signed_in", "{path}");
    }
    // Signed out, they say plainly that nothing is going on.
    browser
        .post(deployment.at(0, "/signout"))
        .send()
        .await
        .unwrap();
    let (status, body) = page(browser.get(deployment.at(0, "/sso")).send().await.unwrap()).await;
    assert_eq!(status, pages::NO_SIGN_IN.status);
    assert!(shows(&body, &pages::NO_SIGN_IN), "{body}");
    // The ended flow's link: this browser no longer holds that sign-in.
    let (status, body) = page(browser.get(deployment.at(0, &link)).send().await.unwrap()).await;
    assert_eq!(status, pages::OTHER_BROWSER.status);
    assert!(shows(&body, &pages::OTHER_BROWSER), "{body}");
}

#[tokio::test]
async fn a_form_of_an_earlier_step_is_not_used_and_the_current_step_is_shown() {
    let (logs, _capturing) = Logs::capture();
    let redis = RedisServer::start();
    let deployment = Deployment::single(&redis).await;
    let browser = browser();

    let authorize = start(&deployment, &browser, 0).await;
    let key = redis.keys().pop().unwrap();
    let callback = sign_in_at_provider(&browser, &authorize, "bob", "builder").await;
    let link = flow_link(&follow_callback(&deployment, &browser, &callback, 0).await);
    let confirmed = post_form(
        &browser,
        &deployment.at(0, &link),
        form(&[("action", "continue")]),
    )
    .await;
    assert_eq!(location(&confirmed), at_step(&link, 3));
    let before = redis.get(&key);

    // The confirmation's page, kept in another tab or brought back by
    // Back, answered again: Cancel, or Continue. Neither is used: the
    // browser is sent to the step the sign-in is on, which says why.
    for action in ["cancel", "continue"] {
        let stale = post_form(
            &browser,
            &deployment.at(0, &link),
            form(&[("action", action)]),
        )
        .await;
        assert_eq!(stale.status(), StatusCode::SEE_OTHER, "{action}");
        let shown_at = location(&stale);
        assert_eq!(shown_at, format!("{link}&notice=stale"));
        assert_eq!(redis.get(&key), before, "{action}: nothing moved");
        let (status, body) = page(
            browser
                .get(deployment.at(0, &shown_at))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("<h1>Stay signed in?</h1>"), "{body}");
        assert!(body.contains("That page was out of date"), "{body}");
        assert!(body.contains("on this device for 30 days"), "{body}");
        speaks_plainly(&body);
        // Its form is the current step's.
        assert!(
            body.contains(&format!("action=\"{}\"", at_step(&link, 3))),
            "{body}"
        );
    }
    // A GET of the old page shows the current step, without a word.
    let (_, body) = page(browser.get(deployment.at(0, &link)).send().await.unwrap()).await;
    assert!(body.contains("<h1>Stay signed in?</h1>"), "{body}");
    assert!(!body.contains("out of date"), "{body}");

    // The current step's answer goes on.
    let done = post_form(
        &browser,
        &deployment.at(0, &at_step(&link, 3)),
        form(&[("action", "session")]),
    )
    .await;
    assert_eq!(location(&done), "/");
    let session = set_cookie_named(done.headers(), SESSION_COOKIE).expect("signed in");
    assert_eq!(
        session.max_age(),
        None,
        "not staying signed in: a browser-session cookie"
    );
    assert_eq!(
        logs.matching(&["app: POST /sso -> 303 stale_page"]).len(),
        2,
        "{}",
        logs.text()
    );
}

#[tokio::test]
async fn a_background_request_to_a_start_route_starts_nothing_and_pushes_out_nothing() {
    let redis = RedisServer::start();
    let deployment = Deployment::single(&redis).await;
    let browser = browser();

    // The sign-in the person is in, at the provider.
    let authorize = start(&deployment, &browser, 0).await;
    let keys = redis.keys();
    assert_eq!(keys.len(), 1);

    // A page's script fetches the start route, more often than the browser
    // keeps flows (five); so do a prefetch and a prerender.
    let mut background: Vec<reqwest::RequestBuilder> = (0..6)
        .map(|_| as_fetch(browser.post(deployment.at(0, "/sso/start"))))
        .collect();
    background.push(
        browser
            .post(deployment.at(0, "/oauth/start"))
            .header("sec-purpose", "prefetch"),
    );
    background.push(
        browser
            .post(deployment.at(0, "/sso/start"))
            .header("sec-purpose", "prefetch;prerender"),
    );
    for request in background {
        let response = request.send().await.unwrap();
        assert!(
            set_cookies(response.headers()).is_empty(),
            "no cookie set, none dropped"
        );
        let (status, body) = page(response).await;
        assert_eq!(status, pages::NOT_A_PAGE.status);
        assert!(shows(&body, &pages::NOT_A_PAGE), "{body}");
    }
    assert_eq!(redis.keys(), keys, "nothing started, nothing pushed out");

    // The person's sign-in goes on.
    let callback = sign_in_at_provider(&browser, &authorize, "alice", "wonderland").await;
    let link = flow_link(&follow_callback(&deployment, &browser, &callback, 0).await);
    let (_, body) = confirm(&deployment, &browser, &link, 0, 0).await;
    assert!(body.contains("Signed in as Alice Liddell"), "{body}");
}
