//! Expired flows and lifetimes per pipeline (issue 16). A flow whose record
//! expired starts again by itself when its pipeline opts in
//! (`restart_on_expiry`): from the browser that holds its cookie, as a new
//! flow of the same kind towards the same `return_to` (which the cookie
//! carries), its first step entered, never its callback step; a request
//! that could not start a flow (cross-site, a background request) cannot
//! restart one either. Without the option the answer is `expired`, with the
//! `return_to`. Each pipeline has its own idle timeout and maximum
//! lifetime; the record's TTL is never longer than what is left of it, and
//! a load past the deadline reads as expired. Real HTTP, a private
//! redis-server (`TTL` read through the test kit), the pipeline of
//! `common/forgiving.rs`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::common::{
    ended::{self, DEFAULT_WINDOW, ended_record},
    forgiving::{App, answer, authorize, calls, refused, sso},
    *,
};

/// Now, in seconds since the Unix epoch (as the engine counts deadlines).
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The stored fields (the record's `data`) under `key`.
fn fields(redis: &RedisServer, key: &str) -> Value {
    let raw = redis.get(key).expect("the flow's record exists");
    serde_json::from_slice::<Value>(&raw).unwrap()["data"].clone()
}

/// The new flow a restart answered with: its `state` and `to` from the
/// first step's page.
fn restarted_page(body: &str) -> (String, String) {
    let (state, to) = body
        .strip_prefix("authorize state=")
        .and_then(|rest| rest.split_once(" to="))
        .unwrap_or_else(|| panic!("the first step's page: {body}"));
    (state.to_owned(), to.to_owned())
}

/// The provider's redirect back with `state`, from the same browser, after
/// the flow's record expired: a new flow of the same kind towards the same
/// `return_to`, its first step rendered (a redirect to the provider again,
/// with a new nonce), the callback step never run, the expired flow's
/// cookie dropped. Two round trips: the load that finds nothing, the new
/// flow's `SET NX`.
#[tokio::test]
async fn an_expired_flow_starts_again_from_its_browser_with_its_kind_and_return_to() {
    let app = App::new(|b| b.restart_on_expiry(true)).await;
    let browser = browser();
    // Warm the script cache for the load below: the first EVALSHA of a
    // script on a fresh server costs a NOSCRIPT and a SCRIPT LOAD.
    authorize(&app, &browser, "").await;
    browser.get(app.url("/sso")).send().await.unwrap();
    let (key, state) = authorize(&app, &browser, "kind=link&to=/billing?plan=team").await;
    app.redis.del(&key);

    let callback = app.url(&format!("/sso?code=c0de&state={state}"));
    let (restarted, trips, commands) = app.measure(browser.get(&callback)).await;
    let set = set_cookies(restarted.headers());
    let (status, body) = answer(restarted).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (trips, commands),
        (2, calls(&[("evalsha", 1), ("get", 1), ("set", 1)])),
        "the load that finds the record gone (no EXPIRE), the new flow's SET NX"
    );
    let (new_state, to) = restarted_page(&body);
    assert_eq!(to, "/billing?plan=team", "the return_to is kept");
    let (old_reference, old_nonce) = state.split_once('.').unwrap();
    let (new_reference, new_nonce) = new_state.split_once('.').unwrap();
    assert_ne!(new_nonce, old_nonce, "a new nonce");
    assert_ne!(new_reference, old_reference, "a new flow");
    assert_eq!(app.counts.callbacks(), 0, "the callback step never ran");

    let old_name = format!("pipeline_id.{old_reference}");
    let new_name = format!("pipeline_id.{new_reference}");
    assert!(
        set.iter().any(|c| c.name() == old_name && removes(c)),
        "the expired flow's cookie is dropped: {set:?}"
    );
    let new_cookie = set
        .iter()
        .find(|c| c.name() == new_name && !removes(c))
        .expect("the new flow's cookie");
    let new_key = flow_key(new_cookie.value());
    let stored = fields(&app.redis, &new_key);
    assert_eq!(stored["flow"], "link", "the same kind");
    assert_eq!(stored["return_to"], "/billing?plan=team");
    assert_eq!(stored["step_index"], 1, "the first step ran and moved on");
    assert_eq!(stored["nonce"], new_nonce);

    // The old callback again: its flow is gone from this browser too; the
    // new flow is untouched and goes on with its own state.
    let again = browser.get(&callback).send().await.unwrap();
    assert_eq!(answer(again).await, refused("outcome=other_browser"));
    assert_eq!(app.counts.callbacks(), 0);
    let back = browser
        .get(app.url(&format!("/sso?code=c0de&state={new_state}")))
        .send()
        .await
        .unwrap();
    let (status, body) = answer(back).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.starts_with("signed in link="), "{body}");
}

