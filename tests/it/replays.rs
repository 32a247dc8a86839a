//! An ended flow answers its own replays (issue 16): within the pipeline's
//! replay window the record of a finished, cancelled or failed flow stays,
//! emptied down to how it ended, and its cookie lives as long. The
//! callback delivered again, a refresh or a resubmit of the last step, from
//! the browser that ran the flow, is sent where the flow landed (a finished
//! one) or told how it ended, for one load and no write; another browser
//! and a forged `state` are refused as before. Real HTTP, a private
//! redis-server, round trips counted on the connection and on the server.
//! The pipeline is `common/forgiving.rs`'s.

use std::time::Duration;

use axum::http::StatusCode;

use crate::common::{
    ended::{self, DEFAULT_WINDOW, ended_record, kept_for},
    forgiving::{
        App, Counts, EMAIL, ID_TOKEN, VERIFIER, answer, authorize, calls, finish, location,
        refused, router, sso, to_confirm,
    },
    *,
};

/// The requests that replay a finished flow of `sso`, by what they are.
fn replays(
    walked: &crate::common::forgiving::Walked,
) -> Vec<(&'static str, reqwest::Method, String)> {
    vec![
        (
            "the callback delivered again",
            reqwest::Method::GET,
            format!("/sso?code=c0de&state={}", walked.state),
        ),
        (
            "a refresh of the last step",
            reqwest::Method::GET,
            walked.link.clone(),
        ),
        (
            "a resubmit of the last step",
            reqwest::Method::POST,
            walked.link.clone(),
        ),
        (
            "Back to the flow's route",
            reqwest::Method::GET,
            "/sso".to_owned(),
        ),
    ]
}

/// Each of a finished flow's replays, from the browser that ran it, is a
/// `303` to where the flow landed: one load, nothing written, no second
/// finish hook, no new flow.
#[tokio::test]
async fn a_finished_flows_replays_from_its_browser_are_sent_where_it_landed_for_one_getex() {
    let app = App::new(|b| b).await;
    let browser = browser();
    let (walked, finished) = finish(&app, &browser, "to=/billing").await;
    assert_eq!(finished.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&finished).as_deref(), Some("/billing"));
    kept_for(
        &flow_cookie(&finished).expect("the finish sets the flow's cookie again"),
        DEFAULT_WINDOW,
    );
    let fields = ended_record(&app.redis, &walked.key, &ended::finished(), DEFAULT_WINDOW);
    assert_eq!(fields["ended"]["location"], "/billing", "{fields}");
    let before = app.redis.get(&walked.key);

    for (what, method, path) in replays(&walked) {
        let (replayed, trips, commands) =
            app.measure(browser.request(method, app.url(&path))).await;
        assert_eq!(replayed.status(), StatusCode::SEE_OTHER, "{what}");
        assert_eq!(location(&replayed).as_deref(), Some("/billing"), "{what}");
        assert!(
            set_cookies(replayed.headers()).is_empty(),
            "{what}: no cookie set or removed"
        );
        assert_eq!(
            (trips, commands),
            (1, calls(&[("evalsha", 1), ("get", 1), ("expire", 1)])),
            "{what}: one load, nothing written"
        );
    }
    assert_eq!(app.counts.finishes(), 1, "the finish hook ran once");
    assert_eq!(app.counts.callbacks(), 1, "the callback step ran once");
    assert_eq!(
        app.redis.keys(),
        std::slice::from_ref(&walked.key),
        "no new flow"
    );
    assert_eq!(
        app.redis.get(&walked.key),
        before,
        "the ended record unchanged"
    );
}

