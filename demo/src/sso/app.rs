//! The application: a start page, a sign-in pipeline of three steps, its
//! own pages for every outcome, and one log line per request.
//!
//! 1. `authorize` (`POST /sso/start`): makes a PKCE verifier and an OIDC
//!    nonce, binds them, and sends the browser to the provider with the
//!    flow's callback state (`<reference>.<nonce>`) as `state`.
//! 2. `callback` (`/sso/callback`, a GET or, with `form_post`, a cross-site
//!    POST whose form the engine reads `state` from; a callback step: the
//!    engine has found the flow that `state` names, checked and consumed its
//!    nonce before it runs): exchanges the code server to server and
//!    verifies the ID token; binds the identity; redirects to the flow's
//!    link, `/sso?flow=<reference>`.
//! 3. `confirm` (`/sso?flow=<reference>`): asks "continue as …?"; Continue
//!    finishes the flow, Cancel ends it.
//!
//! Every sign-in has its own flow, with its own cookie: the flow's pages
//! link and post back with the flow's reference, so two tabs each go on
//! with their own. The finish hook starts the login session (a private
//! cookie) and redirects to the start page, a GET: refresh and Back stay
//! harmless.

use std::{sync::Arc, time::Duration};

use axum::{
    Form, Router,
    body::Body,
    extract::{FromRequest, Query, Request, State},
    http::{
        HeaderValue, Method, Response as HttpResponse,
        header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, SET_COOKIE},
    },
    middleware::{self, Next},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use cookie::{Cookie, CookieJar, SameSite};
use serde::Deserialize;
use tower_pipeline_state::{
    Key, LayerError, PipelineStateLayer, Store,
    pipeline::{Failure, Finished, Flow, FlowError, Pipeline},
};

use super::{
    Settings,
    html::{escape, page},
    oidc::{self, AuthorizationRequest, Identity, OidcError},
    pages::{self, Message},
    pkce,
};

/// The confirmation step's route (and where the other steps lead).
pub const FLOW_PATH: &str = "/sso";
/// The provider's way back: the registered redirect URI's path.
pub const CALLBACK_PATH: &str = "/sso/callback";
/// The login session's cookie, set when a sign-in finishes.
pub const SESSION_COOKIE: &str = "demo_session";
/// The request log's `tracing` target.
pub const LOG_TARGET: &str = "demo";

type Step = Result<Response, FlowError>;
type SsoFlow = Flow<Body, Response>;

/// What a response was, for the request log: set by every page, read by
/// [`log_requests`].
#[derive(Clone, Copy, Debug)]
pub struct Outcome(pub &'static str);

fn with_outcome(mut response: Response, outcome: &'static str) -> Response {
    response.extensions_mut().insert(Outcome(outcome));
    response
}

/// What the sign-in steps need: each step that talks to the provider gets
/// its own clone of the `Arc`.
#[derive(Debug)]
struct Context {
    settings: Settings,
    client: oidc::Client,
}

/// What the routes share (axum state): the steps' context and the
/// pipeline. Both clone cheaply.
#[derive(Clone, Debug)]
struct App {
    context: Arc<Context>,
    pipeline: Pipeline<Body, Response>,
}

/// Why a step ended the flow, carried in [`FlowError::Failed`] as a stable
/// code; the page for it comes from [`pages`], the detail went to the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Problem {
    Cancelled,
    MissingAnswer,
    ProviderDeclined,
    Oidc(OidcProblem),
    Internal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OidcProblem {
    Unreachable,
    Misconfigured,
    CodeRefused,
    NotVerified,
}

impl Problem {
    const ALL: [Self; 8] = [
        Self::Cancelled,
        Self::MissingAnswer,
        Self::ProviderDeclined,
        Self::Oidc(OidcProblem::Unreachable),
        Self::Oidc(OidcProblem::Misconfigured),
        Self::Oidc(OidcProblem::CodeRefused),
        Self::Oidc(OidcProblem::NotVerified),
        Self::Internal,
    ];

    /// The stable code: the outcome of its page.
    fn code(self) -> &'static str {
        match self {
            Self::Cancelled => "cancelled",
            _ => self.message().outcome,
        }
    }

    fn message(self) -> Message {
        match self {
            // Not shown: a cancel goes back to the start page.
            Self::Cancelled => pages::NO_SIGN_IN,
            Self::MissingAnswer => pages::MISSING_ANSWER,
            Self::ProviderDeclined => pages::PROVIDER_DECLINED,
            Self::Oidc(OidcProblem::Unreachable) => pages::PROVIDER_UNREACHABLE,
            Self::Oidc(OidcProblem::Misconfigured) => pages::MISCONFIGURED,
            Self::Oidc(OidcProblem::CodeRefused) => pages::CODE_REFUSED,
            Self::Oidc(OidcProblem::NotVerified) => pages::NOT_VERIFIED,
            Self::Internal => pages::INTERNAL,
        }
    }

    fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|problem| problem.code() == code)
    }

    /// Ends the flow with this problem.
    fn fail(self) -> FlowError {
        FlowError::failed(self.code())
    }
}

