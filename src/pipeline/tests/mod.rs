//! Engine logic on detached states (no layer, no store): binding and
//! fetching, the lifecycle's turns, and what a failure clears.

use std::sync::{Arc, Mutex};

use http::{Method, Request};

use super::*;
use crate::PipelineState;

type Response = String;
/// A body that can be rebuilt from bytes, as `dispatch` needs.
type Body = http_body_util::Full<bytes::Bytes>;

async fn text(request: Request<Body>) -> String {
    use http_body_util::BodyExt;
    let bytes = request.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// A failure as the error handler saw it: message, flow kind, step.
type Recorded = (String, Option<String>, Option<String>);

/// What the finish hook saw, for the assertions.
type Seen = Arc<Mutex<Option<Finished>>>;

fn request(state: &PipelineState, method: Method, uri: &str) -> Request<Body> {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::default())
        .unwrap();
    request
        .extensions_mut()
        .insert(crate::LazyPipelineState::from(state.clone()));
    request
}

fn describe(failure: Failure) -> String {
    format!("error:{}", failure.error.kind())
}

#[tokio::test]
async fn fetch_returns_what_was_bound_under_that_key() {
    let pipeline = Pipeline::<Body, Response>::builder("bind")
        .flow_kind("login")
        .step("bind", |_request, flow| async move {
            // The seed's fetch_state(key) read the literal 'key': bind that
            // key too, with a value no other key has, to catch it.
            flow.bind("key", "the literal key")?;
            flow.bind("provider", "github")?;
            flow.bind("attempts", &3u32)?;
            flow.bind(
                "identity",
                &serde_json::json!({"id": 7, "email": "a@example.com"}),
            )?;
            let provider: Option<String> = flow.fetch("provider")?;
            let attempts: Option<u32> = flow.fetch("attempts")?;
            let email: Option<serde_json::Value> = flow.fetch("identity")?;
            let missing: Option<String> = flow.fetch("nothing")?;
            assert_eq!(provider.as_deref(), Some("github"));
            assert_eq!(attempts, Some(3));
            assert_eq!(email.unwrap()["email"], "a@example.com");
            assert_eq!(missing, None);
            // Rebinding replaces, unbinding removes.
            flow.bind("provider", "gitlab")?;
            assert_eq!(flow.fetch::<String>("provider")?.as_deref(), Some("gitlab"));
            assert!(flow.unbind("attempts")?);
            assert!(!flow.unbind("attempts")?);
            assert_eq!(flow.fetch::<u32>("attempts")?, None);
            // A type that does not match what was bound is an error, not a
            // silent default.
            let wrong = flow.fetch::<u32>("provider").unwrap_err();
            assert_eq!(wrong.kind(), "state");
            Ok("bound".to_owned())
        })
        .on_finish(|_request, _finished| async { Ok("finished".to_owned()) })
        .on_error(describe)
        .build();

    let state = PipelineState::detached();
    let answer = pipeline
        .start(request(&state, Method::GET, "/flow"), "login")
        .await;
    assert_eq!(answer, "bound");
    let data: serde_json::Map<String, serde_json::Value> = state.get("data").unwrap().unwrap();
    assert_eq!(data["key"], "the literal key");
    assert_eq!(data["provider"], "gitlab");
    assert!(!data.contains_key("attempts"));
}

