//! The engine's rules for nested runs, through the layer over a
//! `MemoryStore` whose writes are logged: the inner run's namespace and
//! what its steps see, which nonce opens which callback step, what a
//! failure names, the checks of a run, and the end of a run written once.
//! The pipelines are the ones `nested.rs` runs over Redis
//! (`common/nested.rs`); the user is `alice` (the `x-user` header) on every
//! request.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::http::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Barrier;
use tower_pipeline_state::{
    MemoryStore, PipelineStateLayer, Store, StoreError, pipeline::FlowError, store::CasOutcome,
};

use crate::common::{
    Server,
    ended::{self, DEFAULT_WINDOW, ended_fields, kept_for},
    engine::text,
    flow_cookie,
    nested::{Options, Record, idp, nonce_of, router, setup, to_the_inner_callback, visit},
    serve, started_flow_key,
};

/// A write that reached the store.
#[derive(Debug, Clone, PartialEq)]
enum Write {
    Create,
    /// A compare-and-set at version `at` that wrote `data`.
    Update {
        at: u64,
        data: Value,
    },
    /// A removal, at version `at` when it was a compare-and-delete.
    Delete {
        at: Option<u64>,
    },
}

/// A `MemoryStore` that logs the writes that went through: what a request
/// wrote, when, at which version, seen from outside the layer.
#[derive(Clone, Default)]
struct Logged {
    memory: MemoryStore,
    writes: Arc<Mutex<Vec<Write>>>,
}

impl Logged {
    fn log(&self, write: Write) {
        self.writes.lock().unwrap().push(write);
    }

    /// The writes since the last [`forget`](Self::forget).
    fn writes(&self) -> Vec<Write> {
        self.writes.lock().unwrap().clone()
    }

    fn forget(&self) {
        self.writes.lock().unwrap().clear();
    }

    /// The raw record under `key`.
    async fn raw(&self, key: &str) -> Option<Vec<u8>> {
        self.memory.load(key, None).await.unwrap()
    }

    /// The record under `key`, decoded.
    async fn record(&self, key: &str) -> Value {
        let raw = self.raw(key).await.expect("the flow's record exists");
        serde_json::from_slice(&raw).unwrap()
    }

    /// The flow's stored fields (the record's `data`).
    async fn fields(&self, key: &str) -> Value {
        self.record(key).await["data"].clone()
    }

    /// The fields of the flow's ended record, checked: ended as `how`,
    /// holding nothing the steps bound, no nonce, no nested run.
    async fn ended(&self, key: &str, how: &Value) -> Value {
        let fields = self.fields(key).await;
        ended_fields(&fields, how);
        fields
    }

    async fn version(&self, key: &str) -> u64 {
        self.record(key).await["version"].as_u64().unwrap()
    }

    /// Writes `fields` as the flow's record at its version, behind the
    /// layer's back (not logged).
    async fn plant(&self, key: &str, fields: &Value) {
        let version = self.version(key).await;
        let planted = format!(r#"{{"format":1,"version":{version},"data":{fields}}}"#);
        let written = self
            .memory
            .update(key, version, planted.as_bytes(), Duration::from_secs(600))
            .await
            .unwrap();
        assert_eq!(written, CasOutcome::Done);
    }
}

/// The `data` of an encoded record.
fn data_of(record: &[u8]) -> Value {
    serde_json::from_slice::<Value>(record).unwrap()["data"].clone()
}

impl Store for Logged {
    async fn load(
        &self,
        key: &str,
        refresh: Option<Duration>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.memory.load(key, refresh).await
    }

    async fn create(&self, key: &str, record: &[u8], ttl: Duration) -> Result<bool, StoreError> {
        let created = self.memory.create(key, record, ttl).await?;
        if created {
            self.log(Write::Create);
        }
        Ok(created)
    }

    async fn update(
        &self,
        key: &str,
        version: u64,
        record: &[u8],
        ttl: Duration,
    ) -> Result<CasOutcome, StoreError> {
        let outcome = self.memory.update(key, version, record, ttl).await?;
        if outcome == CasOutcome::Done {
            self.log(Write::Update {
                at: version,
                data: data_of(record),
            });
        }
        Ok(outcome)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.memory.delete(key).await?;
        self.log(Write::Delete { at: None });
        Ok(())
    }