/// The client error, logged with its detail, as the problem it is.
fn oidc_problem(error: OidcError) -> FlowError {
    tracing::warn!(target: LOG_TARGET, "sign-in with the provider failed: {error}");
    Problem::Oidc(match error {
        OidcError::Unreachable(_) => OidcProblem::Unreachable,
        OidcError::Misconfigured(_) => OidcProblem::Misconfigured,
        OidcError::CodeRefused(_) => OidcProblem::CodeRefused,
        OidcError::TokenInvalid(_) => OidcProblem::NotVerified,
    })
    .fail()
}

/// The application's routes over `store`.
pub fn router<St: Store>(store: St, settings: Settings) -> Router {
    let ttl = settings.ttl;
    let key = settings.key.clone();
    let cross_site_callbacks = settings.cross_site_callbacks;
    let context = Arc::new(Context {
        client: oidc::Client::new(settings.provider.clone()),
        settings,
    });
    let (authorize_context, callback_context) = (context.clone(), context.clone());
    let pipeline = Pipeline::builder("sso")
        .flow_kind("login")
        .step("authorize", move |request, flow| {
            authorize(authorize_context.clone(), request, flow)
        })
        .callback("callback", move |request, flow| {
            callback(callback_context.clone(), request, flow)
        })
        .step("confirm", confirm)
        // With `form_post` the provider's page posts the code back: a
        // cross-site POST, on which browsers send only `SameSite=None`
        // cookies, which must be `Secure`. With this on, the engine
        // gives each flow of this pipeline such a cookie (Secure even
        // though the layer's is not: Chromium and Firefox treat
        // http://127.0.0.1 and http://localhost as secure, so it works
        // in the demo too). The trade-off: the flow's cookie goes with
        // every cross-site request to this site, so it no longer helps
        // against cross-site request forgery. What protects the flow
        // then: the callback must bring back the flow's `state` (compared
        // and consumed; PKCE and the ID token's nonce follow), and the
        // engine refuses a cross-site POST to any other step (the
        // confirmation's form). The rest of the site's cookies (the
        // login session) stay `Lax`.
        .cross_site_callbacks(cross_site_callbacks)
        .on_finish(move |request, finished| finish(key.clone(), request, finished))
        .on_error(move |failure| error_page(failure, ttl))
        .build();
    // The demo is served over plain HTTP on loopback. The flow cookies keep
    // the layer's `SameSite=Lax` (a redirect back with `query` is a
    // top-level GET, which carries them), with `Secure` off so that every
    // browser and HTTP client sends them over `http://`; a pipeline with
    // cross-site callbacks makes its own `SameSite=None; Secure` (above).
    // In production, behind TLS, keep the default: `Secure` on.
    let layer = PipelineStateLayer::new(store)
        .key_prefix("auth:pipeline:")
        .ttl(ttl)
        .signed(context.settings.key.clone(), [])
        .cookie_secure(false)
        .on_error(move |error: &LayerError| layer_error_page(error, ttl));
    Router::new()
        .route("/", get(home))
        .route("/sso/start", post(start))
        .route(FLOW_PATH, get(flow).post(flow))
        // A GET with `query`, a POST with `form_post`: the engine finds the
        // flow by the `state` in the query or in the form.
        .route(CALLBACK_PATH, get(flow).post(flow))
        .route("/signout", post(sign_out))
        .fallback(move || async move { message_page(&pages::NOT_FOUND, ttl) })
        .method_not_allowed_fallback(move || async move {
            message_page(&pages::METHOD_NOT_ALLOWED, ttl)
        })
        .layer(layer)
        .with_state(App { context, pipeline })
        .layer(middleware::from_fn_with_state("app", log_requests))
}