#[tokio::test]
async fn start_writes_the_initial_state_and_next_runs_to_the_finish_hook() {
    let seen: Seen = Arc::default();
    let hook_seen = seen.clone();
    let pipeline = Pipeline::<Body, Response>::builder("three")
        .flow_kind("login")
        .flow_kind("link")
        .user(|parts| {
            parts
                .headers
                .get("x-user")
                .map(|v| v.to_str().unwrap().to_owned())
        })
        .step("one", |request, flow| async move {
            assert_eq!(
                request.method(),
                Method::GET,
                "start enters the first step as a GET, whatever the start route took"
            );
            assert!(request.headers().get("content-type").is_none());
            assert_eq!(text(request).await, "", "with an empty body");
            assert_eq!((flow.step_index(), flow.step_name()), (0, "one"));
            assert_eq!(flow.kind(), "link");
            assert_eq!(flow.user(), Some("alice"));
            assert_eq!(flow.pipeline(), "three");
            flow.bind("one", &1)?;
            flow.next().await
        })
        .step("two", |request, flow| async move {
            assert_eq!(request.method(), Method::GET, "next enters as a GET");
            assert!(request.headers().get("content-length").is_none());
            assert!(request.headers().get("content-type").is_none());
            assert_eq!(request.headers()["x-user"], "alice");
            assert_eq!(text(request).await, "", "with an empty body");
            assert_eq!(flow.step_name(), "two");
            flow.bind("two", &2)?;
            flow.next().await
        })
        .step("three", |_request, flow| async move {
            flow.bind("three", &3)?;
            flow.next().await
        })
        .on_finish(move |_request, finished| {
            let seen = hook_seen.clone();
            async move {
                *seen.lock().unwrap() = Some(finished);
                Ok("finished".to_owned())
            }
        })
        .on_error(describe)
        .build();

    let state = PipelineState::detached();
    let mut start = request(&state, Method::POST, "/flow");
    *start.body_mut() = Body::from("form=1");
    start.headers_mut().insert(
        "content-type",
        "application/x-www-form-urlencoded".parse().unwrap(),
    );
    start
        .headers_mut()
        .insert("x-user", "alice".parse().unwrap());
    assert_eq!(pipeline.start(start, "link").await, "finished");

    let finished = seen.lock().unwrap().take().expect("the finish hook ran");
    assert_eq!(finished.pipeline, "three");
    assert_eq!(finished.kind, "link");
    assert_eq!(finished.user.as_deref(), Some("alice"));
    assert_eq!(
        serde_json::Value::Object(finished.data.clone()),
        serde_json::json!({"one": 1, "two": 2, "three": 3})
    );
    assert_eq!(finished.fetch::<u32>("two").unwrap(), Some(2));
    let ended: serde_json::Map<String, serde_json::Value> = state.read().unwrap();
    assert_eq!(
        ended.get("ended"),
        Some(&serde_json::json!({"how": {"as": "finished"}})),
        "a finished flow keeps only how it ended, for its replays"
    );
    assert_eq!(ended["data"], serde_json::json!({}), "nothing it bound");
}

#[tokio::test]
async fn the_initial_state_has_every_field_of_a_flow() {
    let pipeline = Pipeline::<Body, Response>::builder("fields")
        .flow_kind("login")
        .step("wait", |_request, flow| async move {
            flow.advance()?;
            flow.advance()?; // still one step, not two
            Ok(flow.nonce()?.as_str().to_owned())
        })
        .step("later", |_request, _flow| async { Ok("later".to_owned()) })
        .on_finish(|_request, _finished| async { Ok("finished".to_owned()) })
        .on_error(describe)
        .build();

    let state = PipelineState::detached();
    let nonce = pipeline
        .start(request(&state, Method::GET, "/flow"), "login")
        .await;
    let stored: serde_json::Value = state.read().unwrap();
    assert_eq!(stored["pipeline"], "fields");
    assert_eq!(stored["flow"], "login");
    assert_eq!(stored["uid"], serde_json::Value::Null);
    assert_eq!(stored["signature"], pipeline.signature().as_str());
    assert_eq!(stored["step_index"], 1, "advanced once");
    assert_eq!(stored["nonce"], nonce.as_str());
    assert_eq!(nonce.len(), 43);
    assert_eq!(stored["data"], serde_json::json!({}));
}

