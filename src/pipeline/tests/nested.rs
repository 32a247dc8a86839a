//! Nested runs on detached and in-memory states (no layer, no Redis): the
//! inner run's namespace, its checks, which nonce opens which callback step,
//! what a failure names, and the end of a run written once.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
};

use http::{Method, Request};
use serde_json::{Map, Value, json};

use crate::pipeline::*;
use crate::{
    PipelineState,
    state::{Origin, Outcome},
};

type Response = String;
/// A body that can be rebuilt from bytes, as `dispatch` needs.
type Body = http_body_util::Full<bytes::Bytes>;

/// A failure as the outer error handler saw it.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    error: String,
    step: Option<String>,
    inner: Option<(String, Option<String>)>,
}

#[derive(Default, Clone)]
struct Record {
    failures: Arc<Mutex<Vec<Seen>>>,
    /// The outer finish hook's data.
    outer_finished: Arc<Mutex<Option<Finished>>>,
    /// What `nest` handed the outer step.
    nested_finished: Arc<Mutex<Vec<Finished>>>,
    /// Runs of the inner pipeline's own hooks (never, nested).
    inner_hooks: Arc<AtomicUsize>,
    /// What the inner steps saw of their `Flow`.
    inner_seen: Arc<Mutex<Vec<String>>>,
}

/// `idp`: `authorize` binds `code`, advances and answers with the run's
/// nonce (`?fail` fails it); `callback` (needs the run's nonce) binds
/// `email` and moves past the last step.
fn idp(record: &Record) -> Pipeline<Body, Response> {
    let seen = record.inner_seen.clone();
    let seen_callback = record.inner_seen.clone();
    let finishes = record.inner_hooks.clone();
    let errors = record.inner_hooks.clone();
    Pipeline::builder("idp")
        .flow_kind("login")
        .flow_kind("link")
        .step("authorize", move |request: Request<Body>, flow| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(format!(
                    "{}/{}#{} kind={} user={:?} verified={}",
                    flow.pipeline(),
                    flow.step_name(),
                    flow.step_index(),
                    flow.kind(),
                    flow.user(),
                    flow.nonce_verified()
                ));
                if has(&request, "fail") {
                    return Err(FlowError::failed("the provider refused"));
                }
                if has(&request, "nest-again") {
                    let again = Pipeline::<Body, Response>::builder("again")
                        .flow_kind("login")
                        .step("only", |_request, flow| async move { flow.next().await })
                        .on_finish(|_request, _finished| async { Ok(String::new()) })
                        .on_error(|failure| failure.error.to_string())
                        .build();
                    return flow
                        .nest(&again, "login", request)
                        .await
                        .map(|_| String::new());
                }
                flow.bind("code", "c0de")?;
                flow.advance()?;
                Ok(format!("authorize nonce={}", flow.nonce()?.as_str()))
            }
        })
        .callback("callback", move |_request, flow| {
            let seen = seen_callback.clone();
            async move {
                let code: Option<String> = flow.fetch("code")?;
                seen.lock().unwrap().push(format!(
                    "{}/{}#{} kind={} code={code:?} verified={}",
                    flow.pipeline(),
                    flow.step_name(),
                    flow.step_index(),
                    flow.kind(),
                    flow.nonce_verified()
                ));
                flow.bind("email", "alice@example.com")?;
                flow.next().await
            }
        })
        .on_finish(move |_request, _finished| {
            finishes.fetch_add(1, Ordering::SeqCst);
            async { Ok("the inner finish hook".to_owned()) }
        })
        .on_error(move |_failure| {
            errors.fetch_add(1, Ordering::SeqCst);
            "the inner error handler".to_owned()
        })
        .build()
}