/// Logs every request, one line: method, path (never the query: it carries
/// codes), status and outcome. Pages are never cached: Back asks again.
pub async fn log_requests(
    State(site): State<&'static str>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let mut response = next.run(request).await;
    let status = response.status();
    let outcome = response.extensions().get::<Outcome>().map_or(
        if status.is_success() || status.is_redirection() {
            "ok"
        } else {
            "error"
        },
        |outcome| outcome.0,
    );
    response
        .headers_mut()
        .entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    tracing::info!(
        target: LOG_TARGET,
        "{site}: {method} {path} -> {} {outcome}",
        status.as_u16()
    );
    response
}

/// The login session the request carries, if any.
fn session(request_cookies: Option<&HeaderValue>, key: &Key) -> Option<Identity> {
    let mut jar = CookieJar::new();
    let header = request_cookies?.to_str().ok()?;
    for cookie in Cookie::split_parse(header).flatten() {
        jar.add_original(cookie.into_owned());
    }
    let cookie = jar.private(key).get(SESSION_COOKIE)?;
    serde_json::from_str(cookie.value()).ok()
}

#[derive(Deserialize)]
struct HomeQuery {
    notice: Option<String>,
}

async fn home(
    State(App { context, .. }): State<App>,
    Query(query): Query<HomeQuery>,
    request: Request,
) -> Response {
    let notice = query
        .notice
        .as_deref()
        .and_then(pages::notice)
        .map(|text| format!("<p class=\"notice\">{}</p>", escape(text)))
        .unwrap_or_default();
    let provider = &context.settings.provider.display_name;
    let body = match session(request.headers().get(COOKIE), &context.settings.key) {
        Some(identity) => {
            let email = identity
                .email
                .as_deref()
                .map(|email| format!(" ({})", escape(email)))
                .unwrap_or_default();
            format!(
                "{notice}<h1>Signed in as {name}</h1>\
                 <p>{provider} says you are <strong>{name}</strong>{email}, \
                 login <code>{login}</code>.</p>\
                 <p class=\"muted\">A real application would now show your account. \
                 Refresh or go Back as you like: this page is a plain GET.</p>\
                 <form method=\"post\" action=\"/signout\"><button>Sign out</button></form>\
                 <form method=\"post\" action=\"/sso/start\">\
                 <button class=\"secondary\">Sign in again</button></form>",
                name = escape(identity.display_name()),
                login = escape(identity.login()),
                provider = escape(provider),
            )
        }
        None => format!(
            "{notice}<h1>Welcome</h1>\
             <p>This demo signs you in with {provider} (OpenID Connect, \
             authorization code with PKCE). While you sign in, the flow's state \
             (its step, nonce, PKCE verifier and the identity found so far) \
             lives on the server, in Redis; your browser holds only a signed \
             random id.</p>\
             <form method=\"post\" action=\"/sso/start\"><button>Sign in with {provider}</button></form>",
            provider = escape(provider),
        ),
    };
    with_outcome(page("Demo app", &body).into_response(), "home")
}

async fn start(State(app): State<App>, request: Request) -> Response {
    app.pipeline.start(request, "login").await
}

/// Every request of the flow after its start (the callback, the
/// confirmation page). When the flow is gone but the person is signed in
/// (Back or refresh after signing in: the flow's link names a flow whose
/// cookie the finish removed), the start page says so instead.
async fn flow(State(app): State<App>, request: Request) -> Response {
    let signed_in = session(request.headers().get(COOKIE), &app.context.settings.key).is_some();
    let response = app.pipeline.dispatch(request).await;
    let outcome = response
        .extensions()
        .get::<Outcome>()
        .map(|outcome| outcome.0);
    let stale = [
        pages::NO_SIGN_IN.outcome,
        pages::EXPIRED.outcome,
        pages::ALREADY_USED.outcome,
        pages::ANSWERED_ELSEWHERE.outcome,
        pages::OTHER_BROWSER.outcome,
    ];
    if signed_in && outcome.is_some_and(|outcome| stale.contains(&outcome)) {
        let mut redirect = with_outcome(
            Redirect::to("/?notice=already_signed_in").into_response(),
            "already_signed_in",
        );
        // Keep the expired flow cookie's removal.
        for cookie in response.headers().get_all(SET_COOKIE) {
            redirect.headers_mut().append(SET_COOKIE, cookie.clone());
        }
        return redirect;
    }
    response
}