#[tokio::test]
async fn no_flow_unknown_kinds_and_a_missing_layer_are_failures() {
    let pipeline = Pipeline::<Body, Response>::builder("p")
        .flow_kind("login")
        .step("one", |_request, _flow| async { Ok("step".to_owned()) })
        .on_finish(|_request, _finished| async { Ok("finished".to_owned()) })
        .on_error(describe)
        .build();

    let state = PipelineState::detached();
    let answer = pipeline
        .dispatch(request(&state, Method::GET, "/flow"))
        .await;
    assert_eq!(answer, "error:no_flow");
    assert!(
        state.is_empty() && state.id().is_none(),
        "nothing was created"
    );

    let answer = pipeline
        .start(request(&state, Method::GET, "/flow"), "setup")
        .await;
    assert_eq!(answer, "error:unknown_flow_kind");
    assert!(
        state.is_empty() && state.id().is_none(),
        "nothing was created"
    );

    let bare = Request::builder()
        .uri("/flow")
        .body(Body::default())
        .unwrap();
    assert_eq!(pipeline.dispatch(bare).await, "error:missing_layer");
    let bare = Request::builder()
        .uri("/flow")
        .body(Body::default())
        .unwrap();
    assert_eq!(pipeline.start(bare, "login").await, "error:missing_layer");
}

#[tokio::test]
async fn a_failing_step_clears_the_flow_and_the_error_handler_answers() {
    let failures: Arc<Mutex<Vec<Recorded>>> = Arc::default();
    let recorded = failures.clone();
    let pipeline = Pipeline::<Body, Response>::builder("p")
        .flow_kind("login")
        .step("one", |_request, flow| async move {
            flow.bind("secret", "x")?;
            Err(FlowError::failed("the provider refused"))
        })
        .on_finish(|_request, _finished| async { Ok("finished".to_owned()) })
        .on_error(move |failure| {
            recorded.lock().unwrap().push((
                failure.error.to_string(),
                failure.kind.clone(),
                failure.step.clone(),
            ));
            describe(failure)
        })
        .build();

    let state = PipelineState::detached();
    let answer = pipeline
        .start(request(&state, Method::GET, "/flow"), "login")
        .await;
    assert_eq!(answer, "error:failed");
    assert!(state.is_cleared(), "a failed flow is cleared");
    assert_eq!(
        failures.lock().unwrap().as_slice(),
        [(
            "the provider refused".to_owned(),
            Some("login".to_owned()),
            Some("one".to_owned())
        )]
    );
}

#[tokio::test]
async fn a_callback_step_needs_the_nonce() {
    let pipeline = Pipeline::<Body, Response>::builder("p")
        .flow_kind("login")
        .callback("callback", |_request, _flow| async {
            Ok("called back".to_owned())
        })
        .on_finish(|_request, _finished| async { Ok("finished".to_owned()) })
        .on_error(describe)
        .build();
    let state = PipelineState::detached();
    let answer = pipeline
        .start(request(&state, Method::GET, "/flow"), "login")
        .await;
    assert_eq!(answer, "error:nonce_missing");
    assert!(state.is_cleared(), "a start that fails keeps nothing");
}

#[test]
#[should_panic(expected = "two steps named `one`")]
fn duplicate_step_names_are_refused() {
    let _ = Pipeline::<Body, Response>::builder("p")
        .flow_kind("login")
        .step("one", |_request, _flow| async { Ok(String::new()) })
        .step("one", |_request, _flow| async { Ok(String::new()) })
        .on_finish(|_request, _finished| async { Ok(String::new()) })
        .on_error(describe)
        .build();
}

#[test]
#[should_panic(expected = "needs a finish hook")]
fn a_pipeline_without_a_finish_hook_is_refused() {
    let _ = Pipeline::<Body, Response>::builder("p")
        .flow_kind("login")
        .step("one", |_request, _flow| async { Ok(String::new()) })
        .on_error(describe)
        .build();
}

#[test]
#[should_panic(expected = "at least one flow kind")]
fn a_pipeline_without_flow_kinds_is_refused() {
    let _ = Pipeline::<Body, Response>::builder("p")
        .step("one", |_request, _flow| async { Ok(String::new()) })
        .on_finish(|_request, _finished| async { Ok(String::new()) })
        .on_error(describe)
        .build();
}

