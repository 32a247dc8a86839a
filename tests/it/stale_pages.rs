//! Pages made for another step are told apart (issue 16). `Flow::link`
//! writes the step a page was made for next to the flow's reference
//! (`?flow=<reference>.<step>`); a form submitted from a page made for an
//! earlier step (Back, then submit) does not run the step the flow is on
//! now (`stale_step`, naming it, nothing bound), and a GET from such a page
//! shows the current step. Links without the marker behave as before.
//! The README's wizard (three steps: team, plan, confirm), over real HTTP
//! and a private redis-server, with an error handler that says what
//! happened.

use axum::{
    Form, Router,
    body::Body,
    extract::{FromRequest, Request},
    http::{Method, StatusCode},
    response::{Html, IntoResponse, Response},
    routing::post,
};
use serde::Deserialize;
use serde_json::{Value, json};
use tower_pipeline_state::{
    PipelineStateLayer,
    pipeline::{Flow, FlowError, Pipeline},
};

use crate::common::{
    forgiving::{answer, calls, describe, refused},
    *,
};

#[derive(Deserialize)]
struct Answer {
    value: String,
}

/// The README's `ask`: a GET asks for `key`, a POST binds the answer and
/// runs the next step.
async fn ask(
    key: &'static str,
    request: Request,
    flow: Flow<Body, Response>,
) -> Result<Response, FlowError> {
    if request.method() != Method::POST {
        let action = flow.link("/wizard");
        let form = format!(
            "<form method=post action='{action}'>{key}: <input name=value><button>Next</button></form>"
        );
        return Ok(Html(form).into_response());
    }
    let Form(answer) = Form::<Answer>::from_request(request, &())
        .await
        .map_err(FlowError::failed)?;
    flow.bind(key, &answer.value)?;
    flow.next().await
}

/// The README's `confirm`.
async fn confirm(request: Request, flow: Flow<Body, Response>) -> Result<Response, FlowError> {
    if request.method() != Method::POST {
        let team: String = flow.fetch("team")?.unwrap_or_default();
        let action = flow.link("/wizard");
        let form = format!(
            "<form method=post action='{action}'>Create {team}? <button>Create</button></form>"
        );
        return Ok(Html(form).into_response());
    }
    flow.next().await
}

/// The README's wizard, its error handler saying what happened.
async fn wizard(redis: &RedisServer) -> Server {
    let wizard = Pipeline::builder("wizard")
        .flow_kind("setup")
        .step("team", |request, flow| ask("team", request, flow))
        .step("plan", |request, flow| ask("plan", request, flow))
        .step("confirm", confirm)
        .on_finish(|_request, finished| async move {
            let team: String = finished.fetch("team")?.unwrap_or_default();
            let plan: String = finished.fetch("plan")?.unwrap_or_default();
            Ok(Html(format!("Created {team} on the {plan} plan")).into_response())
        })
        .on_error(|failure| (StatusCode::BAD_REQUEST, describe(&failure)).into_response())
        .build();
    let starter = wizard.clone();
    let app = Router::new()
        .route(
            "/wizard/start",
            post(move |request: Request| async move { starter.start(request, "setup").await }),
        )
        .route_service("/wizard", wizard)
        .layer(PipelineStateLayer::new(redis_store(&redis.url()).await).cookie_secure(false));
    serve(app).await
}

/// The form's action in a page of the wizard.
fn action(page: &str) -> String {
    page.split_once("action='")
        .and_then(|(_, rest)| rest.split_once('\''))
        .unwrap_or_else(|| panic!("a form: {page}"))
        .0
        .to_owned()
}

/// A form POST of `value` to `action`.
async fn submit(
    app: &Server,
    browser: &reqwest::Client,
    action: &str,
    value: &str,
) -> (StatusCode, String) {
    let response = browser
        .post(app.url(action))
        .form(&[("value", value)])
        .send()
        .await
        .unwrap();
    answer(response).await
}

/// The flow's stored fields.
fn fields(redis: &RedisServer, key: &str) -> Value {
    let raw = redis.get(key).unwrap();
    serde_json::from_slice::<Value>(&raw).unwrap()["data"].clone()
}