/// The same replays from a browser that did not run the flow find nothing
/// (`other_browser`), and from the browser that did, a `state` that is not
/// the one the flow spent is a forgery (`nonce_mismatch`): neither is sent
/// anywhere, and neither changes the ended record. Another user in the
/// same browser is refused as ever (`user_mismatch`).
#[tokio::test]
async fn a_finished_flows_replay_from_another_browser_or_with_a_forged_state_is_refused() {
    let app = App::new(|b| b).await;
    let browser = browser();
    let (walked, finished) = finish(&app, &browser, "to=/billing").await;
    assert_eq!(finished.status(), StatusCode::SEE_OTHER);
    let before = app.redis.get(&walked.key);

    let elsewhere = crate::common::browser();
    for (what, method, path) in replays(&walked) {
        let refused_there = elsewhere
            .request(method, app.url(&path))
            .send()
            .await
            .unwrap();
        let expected = if path == "/sso" {
            "outcome=no_flow" // names no flow, and this browser holds none
        } else {
            "outcome=other_browser"
        };
        assert_eq!(answer(refused_there).await, refused(expected), "{what}");
    }

    let (reference, nonce) = walked.state.split_once('.').unwrap();
    let mut forged = nonce.chars().rev().collect::<String>();
    if forged == nonce {
        forged = "forged".to_owned();
    }
    for state in [format!("{reference}.{forged}"), forged.clone()] {
        let forgery = browser
            .get(app.url(&format!("/sso?code=c0de&state={state}")))
            .send()
            .await
            .unwrap();
        assert_eq!(
            answer(forgery).await,
            refused("outcome=nonce_mismatch"),
            "{state}"
        );
    }

    let other_user = browser
        .get(app.url(&format!("/sso?code=c0de&state={}", walked.state)))
        .header("x-user", "mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(answer(other_user).await, refused("outcome=user_mismatch"));
    assert_eq!(app.redis.get(&walked.key), before, "nothing written");
    assert_eq!(app.counts.finishes(), 1);
}

/// The finish hook names another landing than `return_to`
/// (`Finished::lands_at`): the replays go there.
#[tokio::test]
async fn lands_at_overrides_return_to_for_the_replays() {
    let app = App::landing(Some("/welcome"), |b| b).await;
    let browser = browser();
    let (walked, finished) = finish(&app, &browser, "to=/billing").await;
    assert_eq!(location(&finished).as_deref(), Some("/welcome"));
    let fields = ended_record(&app.redis, &walked.key, &ended::finished(), DEFAULT_WINDOW);
    assert_eq!(fields["ended"]["location"], "/welcome", "{fields}");
    assert_eq!(fields["return_to"], "/billing", "{fields}");
    for (what, method, path) in replays(&walked) {
        let replayed = browser
            .request(method, app.url(&path))
            .send()
            .await
            .unwrap();
        assert_eq!(location(&replayed).as_deref(), Some("/welcome"), "{what}");
    }
    assert_eq!(app.counts.finishes(), 1);
}

/// The last step costs what it cost before, two round trips (the load,
/// then the compare-and-set that writes the ended record before the hook,
/// in place of the claim's delete), and one more when the hook names a
/// landing the record does not already hold. With no window, the claim
/// deletes the record, as before.
#[tokio::test]
async fn the_last_step_costs_two_round_trips_and_three_when_the_hook_names_another_landing() {
    let cases: [(Option<&'static str>, Duration, usize); 4] = [
        (None, DEFAULT_WINDOW, 2),
        (Some("/billing"), DEFAULT_WINDOW, 2),
        (Some("/welcome"), DEFAULT_WINDOW, 3),
        (None, Duration::ZERO, 2),
    ];
    for (lands_at, window, expected) in cases {
        let app = App::landing(lands_at, |b| b.replay_window(window)).await;
        let browser = browser();
        // Warm the script cache: the first EVALSHA on a fresh server costs
        // a NOSCRIPT and a SCRIPT LOAD.
        finish(&app, &browser, "to=/billing").await;

        let walked = to_confirm(&app, &browser, "to=/billing").await;
        let (finished, trips, commands) = app.measure(browser.post(app.url(&walked.link))).await;
        let case = format!("lands_at {lands_at:?}, window {window:?}");
        assert_eq!(finished.status(), StatusCode::SEE_OTHER, "{case}");
        let evalsha = (expected - 1) as u64;
        // The load (the load script: a GET, an EXPIRE), then the claim's and
        // the landing's compare-and-sets (a GET each, then their write).
        let mut expected_commands = vec![
            ("evalsha", evalsha + 1),
            ("get", evalsha + 1),
            ("expire", 1),
        ];
        if window.is_zero() {
            expected_commands.push(("del", 1));
        } else {
            expected_commands.push(("set", evalsha));
        }
        assert_eq!(
            (trips, commands),
            (expected, calls(&expected_commands)),
            "{case}"
        );
        if window.is_zero() {
            assert_eq!(app.redis.get(&walked.key), None, "{case}: deleted");
        } else {
            let fields = ended_record(&app.redis, &walked.key, &ended::finished(), window);
            assert_eq!(
                fields["ended"]["location"],
                lands_at.unwrap_or("/billing"),
                "{case}"
            );
        }
    }
}

/// Nothing the steps bound survives the finish: not the identity, not the
/// provider's token, not the PKCE verifier, not the nonce. The record
/// keeps who started the flow (the application's user id, which a replay
/// is checked against), its pipeline, kind and signature, where it sends
/// the person, and a SHA-256 of the nonce it spent.
#[tokio::test]
async fn a_finished_flows_record_keeps_no_identity_token_or_nonce() {
    let app = App::new(|b| b).await;
    let browser = browser();
    let walked = to_confirm(&app, &browser, "to=/billing").await;
    let live = String::from_utf8(app.redis.get(&walked.key).unwrap()).unwrap();
    for secret in [EMAIL, ID_TOKEN, VERIFIER] {
        assert!(
            live.contains(secret),
            "the live flow holds {secret}: {live}"
        );
    }

    let page = browser.get(app.url(&walked.link)).send().await.unwrap();
    let action = answer(page).await.1.replace("confirm link=", "");
    let finished = browser.post(app.url(&action)).send().await.unwrap();
    assert_eq!(finished.status(), StatusCode::SEE_OTHER);

    let raw = String::from_utf8(app.redis.get(&walked.key).unwrap()).unwrap();
    let nonce = walked.state.split_once('.').unwrap().1;
    for secret in [EMAIL, ID_TOKEN, VERIFIER, nonce] {
        assert!(
            !raw.contains(secret),
            "the ended record holds {secret}: {raw}"
        );
    }
    let fields = ended_record(&app.redis, &walked.key, &ended::finished(), DEFAULT_WINDOW);
    let mut keys: Vec<&str> = fields
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "data",
            "ended",
            "flow",
            "pipeline",
            "return_to",
            "signature",
            "spent",
            "step_index",
            "uid"
        ],
        "{fields}"
    );
    let spent = fields["spent"].as_str().unwrap();
    assert!(
        spent.len() == 64 && spent.chars().all(|c| c.is_ascii_hexdigit()),
        "a hash of the nonce, not the nonce: {spent}"
    );
}