async fn sign_out() -> Response {
    let removal = Cookie::build((SESSION_COOKIE, ""))
        .path("/")
        .max_age(cookie::time::Duration::ZERO)
        .build();
    let mut response = Redirect::to("/?notice=signed_out").into_response();
    if let Ok(value) = HeaderValue::from_str(&removal.to_string()) {
        response.headers_mut().append(SET_COOKIE, value);
    }
    with_outcome(response, "signed_out")
}

/// Step 1: off to the provider.
async fn authorize(context: Arc<Context>, _request: Request, flow: SsoFlow) -> Step {
    let verifier = pkce::verifier();
    let nonce = pkce::random_token();
    flow.bind("pkce_verifier", &verifier)?;
    flow.bind("oidc_nonce", &nonce)?;
    let settings = &context.settings;
    let url = context
        .client
        .authorization_url(&AuthorizationRequest {
            redirect_uri: &settings.redirect_uri(),
            // Names this flow among the browser's and carries its nonce.
            state: &flow.callback_state()?,
            nonce: &nonce,
            code_challenge: &pkce::challenge(&verifier),
            response_mode: settings.response_mode,
        })
        .await
        .map_err(oidc_problem)?;
    // The provider's answer enters the next step.
    flow.advance()?;
    Ok(with_outcome(
        Redirect::to(&url).into_response(),
        "to_provider",
    ))
}

#[derive(Deserialize)]
struct Callback {
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    iss: Option<String>,
}

/// Step 2: the provider sent the browser back (with the right `state`, or
/// the engine would not have run this step): in the query of a GET
/// (`query`), or in the form of a POST (`form_post`), which the engine read
/// `state` from and handed on whole.
async fn callback(context: Arc<Context>, request: Request, flow: SsoFlow) -> Step {
    let callback = if request.method() == Method::POST {
        Form::<Callback>::from_request(request, &())
            .await
            .map(|Form(callback)| callback)
            .map_err(|_| Problem::MissingAnswer.fail())?
    } else {
        Query::<Callback>::try_from_uri(request.uri())
            .map(|Query(callback)| callback)
            .map_err(|_| Problem::MissingAnswer.fail())?
    };
    context
        .client
        .check_callback_issuer(callback.iss.as_deref())
        .map_err(oidc_problem)?;
    if let Some(error) = callback.error {
        tracing::info!(
            target: LOG_TARGET,
            "the provider answered {error}: {}",
            callback.error_description.as_deref().unwrap_or("")
        );
        return Err(if error == "access_denied" {
            Problem::Cancelled
        } else {
            Problem::ProviderDeclined
        }
        .fail());
    }
    let code = callback.code.ok_or_else(|| Problem::MissingAnswer.fail())?;
    let verifier: String = flow
        .fetch("pkce_verifier")?
        .ok_or_else(|| Problem::Internal.fail())?;
    let nonce: String = flow
        .fetch("oidc_nonce")?
        .ok_or_else(|| Problem::Internal.fail())?;
    let identity = context
        .client
        .sign_in(&code, &verifier, &nonce, &context.settings.redirect_uri())
        .await
        .map_err(oidc_problem)?;
    flow.bind("identity", &identity)?;
    // The verifier and the nonce have done their job; keep no more secrets
    // than needed.
    flow.unbind("pkce_verifier")?;
    flow.unbind("oidc_nonce")?;
    flow.advance()?;
    // To the flow's own link, without the provider's answer: a reload does
    // not resend the callback, and this tab goes on with this flow.
    Ok(with_outcome(
        Redirect::to(&flow.link(FLOW_PATH)).into_response(),
        "verified",
    ))
}

#[derive(Deserialize)]
struct Decision {
    action: String,
}

/// Step 3: "continue as …?"
async fn confirm(request: Request, flow: SsoFlow) -> Step {
    let identity: Identity = flow
        .fetch("identity")?
        .ok_or_else(|| Problem::Internal.fail())?;
    if request.method() != Method::POST {
        let email = identity
            .email
            .as_deref()
            .map(|email| format!(" ({})", escape(email)))
            .unwrap_or_default();
        let body = format!(
            "<h1>Continue?</h1>\
             <p>The identity provider says you are <strong>{name}</strong>{email}.</p>\
             <form method=\"post\" action=\"{action}\">\
             <button name=\"action\" value=\"continue\">Continue as {name}</button>\
             <button class=\"secondary\" name=\"action\" value=\"cancel\">Cancel</button></form>",
            name = escape(identity.display_name()),
            // Posts back to this flow, whatever the browser's other tabs
            // started since.
            action = escape(&flow.link(FLOW_PATH)),
        );
        return Ok(with_outcome(
            page("Continue?", &body).into_response(),
            "asked_to_confirm",
        ));
    }
    let Form(decision) = Form::<Decision>::from_request(request, &())
        .await
        .map_err(|_| Problem::Internal.fail())?;
    match decision.action.as_str() {
        "continue" => flow.next().await,
        _ => Err(Problem::Cancelled.fail()),
    }
}