/// The measurement, now refused: answer "Acme" for the team, go
/// Back to the team page and submit "Globex". The flow is on `plan`; the
/// team page's answer must not become the plan. It is refused with
/// `stale_step` naming `plan`, nothing bound and nothing written (one
/// load); a GET of the stale page shows the plan step, and the wizard
/// goes on to "Created Acme on the Team plan".
#[tokio::test]
async fn back_to_the_team_page_then_submit_is_refused_as_stale_and_binds_nothing() {
    let redis = RedisServer::start();
    let app = wizard(&redis).await;
    let browser = browser();

    // Started by a button's POST, as the README routes it: the first step
    // renders.
    let started = browser.post(app.url("/wizard/start")).send().await.unwrap();
    let key = started_flow_key(&started);
    let (status, team_page) = answer(started).await;
    assert_eq!(status, StatusCode::OK, "{team_page}");
    assert!(team_page.contains("team: <input"), "{team_page}");
    let team_action = action(&team_page);
    assert!(
        team_action.ends_with(".0"),
        "made for step 0: {team_action}"
    );

    let (status, plan_page) = submit(&app, &browser, &team_action, "Acme").await;
    assert_eq!(status, StatusCode::OK, "{plan_page}");
    assert!(plan_page.contains("plan: <input"), "{plan_page}");
    let before = redis.get(&key);
    assert_eq!(fields(&redis, &key)["data"], json!({"team": "Acme"}));

    // Back to the team page (the browser shows it from its history), then
    // submit it again with another answer.
    redis.reset_stats();
    assert_eq!(
        submit(&app, &browser, &team_action, "Globex").await,
        refused("outcome=stale_step current=plan")
    );
    assert_eq!(
        redis.command_calls(),
        calls(&[("evalsha", 1), ("get", 1), ("expire", 1)]),
        "the load, nothing written"
    );
    assert_eq!(redis.get(&key), before, "nothing bound");

    // A GET of the stale page (a refresh of it) shows the current step.
    let refreshed = browser.get(app.url(&team_action)).send().await.unwrap();
    let (status, page) = answer(refreshed).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("plan: <input"), "the plan step: {page}");
    assert_eq!(action(&page), action(&plan_page));

    let (status, confirm_page) = submit(&app, &browser, &action(&page), "Team").await;
    assert_eq!(status, StatusCode::OK, "{confirm_page}");
    assert!(confirm_page.contains("Create Acme?"), "{confirm_page}");
    let created = browser
        .post(app.url(&action(&confirm_page)))
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer(created).await,
        (StatusCode::OK, "Created Acme on the Team plan".to_owned())
    );
}

/// A link without the step marker (a page made before markers existed, or
/// a hand-written link) runs the step the flow is on, as before.
#[tokio::test]
async fn a_link_without_the_step_marker_runs_the_current_step_as_before() {
    let redis = RedisServer::start();
    let app = wizard(&redis).await;
    let browser = browser();
    let started = browser.post(app.url("/wizard/start")).send().await.unwrap();
    let key = started_flow_key(&started);
    let team_action = action(&answer(started).await.1);
    let (status, _) = submit(&app, &browser, &team_action, "Acme").await;
    assert_eq!(status, StatusCode::OK);

    let unmarked = team_action.rsplit_once('.').unwrap().0.to_owned();
    let (status, page) = submit(&app, &browser, &unmarked, "Team").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Create Acme?"), "the plan step ran: {page}");
    assert_eq!(
        fields(&redis, &key)["data"],
        json!({"team": "Acme", "plan": "Team"})
    );
}

/// The step marker is not a secret: it is a small number anyone can write.
/// Knowing the current one gets another browser nothing (the flow is found
/// only through the cookie of the browser that started it), and in the
/// flow's own browser a made-up current marker only does what a link
/// without a marker does: run the current step.
#[tokio::test]
async fn the_step_marker_is_no_secret_and_opens_nothing() {
    let redis = RedisServer::start();
    let app = wizard(&redis).await;
    let browser = browser();
    let started = browser.post(app.url("/wizard/start")).send().await.unwrap();
    let key = started_flow_key(&started);
    let team_action = action(&answer(started).await.1);
    let (status, _) = submit(&app, &browser, &team_action, "Acme").await;
    assert_eq!(status, StatusCode::OK);
    let before = redis.get(&key);

    let current = format!("{}.1", team_action.rsplit_once('.').unwrap().0);
    let elsewhere = crate::common::browser();
    assert_eq!(
        submit(&app, &elsewhere, &current, "Globex").await,
        refused("outcome=other_browser")
    );
    assert_eq!(redis.get(&key), before, "nothing changed");

    let (status, page) = submit(&app, &browser, &current, "Team").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Create Acme?"), "{page}");
}
