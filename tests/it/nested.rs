//! Nested pipelines through the whole stack: an integration's setup (three
//! steps) whose second step signs in with an identity provider, a pipeline
//! of its own (two steps, the second the provider's redirect back), on a
//! real axum server with a cookie-keeping client and a private redis-server.
//! The pipelines are in `common/nested.rs`, shared with `nested_engine.rs`
//! (the engine's rules for nested runs, over a `MemoryStore`).

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use axum::http::StatusCode;
use redis::aio::ConnectionManager;
use serde_json::{Value, json};
use tokio::sync::Barrier;
use tower_pipeline_state::{PipelineStateLayer, RedisStore};

use crate::common::{
    counting::Counting,
    ended::{self, DEFAULT_WINDOW, ended_record, kept_for},
    engine::text,
    nested::{
        CallbackGate, Options, Record, nonce_of, router, setup, to_the_inner_callback, visit,
    },
    *,
};

/// `setup` behind a layer over the private redis-server.
async fn app(redis: &RedisServer, options: &Options, record: &Record) -> Server {
    let store = redis_store(&redis.url()).await;
    serve(router(
        setup(options, record),
        "integration",
        PipelineStateLayer::new(store),
    ))
    .await
}

/// The flow's stored fields (the record's `data`).
fn fields(redis: &RedisServer, key: &str) -> Value {
    let raw = redis.get(key).expect("the flow's record exists");
    serde_json::from_slice::<Value>(&raw).unwrap()["data"].clone()
}