/// A flow that was cancelled, or that a failure ended, answers its replays
/// with how it ended (`FlowError::Ended`), to the same browser: Back after
/// Cancel says "cancelled", never "another browser". Nothing is written.
#[tokio::test]
async fn cancelled_and_failed_flows_answer_their_replays_with_how_they_ended() {
    let app = App::new(|b| b).await;

    // Cancelled on the last step.
    let browser = browser();
    let walked = to_confirm(&app, &browser, "to=/billing").await;
    let cancelled = browser
        .get(app.url(&format!("{}&cancel", walked.link)))
        .send()
        .await
        .unwrap();
    kept_for(&flow_cookie(&cancelled).unwrap(), DEFAULT_WINDOW);
    assert_eq!(
        answer(cancelled).await,
        (StatusCode::OK, "cancelled".to_owned())
    );
    ended_record(&app.redis, &walked.key, &ended::cancelled(), DEFAULT_WINDOW);
    let before = app.redis.get(&walked.key);
    for (what, method, path) in replays(&walked) {
        let back = browser
            .request(method, app.url(&path))
            .send()
            .await
            .unwrap();
        assert_eq!(
            answer(back).await,
            refused("outcome=ended how=cancelled return_to=/billing"),
            "{what} after Cancel"
        );
    }
    assert_eq!(app.redis.get(&walked.key), before, "nothing written");

    // Ended by a failure in the callback step.
    let browser = crate::common::browser();
    let (key, state) = authorize(&app, &browser, "to=/billing").await;
    let callback = format!("/sso?code=c0de&state={state}&fail");
    let failed = browser.get(app.url(&callback)).send().await.unwrap();
    kept_for(&flow_cookie(&failed).unwrap(), DEFAULT_WINDOW);
    assert_eq!(
        answer(failed).await,
        refused("outcome=failed return_to=/billing")
    );
    ended_record(&app.redis, &key, &ended::failed("failed"), DEFAULT_WINDOW);
    let callbacks = app.counts.callbacks();
    for path in [callback.as_str(), "/sso"] {
        let again = browser.get(app.url(path)).send().await.unwrap();
        assert_eq!(
            answer(again).await,
            refused("outcome=ended how=failed:failed return_to=/billing"),
            "{path}"
        );
    }
    assert_eq!(
        app.counts.callbacks(),
        callbacks,
        "the step never ran again"
    );

    // A finished flow with nowhere to land (no return_to, no lands_at)
    // cannot be redirected: it says it finished.
    let browser = crate::common::browser();
    let (walked, finished) = finish(&app, &browser, "").await;
    assert_eq!(location(&finished).as_deref(), Some("/"));
    let fields = ended_record(&app.redis, &walked.key, &ended::finished(), DEFAULT_WINDOW);
    assert!(fields["ended"].get("location").is_none(), "{fields}");
    let again = browser.get(app.url(&walked.link)).send().await.unwrap();
    assert_eq!(answer(again).await, refused("outcome=ended how=finished"));
}