/// `setup`: `choose` moves on at once; `identity` nests `idp` (kind from
/// the `x-kind` header, `login` without), binds its `email` when it ends
/// and moves on (`?skip`: moves on without it; `?fail-after`: fails after a
/// run ended); `confirm` is a callback step that finishes the flow.
fn setup(record: &Record) -> Pipeline<Body, Response> {
    let inner = idp(record);
    let nested = record.nested_finished.clone();
    let outer = record.outer_finished.clone();
    let failures = record.failures.clone();
    Pipeline::builder("setup")
        .flow_kind("integration")
        .user(|parts| {
            parts
                .headers
                .get("x-user")
                .map(|v| v.to_str().unwrap().to_owned())
        })
        .step("choose", |_request, flow| async move { flow.next().await })
        .step("identity", move |request: Request<Body>, flow| {
            let inner = inner.clone();
            let nested = nested.clone();
            async move {
                if has(&request, "skip") {
                    flow.advance()?;
                    return Ok("skipped".to_owned());
                }
                let fail_after = has(&request, "fail-after");
                let refuse_after = has(&request, "refuse-after");
                let kind = request
                    .headers()
                    .get("x-kind")
                    .map_or("login".to_owned(), |v| v.to_str().unwrap().to_owned());
                match flow.nest(&inner, &kind, request).await? {
                    Nested::Answer(answer) => Ok(answer),
                    Nested::Finished(finished) => {
                        let email: Option<String> = finished.fetch("email")?;
                        nested.lock().unwrap().push(finished);
                        if fail_after {
                            return Err(FlowError::failed("the outer step failed"));
                        }
                        if refuse_after {
                            // An outcome that leaves the flow as it was.
                            return Err(FlowError::UserMismatch);
                        }
                        flow.bind("email", &email)?;
                        flow.advance()?;
                        Ok(format!(
                            "identity done, outer nonce={}",
                            flow.nonce()?.as_str()
                        ))
                    }
                }
            }
        })
        .callback("confirm", |_request, flow| async move { flow.next().await })
        .on_finish(move |_request, finished| {
            let outer = outer.clone();
            async move {
                *outer.lock().unwrap() = Some(finished);
                Ok("finished".to_owned())
            }
        })
        .on_error(move |failure| {
            let seen = Seen {
                error: failure.error.kind().to_owned(),
                step: failure.step.clone(),
                inner: failure
                    .inner
                    .clone()
                    .map(|inner| (inner.pipeline, inner.step)),
            };
            failures.lock().unwrap().push(seen);
            format!("error:{}", failure.error.kind())
        })
        .build()
}

/// Whether the request's query has `flag`.
fn has(request: &Request<Body>, flag: &str) -> bool {
    request
        .uri()
        .query()
        .is_some_and(|query| query.split('&').any(|part| part == flag))
}

fn request(state: &PipelineState, method: Method, uri: &str) -> Request<Body> {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("x-user", "alice")
        .body(Body::default())
        .unwrap();
    request
        .extensions_mut()
        .insert(crate::LazyPipelineState::from(state.clone()));
    request
}

fn fields(state: &PipelineState) -> Map<String, Value> {
    state.read().unwrap()
}

/// The state the next request of the flow loads, as the layer would.
fn reload(fields: &Map<String, Value>) -> PipelineState {
    let origin = Origin::Loaded {
        id: "0123456789abcdef0123456789abcdef".parse().unwrap(),
        version: 2,
    };
    PipelineState::from_origin(origin, fields.clone())
}

/// Starts `setup` and walks it into the inner run's callback step: the
/// flow's fields then, and the inner nonce.
async fn to_the_inner_callback(
    pipeline: &Pipeline<Body, Response>,
) -> (Map<String, Value>, String) {
    let state = PipelineState::detached();
    let answer = pipeline
        .start(request(&state, Method::GET, "/flow"), "integration")
        .await;
    let nonce = answer
        .strip_prefix("authorize nonce=")
        .unwrap_or_else(|| panic!("{answer}"))
        .to_owned();
    (fields(&state), nonce)
}