/// A flow left past its idle timeout (1 s here) expires in Redis by
/// itself; the browser, which still holds its cookie, is started again.
#[tokio::test]
async fn a_flow_left_past_its_idle_timeout_starts_again() {
    let _serial = SERIAL.lock().await;
    let app = App::new(|b| {
        b.idle_timeout(Duration::from_secs(1))
            .restart_on_expiry(true)
    })
    .await;
    let browser = browser();
    let (key, state) = authorize(&app, &browser, "to=/billing").await;
    assert_eq!(app.redis.ttl(&key), 1, "the idle timeout is the TTL");

    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(app.redis.keys(), Vec::<String>::new(), "expired");
    let back = browser
        .get(app.url(&format!("/sso?code=c0de&state={state}")))
        .send()
        .await
        .unwrap();
    let (status, body) = answer(back).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(restarted_page(&body).1, "/billing");
    assert_eq!(app.counts.callbacks(), 0);
}

/// A request the browser marks as not a navigation (a `fetch`, a frame, a
/// prefetch) does not start the expired flow again, unless the pipeline
/// lets such requests start flows (`background_start`): it gets `expired`
/// with the `return_to`, no step runs, and the cookie stays for the
/// person's own navigation. The provider's redirect back, a cross-site
/// navigation, does restart it, without `cross_site_start`: a restart takes
/// the expired flow's place and uses nothing of the request.
#[tokio::test]
async fn background_requests_do_not_restart_a_flow_and_the_providers_redirect_back_does() {
    let cases: [(&str, &[(&str, &str)]); 3] = [
        (
            "fetch",
            &[("sec-fetch-mode", "cors"), ("sec-fetch-dest", "empty")],
        ),
        (
            "iframe",
            &[("sec-fetch-mode", "navigate"), ("sec-fetch-dest", "iframe")],
        ),
        (
            "prefetch",
            &[("sec-fetch-mode", "navigate"), ("sec-purpose", "prefetch")],
        ),
    ];
    let app = App::new(|b| b.restart_on_expiry(true)).await;
    for (what, headers) in cases {
        let browser = browser();
        let (key, state) = authorize(&app, &browser, "to=/billing").await;
        app.redis.del(&key);
        let keys = app.redis.keys();
        let mut request = browser.get(app.url(&format!("/sso?code=c0de&state={state}")));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let refused_restart = request.send().await.unwrap();
        assert_eq!(
            flow_cookie(&refused_restart),
            None,
            "{what}: the expired flow's cookie is left for a restart"
        );
        assert_eq!(
            answer(refused_restart).await,
            refused("outcome=expired return_to=/billing"),
            "{what}"
        );
        assert_eq!(app.redis.keys(), keys, "{what}: no flow started");
        // The person's own navigation, from the same browser, restarts it.
        let navigation = browser
            .get(app.url(&format!("/sso?code=c0de&state={state}")))
            .header("sec-fetch-site", "same-origin")
            .header("sec-fetch-mode", "navigate")
            .header("sec-fetch-dest", "document")
            .send()
            .await
            .unwrap();
        let (status, body) = answer(navigation).await;
        assert_eq!(status, StatusCode::OK, "{what}, then a navigation: {body}");
        assert_eq!(restarted_page(&body).1, "/billing", "{what}");
    }
    assert_eq!(app.counts.callbacks(), 0);

    // The provider's redirect back, a cross-site navigation, restarts it,
    // and drops no other flow of the browser: the browser holds as many
    // flows as the layer keeps (5), the expired one among them.
    let browser = browser();
    let (key, state) = authorize(&app, &browser, "to=/billing").await;
    for _ in 0..4 {
        authorize(&app, &browser, "to=/other").await;
    }
    app.redis.del(&key);
    let back = browser
        .get(app.url(&format!("/sso?code=c0de&state={state}")))
        .header("sec-fetch-site", "cross-site")
        .header("sec-fetch-mode", "navigate")
        .header("sec-fetch-dest", "document")
        .send()
        .await
        .unwrap();
    let removed: Vec<_> = set_cookies(back.headers())
        .into_iter()
        .filter(|cookie| removes(cookie))
        .collect();
    assert_eq!(
        removed.len(),
        1,
        "only the expired flow's cookie goes: {removed:?}"
    );
    let (status, body) = answer(back).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(restarted_page(&body).1, "/billing");
    assert_eq!(
        app.counts.callbacks(),
        0,
        "the provider's code is not spent"
    );
}