/// Past the window the ended record is gone and the browser has dropped the
/// cookie (its `Max-Age` was the window): the flow is unknown. A client
/// that kept the cookie anyway finds the record expired.
#[tokio::test]
async fn past_the_replay_window_an_ended_flow_is_unknown() {
    let _serial = SERIAL.lock().await;
    let window = Duration::from_secs(2);
    let app = App::new(|b| b.replay_window(window)).await;
    let browser = browser();
    let (walked, finished) = finish(&app, &browser, "to=/billing").await;
    let cookie = flow_cookie(&finished).unwrap();
    kept_for(&cookie, window);
    ended_record(&app.redis, &walked.key, &ended::finished(), window);

    tokio::time::sleep(window + Duration::from_millis(1500)).await;
    assert_eq!(app.redis.keys(), Vec::<String>::new(), "the record expired");
    let refresh = browser.get(app.url(&walked.link)).send().await.unwrap();
    assert_eq!(
        answer(refresh).await,
        refused("outcome=other_browser"),
        "the browser no longer holds the flow"
    );
    let kept = reqwest::Client::new()
        .get(app.url(&format!("/sso?code=c0de&state={}", walked.state)))
        .header("cookie", format!("{}={}", cookie.name(), cookie.value()))
        .send()
        .await
        .unwrap();
    assert!(flow_cookie(&kept).is_some_and(|c| removes(&c)), "dropped");
    assert_eq!(
        answer(kept).await,
        refused("outcome=expired return_to=/billing")
    );
    assert_eq!(app.counts.finishes(), 1);
    assert_eq!(app.counts.callbacks(), 1);
    assert_eq!(app.redis.keys(), Vec::<String>::new(), "nothing revived");
}

/// `replay_window(Duration::ZERO)`: the old delete path. The finish
/// deletes the record and expires the cookie; a replay finds nothing.
#[tokio::test]
async fn with_no_replay_window_a_finished_flow_is_deleted_as_before() {
    let app = App::new(|b| b.replay_window(Duration::ZERO)).await;
    let browser = browser();
    let (walked, finished) = finish(&app, &browser, "to=/billing").await;
    assert_eq!(location(&finished).as_deref(), Some("/billing"));
    assert!(flow_cookie(&finished).is_some_and(|c| removes(&c)));
    assert_eq!(app.redis.keys(), Vec::<String>::new());
    let replay = browser
        .get(app.url(&format!("/sso?code=c0de&state={}", walked.state)))
        .send()
        .await
        .unwrap();
    assert_eq!(answer(replay).await, refused("outcome=other_browser"));
    assert_eq!(app.counts.finishes(), 1);
}

/// A deployment that changes the steps between a flow's finish and its
/// replay does not change how it ended: the replay still lands, and the
/// ended record stays as written.
#[tokio::test]
async fn a_finished_flow_replayed_after_the_steps_changed_still_lands() {
    let app = App::new(|b| b).await;
    let browser = browser();
    let (walked, _) = finish(&app, &browser, "to=/billing").await;
    let before = app.redis.get(&walked.key);

    let changed = serve(router(
        vec![sso("sso", &Counts::default(), None, |b| {
            b.step("survey", |_request, flow| async move { flow.next().await })
        })],
        tower_pipeline_state::PipelineStateLayer::new(redis_store(&app.redis.url()).await),
    ))
    .await;
    for (what, method, path) in replays(&walked) {
        let replayed = browser
            .request(method, changed.url(&path))
            .send()
            .await
            .unwrap();
        assert_eq!(location(&replayed).as_deref(), Some("/billing"), "{what}");
    }
    assert_eq!(app.redis.get(&walked.key), before, "not ended again");
}
