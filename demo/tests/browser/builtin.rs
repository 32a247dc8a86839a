//! The demo with its built-in provider, every path a person can take.

use std::time::Duration;

use cookie::SameSite;

use demo::sso::{
    app::{CALLBACK_PATH, SESSION_COOKIE},
    pages,
};
use test_kit::chromium::{Browser, fantoccini, run};

use crate::deploy::{Demo, Options};

/// Each sign-in's own cookie is `pipeline_id.<reference>`.
const FLOW_COOKIE_PREFIX: &str = "pipeline_id.";

/// The flow cookies the browser holds for the app's site (the page open
/// must be the app's).
async fn flow_cookies(browser: &Browser) -> Vec<cookie::Cookie<'static>> {
    browser
        .client
        .get_all_cookies()
        .await
        .unwrap()
        .into_iter()
        .filter(|cookie| cookie.name().starts_with(FLOW_COOKIE_PREFIX))
        .collect()
}

/// The reference in the provider's sign-in page's URL: its `state` is
/// `<reference>.<nonce>`.
async fn reference_at_provider(browser: &Browser) -> String {
    let url = browser.url().await;
    let (_, query) = url.split_once('?').unwrap();
    let state = form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "state")
        .unwrap_or_else(|| panic!("no state in {url}"))
        .1;
    let (reference, _) = state.split_once('.').unwrap();
    reference.to_owned()
}

/// From the start page to Demo ID's sign-in form.
async fn start(browser: &Browser, demo: &Demo) {
    browser.open(&demo.url("/")).await;
    browser.expect_heading("Welcome").await;
    browser.click("Sign in with Demo ID").await;
    browser.expect_heading("Sign in to continue").await;
    let at = browser.url().await;
    assert!(
        at.starts_with(&format!("{}/authorize?", demo.settings.oidc.issuer)),
        "on the provider's site (localhost), not the app's: {at}"
    );
}

/// Signs in at the provider's form.
async fn sign_in_at_provider(browser: &Browser, user: &str, password: &str) {
    browser.fill("input[name=username]", user).await;
    browser.fill("input[name=password]", password).await;
    browser.click("Sign in").await;
}

/// From the confirmation, through "Stay signed in?", to the page the
/// sign-in was started from: the start page.
async fn confirm(browser: &Browser, demo: &Demo, name: &str) {
    continue_and_stay(browser, name).await;
    browser
        .expect_heading(&format!("Signed in as {name}"))
        .await;
    assert_eq!(browser.url().await, demo.url("/"), "a plain GET page");
}

/// The confirmation ("Continue as ...?") and "Stay signed in?".
async fn continue_and_stay(browser: &Browser, name: &str) {
    browser.expect_heading("Continue?").await;
    browser.click(&format!("Continue as {name}")).await;
    browser.expect_heading("Stay signed in?").await;
    browser.click("Yes, stay signed in").await;
}

/// Waits for the page of `message` and checks it speaks plainly.
async fn expect_page(browser: &Browser, message: &pages::Message) {
    browser.expect_heading(message.title).await;
    let text = browser.text().await;
    for code in ["nonce", "no_flow", "Outcome", "invalid_grant", "{"] {
        assert!(!text.contains(code), "{code:?} on a person's page:\n{text}");
    }
}

