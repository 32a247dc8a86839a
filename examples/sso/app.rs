//! The application: a start page, and a sign-in pipeline of three steps on
//! one route, `/sso`:
//!
//! 1. `authorize`: makes a PKCE verifier, binds it, and sends the browser to
//!    the provider with the flow's nonce as `state` and the S256 challenge.
//! 2. `callback` (a callback step: the engine has checked and consumed the
//!    nonce before it runs): exchanges the code for the user's identity,
//!    server to server, with the verifier; binds the identity.
//! 3. `confirm`: asks "continue as …?"; continuing finishes the flow.
//!
//! The finish hook answers "signed in as <user>"; a real application would
//! start its login session there.

use std::{sync::Arc, time::Duration};

use axum::{
    Form, Router,
    body::Body,
    extract::{FromRequest, Query, Request},
    http::{Method, StatusCode},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use serde::Deserialize;
use tower_pipeline_state::{
    PipelineStateLayer, Store,
    pipeline::{Failure, Finished, Flow, FlowError, Pipeline},
};

use super::{
    Settings,
    html::{escape, page},
    idp::{CLIENT_ID, Identity, TokenResponse},
    pkce,
};

/// The pipeline's route: the start form posts to `/sso/start`, everything
/// else of the flow (the provider's callback included) goes here.
pub(crate) const FLOW_PATH: &str = "/sso";

type Step = Result<Response, FlowError>;
type SsoFlow = Flow<Body, Response>;

/// What the steps share.
struct Context {
    settings: Settings,
    /// For the server-to-server code exchange.
    http: reqwest::Client,
}

/// The application's routes over `store`.
pub(crate) fn router<St: Store>(store: St, settings: Settings) -> Router {
    let ttl = settings.ttl;
    let pipeline = pipeline(settings);
    let starter = pipeline.clone();
    Router::new()
        .route("/", get(start_page))
        .route(
            "/sso/start",
            post(move |request: Request| async move { starter.start(request, "login").await }),
        )
        .route_service(FLOW_PATH, pipeline)
        .layer(
            PipelineStateLayer::new(store)
                .key_prefix("auth:pipeline:")
                .ttl(ttl)
                // The demo is served over plain HTTP on loopback, and a
                // browser does not send a `Secure` cookie over `http://`
                // (some make an exception for `localhost`; not all, and not
                // for every loopback address). In production, behind TLS,
                // keep the default: `Secure` on.
                .cookie_secure(false),
        )
}

/// The sign-in pipeline.
pub(crate) fn pipeline(settings: Settings) -> Pipeline<Body, Response> {
    let context = Arc::new(Context {
        settings,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client"),
    });
    let (authorize_context, callback_context) = (context.clone(), context);
    Pipeline::builder("sso")
        .flow_kind("login")
        .step("authorize", move |request, flow| {
            authorize(authorize_context.clone(), request, flow)
        })
        .callback("callback", move |request, flow| {
            callback(callback_context.clone(), request, flow)
        })
        .step("confirm", confirm)
        .on_finish(finish)
        .on_error(error_page)
        .build()
}

async fn start_page() -> impl IntoResponse {
    page(
        "Demo app",
        "<h1>Demo app</h1>\
         <p>Sign in through the demo identity provider. The flow's state (step, \
         nonce, PKCE verifier, identity) lives in Redis, never in the browser: \
         the browser holds only a random id.</p>\
         <form method=\"post\" action=\"/sso/start\"><button>Sign in with Demo IdP</button></form>",
    )
}

/// Step 1: off to the provider.
async fn authorize(context: Arc<Context>, _request: Request, flow: SsoFlow) -> Step {
    let verifier = pkce::verifier();
    flow.bind("pkce_verifier", &verifier)?;
    let settings = &context.settings;
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", CLIENT_ID)
        .append_pair("redirect_uri", &settings.redirect_uri())
        .append_pair("state", flow.nonce()?.as_str())
        .append_pair("code_challenge", &pkce::challenge(&verifier))
        .append_pair("code_challenge_method", "S256")
        .finish();
    // The provider's redirect back enters the next step.
    flow.advance()?;
    Ok(Redirect::to(&format!("{}/authorize?{query}", settings.idp_origin)).into_response())
}

#[derive(Deserialize)]
struct Callback {
    code: Option<String>,
    error: Option<String>,
}

/// Step 2: the provider sent the browser back (with the right `state`, or
/// the engine would not have run this step).
async fn callback(context: Arc<Context>, request: Request, flow: SsoFlow) -> Step {
    let Query(callback) =
        Query::<Callback>::try_from_uri(request.uri()).map_err(FlowError::failed)?;
    if let Some(error) = callback.error {
        return Err(FlowError::failed(format!(
            "the identity provider refused the sign-in ({error})"
        )));
    }
    let code = callback
        .code
        .ok_or_else(|| FlowError::failed("the identity provider sent no code"))?;
    let verifier: String = flow
        .fetch("pkce_verifier")?
        .ok_or_else(|| FlowError::failed("the flow lost its PKCE verifier"))?;
    let identity = exchange(&context, &code, &verifier).await?;
    flow.bind("identity", &identity)?;
    // The verifier has done its job; keep no more secrets than needed.
    flow.unbind("pkce_verifier")?;
    flow.advance()?;
    // Back to the flow's clean URL: a reload does not resend the callback.
    Ok(Redirect::to(FLOW_PATH).into_response())
}

/// The code for the user's identity, server to server.
async fn exchange(context: &Context, code: &str, verifier: &str) -> Result<Identity, FlowError> {
    let settings = &context.settings;
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", code)
        .append_pair("redirect_uri", &settings.redirect_uri())
        .append_pair("client_id", CLIENT_ID)
        .append_pair("code_verifier", verifier)
        .finish();
    let response = context
        .http
        .post(format!("{}/token", settings.idp_origin))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .map_err(|error| {
            FlowError::failed(format!("the identity provider is unreachable: {error}"))
        })?;
    let status = response.status();
    let body = response.bytes().await.map_err(|error| {
        FlowError::failed(format!("the identity provider's answer broke off: {error}"))
    })?;
    if !status.is_success() {
        return Err(FlowError::failed(format!(
            "the identity provider did not accept the code: {}",
            String::from_utf8_lossy(&body)
        )));
    }
    let token: TokenResponse = serde_json::from_slice(&body).map_err(|error| {
        FlowError::failed(format!(
            "the identity provider's answer does not decode: {error}"
        ))
    })?;
    Ok(token.user)
}

#[derive(Deserialize)]
struct Decision {
    action: String,
}

/// Step 3: "continue as …?"
async fn confirm(request: Request, flow: SsoFlow) -> Step {
    let identity: Identity = flow
        .fetch("identity")?
        .ok_or_else(|| FlowError::failed("the flow has no identity"))?;
    if request.method() != Method::POST {
        let body = format!(
            "<h1>Continue?</h1>\
             <p>The identity provider says you are <strong>{name}</strong> ({email}).</p>\
             <form method=\"post\" action=\"{FLOW_PATH}\">\
             <button name=\"action\" value=\"continue\">Continue as {login}</button> \
             <button name=\"action\" value=\"cancel\">Cancel</button></form>",
            name = escape(&identity.name),
            email = escape(&identity.email),
            login = escape(&identity.login),
        );
        return Ok(page("Continue?", &body).into_response());
    }
    let Form(decision) = Form::<Decision>::from_request(request, &())
        .await
        .map_err(FlowError::failed)?;
    match decision.action.as_str() {
        "continue" => flow.next().await,
        _ => Err(FlowError::failed("sign-in cancelled")),
    }
}

/// The flow is done: the identity is the user's. (A real application would
/// start its login session here.)
async fn finish(_request: Request, finished: Finished) -> Step {
    let identity: Identity = finished
        .fetch("identity")?
        .ok_or_else(|| FlowError::failed("the flow has no identity"))?;
    let body = format!(
        "<h1>signed in as {login}</h1><p>Welcome, {name}.</p><p><a href=\"/\">Start page</a></p>",
        login = escape(&identity.login),
        name = escape(&identity.name),
    );
    Ok(page("Signed in", &body).into_response())
}

/// Every failure: a page that says what happened, with the outcome's kind.
fn error_page(failure: Failure) -> Response {
    let status = match &failure.error {
        FlowError::UserMismatch => StatusCode::FORBIDDEN,
        FlowError::State(_) | FlowError::MissingLayer => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    let body = format!(
        "<h1>Sign-in did not go through</h1><p>{message}</p>\
         <p>Outcome: <code>{kind}</code></p><p><a href=\"/\">Start again</a></p>",
        message = escape(&failure.error.to_string()),
        kind = failure.error.kind(),
    );
    (status, page("Sign-in failed", &body)).into_response()
}