/// The flow is done: the login session starts (a private cookie a real
/// application would replace with its own session), and the browser goes to
/// the start page with a GET.
async fn finish(key: Key, _request: Request, finished: Finished) -> Step {
    let identity: Identity = finished
        .fetch("identity")?
        .ok_or_else(|| Problem::Internal.fail())?;
    let value = serde_json::to_string(&identity).map_err(|_| Problem::Internal.fail())?;
    let mut jar = CookieJar::new();
    jar.private_mut(&key).add(
        Cookie::build((SESSION_COOKIE, value))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax)
            .build(),
    );
    let mut response = Redirect::to("/").into_response();
    for cookie in jar.delta() {
        if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
            response.headers_mut().append(SET_COOKIE, value);
        }
    }
    tracing::info!(
        target: LOG_TARGET,
        "signed in: {} at {}",
        identity.subject,
        identity.issuer
    );
    Ok(with_outcome(response, "signed_in"))
}

/// The page for a failed request of the flow.
fn error_page(failure: Failure, ttl: Duration) -> Response {
    let message = match &failure.error {
        FlowError::Failed(code) => match Problem::from_code(code) {
            Some(Problem::Cancelled) => {
                return with_outcome(
                    Redirect::to("/?notice=cancelled").into_response(),
                    "cancelled",
                );
            }
            Some(problem) => problem.message(),
            None => pages::INTERNAL,
        },
        FlowError::NoFlow => pages::NO_SIGN_IN,
        FlowError::Expired => pages::EXPIRED,
        FlowError::OtherBrowser => pages::OTHER_BROWSER,
        FlowError::CrossSite => pages::CROSS_SITE,
        FlowError::NonceMismatch => pages::NOT_THIS_SIGN_IN,
        FlowError::NonceReplayed => pages::ALREADY_USED,
        FlowError::NonceMissing => pages::MISSING_ANSWER,
        FlowError::Unavailable(_) => pages::UNAVAILABLE,
        FlowError::Concurrent => pages::ANSWERED_ELSEWHERE,
        FlowError::SignatureChanged => pages::STEPS_CHANGED,
        _ => pages::INTERNAL,
    };
    message_page(&message, ttl)
}

/// The page for one of the layer's own answers, with the layer's status.
fn layer_error_page(error: &LayerError, ttl: Duration) -> HttpResponse<String> {
    let message = match error {
        LayerError::Unavailable => pages::UNAVAILABLE,
        LayerError::NotConfirmed => pages::NOT_SAVED,
        LayerError::Conflict { .. } => pages::ANSWERED_ELSEWHERE,
        _ => pages::INTERNAL,
    };
    let mut response = HttpResponse::new(render(&message, ttl));
    *response.status_mut() = error.status();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response.extensions_mut().insert(Outcome(message.outcome));
    response
}

/// A message as a response.
fn message_page(message: &Message, ttl: Duration) -> Response {
    let mut response = (message.status, page_html(message, ttl)).into_response();
    response.extensions_mut().insert(Outcome(message.outcome));
    response
}

fn page_html(message: &Message, ttl: Duration) -> axum::response::Html<String> {
    axum::response::Html(render(message, ttl))
}

/// The HTML of a message's page.
fn render(message: &Message, ttl: Duration) -> String {
    let next = match message.next {
        pages::Next::StartAgain => {
            "<form method=\"post\" action=\"/sso/start\"><button>Sign in again</button> \
             <a href=\"/\">Start page</a></form>"
        }
        pages::Next::TryAgain => {
            "<p><a class=\"button\" href=\"\">Try again</a> \
             <a href=\"/\">Start page</a></p>"
        }
        pages::Next::Home => "<p><a class=\"button\" href=\"/\">Start page</a></p>",
    };
    let body = format!(
        "<h1>{title}</h1><p class=\"problem\">{text}</p>{next}",
        title = escape(message.title),
        text = escape(&message.text(ttl)),
    );
    page(message.title, &body).0
}