#[tokio::test]
async fn a_nested_run_keeps_its_own_namespace_and_hands_its_data_to_the_outer_step() {
    let record = Record::default();
    let pipeline = setup(&record);
    let (loaded, inner_nonce) = to_the_inner_callback(&pipeline).await;

    assert_eq!(
        loaded["step_index"], 1,
        "the outer flow stays on `identity`"
    );
    assert_eq!(loaded["data"], json!({}), "the outer data is untouched");
    let run = &loaded["nested"]["idp"];
    assert_eq!(run["flow"], "login");
    assert_eq!(run["signature"], idp(&record).signature().as_str());
    assert_eq!(run["step_index"], 1, "the inner run advanced");
    assert_eq!(run["nonce"], inner_nonce.as_str());
    assert_eq!(run["data"], json!({"code": "c0de"}));
    assert_ne!(loaded["nonce"], inner_nonce.as_str(), "a nonce of its own");
    assert_eq!(
        record.inner_seen.lock().unwrap().as_slice(),
        ["idp/authorize#0 kind=login user=Some(\"alice\") verified=false"]
    );

    // The provider sends the user back with the inner nonce; a later call
    // asks for another kind, and the run keeps its own.
    let state = reload(&loaded);
    let mut back = request(&state, Method::GET, &format!("/flow?state={inner_nonce}"));
    back.headers_mut().insert("x-kind", "link".parse().unwrap());
    let answer = pipeline.dispatch(back).await;
    let outer_nonce = loaded["nonce"].as_str().unwrap();
    assert_eq!(answer, format!("identity done, outer nonce={outer_nonce}"));
    assert_eq!(
        record.inner_seen.lock().unwrap()[1],
        "idp/callback#1 kind=login code=Some(\"c0de\") verified=true"
    );
    let nested = record.nested_finished.lock().unwrap().clone();
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
    let after = fields(&state);
    assert!(!after.contains_key("nested"), "the run is gone: {after:?}");
    assert_eq!(after["step_index"], 2);
    assert_eq!(after["data"], json!({"email": "alice@example.com"}));

    // The outer callback step, with the outer nonce, finishes the flow.
    let state = reload(&after);
    let answer = pipeline
        .dispatch(request(
            &state,
            Method::GET,
            &format!("/flow?state={outer_nonce}"),
        ))
        .await;
    assert_eq!(answer, "finished");
    let finished = record.outer_finished.lock().unwrap().take().unwrap();
    assert_eq!(finished.pipeline, "setup");
    assert_eq!(
        finished.fetch::<String>("email").unwrap().as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(
        record.inner_hooks.load(Ordering::SeqCst),
        0,
        "the inner pipeline's own hooks never ran"
    );
    assert!(record.failures.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_inner_pipeline_runs_alone_too_with_its_own_hooks() {
    let record = Record::default();
    let alone = idp(&record);
    let state = PipelineState::detached();
    let answer = alone
        .start(request(&state, Method::POST, "/idp"), "login")
        .await;
    let nonce = answer
        .strip_prefix("authorize nonce=")
        .expect(&answer)
        .to_owned();
    let state = reload(&fields(&state));
    let answer = alone
        .dispatch(request(&state, Method::GET, &format!("/idp?state={nonce}")))
        .await;
    assert_eq!(answer, "the inner finish hook");
    assert!(state.is_cleared());
    assert_eq!(record.inner_hooks.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_outer_nonce_does_not_open_an_inner_callback_step_nor_the_inner_one_an_outer() {
    let record = Record::default();
    let pipeline = setup(&record);
    let (loaded, inner_nonce) = to_the_inner_callback(&pipeline).await;
    let outer_nonce = loaded["nonce"].as_str().unwrap().to_owned();

    let state = reload(&loaded);
    let answer = pipeline
        .dispatch(request(
            &state,
            Method::GET,
            &format!("/flow?state={outer_nonce}"),
        ))
        .await;
    assert_eq!(answer, "error:nonce_missing");
    assert_eq!(
        fields(&state),
        loaded,
        "nothing changed, the outer nonce is live"
    );
    assert_eq!(state.end_request(false), Outcome::Unchanged);
    assert_eq!(
        record.failures.lock().unwrap().pop().unwrap(),
        Seen {
            error: "nonce_missing".to_owned(),
            step: Some("identity".to_owned()),
            inner: Some(("idp".to_owned(), Some("callback".to_owned()))),
        }
    );

    // A flow on its outer callback step while a run is live (what racing
    // requests can leave): the inner nonce does not open the outer step.
    let mut planted = loaded.clone();
    planted.insert("step_index".to_owned(), json!(2));
    let state = reload(&planted);
    let answer = pipeline
        .dispatch(request(
            &state,
            Method::GET,
            &format!("/flow?state={inner_nonce}"),
        ))
        .await;
    assert_eq!(answer, "error:nonce_missing");
    assert_eq!(
        fields(&state),
        planted,
        "nothing changed, the inner nonce is live"
    );
    assert_eq!(state.end_request(false), Outcome::Unchanged);
    assert_eq!(
        record.failures.lock().unwrap().pop().unwrap(),
        Seen {
            error: "nonce_missing".to_owned(),
            step: Some("confirm".to_owned()),
            inner: None,
        }
    );
}

#[tokio::test]
async fn a_replayed_nonce_is_a_mismatch_while_another_is_live_and_a_replay_once_none_is() {
    let record = Record::default();
    let pipeline = setup(&record);
    let (loaded, inner_nonce) = to_the_inner_callback(&pipeline).await;

    // The inner nonce consumed, the outer one live.
    let mut consumed = loaded.clone();
    consumed["nested"]["idp"]
        .as_object_mut()
        .unwrap()
        .remove("nonce");
    let state = reload(&consumed);
    let answer = pipeline
        .dispatch(request(
            &state,
            Method::GET,
            &format!("/flow?state={inner_nonce}"),
        ))
        .await;
    assert_eq!(answer, "error:nonce_mismatch");
    assert_eq!(state.end_request(false), Outcome::Unchanged);

    // No nonce left anywhere: a replay is all it can be.
    consumed.remove("nonce");
    let state = reload(&consumed);
    let answer = pipeline
        .dispatch(request(
            &state,
            Method::GET,
            &format!("/flow?state={inner_nonce}"),
        ))
        .await;
    assert_eq!(answer, "error:nonce_replayed");
    assert_eq!(state.end_request(false), Outcome::Unchanged);

    // A value that matches two live nonces (only a planted record holds
    // two equal ones): never guess which one counts.
    let mut twins = loaded.clone();
    twins["nested"]["idp"]["nonce"] = twins["nonce"].clone();
    let outer_nonce = twins["nonce"].as_str().unwrap().to_owned();
    let state = reload(&twins);
    let answer = pipeline
        .dispatch(request(
            &state,
            Method::GET,
            &format!("/flow?state={outer_nonce}"),
        ))
        .await;
    assert_eq!(answer, "error:nonce_mismatch");
    assert_eq!(state.end_request(false), Outcome::Unchanged);

    // A forged value, both nonces live.
    let state = reload(&loaded);
    let answer = pipeline
        .dispatch(request(&state, Method::GET, "/flow?state=forged"))
        .await;
    assert_eq!(answer, "error:nonce_mismatch");
    assert_eq!(state.end_request(false), Outcome::Unchanged);
}

#[tokio::test]
async fn a_consumed_inner_nonce_is_kept_on_a_server_error_in_the_nested_field() {
    let record = Record::default();
    let pipeline = setup(&record);
    let (loaded, inner_nonce) = to_the_inner_callback(&pipeline).await;
    let state = reload(&loaded);
    pipeline
        .dispatch(request(
            &state,
            Method::GET,
            &format!("/flow?state={inner_nonce}"),
        ))
        .await;
    let Outcome::Update { data, changes, .. } = state.end_request(true) else {
        panic!("the nonce's consumption is written even when discarding")
    };
    let mut expected = loaded.clone();
    expected["nested"]["idp"]
        .as_object_mut()
        .unwrap()
        .remove("nonce");
    assert_eq!(data, expected, "only the inner nonce is gone");
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].field, "nested");
}

#[tokio::test]
async fn an_inner_failure_names_the_outer_step_and_the_inner_one_and_ends_the_flow() {
    let record = Record::default();
    let pipeline = setup(&record);
    let state = PipelineState::detached();
    pipeline
        .start(request(&state, Method::GET, "/flow"), "integration")
        .await;
    let mut loaded = fields(&state);
    // Back at the inner run's first step.
    loaded["nested"]["idp"]["step_index"] = json!(0);
    let state = reload(&loaded);
    let answer = pipeline
        .dispatch(request(&state, Method::POST, "/flow?fail"))
        .await;
    assert_eq!(answer, "error:failed");
    assert!(state.is_cleared(), "a failed step ends the outer flow");
    assert_eq!(
        record.failures.lock().unwrap().pop().unwrap(),
        Seen {
            error: "failed".to_owned(),
            step: Some("identity".to_owned()),
            inner: Some(("idp".to_owned(), Some("authorize".to_owned()))),
        }
    );
    assert_eq!(record.inner_hooks.load(Ordering::SeqCst), 0);

    // A failure of the outer step after the run ended names no inner step.
    let (loaded, inner_nonce) = to_the_inner_callback(&pipeline).await;
    let state = reload(&loaded);
    let uri = format!("/flow?state={inner_nonce}&fail-after");
    let answer = pipeline.dispatch(request(&state, Method::GET, &uri)).await;
    assert_eq!(answer, "error:failed");
    assert_eq!(
        record.failures.lock().unwrap().pop().unwrap(),
        Seen {
            error: "failed".to_owned(),
            step: Some("identity".to_owned()),
            inner: None,
        }
    );
}

#[tokio::test]
async fn a_run_is_checked_as_a_flow_is() {
    let record = Record::default();
    let pipeline = setup(&record);
    let (loaded, _) = to_the_inner_callback(&pipeline).await;
    let cases = [
        ("signature", json!("0000"), "signature_changed"),
        ("flow", json!("delete-account"), "unknown_flow_kind"),
        ("step_index", json!(3), "corrupt"),
    ];
    for (field, value, outcome) in cases {
        let mut planted = loaded.clone();
        planted["nested"]["idp"][field] = value;
        let state = reload(&planted);
        let answer = pipeline
            .dispatch(request(&state, Method::GET, "/flow"))
            .await;
        assert_eq!(answer, format!("error:{outcome}"), "{field}");
        assert!(state.is_cleared(), "{field}: these end the flow");
        assert_eq!(
            record.failures.lock().unwrap().pop().unwrap(),
            Seen {
                error: outcome.to_owned(),
                step: Some("identity".to_owned()),
                inner: Some(("idp".to_owned(), None)),
            },
            "{field}: refused before any inner step ran"
        );
    }

    // A kind the inner pipeline does not run, when the run starts.
    let state = PipelineState::detached();
    let mut start = request(&state, Method::GET, "/flow");
    start
        .headers_mut()
        .insert("x-kind", "nope".parse().unwrap());
    assert_eq!(
        pipeline.start(start, "integration").await,
        "error:unknown_flow_kind"
    );
    assert!(state.is_cleared());
    assert_eq!(
        record.inner_seen.lock().unwrap().len(),
        1,
        "no inner step ran"
    );
}

#[tokio::test]
async fn a_request_after_the_last_inner_step_advanced_ends_the_run_without_running_a_step() {
    let record = Record::default();
    let pipeline = setup(&record);
    let (mut loaded, _) = to_the_inner_callback(&pipeline).await;
    loaded["nested"]["idp"]["step_index"] = json!(2);
    loaded["nested"]["idp"]["data"] = json!({"email": "bob@example.com"});
    let state = reload(&loaded);
    let answer = pipeline
        .dispatch(request(&state, Method::GET, "/flow"))
        .await;
    assert!(answer.starts_with("identity done"), "{answer}");
    assert_eq!(
        record.inner_seen.lock().unwrap().len(),
        1,
        "no inner step ran"
    );
    assert_eq!(fields(&state)["data"], json!({"email": "bob@example.com"}));
    assert!(!fields(&state).contains_key("nested"));
}

#[tokio::test]
async fn the_outer_flow_moving_on_drops_a_run_it_did_not_finish() {
    let record = Record::default();
    let pipeline = setup(&record);
    let (loaded, _) = to_the_inner_callback(&pipeline).await;
    let state = reload(&loaded);
    let answer = pipeline
        .dispatch(request(&state, Method::POST, "/flow?skip"))
        .await;
    assert_eq!(answer, "skipped");
    let after = fields(&state);
    assert_eq!(after["step_index"], 2);
    assert!(!after.contains_key("nested"), "{after:?}");
}

#[tokio::test]
async fn a_step_of_a_nested_run_cannot_nest_again() {
    let record = Record::default();
    let pipeline = setup(&record);
    let state = PipelineState::detached();
    pipeline
        .start(request(&state, Method::GET, "/flow"), "integration")
        .await;
    let mut loaded = fields(&state);
    loaded["nested"]["idp"]["step_index"] = json!(0);
    let state = reload(&loaded);
    let answer = pipeline
        .dispatch(request(&state, Method::GET, "/flow?nest-again"))
        .await;
    assert_eq!(answer, "error:failed");
    assert_eq!(
        record.failures.lock().unwrap().pop().unwrap().inner,
        Some(("idp".to_owned(), Some("authorize".to_owned())))
    );
}

#[tokio::test]
async fn nested_finished_returned_by_a_step_that_did_not_finish_reaches_the_error_handler() {
    let inner = Pipeline::<Body, Response>::builder("inner")
        .flow_kind("k")
        .step("lies", |_request, _flow| async {
            Err(FlowError::NestedFinished)
        })
        .on_finish(|_request, _finished| async { Ok(String::new()) })
        .on_error(|_failure| String::new())
        .build();
    let outer = Pipeline::<Body, Response>::builder("outer")
        .flow_kind("k")
        .step("nests", move |request, flow| {
            let inner = inner.clone();
            async move {
                match flow.nest(&inner, "k", request).await? {
                    Nested::Answer(answer) => Ok(answer),
                    Nested::Finished(_) => Ok("finished".to_owned()),
                }
            }
        })
        .on_finish(|_request, _finished| async { Ok(String::new()) })
        .on_error(|failure| format!("error:{}", failure.error.kind()))
        .build();
    let state = PipelineState::detached();
    let answer = outer.start(request(&state, Method::GET, "/"), "k").await;
    assert_eq!(answer, "error:nested_finished");
    assert!(!FlowError::NestedFinished.ends_flow());
}

mod in_memory {
    //! The end of a run written at once, on states loaded from a
    //! `MemoryStore` as the layer loads them.

    use std::sync::Arc;

    use super::*;
    use crate::{
        config::Config,
        id::PipelineId,
        record::{decode, encode},
        shared::Shared,
        store::{MemoryStore, Store},
    };

    async fn stored(
        fields: &Map<String, Value>,
        config: Config,
    ) -> (Arc<Shared<MemoryStore>>, PipelineId) {
        let shared = Arc::new(Shared {
            store: Arc::new(MemoryStore::new()),
            config,
        });
        let id = PipelineId::generate();
        let record = encode(1, fields);
        let key = shared.config.key(id);
        assert!(
            shared
                .store
                .create(&key, &record, shared.config.ttl)
                .await
                .unwrap()
        );
        (shared, id)
    }

    async fn version(shared: &Shared<MemoryStore>, id: PipelineId) -> u64 {
        let raw = shared
            .store
            .load(&shared.config.key(id), None)
            .await
            .unwrap();
        decode(&raw.unwrap()).unwrap().version
    }

    #[tokio::test]
    async fn of_two_requests_ending_one_run_only_the_first_gets_its_data() {
        let record = Record::default();
        let pipeline = setup(&record);
        let (loaded, inner_nonce) = to_the_inner_callback(&pipeline).await;
        let (shared, id) = stored(&loaded, Config::default()).await;
        let first = shared.state(id).await;
        let second = shared.state(id).await;
        let uri = format!("/flow?state={inner_nonce}");

        let answer = pipeline.dispatch(request(&first, Method::GET, &uri)).await;
        assert!(answer.starts_with("identity done"), "{answer}");
        assert_eq!(version(&shared, id).await, 2, "written before the answer");
        let Outcome::Update { version, .. } = first.end_request(false) else {
            panic!("the outer step's changes after the commit")
        };
        assert_eq!(version, 2, "the flush writes at the committed version");

        let answer = pipeline.dispatch(request(&second, Method::GET, &uri)).await;
        assert_eq!(answer, "error:concurrent");
        assert_eq!(
            second.end_request(false),
            Outcome::Unchanged,
            "keeps nothing"
        );
        assert_eq!(record.nested_finished.lock().unwrap().len(), 1);
        assert_eq!(
            record.failures.lock().unwrap().pop().unwrap().inner,
            Some(("idp".to_owned(), Some("callback".to_owned())))
        );
    }

    #[tokio::test]
    async fn the_end_of_a_run_stays_written_when_the_step_then_fails_leaving_the_flow() {
        let record = Record::default();
        let pipeline = setup(&record);
        let (loaded, inner_nonce) = to_the_inner_callback(&pipeline).await;
        let (shared, id) = stored(&loaded, Config::default()).await;
        let state = shared.state(id).await;
        let uri = format!("/flow?state={inner_nonce}&refuse-after");
        let answer = pipeline.dispatch(request(&state, Method::GET, &uri)).await;
        assert_eq!(answer, "error:user_mismatch");
        assert!(!state.is_cleared());
        assert_eq!(state.end_request(false), Outcome::Unchanged, "nothing more");
        let raw = shared
            .store
            .load(&shared.config.key(id), None)
            .await
            .unwrap();
        let written = decode(&raw.unwrap()).unwrap();
        assert_eq!(written.version, 2, "the commit stays");
        assert!(!written.data.contains_key("nested"), "the run is gone");
        assert_eq!(written.data["step_index"], 1, "the outer flow did not move");
    }

    #[tokio::test]
    async fn the_end_of_a_run_over_the_size_limit_fails_and_ends_the_flow() {
        let inner = Pipeline::<Body, Response>::builder("inner")
            .flow_kind("k")
            .step("only", |_request, flow| async move { flow.next().await })
            .on_finish(|_request, _finished| async { Ok(String::new()) })
            .on_error(|_failure| String::new())
            .build();
        let finished = Arc::new(AtomicUsize::new(0));
        let seen = finished.clone();
        let outer = Pipeline::<Body, Response>::builder("outer")
            .flow_kind("k")
            .step("wait", |_request, flow| async move {
                flow.advance()?;
                Ok("waiting".to_owned())
            })
            .step("pad", move |request, flow| {
                let inner = inner.clone();
                let seen = seen.clone();
                async move {
                    // Over the limit in memory before the run ends.
                    flow.bind("pad", &"x".repeat(300))?;
                    match flow.nest(&inner, "k", request).await? {
                        Nested::Answer(answer) => Ok(answer),
                        Nested::Finished(_) => {
                            seen.fetch_add(1, Ordering::SeqCst);
                            Ok("finished".to_owned())
                        }
                    }
                }
            })
            .on_finish(|_request, _finished| async { Ok(String::new()) })
            .on_error(|failure| format!("error:{}", failure.error.kind()))
            .build();
        let started = PipelineState::detached();
        let answer = outer.start(request(&started, Method::GET, "/"), "k").await;
        assert_eq!(answer, "waiting");
        let loaded = fields(&started);
        let config = Config {
            max_record_size: encode(1, &loaded).len() + 100,
            ..Config::default()
        };
        let (shared, id) = stored(&loaded, config).await;
        let state = shared.state(id).await;
        let answer = outer.dispatch(request(&state, Method::GET, "/")).await;
        assert_eq!(answer, "error:failed");
        assert_eq!(version(&shared, id).await, 1, "nothing written now");
        assert!(state.is_cleared(), "the flow ends");
        assert_eq!(finished.load(Ordering::SeqCst), 0, "no data handed over");
    }
}