/// The callback URL the provider sends the browser to, found by signing in
/// at the (stateless) built-in provider with a plain HTTP client.
async fn callback_url(authorize: &str, user: &str, password: &str) -> String {
    let (endpoint, query) = authorize.split_once('?').unwrap();
    let mut body = query.to_owned();
    body.push_str(&format!(
        "&username={user}&password={password}&action=sign_in"
    ));
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    response.headers()["location"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_person_signs_in_and_back_and_refresh_stay_signed_in() {
    run(
        "a_person_signs_in_and_back_and_refresh_stay_signed_in",
        |browser| async move {
            let demo = Demo::builtin(Options::default()).await;
            start(&browser, &demo).await;
            browser.screenshot("sign-in").await;
            sign_in_at_provider(&browser, "alice", "looking-glass").await;
            browser.expect_heading("Sign in to continue").await;
            assert!(browser.text().await.contains("Wrong user or password."));
            sign_in_at_provider(&browser, "alice", "wonderland").await;
            confirm(&browser, &demo, "Alice Liddell").await;
            assert!(browser.text().await.contains("alice@example.com"));
            let session = browser
                .client
                .get_named_cookie(SESSION_COOKIE)
                .await
                .unwrap();
            assert_eq!(session.http_only(), Some(true));
            assert!(demo.live_flows().is_empty(), "the flow finished");

            browser.client.refresh().await.unwrap();
            browser.expect_heading("Signed in as Alice Liddell").await;
            // Back: the sign-in's last page, whose flow has finished, sends
            // the browser where the sign-in landed.
            browser.client.back().await.unwrap();
            browser.expect_heading("Signed in as Alice Liddell").await;
            browser.client.refresh().await.unwrap();
            browser.expect_heading("Signed in as Alice Liddell").await;

            // Demo ID has no end_session_endpoint: the page says the
            // sign-out is this site's only.
            assert!(
                browser
                    .text()
                    .await
                    .contains("Signing out ends your session on this site only")
            );
            browser.click("Sign out").await;
            browser.expect_heading("Welcome").await;
            assert!(
                browser
                    .text()
                    .await
                    .contains("You are signed out of this site, but not at Demo ID")
            );

            // Pages of its own for wrong addresses and methods.
            browser.open(&demo.url("/nowhere")).await;
            expect_page(&browser, &pages::NOT_FOUND).await;
            browser.open(&demo.url("/sso/start")).await;
            expect_page(&browser, &pages::METHOD_NOT_ALLOWED).await;
            browser.click("Start page").await;
            browser.expect_heading("Welcome").await;
        },
    )
    .await;
}

#[tokio::test]
async fn cancelling_is_not_a_failure() {
    run("cancelling_is_not_a_failure", |browser| async move {
        let demo = Demo::builtin(Options::default()).await;
        // At the provider.
        start(&browser, &demo).await;
        browser.click("Cancel").await;
        browser.expect_heading("Welcome").await;
        assert!(browser.text().await.contains("You cancelled the sign-in."));
        // At the app's confirmation.
        start(&browser, &demo).await;
        sign_in_at_provider(&browser, "bob", "builder").await;
        browser.expect_heading("Continue?").await;
        browser.click("Cancel").await;
        browser.expect_heading("Welcome").await;
        assert!(browser.text().await.contains("You cancelled the sign-in."));
        assert!(demo.live_flows().is_empty(), "the flows ended");
        // Back to the confirmation: it says the sign-in was cancelled.
        browser.client.back().await.unwrap();
        expect_page(&browser, &pages::CANCELLED).await;
        browser.click("Sign in again").await;
        browser.expect_heading("Sign in to continue").await;
    })
    .await;
}

#[tokio::test]
async fn a_replayed_callback_says_the_link_was_used() {
    run(
        "a_replayed_callback_says_the_link_was_used",
        |browser| async move {
            let demo = Demo::builtin(Options::default()).await;
            start(&browser, &demo).await;
            let callback = callback_url(&browser.url().await, "alice", "wonderland").await;
            browser.open(&callback).await;
            browser.expect_heading("Continue?").await;
            browser.open(&callback).await;
            expect_page(&browser, &pages::ALREADY_USED).await;
            // The flow is still there: the confirmation goes on.
            browser.open(&demo.url("/sso")).await;
            confirm(&browser, &demo, "Alice Liddell").await;
            // Signed in, the old link lands where the sign-in did.
            browser.open(&callback).await;
            browser.expect_heading("Signed in as Alice Liddell").await;
            assert_eq!(browser.url().await, demo.url("/"));
        },
    )
    .await;
}

#[tokio::test]
async fn a_tampered_flow_cookie_finds_no_sign_in() {
    run(
        "a_tampered_flow_cookie_finds_no_sign_in",
        |browser| async move {
            let demo = Demo::builtin(Options::default()).await;
            start(&browser, &demo).await;
            sign_in_at_provider(&browser, "bob", "builder").await;
            browser.expect_heading("Continue?").await;
            let [cookie] = &flow_cookies(&browser).await[..] else {
                panic!("one sign-in, one flow cookie");
            };
            let mut value = cookie.value().to_owned();
            // Another id under the same signature.
            let last = value.pop().unwrap();
            value.push(if last == '0' { '1' } else { '0' });
            let mut forged = cookie.clone();
            forged.set_value(value);
            let name = cookie.name().to_owned();
            browser.client.delete_cookie(&name).await.unwrap();
            browser.client.add_cookie(forged).await.unwrap();
            // The confirmation again (its link names the flow): the
            // browser's cookie for it is not one the app signed.
            browser.client.refresh().await.unwrap();
            expect_page(&browser, &pages::OTHER_BROWSER).await;
            assert_eq!(demo.live_flows().len(), 1, "the real flow is untouched");
            // Starting again works.
            browser.click("Sign in again").await;
            browser.expect_heading("Sign in to continue").await;
            sign_in_at_provider(&browser, "bob", "builder").await;
            confirm(&browser, &demo, "Bob the Builder").await;
        },
    )
    .await;
}

#[tokio::test]
async fn a_sign_in_left_longer_than_its_lifetime_goes_back_to_the_provider_and_on() {
    run(
        "a_sign_in_left_longer_than_its_lifetime_goes_back_to_the_provider_and_on",
        |browser| async move {
            // Short, for the test to wait past it; each request of the
            // sign-in that starts again slides it.
            let idle = Duration::from_secs(3);
            let demo = Demo::builtin(Options {
                idle_timeout: idle,
                ..Options::default()
            })
            .await;
            // From a page that needs a signed-in person.
            browser.open(&demo.url("/account")).await;
            browser.expect_heading("Sign in to see your account").await;
            browser.click("Sign in with Demo ID").await;
            browser.expect_heading("Sign in to continue").await;
            let first = reference_at_provider(&browser).await;
            // The person walks away from the provider's form.
            tokio::time::sleep(idle + Duration::from_millis(1500)).await;
            assert!(demo.redis.keys().is_empty(), "the sign-in expired");
            sign_in_at_provider(&browser, "alice", "wonderland").await;
            // The provider's answer came for an expired sign-in: it starts
            // again by itself, back at the provider.
            browser.expect_heading("Sign in to continue").await;
            let second = reference_at_provider(&browser).await;
            assert_ne!(first, second, "a new sign-in");
            sign_in_at_provider(&browser, "alice", "wonderland").await;
            continue_and_stay(&browser, "Alice Liddell").await;
            // Where the person was going.
            browser.expect_heading("Your account").await;
            assert_eq!(browser.url().await, demo.url("/account"));
            assert!(browser.text().await.contains("Signed in as Alice Liddell"));
        },
    )
    .await;
}

#[tokio::test]
async fn redis_stopped_mid_flow_is_said_plainly_and_the_next_attempt_works() {
    run(
        "redis_stopped_mid_flow_is_said_plainly_and_the_next_attempt_works",
        |browser| async move {
            let mut demo = Demo::builtin(Options::default()).await;
            start(&browser, &demo).await;
            demo.redis.stop();
            sign_in_at_provider(&browser, "alice", "wonderland").await;
            expect_page(&browser, &pages::UNAVAILABLE).await;
            browser.screenshot("store-unavailable").await;
            demo.redis.restart();
            // The restarted server is empty: the flow is gone, and at the
            // first try the sign-in starts again by itself, back at the
            // provider: the store heals by itself (a load that fails on the
            // connection Redis dropped is sent again once on a fresh one),
            // so nobody sees a 503 after Redis is back.
            browser.click("Try again").await;
            browser
                .client
                .wait()
                .at_most(Duration::from_secs(30))
                .for_element(fantoccini::Locator::XPath(&format!(
                    "//h1[.='Sign in to continue' or .='{}']",
                    pages::UNAVAILABLE.title
                )))
                .await
                .unwrap();
            browser.expect_heading("Sign in to continue").await;
            sign_in_at_provider(&browser, "alice", "wonderland").await;
            confirm(&browser, &demo, "Alice Liddell").await;
        },
    )
    .await;
}

#[tokio::test]
async fn a_sign_in_started_with_redis_stopped_is_sent_again_by_its_form_once_redis_is_back() {
    run(
        "a_sign_in_started_with_redis_stopped_is_sent_again_by_its_form_once_redis_is_back",
        |browser| async move {
            let mut demo = Demo::builtin(Options::default()).await;
            browser.open(&demo.url("/")).await;
            browser.expect_heading("Welcome").await;
            demo.redis.stop();
            demo.until_unreachable().await;
            // "Sign in" is a POST that starts a flow: nothing could be
            // written, and the page says so.
            browser.click("Sign in with Demo ID").await;
            expect_page(&browser, &pages::UNAVAILABLE).await;
            assert_eq!(browser.url().await, demo.url("/sso/start"));
            browser.screenshot("store-unavailable-at-start").await;
            demo.redis.restart();
            // Its "Try again" posts the same form again (a link would load
            // /sso/start as a GET: 405).
            browser.click("Try again").await;
            browser.expect_heading("Sign in to continue").await;
            sign_in_at_provider(&browser, "alice", "wonderland").await;
            confirm(&browser, &demo, "Alice Liddell").await;
            let starts = demo.received_at("/sso/start");
            assert_eq!(
                starts
                    .iter()
                    .map(|seen| seen.method.as_str())
                    .collect::<Vec<_>>(),
                ["POST", "POST"],
                "the retry was a POST: {starts:?}"
            );
        },
    )
    .await;
}

#[tokio::test]
async fn a_step_submitted_with_redis_stopped_is_sent_again_by_its_form_and_goes_through() {
    run(
        "a_step_submitted_with_redis_stopped_is_sent_again_by_its_form_and_goes_through",
        |browser| async move {
            let mut demo = Demo::builtin(Options::default()).await;
            start(&browser, &demo).await;
            sign_in_at_provider(&browser, "alice", "wonderland").await;
            browser.expect_heading("Continue?").await;
            // Redis goes down with the sign-in kept on disk (a server with
            // persistence) while the person reads the question.
            demo.redis.save();
            demo.redis.stop();
            demo.until_unreachable().await;
            browser.click("Continue as Alice Liddell").await;
            expect_page(&browser, &pages::UNAVAILABLE).await;
            demo.redis.restart();
            browser.click("Try again").await;
            // The answer went through: on to the next question.
            browser.expect_heading("Stay signed in?").await;
            browser.click("Yes, stay signed in").await;
            browser.expect_heading("Signed in as Alice Liddell").await;
        },
    )
    .await;
}

#[tokio::test]
async fn two_tabs_each_finish_their_own_sign_in() {
    run(
        "two_tabs_each_finish_their_own_sign_in",
        |browser| async move {
            let demo = Demo::builtin(Options::default()).await;
            // Tab A starts a sign-in, then tab B (another window of the same
            // browser, one cookie jar) starts another.
            let tab_a = browser.client.window().await.unwrap();
            start(&browser, &demo).await;
            let reference_a = reference_at_provider(&browser).await;
            let tab_b = browser.client.new_window(true).await.unwrap().handle;
            browser
                .client
                .switch_to_window(tab_b.clone())
                .await
                .unwrap();
            start(&browser, &demo).await;
            let reference_b = reference_at_provider(&browser).await;
            assert_ne!(reference_a, reference_b);
            assert_eq!(demo.live_flows().len(), 2, "B's start left A's flow");

            // A finishes first, on its own flow's link, though B's is the
            // browser's newest.
            browser.client.switch_to_window(tab_a).await.unwrap();
            sign_in_at_provider(&browser, "alice", "wonderland").await;
            browser.expect_heading("Continue?").await;
            assert_eq!(
                browser.url().await,
                demo.url(&format!("/sso?flow={reference_a}.2"))
            );
            let mut held: Vec<String> = flow_cookies(&browser)
                .await
                .iter()
                .map(|cookie| cookie.name().to_owned())
                .collect();
            held.sort();
            let mut expected = [
                format!("{FLOW_COOKIE_PREFIX}{reference_a}"),
                format!("{FLOW_COOKIE_PREFIX}{reference_b}"),
            ];
            expected.sort();
            assert_eq!(held, expected, "one cookie per sign-in");
            confirm(&browser, &demo, "Alice Liddell").await;
            assert_eq!(demo.live_flows().len(), 1, "B's flow is still there");

            // Then B.
            browser.client.switch_to_window(tab_b).await.unwrap();
            sign_in_at_provider(&browser, "bob", "builder").await;
            browser.expect_heading("Continue?").await;
            assert_eq!(
                browser.url().await,
                demo.url(&format!("/sso?flow={reference_b}.2"))
            );
            confirm(&browser, &demo, "Bob the Builder").await;
            assert!(demo.live_flows().is_empty(), "both flows finished");
            for cookie in flow_cookies(&browser).await {
                assert!(
                    cookie.expires().is_some(),
                    "an ended flow's cookie is kept only for its replays: {cookie}"
                );
            }
        },
    )
    .await;
}

#[tokio::test]
async fn a_form_post_callback_comes_back_across_sites() {
    run(
        "a_form_post_callback_comes_back_across_sites",
        |browser| async move {
            let demo = Demo::builtin(Options::form_post()).await;
            start(&browser, &demo).await;
            assert!(browser.url().await.contains("response_mode=form_post"));
            let cookie = browser.client.get_all_cookies().await.unwrap();
            assert!(
                cookie.is_empty(),
                "the provider's site (localhost) sees none of the app's cookies: {cookie:?}"
            );
            // The provider's page posts the code back to 127.0.0.1: a
            // cross-site POST, which carries only SameSite=None cookies.
            let reference = reference_at_provider(&browser).await;
            sign_in_at_provider(&browser, "bob", "builder").await;
            browser.expect_heading("Continue?").await;
            let [flow] = &flow_cookies(&browser).await[..] else {
                panic!("one sign-in, one flow cookie");
            };
            assert_eq!(flow.name(), format!("{FLOW_COOKIE_PREFIX}{reference}"));
            assert_eq!(flow.same_site(), Some(SameSite::None), "{flow}");
            assert_eq!(flow.secure(), Some(true), "{flow}");
            // The callback came as the browser's cross-site POST, and found
            // its flow: the cookie came with it.
            let callbacks = demo.received_at(CALLBACK_PATH);
            let [callback] = &callbacks[..] else {
                panic!("one callback: {callbacks:?}");
            };
            assert_eq!(callback.method, "POST", "{callback:?}");
            assert_eq!(
                callback.fetch_site.as_deref(),
                Some("cross-site"),
                "{callback:?}"
            );
            assert!(
                callback.cookies.contains(&flow.name().to_owned()),
                "{callback:?}"
            );
            confirm(&browser, &demo, "Bob the Builder").await;
            // The sign-in's own forms were the app's own, same-origin POSTs.
            let posts: Vec<_> = demo
                .received_at("/sso")
                .into_iter()
                .filter(|request| request.method == "POST")
                .collect();
            let [confirmation, stay] = &posts[..] else {
                panic!("a confirmation and a stay: {posts:?}");
            };
            for post in [confirmation, stay] {
                assert_eq!(post.fetch_site.as_deref(), Some("same-origin"), "{post:?}");
            }
        },
    )
    .await;
}

#[tokio::test]
async fn a_form_post_callback_without_cross_site_callbacks_says_it_came_from_another_site() {
    run(
        "a_form_post_callback_without_cross_site_callbacks_says_it_came_from_another_site",
        |browser| async move {
            let demo = Demo::builtin(Options {
                cross_site_callbacks: false,
                ..Options::form_post()
            })
            .await;
            start(&browser, &demo).await;
            assert!(browser.url().await.contains("response_mode=form_post"));
            let [key] = &demo.redis.keys()[..] else {
                panic!("one flow stored");
            };
            let before = demo.redis.get(key);
            sign_in_at_provider(&browser, "alice", "wonderland").await;
            expect_page(&browser, &pages::CROSS_SITE).await;
            browser.screenshot("cross-site").await;
            // The browser posted the answer across sites without the flow's
            // `SameSite=Lax` cookie, so the pipeline could not take it.
            let [flow] = &flow_cookies(&browser).await[..] else {
                panic!("one sign-in, one flow cookie");
            };
            assert_eq!(flow.same_site(), Some(SameSite::Lax), "{flow}");
            let callbacks = demo.received_at(CALLBACK_PATH);
            let [callback] = &callbacks[..] else {
                panic!("one callback: {callbacks:?}");
            };
            assert_eq!(callback.method, "POST", "{callback:?}");
            assert_eq!(
                callback.fetch_site.as_deref(),
                Some("cross-site"),
                "{callback:?}"
            );
            assert!(callback.cookies.is_empty(), "{callback:?}");
            assert_eq!(demo.redis.get(key), before, "the flow is left as it was");
        },
    )
    .await;
}

/// Goes Back until the page open is the provider's (its sign-in form).
async fn back_to_the_provider(browser: &Browser, demo: &Demo) {
    for _ in 0..6 {
        browser.client.back().await.unwrap();
        // Let the page Back brought (or the redirect it answered) settle.
        browser.find("h1").await;
        if browser.url().await.starts_with(&demo.settings.oidc.issuer) {
            return;
        }
    }
    panic!(
        "Back never reached the provider: at {}",
        browser.url().await
    );
}

#[tokio::test]
async fn refresh_back_and_the_providers_answer_again_after_signing_in_land_signed_in() {
    run(
        "refresh_back_and_the_providers_answer_again_after_signing_in_land_signed_in",
        |browser| async move {
            let demo = Demo::builtin(Options::default()).await;
            browser.open(&demo.url("/account")).await;
            browser.expect_heading("Sign in to see your account").await;
            browser.click("Sign in with Demo ID").await;
            browser.expect_heading("Sign in to continue").await;
            sign_in_at_provider(&browser, "alice", "wonderland").await;
            continue_and_stay(&browser, "Alice Liddell").await;
            browser.expect_heading("Your account").await;
            assert_eq!(browser.url().await, demo.url("/account"));

            // Refresh after signing in.
            browser.client.refresh().await.unwrap();
            browser.expect_heading("Your account").await;
            assert!(browser.text().await.contains("Signed in as Alice Liddell"));

            // Back to the provider's page (the sign-in's own pages on the
            // way answer from the finished flow), and sign in there again:
            // the provider sends its answer for the finished sign-in again,
            // which lands where the sign-in did, signed in, not on an error.
            back_to_the_provider(&browser, &demo).await;
            browser.expect_heading("Sign in to continue").await;
            sign_in_at_provider(&browser, "alice", "wonderland").await;
            browser.expect_heading("Your account").await;
            assert_eq!(browser.url().await, demo.url("/account"));
            assert!(browser.text().await.contains("Signed in as Alice Liddell"));
            assert!(demo.live_flows().is_empty(), "no sign-in started again");
            let replays = demo
                .received_at(CALLBACK_PATH)
                .into_iter()
                .filter(|request| request.method == "GET")
                .count();
            assert_eq!(replays, 2, "the provider's answer came twice");
        },
    )
    .await;
}

#[tokio::test]
async fn back_to_an_earlier_page_then_submit_does_not_answer_the_current_step() {
    run(
        "back_to_an_earlier_page_then_submit_does_not_answer_the_current_step",
        |browser| async move {
            let demo = Demo::builtin(Options::default()).await;
            start(&browser, &demo).await;
            sign_in_at_provider(&browser, "bob", "builder").await;
            browser.expect_heading("Continue?").await;
            browser.click("Continue as Bob the Builder").await;
            browser.expect_heading("Stay signed in?").await;
            let [key] = &demo.redis.keys()[..] else {
                panic!("one flow");
            };
            let before = demo.redis.get(key);

            // Back: the confirmation, as the browser kept it (its cache) or
            // as the app shows it again (the step the sign-in is on now).
            browser.client.back().await.unwrap();
            browser
                .client
                .wait()
                .at_most(Duration::from_secs(30))
                .for_element(fantoccini::Locator::XPath(
                    "//h1[.='Continue?' or .='Stay signed in?']",
                ))
                .await
                .unwrap();
            let heading = browser.find("h1").await.text().await.unwrap();
            if heading == "Continue?" {
                // Kept by the browser: answering it again is not used.
                browser.click("Continue as Bob the Builder").await;
                browser.expect_heading("Stay signed in?").await;
                assert!(
                    browser
                        .text()
                        .await
                        .contains("That page was out of date, so its answer was not used")
                );
                browser.screenshot("stale-page").await;
            }
            assert_eq!(demo.redis.get(key), before, "nothing moved");
            browser.click("Yes, stay signed in").await;
            browser.expect_heading("Signed in as Bob the Builder").await;
        },
    )
    .await;
}

#[tokio::test]
async fn a_background_fetch_of_the_start_route_does_not_push_out_the_sign_in_in_use() {
    run(
        "a_background_fetch_of_the_start_route_does_not_push_out_the_sign_in_in_use",
        |browser| async move {
            let demo = Demo::builtin(Options::default()).await;
            // The tab in use: at the provider's form.
            let tab = browser.client.window().await.unwrap();
            start(&browser, &demo).await;
            let reference = reference_at_provider(&browser).await;
            // Another tab of the app's runs a script that fetches the
            // start routes, more often than the browser keeps sign-ins.
            let other = browser.client.new_window(true).await.unwrap().handle;
            browser.client.switch_to_window(other).await.unwrap();
            browser.open(&demo.url("/")).await;
            browser.expect_heading("Welcome").await;
            let statuses = browser
                .client
                .execute_async(
                    "const done = arguments[arguments.length - 1];
                     (async () => {
                       const statuses = [];
                       for (let i = 0; i < 6; i++) {
                         for (const route of ['/sso/start', '/oauth/start']) {
                           const response = await fetch(route, {method: 'POST', redirect: 'manual'});
                           statuses.push(response.status);
                         }
                       }
                       return statuses;
                     })().then(done, (error) => done(String(error)));",
                    vec![],
                )
                .await
                .unwrap();
            let statuses: Vec<u64> = serde_json::from_value(statuses.clone())
                .unwrap_or_else(|_| panic!("the script's statuses: {statuses}"));
            assert_eq!(statuses, [400; 12], "refused: not a navigation");
            let [flow] = &flow_cookies(&browser).await[..] else {
                panic!("still one flow cookie");
            };
            assert_eq!(flow.name(), format!("{FLOW_COOKIE_PREFIX}{reference}"));
            assert_eq!(demo.redis.keys().len(), 1, "nothing started");
            // The sign-in in use goes on.
            browser.client.switch_to_window(tab).await.unwrap();
            sign_in_at_provider(&browser, "alice", "wonderland").await;
            confirm(&browser, &demo, "Alice Liddell").await;
        },
    )
    .await;
}

#[tokio::test]
async fn signs_in_with_the_plain_oauth_provider() {
    run(
        "signs_in_with_the_plain_oauth_provider",
        |browser| async move {
            let demo = Demo::builtin(Options::default()).await;
            browser.open(&demo.url("/")).await;
            browser.click("Sign in with Demo Hub").await;
            browser.expect_heading("Sign in to continue").await;
            let at = browser.url().await;
            assert!(
                at.starts_with(&format!("{}/hub/authorize?", demo.settings.oidc.issuer)),
                "{at}"
            );
            assert_eq!(browser.client.title().await.unwrap(), "Sign in · Demo Hub");
            sign_in_at_provider(&browser, "bob", "builder").await;
            browser.expect_heading("Continue?").await;
            assert!(
                browser
                    .text()
                    .await
                    .contains("According to Demo Hub, you are Bob the Builder")
            );
            confirm(&browser, &demo, "Bob the Builder").await;
            browser.open(&demo.url("/account")).await;
            browser.expect_heading("Your account").await;
            let text = browser.text().await;
            assert!(text.contains("with Demo Hub"), "{text}");
            assert!(
                text.contains("1002"),
                "GitHub's way: the numeric id: {text}"
            );
        },
    )
    .await;
}

#[tokio::test]
async fn the_card_keeps_a_margin_on_a_small_screen() {
    run(
        "the_card_keeps_a_margin_on_a_small_screen",
        |browser| async move {
            let demo = Demo::builtin(Options::default()).await;
            browser.client.set_window_size(375, 812).await.unwrap();
            start(&browser, &demo).await;
            let provider_form = browser.url().await;
            sign_in_at_provider(&browser, "alice", "wonderland").await;
            browser.expect_heading("Continue?").await;
            let confirmation = browser.url().await;
            for url in [
                demo.url("/"),
                demo.url("/account"),
                provider_form,
                confirmation,
            ] {
                browser.open(&url).await;
                browser.find("main").await;
                let measured = browser
                    .client
                    .execute(
                        "const card = document.querySelector('main').getBoundingClientRect();
                         return [window.innerWidth, card.left, card.right,
                                 document.documentElement.scrollWidth];",
                        vec![],
                    )
                    .await
                    .unwrap();
                let [width, left, right, scroll]: [f64; 4] =
                    serde_json::from_value(measured).unwrap();
                assert!(width <= 400.0, "a small screen: {width} px wide");
                assert!(left >= 8.0, "{url}: the card's left edge at {left} px");
                assert!(
                    right <= width - 8.0,
                    "{url}: the card's right edge at {right} of {width} px"
                );
                assert!(scroll <= width, "{url}: nothing to scroll sideways");
            }
            browser.open(&demo.url("/")).await;
            browser.screenshot("small-screen").await;
        },
    )
    .await;
}