/// Writes `fields` as the flow's record, at its version, with the record's
/// fixed header.
fn plant(redis: &RedisServer, key: &str, fields: &Value) {
    let raw = redis.get(key).unwrap();
    let version = serde_json::from_slice::<Value>(&raw).unwrap()["version"].clone();
    let planted = format!(r#"{{"format":1,"version":{version},"data":{fields}}}"#);
    redis.set(key, planted.as_bytes());
}

#[tokio::test]
async fn the_inner_runs_data_reaches_the_outer_step_and_finish_hook_and_its_namespace_goes() {
    let redis = RedisServer::start();
    let record = Record::default();
    let app = app(&redis, &Options::default(), &record).await;
    let browser = browser();

    let flow = to_the_inner_callback(&app, &browser).await;
    assert_eq!(
        redis.keys(),
        std::slice::from_ref(&flow.key),
        "the inner run has no record of its own"
    );
    let stored = fields(&redis, &flow.key);
    assert_eq!(
        stored["step_index"], 1,
        "the outer flow waits on `identity`"
    );
    assert_eq!(stored["nonce"], nonce_of(&flow.outer));
    assert_eq!(stored["data"], json!({}));
    let run = &stored["nested"]["idp"];
    assert_eq!(run["flow"], "login");
    assert_eq!(run["step_index"], 1);
    assert_eq!(run["nonce"], nonce_of(&flow.inner));
    assert_eq!(run["data"], json!({"code": "c0de"}));
    assert_eq!(run["signature"].as_str().unwrap().len(), 64);
    assert_ne!(flow.inner, flow.outer);

    // The provider sends the user back with the inner run's nonce.
    let back = visit(&browser, &app, &format!("/setup?state={}", flow.inner)).await;
    assert_eq!(
        back,
        (
            StatusCode::OK,
            format!("identity done state={}", flow.outer)
        )
    );
    let stored = fields(&redis, &flow.key);
    assert!(
        stored.get("nested").is_none(),
        "the inner namespace is gone from Redis: {stored}"
    );
    assert_eq!(stored["step_index"], 2);
    assert_eq!(
        stored["data"],
        json!({"email": "alice@example.com", "code": "c0de"})
    );

    let finished = visit(&browser, &app, &format!("/setup?state={}", flow.outer)).await;
    assert_eq!(
        finished,
        (
            StatusCode::OK,
            r#"finished data={"code":"c0de","email":"alice@example.com"}"#.to_owned()
        )
    );
    // The outer flow is emptied: its ended record keeps none of what the
    // outer or the inner steps bound (the email, the code).
    assert_eq!(redis.keys(), std::slice::from_ref(&flow.key));
    ended_record(&redis, &flow.key, &ended::finished(), DEFAULT_WINDOW);
    assert_eq!(record.runs_ended(), 1);
    assert_eq!(
        record.inner_hooks.load(Ordering::SeqCst),
        0,
        "the inner pipeline's own hooks never ran"
    );
}

#[tokio::test]
async fn a_replayed_inner_callback_is_refused_and_changes_nothing() {
    let redis = RedisServer::start();
    let record = Record::default();
    let app = app(&redis, &Options::default(), &record).await;
    let browser = browser();
    let flow = to_the_inner_callback(&app, &browser).await;
    let callback = format!("/setup?state={}", flow.inner);

    let first = visit(&browser, &app, &callback).await;
    assert_eq!(first.0, StatusCode::OK, "{}", first.1);
    let before = redis.get(&flow.key).unwrap();

    let replayed = browser.get(app.url(&callback)).send().await.unwrap();
    assert_eq!(flow_cookie(&replayed), None, "the flow keeps its cookie");
    assert_eq!(
        text(replayed).await,
        (
            StatusCode::BAD_REQUEST,
            // The outer nonce is still live: which namespace the value was
            // meant for cannot be known.
            "outcome=nonce_mismatch step=- inner=-".to_owned()
        )
    );
    assert_eq!(
        redis.get(&flow.key).as_deref(),
        Some(before.as_slice()),
        "the flow did not move"
    );
    assert_eq!(record.runs_ended(), 1);

    // Once no namespace has a live nonce, a replay is named as one.
    let flow = to_the_inner_callback(&app, &browser).await;
    let mut stored = fields(&redis, &flow.key);
    stored.as_object_mut().unwrap().remove("nonce");
    stored["nested"]["idp"]
        .as_object_mut()
        .unwrap()
        .remove("nonce");
    plant(&redis, &flow.key, &stored);
    let before = redis.get(&flow.key).unwrap();
    let callback = format!("/setup?state={}", flow.inner);
    assert_eq!(
        visit(&browser, &app, &callback).await,
        (
            StatusCode::BAD_REQUEST,
            "outcome=nonce_replayed step=- inner=-".to_owned()
        )
    );
    assert_eq!(redis.get(&flow.key).as_deref(), Some(before.as_slice()));
}

#[tokio::test]
async fn the_outer_nonce_does_not_open_the_inner_callback_nor_the_inner_nonce_the_outer() {
    let redis = RedisServer::start();
    let record = Record::default();
    let app = app(&redis, &Options::default(), &record).await;
    let browser = browser();
    let flow = to_the_inner_callback(&app, &browser).await;
    let before = redis.get(&flow.key).unwrap();

    let crossed = visit(&browser, &app, &format!("/setup?state={}", flow.outer)).await;
    assert_eq!(
        crossed,
        (
            StatusCode::BAD_REQUEST,
            "outcome=nonce_missing step=identity inner=idp/callback".to_owned()
        )
    );
    assert_eq!(
        redis.get(&flow.key).as_deref(),
        Some(before.as_slice()),
        "nothing changed: the outer nonce is still live"
    );

    // The outer flow on its own callback step while the run is live (what
    // a request racing the run's end can leave behind).
    let mut stored = fields(&redis, &flow.key);
    stored["step_index"] = json!(2);
    plant(&redis, &flow.key, &stored);
    let before = redis.get(&flow.key).unwrap();
    let crossed = visit(&browser, &app, &format!("/setup?state={}", flow.inner)).await;
    assert_eq!(
        crossed,
        (
            StatusCode::BAD_REQUEST,
            "outcome=nonce_missing step=confirm inner=-".to_owned()
        )
    );
    assert_eq!(
        redis.get(&flow.key).as_deref(),
        Some(before.as_slice()),
        "nothing changed: the inner nonce is still live"
    );

    let confirmed = visit(&browser, &app, &format!("/setup?state={}", flow.outer)).await;
    assert_eq!(confirmed.0, StatusCode::OK, "{}", confirmed.1);
    assert!(confirmed.1.starts_with("finished "), "{}", confirmed.1);
    assert_eq!(record.runs_ended(), 0);
}

#[tokio::test]
async fn an_inner_callback_delivered_twice_at_once_runs_its_step_once_and_ends_the_run_once() {
    let redis = RedisServer::start();
    let record = Record::default();
    let gate = CallbackGate::new();
    let options = Options {
        callback_gate: Some(gate.clone()),
        ..Options::default()
    };
    let app = app(&redis, &options, &record).await;

    for round in 0..10 {
        let browser = browser();
        let flow = to_the_inner_callback(&app, &browser).await;
        let (runs, ended) = (gate.runs.load(Ordering::SeqCst), record.runs_ended());
        let callback = app.url(&format!("/setup?state={}", flow.inner));
        let mut first = Some(tokio::spawn(browser.get(&callback).send()));
        let mut second = Some(tokio::spawn(browser.get(&callback).send()));
        // Whichever answers while the other is held in the step is the
        // loser; two runs in the step at once is the bug, and lets both go.
        let early = tokio::select! {
            answered = first.as_mut().unwrap() => { first = None; Some(answered) }
            answered = second.as_mut().unwrap() => { second = None; Some(answered) }
            () = gate.both_in.notified() => None,
        };
        gate.release.add_permits(2);
        let mut answers = Vec::new();
        if let Some(early) = early {
            answers.push(text(early.unwrap().unwrap()).await);
        }
        for pending in [first, second].into_iter().flatten() {
            answers.push(text(pending.await.unwrap().unwrap()).await);
        }
        answers.sort();
        // Leftover permits of a round with one run go before the next.
        while gate.release.try_acquire().is_ok_and(|permit| {
            permit.forget();
            true
        }) {}
        assert_eq!(
            gate.runs.load(Ordering::SeqCst) - runs,
            1,
            "round {round}: the inner callback step ran once: {answers:?}"
        );
        assert_eq!(
            record.runs_ended() - ended,
            1,
            "round {round}: the outer step saw the run end once"
        );
        assert_eq!(
            answers[0],
            (
                StatusCode::OK,
                format!("identity done state={}", flow.outer)
            ),
            "round {round}"
        );
        assert!(
            [
                "outcome=concurrent step=- inner=-",
                "outcome=nonce_mismatch step=- inner=-"
            ]
            .contains(&answers[1].1.as_str())
                && answers[1].0 == StatusCode::BAD_REQUEST,
            "round {round}: the loser is refused before any step: {answers:?}"
        );
        let stored = fields(&redis, &flow.key);
        assert_eq!(stored["step_index"], 2, "round {round}: moved once");
        assert!(stored.get("nested").is_none(), "round {round}: {stored}");
    }
}

#[tokio::test]
async fn a_double_submitted_inner_step_advances_once_and_the_second_gets_the_conflict_answer() {
    let redis = RedisServer::start();
    let record = Record::default();
    let options = Options {
        authorize_barrier: Some(Arc::new(Barrier::new(2))),
        ..Options::default()
    };
    let app = app(&redis, &options, &record).await;
    let browser = browser();
    let started = browser.get(app.url("/setup/start")).send().await.unwrap();
    let key = started_flow_key(&started);
    let chosen = browser.post(app.url("/setup")).send().await.unwrap();
    assert_eq!(text(chosen).await.1, "at authorize");

    let (first, second) = tokio::join!(
        browser.post(app.url("/setup")).send(),
        browser.post(app.url("/setup")).send(),
    );
    let mut answers = [text(first.unwrap()).await, text(second.unwrap()).await];
    answers.sort_by_key(|(status, _)| *status);
    let [(ok, moved), (conflict, _)] = answers;
    assert_eq!(ok, StatusCode::OK, "{moved}");
    assert_eq!(conflict, StatusCode::CONFLICT, "both changed `nested`");
    let inner = moved.strip_prefix("to idp state=").expect(&moved);
    let run = fields(&redis, &key)["nested"]["idp"].clone();
    assert_eq!(run["step_index"], 1, "the run moved one step");
    assert_eq!(
        run["nonce"],
        nonce_of(inner),
        "the winner's answer is what is stored"
    );
}

#[tokio::test]
async fn an_inner_steps_error_reaches_the_outer_on_error_naming_both_steps() {
    let (logs, _guard) = Logs::capture();
    let redis = RedisServer::start();
    let record = Record::default();
    let app = app(&redis, &Options::default(), &record).await;
    let browser = browser();
    let started = browser.get(app.url("/setup/start")).send().await.unwrap();
    let key = started_flow_key(&started);
    let chosen = browser.post(app.url("/setup")).send().await.unwrap();
    assert_eq!(text(chosen).await.1, "at authorize");

    let failed = browser.post(app.url("/setup?fail")).send().await.unwrap();
    kept_for(
        &flow_cookie(&failed).expect("a failed step ends the outer flow"),
        DEFAULT_WINDOW,
    );
    assert_eq!(
        text(failed).await,
        (
            StatusCode::BAD_REQUEST,
            "outcome=failed step=identity inner=idp/authorize".to_owned()
        )
    );
    assert_eq!(redis.keys(), std::slice::from_ref(&key));
    ended_record(&redis, &key, &ended::failed("failed"), DEFAULT_WINDOW);
    assert_eq!(
        record.inner_hooks.load(Ordering::SeqCst),
        0,
        "the inner pipeline's error handler is not called"
    );
    let events = logs.matching(&[
        "pipeline flow did not continue",
        "pipeline=\"setup\"",
        "step=\"identity\"",
        "inner_pipeline=\"idp\"",
        "inner_step=\"authorize\"",
    ]);
    assert_eq!(events.len(), 1, "{}", logs.text());
}

#[tokio::test]
async fn a_nested_request_costs_what_any_step_costs_and_the_callback_ending_the_run_two_more() {
    let redis = RedisServer::start();
    let client = redis::Client::open(redis.url()).unwrap();
    let trips = Arc::new(AtomicUsize::new(0));
    let store = RedisStore::new(Counting {
        inner: ConnectionManager::new(client).await.unwrap(),
        trips: trips.clone(),
    });
    let record = Record::default();
    let app = serve(router(
        setup(&Options::default(), &record),
        "integration",
        PipelineStateLayer::new(store),
    ))
    .await;
    // Warm the script cache: the first EVALSHA on a fresh server costs a
    // NOSCRIPT and a SCRIPT LOAD.
    to_the_inner_callback(&app, &browser()).await;

    let browser = browser();
    let measure = |request: reqwest::RequestBuilder| {
        let trips = trips.clone();
        let redis = &redis;
        async move {
            redis.reset_stats();
            trips.store(0, Ordering::SeqCst);
            let (status, body) = text(request.send().await.unwrap()).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            (trips.load(Ordering::SeqCst), redis.command_calls(), body)
        }
    };
    let changed = [("evalsha", 2), ("expire", 1), ("get", 2), ("set", 1)]
        .map(|(name, n)| (name.to_owned(), n))
        .into();

    let started = browser.get(app.url("/setup/start")).send().await.unwrap();
    assert_eq!(started.status(), StatusCode::OK);

    // An outer step that starts the run and runs its first step.
    let (round_trips, commands, _) = measure(browser.post(app.url("/setup"))).await;
    assert_eq!((round_trips, &commands), (2, &changed), "load + one write");
    // An inner step that moves the run on.
    let (round_trips, commands, body) = measure(browser.post(app.url("/setup"))).await;
    assert_eq!((round_trips, &commands), (2, &changed), "load + one write");
    let inner = body.strip_prefix("to idp state=").expect(&body).to_owned();
    // The inner callback that ends the run: the nonce spent before the
    // step, the run's end, then the outer step's own changes.
    let (round_trips, commands, _) =
        measure(browser.get(app.url(&format!("/setup?state={inner}")))).await;
    let ended = [("evalsha", 4), ("expire", 1), ("get", 4), ("set", 3)]
        .map(|(name, n)| (name.to_owned(), n))
        .into();
    assert_eq!((round_trips, commands), (4, ended), "two more round trips");
    eprintln!("round trips: nested step 2, inner callback ending the run 4");
}

#[tokio::test]
async fn a_store_failing_when_the_run_ends_answers_unavailable_and_hands_nothing_over() {
    let mut redis = RedisServer::start();
    let record = Record::default();
    let pause = Arc::new(Barrier::new(2));
    let options = Options {
        callback_pause: Some(pause.clone()),
        ..Options::default()
    };
    let app = app(&redis, &options, &record).await;
    let browser = browser();
    let flow = to_the_inner_callback(&app, &browser).await;

    let callback = browser.get(app.url(&format!("/setup?state={}", flow.inner)));
    let answer = tokio::spawn(async move { text(callback.send().await.unwrap()).await });
    // The callback has loaded the flow and waits; Redis goes away before
    // the run's end is written.
    pause.wait().await;
    redis.stop();
    pause.wait().await;
    assert_eq!(
        answer.await.unwrap(),
        (
            StatusCode::BAD_REQUEST,
            "outcome=unavailable step=identity inner=idp/callback".to_owned()
        )
    );
    assert_eq!(record.runs_ended(), 0);
}