/// Only the browser that holds the expired flow's cookie can restart it:
/// another one, with the flow's `state`, finds nothing.
#[tokio::test]
async fn another_browser_cannot_restart_an_expired_flow() {
    let app = App::new(|b| b.restart_on_expiry(true)).await;
    let (key, state) = authorize(&app, &browser(), "to=/billing").await;
    app.redis.del(&key);
    let elsewhere = browser()
        .get(app.url(&format!("/sso?code=c0de&state={state}")))
        .send()
        .await
        .unwrap();
    assert_eq!(answer(elsewhere).await, refused("outcome=other_browser"));
    assert_eq!(app.redis.keys(), Vec::<String>::new());
}

/// Without `restart_on_expiry`, an expired flow is `expired`, and the
/// error handler gets the flow's `return_to` (from its cookie: the record
/// is gone) to offer a way on; the cookie is dropped.
#[tokio::test]
async fn without_restart_an_expired_flow_is_expired_with_its_return_to() {
    let app = App::new(|b| b).await;
    let browser = browser();
    let (key, state) = authorize(&app, &browser, "to=/billing").await;
    app.redis.del(&key);
    let back = browser
        .get(app.url(&format!("/sso?code=c0de&state={state}")))
        .send()
        .await
        .unwrap();
    assert!(flow_cookie(&back).is_some_and(|c| removes(&c)));
    assert_eq!(
        answer(back).await,
        refused("outcome=expired return_to=/billing")
    );
    assert_eq!(app.redis.keys(), Vec::<String>::new());
    assert_eq!(app.counts.callbacks(), 0);
}

/// Pipelines with their own lifetimes behind one layer (whose TTL is the
/// default 10 minutes): a ten-minute sign-in, a day-long wizard, and one
/// that keeps the layer's.
#[tokio::test]
async fn each_pipeline_has_its_own_idle_timeout_behind_one_layer() {
    let app = App::serving(
        |counts| {
            vec![
                sso("signin", counts, None, |b| {
                    b.idle_timeout(Duration::from_secs(60))
                }),
                sso("wizard", counts, None, |b| {
                    b.idle_timeout(Duration::from_secs(24 * 3600))
                }),
                sso("plain", counts, None, |b| b),
            ]
        },
        |layer| layer,
    )
    .await;
    let browser = browser();
    for (name, ttls) in [
        ("signin", 55..=60),
        ("wizard", 86_395..=86_400),
        ("plain", 595..=600),
    ] {
        let started = browser
            .get(app.url(&format!("/{name}/start")))
            .send()
            .await
            .unwrap();
        let key = started_flow_key(&started);
        let (status, body) = answer(started).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let ttl = app.redis.ttl(&key);
        assert!(ttls.contains(&ttl), "{name}: TTL {ttl}");
        // Sliding: shortened behind the layer's back, a load sets it again.
        app.redis.expire(&key, 30);
        let state = restarted_page(&body).0;
        let back = browser
            .get(app.url(&format!("/{name}?code=c0de&state={state}")))
            .send()
            .await
            .unwrap();
        assert_eq!(back.status(), StatusCode::OK, "{name}");
        let ttl = app.redis.ttl(&key);
        assert!(ttls.contains(&ttl), "{name}: TTL {ttl} after a request");
    }
}

/// With a maximum lifetime the record keeps its deadline, and its TTL,
/// set at start and at every request, is never longer than what is left
/// before it, however long the idle timeout.
#[tokio::test]
async fn the_records_ttl_is_never_longer_than_what_is_left_of_its_lifetime() {
    let _serial = SERIAL.lock().await;
    let app = App::new(|b| {
        b.idle_timeout(Duration::from_secs(600))
            .max_lifetime(Duration::from_secs(30))
    })
    .await;
    let browser = browser();
    let before = unix_now();
    let (key, state) = authorize(&app, &browser, "").await;
    let deadline = fields(&app.redis, &key)["deadline"]
        .as_u64()
        .expect("the record keeps its deadline");
    assert!(
        (before + 30..=unix_now() + 30).contains(&deadline),
        "{deadline}"
    );
    let ttl = app.redis.ttl(&key).unsigned_abs();
    assert!(ttl > 0 && ttl <= deadline - before, "TTL {ttl}");

    tokio::time::sleep(Duration::from_secs(2)).await;
    let now = unix_now();
    let back = browser
        .get(app.url(&format!("/sso?code=c0de&state={state}")))
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), StatusCode::OK);
    let ttl = app.redis.ttl(&key).unsigned_abs();
    assert!(
        ttl > 0 && ttl <= deadline - now,
        "TTL {ttl}, {} s left",
        deadline - now
    );
    assert_eq!(fields(&app.redis, &key)["deadline"], json!(deadline));
}

