//! The pipeline engine through the whole stack: a real axum server on
//! loopback, a real client with cookies, a private redis-server.

use std::sync::Arc;

use crate::common::ended::{self, DEFAULT_WINDOW, ended_record, kept_for};
use crate::common::engine::*;
use crate::common::*;
use axum::http::StatusCode;
use tokio::sync::Barrier;

#[tokio::test]
async fn a_flow_runs_its_steps_in_order_and_finishes_once() {
    let redis = RedisServer::start();
    let app = app(&redis, Options::default()).await;
    let browser = browser();

    let key = to_step_three(&app, &browser, Some("alice")).await;
    let record = stored(&redis, &key);
    assert_eq!(record["step_index"], 2);
    assert_eq!(record["uid"], "alice");
    assert_eq!(record["flow"], "login");
    assert!(
        record.get("nonce").is_none(),
        "the callback consumed the nonce"
    );

    let at = as_user(browser.get(app.url("/flow")), Some("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(text(at).await.1, "at three", "one route serves the flow");
    let left = as_user(browser.post(app.url("/flow")), Some("alice"))
        .body("blue")
        .send()
        .await
        .unwrap();
    assert_eq!(text(left).await.1, "left three with blue");
    let finished = as_user(browser.post(app.url("/flow")), Some("alice"))
        .send()
        .await
        .unwrap();
    kept_for(
        &flow_cookie(&finished).expect("finishing sets the cookie again"),
        DEFAULT_WINDOW,
    );
    assert_eq!(
        text(finished).await,
        (
            StatusCode::OK,
            r#"finished kind=login user=alice data={"called_back":true,"three":"blue"}"#.to_owned()
        )
    );
    // Finishing empties the flow: what stays, for the replay window, says
    // only that it finished.
    assert_eq!(redis.keys(), std::slice::from_ref(&key));
    ended_record(&redis, &key, &ended::finished(), DEFAULT_WINDOW);

    let again = as_user(browser.post(app.url("/flow")), Some("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        text(again).await,
        (StatusCode::BAD_REQUEST, "outcome=ended".to_owned()),
        "a finished flow cannot be finished again: it says it has ended"
    );
}

#[tokio::test]
async fn a_flow_started_by_one_user_cannot_be_continued_by_another() {
    let redis = RedisServer::start();
    let app = app(&redis, Options::default()).await;
    let browser = browser();

    let started = as_user(browser.get(app.url("/flow/start")), Some("alice"))
        .send()
        .await
        .unwrap();
    let key = flow_key(flow_cookie(&started).unwrap().value());
    let nonce = text(started).await.1.replace("at one nonce=", "");
    let before = redis.get(&key).unwrap();

    for user in [Some("bob"), None] {
        let render = as_user(browser.get(app.url("/flow")), user)
            .send()
            .await
            .unwrap();
        assert_eq!(
            text(render).await,
            (StatusCode::BAD_REQUEST, "outcome=user_mismatch".to_owned())
        );
        let submit = as_user(browser.post(app.url("/flow")), user)
            .send()
            .await
            .unwrap();
        assert_eq!(flow_cookie(&submit), None, "the flow keeps its cookie");
        assert_eq!(
            text(submit).await,
            (StatusCode::BAD_REQUEST, "outcome=user_mismatch".to_owned())
        );
        assert_eq!(
            redis.get(&key).as_deref(),
            Some(before.as_slice()),
            "the state did not move for {user:?}"
        );
    }

    let left = as_user(browser.post(app.url("/flow")), Some("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(text(left).await.1, "left one", "the starter goes on");
    // Another user cannot consume the starter's nonce either.
    let back = as_user(
        browser.get(app.url(&format!("/flow?state={nonce}"))),
        Some("bob"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(text(back).await.1, "outcome=user_mismatch");
    let back = as_user(
        browser.get(app.url(&format!("/flow?state={nonce}"))),
        Some("alice"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(text(back).await.1, "left two");
}

#[tokio::test]
async fn changing_the_steps_ends_flows_in_progress_with_the_signature_outcome() {
    let redis = RedisServer::start();
    let store = redis_store(&redis.url()).await;
    let old = serve(router(pipeline(Options::default()), store.clone())).await;
    let new = serve(router(
        pipeline(Options {
            renamed: true,
            ..Options::default()
        }),
        store,
    ))
    .await;
    let browser = browser();

    let key = to_step_three(&old, &browser, None).await;
    assert_eq!(redis.keys(), std::slice::from_ref(&key));

    // The deployment changed the steps; the browser's next request lands on
    // the new release.
    let changed = browser.get(new.url("/flow")).send().await.unwrap();
    kept_for(
        &flow_cookie(&changed).expect("the ended flow's cookie is set again"),
        DEFAULT_WINDOW,
    );
    assert_eq!(
        text(changed).await,
        (
            StatusCode::BAD_REQUEST,
            "outcome=signature_changed".to_owned()
        )
    );
    ended_record(
        &redis,
        &key,
        &ended::failed("signature_changed"),
        DEFAULT_WINDOW,
    );
    let before = redis.get(&key);
    let back = browser.get(new.url("/flow")).send().await.unwrap();
    assert_eq!(
        text(back).await,
        (StatusCode::BAD_REQUEST, "outcome=ended".to_owned()),
        "Back to the ended flow is told how it ended"
    );
    assert_eq!(redis.get(&key), before, "and nothing is written");

    // A new flow on the new release runs fine.
    let started = browser.get(new.url("/flow/start")).send().await.unwrap();
    assert!(text(started).await.1.starts_with("at one nonce="));
}

#[tokio::test]
async fn a_double_submitted_step_advances_once_and_the_second_gets_the_conflict_answer() {
    let redis = RedisServer::start();
    let app = app(
        &redis,
        Options {
            barrier: Some(Arc::new(Barrier::new(2))),
            ..Options::default()
        },
    )
    .await;
    let browser = browser();
    let key = to_step_three(&app, &browser, None).await;

    let (first, second) = tokio::join!(
        browser.post(app.url("/flow")).body("first").send(),
        browser.post(app.url("/flow")).body("second").send(),
    );
    let mut answers = [text(first.unwrap()).await, text(second.unwrap()).await];
    answers.sort_by_key(|(status, _)| *status);
    let [(ok, won), (conflict, _)] = answers;
    assert_eq!(ok, StatusCode::OK, "one submission goes through: {won}");
    assert_eq!(conflict, StatusCode::CONFLICT, "the other is refused");
    let winner = won.strip_prefix("left three with ").expect(&won).to_owned();

    let record = stored(&redis, &key);
    assert_eq!(record["step_index"], 3, "the flow moved one step, not two");
    assert_eq!(
        record["data"]["three"],
        winner.as_str(),
        "only the winner's data"
    );
    let at = browser.get(app.url("/flow")).send().await.unwrap();
    assert_eq!(text(at).await.1, "at four");
}

#[tokio::test]
async fn a_double_submitted_last_step_finishes_the_flow_once() {
    let redis = RedisServer::start();
    let app = app(
        &redis,
        Options {
            final_barrier: Some(Arc::new(Barrier::new(2))),
            ..Options::default()
        },
    )
    .await;
    let browser = browser();
    let key = to_step_three(&app, &browser, None).await;
    let left = browser
        .post(app.url("/flow"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(text(left).await.0, StatusCode::OK);

    // Both submissions load the flow and reach the finish together; the
    // first to claim it runs the finish hook, the second must not answer as
    // if it had finished.
    let (first, second) = tokio::join!(
        browser.post(app.url("/flow")).send(),
        browser.post(app.url("/flow")).send(),
    );
    let mut answers = [text(first.unwrap()).await, text(second.unwrap()).await];
    answers.sort_by_key(|(status, _)| *status);
    let [(ok, finished), (refused, outcome)] = answers;
    assert_eq!(ok, StatusCode::OK);
    assert!(finished.starts_with("finished "), "{finished}");
    assert_eq!(
        (refused, outcome.as_str()),
        (StatusCode::BAD_REQUEST, "outcome=concurrent"),
        "the flow finishes once"
    );
    assert_eq!(redis.keys(), std::slice::from_ref(&key));
    ended_record(&redis, &key, &ended::finished(), DEFAULT_WINDOW);
}

#[tokio::test]
async fn two_flow_kinds_are_kept_apart_and_unknown_kinds_are_refused() {
    let redis = RedisServer::start();
    let app = app(&redis, Options::default()).await;
    let browser = browser();

    let unknown = browser
        .get(app.url("/flow/start?kind=delete-account"))
        .send()
        .await
        .unwrap();
    assert_eq!(flow_cookie(&unknown), None, "no flow was started");
    assert_eq!(text(unknown).await.1, "outcome=unknown_flow_kind");
    assert_eq!(redis.keys(), Vec::<String>::new());

    let started = browser
        .get(app.url("/flow/start?kind=link"))
        .send()
        .await
        .unwrap();
    let key = flow_key(flow_cookie(&started).unwrap().value());
    assert_eq!(stored(&redis, &key)["flow"], "link");
}