#[test]
fn the_signature_is_that_of_the_steps_and_which_are_callbacks() {
    let pipeline = Pipeline::<Body, Response>::builder("p")
        .flow_kind("login")
        .step("authorize", |_request, _flow| async { Ok(String::new()) })
        .callback("callback", |_request, _flow| async { Ok(String::new()) })
        .step("confirm", |_request, _flow| async { Ok(String::new()) })
        .on_finish(|_request, _finished| async { Ok(String::new()) })
        .on_error(describe)
        .build();
    assert_eq!(
        *pipeline.signature(),
        Signature::of_steps([("authorize", false), ("callback", true), ("confirm", false)])
    );
    assert_ne!(
        *pipeline.signature(),
        Signature::of(["authorize", "callback", "confirm"]),
        "a flow started before `callback` became a callback step ends"
    );
}

#[tokio::test]
async fn a_failure_names_the_step_it_came_from() {
    let steps: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let recorded = steps.clone();
    let pipeline = Pipeline::<Body, Response>::builder("p")
        .flow_kind("login")
        .step("one", |_request, flow| async move { flow.next().await })
        .step("two", |_request, flow| async move {
            // Moved on, then failed: the failure is still this step's.
            flow.advance()?;
            Err(FlowError::failed("broken"))
        })
        .step("three", |_request, _flow| async { Ok(String::new()) })
        .on_finish(|_request, _finished| async { Ok("finished".to_owned()) })
        .on_error(move |failure| {
            recorded.lock().unwrap().push(failure.step.clone());
            describe(failure)
        })
        .build();
    let state = PipelineState::detached();
    let answer = pipeline
        .start(request(&state, Method::GET, "/flow"), "login")
        .await;
    assert_eq!(answer, "error:failed");
    assert_eq!(steps.lock().unwrap().as_slice(), [Some("two".to_owned())]);
}

#[tokio::test]
async fn a_step_failing_without_ending_the_flow_leaves_it_as_loaded_with_its_nonce_spent() {
    let pipeline = Pipeline::<Body, Response>::builder("p")
        .flow_kind("login")
        .step("one", |_request, flow| async move {
            flow.advance()?;
            Ok("advanced".to_owned())
        })
        .callback("callback", |_request, flow| async move {
            flow.bind("half", "done")?;
            flow.advance()?;
            // An outcome a third party could provoke: the flow must not move.
            Err(FlowError::UserMismatch)
        })
        .on_finish(|_request, _finished| async { Ok("finished".to_owned()) })
        .on_error(describe)
        .build();
    let started = PipelineState::detached();
    let answer = pipeline
        .start(request(&started, Method::GET, "/flow"), "login")
        .await;
    assert_eq!(answer, "advanced");
    let fields: serde_json::Map<String, serde_json::Value> = started.read().unwrap();
    let nonce = fields["nonce"].as_str().unwrap().to_owned();

    // The next request brings the stored flow back, as the layer would.
    let origin = crate::state::Origin::Loaded {
        id: "0123456789abcdef0123456789abcdef".parse().unwrap(),
        version: 2,
    };
    let loaded = PipelineState::from_origin(
        origin,
        crate::record::object(serde_json::Value::Object(fields.clone())),
    );
    let answer = pipeline
        .dispatch(request(
            &loaded,
            Method::GET,
            &format!("/flow?state={nonce}"),
        ))
        .await;
    assert_eq!(answer, "error:user_mismatch");
    let mut spent = fields.clone();
    let nonce_hash = {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(nonce.as_bytes());
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    spent.remove("nonce");
    spent.insert("spent".into(), nonce_hash.into());
    assert_eq!(
        loaded
            .read::<serde_json::Map<String, serde_json::Value>>()
            .unwrap(),
        spent,
        "the bind and the advance are undone; the nonce, spent before the step, stays spent"
    );
    assert_eq!(
        loaded.end_request(false),
        crate::state::Outcome::Unchanged,
        "nothing more to write: the nonce was written before the step"
    );
    let replay = PipelineState::from_origin(
        crate::state::Origin::Loaded {
            id: "0123456789abcdef0123456789abcdef".parse().unwrap(),
            version: 3,
        },
        crate::record::object(serde_json::Value::Object(spent)),
    );
    let answer = pipeline
        .dispatch(request(
            &replay,
            Method::GET,
            &format!("/flow?state={nonce}"),
        ))
        .await;
    assert_eq!(
        answer, "error:nonce_replayed",
        "the step does not run again"
    );
}