/// A flow loaded past its deadline reads as expired even though its record
/// is still there (kept past the deadline behind the layer's back here):
/// the record's own deadline decides. Without `restart_on_expiry` the
/// answer is `expired` and the flow ends; with it, a new flow starts.
#[tokio::test]
async fn a_flow_loaded_past_its_deadline_reads_as_expired() {
    let _serial = SERIAL.lock().await;
    let lifetime = Duration::from_secs(2);
    let app = App::serving(
        |counts| {
            vec![
                sso("sso", counts, None, |b| b.max_lifetime(lifetime)),
                sso("again", counts, None, |b| {
                    b.max_lifetime(lifetime).restart_on_expiry(true)
                }),
            ]
        },
        |layer| layer,
    )
    .await;
    let mut flows = Vec::new();
    for name in ["sso", "again"] {
        // The cookies are sent by hand: the cookie's Max-Age ends with the
        // flow, and this test is about the record's deadline.
        let client = reqwest::Client::new();
        let started = client
            .get(app.url(&format!("/{name}/start?to=/billing")))
            .send()
            .await
            .unwrap();
        let cookie = flow_cookie(&started).unwrap();
        let key = flow_key(cookie.value());
        let state = restarted_page(&answer(started).await.1).0;
        app.redis.expire(&key, 600);
        flows.push((name, client, cookie, key, state));
    }
    tokio::time::sleep(lifetime + Duration::from_millis(1500)).await;

    for (name, client, cookie, key, state) in flows {
        assert!(app.redis.get(&key).is_some(), "{name}: the record is there");
        let late = client
            .get(app.url(&format!("/{name}?code=c0de&state={state}")))
            .header("cookie", format!("{}={}", cookie.name(), cookie.value()))
            .send()
            .await
            .unwrap();
        let (status, body) = answer(late).await;
        if name == "sso" {
            assert_eq!(
                (status, body.as_str()),
                (
                    StatusCode::BAD_REQUEST,
                    "outcome=expired return_to=/billing"
                )
            );
            ended_record(&app.redis, &key, &ended::failed("expired"), DEFAULT_WINDOW);
        } else {
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(restarted_page(&body).1, "/billing");
        }
    }
    assert_eq!(app.counts.callbacks(), 0, "no callback step ran");
}

/// A sign-in left longer than its maximum lifetime, then continued from
/// the browser that started it, starts again: a live flow's cookie is a
/// session cookie, not one that ends with the flow, so the browser still
/// brings it and is told the flow expired rather than that another browser
/// holds it.
#[tokio::test]
async fn a_flow_left_past_its_max_lifetime_starts_again_from_its_browser() {
    let _serial = SERIAL.lock().await;
    let lifetime = Duration::from_secs(2);
    let app = App::new(|b| b.max_lifetime(lifetime).restart_on_expiry(true)).await;
    let browser = browser();
    let (_, state) = authorize(&app, &browser, "to=/billing").await;
    tokio::time::sleep(lifetime + Duration::from_millis(1500)).await;
    let back = browser
        .get(app.url(&format!("/sso?code=c0de&state={state}")))
        .send()
        .await
        .unwrap();
    let (status, body) = answer(back).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(restarted_page(&body).1, "/billing");
}

/// In plain mode a client can rewrite the ticket its flow cookie carries:
/// a `return_to` changed to another site's address is not used, neither by
/// a restart nor in the error handler's `Failure::return_to`.
#[tokio::test]
async fn a_return_to_forged_in_a_plain_cookie_is_not_used() {
    use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};

    for restart in [true, false] {
        let app = App::new(|b| b.restart_on_expiry(restart)).await;
        let client = reqwest::Client::new();
        let started = client
            .get(app.url("/sso/start?to=/billing"))
            .send()
            .await
            .unwrap();
        let cookie = flow_cookie(&started).unwrap();
        let state = restarted_page(&answer(started).await.1).0;
        let (id, ticket) = cookie.value().split_once('.').unwrap();
        let mut ticket: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(ticket).unwrap()).unwrap();
        assert_eq!(ticket["r"], "/billing", "the ticket carries the return_to");
        ticket["r"] = json!("//evil.example/");
        let forged = format!(
            "{}={id}.{}",
            cookie.name(),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&ticket).unwrap())
        );
        app.redis.del(&flow_key(cookie.value()));

        let back = client
            .get(app.url(&format!("/sso?code=c0de&state={state}")))
            .header("cookie", forged)
            .send()
            .await
            .unwrap();
        let (status, body) = answer(back).await;
        if restart {
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(restarted_page(&body).1, "-", "started with no return_to");
        } else {
            assert_eq!(
                (status, body.as_str()),
                (StatusCode::BAD_REQUEST, "outcome=expired")
            );
        }
    }
}