    async fn delete_if_version(&self, key: &str, version: u64) -> Result<CasOutcome, StoreError> {
        let outcome = self.memory.delete_if_version(key, version).await?;
        if outcome == CasOutcome::Done {
            self.log(Write::Delete { at: Some(version) });
        }
        Ok(outcome)
    }
}

/// A browser (keeps cookies, follows no redirects) signed in as `alice`.
fn alice() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-user", "alice".parse().unwrap());
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// `setup` served over a logged `MemoryStore`, what it recorded, and
/// alice's browser.
struct Engine {
    store: Logged,
    record: Record,
    app: Server,
    browser: reqwest::Client,
}

impl Engine {
    async fn new(options: Options) -> Self {
        Self::with(options, |layer| layer).await
    }

    /// With a layer configured by `configure`.
    async fn with(
        options: Options,
        configure: impl FnOnce(PipelineStateLayer<Logged>) -> PipelineStateLayer<Logged>,
    ) -> Self {
        let store = Logged::default();
        let record = Record::default();
        let layer = configure(PipelineStateLayer::new(store.clone()));
        let app = serve(router(setup(&options, &record), "integration", layer)).await;
        Self {
            store,
            record,
            app,
            browser: alice(),
        }
    }

    /// Starts a setup and submits `choose`: the inner run waits on
    /// `authorize`. The flow's key.
    async fn to_authorize(&self) -> String {
        let started = self
            .browser
            .get(self.app.url("/setup/start"))
            .send()
            .await
            .unwrap();
        let key = started_flow_key(&started);
        assert_eq!(text(started).await.0, StatusCode::OK);
        let chosen = self
            .browser
            .post(self.app.url("/setup"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            text(chosen).await,
            (StatusCode::OK, "at authorize".to_owned())
        );
        key
    }

    /// Plants `fields` as the flow's record, sends `path`, and checks the
    /// answer is `400 <answer>` and that nothing was written.
    async fn refused_changing_nothing(&self, key: &str, fields: &Value, path: &str, answer: &str) {
        self.store.plant(key, fields).await;
        let before = self.store.raw(key).await;
        self.store.forget();
        assert_eq!(
            visit(&self.browser, &self.app, path).await,
            (StatusCode::BAD_REQUEST, answer.to_owned()),
            "{path} on {fields}"
        );
        assert_eq!(
            self.store.writes(),
            Vec::<Write>::new(),
            "{path}: nothing written"
        );
        assert_eq!(self.store.raw(key).await, before, "{path}: nothing changed");
    }
}

/// `fields` without the inner run's nonce (consumed).
fn without_inner_nonce(fields: &Value) -> Value {
    let mut consumed = fields.clone();
    consumed["nested"]["idp"]
        .as_object_mut()
        .unwrap()
        .remove("nonce");
    consumed
}

/// `fields` without the inner run (ended).
fn without_run(fields: &Value) -> Value {
    let mut ended = fields.clone();
    ended.as_object_mut().unwrap().remove("nested");
    ended
}

#[tokio::test]
async fn a_nested_run_keeps_its_own_namespace_and_hands_its_data_to_the_outer_step() {
    let t = Engine::new(Options {
        email_only: true,
        ..Options::default()
    })
    .await;
    let flow = to_the_inner_callback(&t.app, &t.browser).await;

    let loaded = t.store.fields(&flow.key).await;
    assert_eq!(
        loaded["step_index"], 1,
        "the outer flow stays on `identity`"
    );
    assert_eq!(loaded["data"], json!({}), "the outer data is untouched");
    let run = &loaded["nested"]["idp"];
    assert_eq!(run["flow"], "login");
    let signature = idp(&Options::default(), &Record::default())
        .signature()
        .as_str()
        .to_owned();
    assert_eq!(run["signature"], signature);
    assert_eq!(run["step_index"], 1, "the inner run advanced");
    assert_eq!(run["nonce"], nonce_of(&flow.inner));
    assert_eq!(run["data"], json!({"code": "c0de"}));
    assert_ne!(loaded["nonce"], nonce_of(&flow.inner), "a nonce of its own");
    let authorize = "idp/authorize#0 kind=login user=Some(\"alice\") verified=false";
    assert_eq!(
        t.record.inner_seen.lock().unwrap().as_slice(),
        [authorize, authorize],
        "entered by `choose`'s submission, then submitted"
    );

    // The provider sends the user back with the inner state; this request
    // asks for another kind, and the run keeps its own.
    let back = t
        .browser
        .get(t.app.url(&format!("/setup?state={}", flow.inner)))
        .header("x-kind", "link")
        .send()
        .await
        .unwrap();
    assert_eq!(
        text(back).await,
        (
            StatusCode::OK,
            format!("identity done state={}", flow.outer)
        )
    );
    assert_eq!(
        t.record.inner_seen.lock().unwrap()[2],
        "idp/callback#1 kind=login code=Some(\"c0de\") verified=true"
    );
    let nested = t.record.nested_finished.lock().unwrap().clone();
    assert_eq!(nested.len(), 1);
    assert_eq!(
        (
            nested[0].pipeline.as_str(),
            nested[0].kind.as_str(),
            nested[0].user.as_deref()
        ),
        ("idp", "login", Some("alice"))
    );
    assert_eq!(
        Value::Object(nested[0].data.clone()),
        json!({"code": "c0de", "email": "alice@example.com"})
    );
    let after = t.store.fields(&flow.key).await;
    assert!(after.get("nested").is_none(), "the run is gone: {after}");
    assert_eq!(after["step_index"], 2);
    assert_eq!(after["data"], json!({"email": "alice@example.com"}));

    // The outer callback step, with the outer state, finishes the flow.
    // Every answer was a 200: the outer error handler (a 400) never ran.
    let finished = visit(&t.browser, &t.app, &format!("/setup?state={}", flow.outer)).await;
    assert_eq!(
        finished,
        (
            StatusCode::OK,
            r#"finished data={"email":"alice@example.com"}"#.to_owned()
        )
    );
    let finished = t.record.outer_finished.lock().unwrap().take().unwrap();
    assert_eq!(finished.pipeline, "setup");
    assert_eq!(
        finished.fetch::<String>("email").unwrap().as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(
        t.record
            .inner_hooks
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the inner pipeline's own hooks never ran"
    );
    // The finished flow is emptied: its ended record keeps nothing bound.
    t.store.ended(&flow.key, &ended::finished()).await;
}

#[tokio::test]
async fn the_inner_pipeline_runs_alone_too_with_its_own_hooks() {
    let store = Logged::default();
    let record = Record::default();
    let alone = idp(&Options::default(), &record);
    let app = serve(router(
        alone,
        "login",
        PipelineStateLayer::new(store.clone()),
    ))
    .await;
    let browser = alice();

    let started = browser.post(app.url("/idp/start")).send().await.unwrap();
    let key = started_flow_key(&started);
    assert_eq!(
        text(started).await,
        (StatusCode::OK, "at authorize".to_owned()),
        "the first step is entered, and renders"
    );
    let submitted = browser.post(app.url("/idp")).send().await.unwrap();
    let (status, body) = text(submitted).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let state = body.strip_prefix("to idp state=").expect(&body);
    let back = browser
        .get(app.url(&format!("/idp?state={state}")))
        .send()
        .await
        .unwrap();
    kept_for(
        &flow_cookie(&back).expect("the finished flow's cookie is set again"),
        DEFAULT_WINDOW,
    );
    assert_eq!(
        text(back).await,
        (StatusCode::OK, "the inner finish hook".to_owned())
    );
    let fields = store.fields(&key).await;
    ended_fields(&fields, &ended::finished());
    assert_eq!(
        record.inner_hooks.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[tokio::test]
async fn a_replayed_nonce_is_a_mismatch_while_another_is_live_and_a_replay_once_none_is() {
    let t = Engine::new(Options::default()).await;
    let flow = to_the_inner_callback(&t.app, &t.browser).await;
    let loaded = t.store.fields(&flow.key).await;
    let inner_callback = format!("/setup?state={}", flow.inner);

    // The inner nonce consumed, the outer one live.
    let mut consumed = without_inner_nonce(&loaded);
    t.refused_changing_nothing(
        &flow.key,
        &consumed,
        &inner_callback,
        "outcome=nonce_mismatch step=- inner=-",
    )
    .await;

    // No nonce left anywhere: a replay is all it can be.
    consumed.as_object_mut().unwrap().remove("nonce");
    t.refused_changing_nothing(
        &flow.key,
        &consumed,
        &inner_callback,
        "outcome=nonce_replayed step=- inner=-",
    )
    .await;

    // A value that matches two live nonces (only a planted record holds two
    // equal ones): never guess which one counts.
    let mut twins = loaded.clone();
    twins["nested"]["idp"]["nonce"] = twins["nonce"].clone();
    t.refused_changing_nothing(
        &flow.key,
        &twins,
        &format!("/setup?state={}", flow.outer),
        "outcome=nonce_mismatch step=- inner=-",
    )
    .await;

    // A forged value, both nonces live.
    t.refused_changing_nothing(
        &flow.key,
        &loaded,
        "/setup?state=forged",
        "outcome=nonce_mismatch step=- inner=-",
    )
    .await;
}

#[tokio::test]
async fn a_consumed_inner_nonce_is_kept_on_a_server_error_in_the_nested_field() {
    let t = Engine::new(Options::default()).await;
    let flow = to_the_inner_callback(&t.app, &t.browser).await;
    let loaded = t.store.fields(&flow.key).await;
    let version = t.store.version(&flow.key).await;
    t.store.forget();

    // The inner callback consumes the inner nonce, binds, and answers 500:
    // the layer discards the request's changes.
    let path = format!("/setup?state={}&server-error", flow.inner);
    assert_eq!(
        visit(&t.browser, &t.app, &path).await,
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the provider broke".to_owned()
        )
    );
    let expected = without_inner_nonce(&loaded);
    assert_eq!(
        t.store.writes(),
        [Write::Update {
            at: version,
            data: expected.clone()
        }],
        "the nonce's consumption is written even when discarding"
    );
    assert_eq!(
        t.store.fields(&flow.key).await,
        expected,
        "only the inner nonce is gone (not the bound `email`)"
    );
}

#[tokio::test]
async fn a_failure_of_the_outer_step_after_the_run_ended_names_no_inner_step() {
    let t = Engine::new(Options::default()).await;
    let flow = to_the_inner_callback(&t.app, &t.browser).await;
    let path = format!("/setup?state={}&fail-after", flow.inner);
    assert_eq!(
        visit(&t.browser, &t.app, &path).await,
        (
            StatusCode::BAD_REQUEST,
            "outcome=failed step=identity inner=-".to_owned()
        )
    );
    assert_eq!(t.record.runs_ended(), 1);
    // A failed step ends the flow: what the run handed over is not kept.
    t.store.ended(&flow.key, &ended::failed("failed")).await;
}

#[tokio::test]
async fn a_run_is_checked_as_a_flow_is() {
    let t = Engine::new(Options::default()).await;
    let cases = [
        ("signature", json!("0000"), "signature_changed"),
        ("flow", json!("delete-account"), "unknown_flow_kind"),
        ("step_index", json!(3), "corrupt"),
    ];
    for (field, value, outcome) in cases {
        let browser = alice();
        let flow = to_the_inner_callback(&t.app, &browser).await;
        let mut planted = t.store.fields(&flow.key).await;
        planted["nested"]["idp"][field] = value;
        t.store.plant(&flow.key, &planted).await;
        let steps = t.record.inner_steps();

        let answer = browser.get(t.app.url("/setup")).send().await.unwrap();
        kept_for(
            &flow_cookie(&answer).expect("these end the flow"),
            DEFAULT_WINDOW,
        );
        assert_eq!(
            text(answer).await,
            (
                StatusCode::BAD_REQUEST,
                format!("outcome={outcome} step=identity inner=idp/-")
            ),
            "{field}: refused before any inner step ran"
        );
        t.store.ended(&flow.key, &ended::failed(outcome)).await;
        assert_eq!(t.record.inner_steps(), steps, "{field}: no inner step ran");
    }

    // A kind the inner pipeline does not run, when the run starts.
    let started = t
        .browser
        .get(t.app.url("/setup/start"))
        .send()
        .await
        .unwrap();
    let key = started_flow_key(&started);
    assert_eq!(text(started).await.0, StatusCode::OK);
    let steps = t.record.inner_steps();
    let chosen = t
        .browser
        .post(t.app.url("/setup"))
        .header("x-kind", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(
        text(chosen).await,
        (
            StatusCode::BAD_REQUEST,
            "outcome=unknown_flow_kind step=identity inner=idp/-".to_owned()
        )
    );
    t.store
        .ended(&key, &ended::failed("unknown_flow_kind"))
        .await;
    assert_eq!(t.record.inner_steps(), steps, "no inner step ran");
}

#[tokio::test]
async fn a_request_after_the_last_inner_step_advanced_ends_the_run_without_running_a_step() {
    let t = Engine::new(Options {
        email_only: true,
        ..Options::default()
    })
    .await;
    let flow = to_the_inner_callback(&t.app, &t.browser).await;
    let mut planted = t.store.fields(&flow.key).await;
    planted["nested"]["idp"]["step_index"] = json!(2);
    planted["nested"]["idp"]["data"] = json!({"email": "bob@example.com"});
    t.store.plant(&flow.key, &planted).await;
    let steps = t.record.inner_steps();

    assert_eq!(
        visit(&t.browser, &t.app, "/setup").await,
        (
            StatusCode::OK,
            format!("identity done state={}", flow.outer)
        )
    );
    assert_eq!(t.record.inner_steps(), steps, "no inner step ran");
    let after = t.store.fields(&flow.key).await;
    assert_eq!(after["data"], json!({"email": "bob@example.com"}));
    assert!(after.get("nested").is_none(), "{after}");
}

#[tokio::test]
async fn the_outer_flow_moving_on_drops_a_run_it_did_not_finish() {
    let t = Engine::new(Options::default()).await;
    let flow = to_the_inner_callback(&t.app, &t.browser).await;
    let skipped = t
        .browser
        .post(t.app.url("/setup?skip"))
        .send()
        .await
        .unwrap();
    assert_eq!(text(skipped).await, (StatusCode::OK, "skipped".to_owned()));
    let after = t.store.fields(&flow.key).await;
    assert_eq!(after["step_index"], 2);
    assert!(after.get("nested").is_none(), "{after}");
}

#[tokio::test]
async fn a_step_of_a_nested_run_cannot_nest_again() {
    let t = Engine::new(Options::default()).await;
    let key = t.to_authorize().await;
    assert_eq!(
        visit(&t.browser, &t.app, "/setup?nest-again").await,
        (
            StatusCode::BAD_REQUEST,
            "outcome=failed step=identity inner=idp/authorize".to_owned()
        )
    );
    t.store.ended(&key, &ended::failed("failed")).await;
}

#[tokio::test]
async fn nested_finished_returned_by_a_step_that_did_not_finish_reaches_the_error_handler() {
    let t = Engine::new(Options::default()).await;
    let key = t.to_authorize().await;
    let before = t.store.raw(&key).await;
    t.store.forget();
    assert_eq!(
        visit(&t.browser, &t.app, "/setup?claim-finished").await,
        (
            StatusCode::BAD_REQUEST,
            "outcome=nested_finished step=identity inner=idp/authorize".to_owned()
        )
    );
    assert!(!FlowError::NestedFinished.ends_flow());
    assert_eq!(
        t.store.writes(),
        Vec::<Write>::new(),
        "the flow stays as it was"
    );
    assert_eq!(t.store.raw(&key).await, before);
    assert_eq!(t.record.runs_ended(), 0);
}

#[tokio::test]
async fn of_two_requests_bringing_one_inner_nonce_only_the_first_runs_the_step_and_gets_the_data() {
    let hold = Arc::new(Barrier::new(2));
    let t = Engine::new(Options {
        hold: Some(hold.clone()),
        email_only: true,
        ..Options::default()
    })
    .await;
    let flow = to_the_inner_callback(&t.app, &t.browser).await;
    let loaded = t.store.fields(&flow.key).await;
    let version = t.store.version(&flow.key).await;
    t.store.forget();

    // The first request spends the inner nonce and waits in the inner
    // callback step; the second, with the same nonce, runs no step.
    let first = t
        .browser
        .get(t.app.url(&format!("/setup?state={}&hold", flow.inner)));
    let first = tokio::spawn(async move { text(first.send().await.unwrap()).await });
    hold.wait().await;
    let spent = t.store.fields(&flow.key).await;
    assert!(
        spent["nested"]["idp"].get("nonce").is_none(),
        "spent before the step ran: {spent}"
    );
    let second = visit(&t.browser, &t.app, &format!("/setup?state={}", flow.inner)).await;
    assert_eq!(
        second,
        (
            StatusCode::BAD_REQUEST,
            "outcome=nonce_mismatch step=- inner=-".to_owned()
        ),
        "refused before any step: no live nonce matches"
    );
    assert_eq!(t.store.writes().len(), 1, "the second writes nothing");

    hold.wait().await;
    assert_eq!(
        first.await.unwrap(),
        (
            StatusCode::OK,
            format!("identity done state={}", flow.outer)
        )
    );
    let after = t.store.fields(&flow.key).await;
    assert_eq!(after["step_index"], 2);
    assert_eq!(
        t.store.writes(),
        [
            Write::Update {
                at: version,
                data: spent.clone()
            },
            Write::Update {
                at: version + 1,
                data: without_run(&loaded)
            },
            Write::Update {
                at: version + 2,
                data: after
            },
        ],
        "the nonce spent, then the run's end written before the step answered, \
         then the step's own changes at the committed version"
    );
    assert_eq!(t.record.runs_ended(), 1);
}

#[tokio::test]
async fn the_end_of_a_run_stays_written_when_the_step_then_fails_leaving_the_flow() {
    let t = Engine::new(Options::default()).await;
    let flow = to_the_inner_callback(&t.app, &t.browser).await;
    let loaded = t.store.fields(&flow.key).await;
    let version = t.store.version(&flow.key).await;
    t.store.forget();

    let refused = t
        .browser
        .get(
            t.app
                .url(&format!("/setup?state={}&refuse-after", flow.inner)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(flow_cookie(&refused), None, "the flow goes on");
    assert_eq!(
        text(refused).await,
        (
            StatusCode::BAD_REQUEST,
            "outcome=user_mismatch step=identity inner=-".to_owned()
        )
    );
    let writes = t.store.writes();
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert!(
        matches!(&writes[0], Write::Update { at, data }
            if *at == version && data["nested"]["idp"].get("nonce").is_none()),
        "the inner nonce spent before the callback step: {writes:?}"
    );
    assert_eq!(
        writes[1],
        Write::Update {
            at: version + 1,
            data: without_run(&loaded)
        },
        "the run's end committed and kept, nothing more"
    );
    assert_eq!(t.store.version(&flow.key).await, version + 2);
    let written = t.store.fields(&flow.key).await;
    assert!(written.get("nested").is_none(), "the run is gone");
    assert_eq!(written["step_index"], 1, "the outer flow did not move");
}

#[tokio::test]
async fn the_end_of_a_run_over_the_size_limit_fails_and_ends_the_flow() {
    // The size of a flow's record at the inner callback.
    let measured = Engine::new(Options::default()).await;
    let flow = to_the_inner_callback(&measured.app, &measured.browser).await;
    let size = measured.store.raw(&flow.key).await.unwrap().len();

    // `?pad` binds 300 bytes before the run ends: over the limit in memory.
    let t = Engine::with(Options::default(), |layer| {
        layer.max_record_size(size + 100)
    })
    .await;
    let flow = to_the_inner_callback(&t.app, &t.browser).await;
    let version = t.store.version(&flow.key).await;
    t.store.forget();
    let padded = t
        .browser
        .get(t.app.url(&format!("/setup?state={}&pad", flow.inner)))
        .send()
        .await
        .unwrap();
    kept_for(
        &flow_cookie(&padded).expect("the flow ends"),
        DEFAULT_WINDOW,
    );
    assert_eq!(
        text(padded).await,
        (
            StatusCode::BAD_REQUEST,
            "outcome=failed step=identity inner=idp/callback".to_owned()
        )
    );
    let writes = t.store.writes();
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert!(
        matches!(&writes[0], Write::Update { at, data }
            if *at == version && data["nested"]["idp"].get("nonce").is_none()),
        "the inner nonce spent before the callback step: {writes:?}"
    );
    let ended = t.store.ended(&flow.key, &ended::failed("failed")).await;
    assert_eq!(
        writes[1],
        Write::Update {
            at: version + 1,
            data: ended
        },
        "nothing written when the run ended; the flow replaced by its ended \
         record, small enough to write"
    );
    assert_eq!(t.record.runs_ended(), 0, "no data handed over");
}
