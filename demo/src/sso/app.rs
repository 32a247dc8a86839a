//! The application: a start page, an account page, a sign-in pipeline per
//! provider, its own pages for every outcome, and one log line per request.
//!
//! The sign-in is `sign_in_pipeline`: the provider crate's two steps, and
//! two of the application's own.
//!
//! 1. `authorize` (`POST /sso/start`, the provider crate's): makes a PKCE
//!    verifier and an OIDC nonce, keeps them in the flow, and sends the
//!    browser to the provider with the flow's callback state as `state`.
//! 2. `callback` (`/sso/callback`, the provider crate's; a GET, or with
//!    `form_post` a cross-site POST): the engine has found the flow that
//!    `state` names and spent its nonce; the step exchanges the code server
//!    to server, verifies the ID token, binds the identity and redirects to
//!    the flow's link, `/sso?flow=<reference>.2`, so a reload never sends
//!    the provider's answer again.
//! 3. `confirm` (`/sso?flow=...`): "Continue as ...?"; Continue moves on,
//!    Cancel ends the flow as cancelled ([`Flow::cancel`]).
//! 4. `remember`: "Stay signed in?"; the answer finishes the flow, and the
//!    finish hook starts the login session and sends the person where they
//!    were going (the `return_to` the start was given).
//!
//! The plain OAuth 2.0 provider gets the same pipeline at `/oauth`.
//!
//! People click Back, refresh, wait and retry, and the pipeline forgives
//! them (the engine does the work): a replay of a finished sign-in lands on
//! the page it landed on (`on_redirect` and `Finished::lands_at`); a sign-in
//! left longer than its lifetime goes back to the provider by itself
//! (`restart_on_expiry`, towards the same `return_to`); Back to a cancelled
//! sign-in says it was cancelled (`FlowError::Ended`); a form of an earlier
//! step is not used, and the person is shown the current one
//! (`FlowError::StaleStep`); only a page the browser navigates to starts a
//! sign-in, so a script's `fetch` cannot push out the one in use.

use std::{sync::Arc, time::Duration};

use axum::{
    Form, Router,
    body::{Body, to_bytes},
    extract::{FromRequest, Query, Request, State},
    http::{
        HeaderMap, HeaderValue, Method, Response as HttpResponse,
        header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE},
    },
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use cookie::{Cookie, CookieJar, SameSite};
use serde::{Deserialize, Serialize};
use tower_pipeline_oidc::{Error as ProviderError, ErrorKind, Identity, Prompt, Provider};
use tower_pipeline_state::{
    Key, LayerError, PipelineStateLayer, Store, StoreError,
    pipeline::{Failure, Finished, Flow, FlowError, HowEnded, Pipeline, see_other},
};

use super::{
    Settings, Storage,
    html::{escape, page, secure_headers},
    metrics,
    pages::{self, Lifetimes, Message},
};

/// The OpenID sign-in's pages.
pub const FLOW_PATH: &str = "/sso";
/// The OpenID provider's way back: the registered redirect URI's path.
pub const CALLBACK_PATH: &str = "/sso/callback";
/// The plain OAuth 2.0 sign-in's pages.
pub const OAUTH_PATH: &str = "/oauth";
/// The plain OAuth 2.0 provider's way back.
pub const OAUTH_CALLBACK_PATH: &str = "/oauth/callback";
/// Where a provider sends the browser after signing out there.
pub const SIGNED_OUT_PATH: &str = "/signed-out";
/// A page that needs a signed-in person.
pub const ACCOUNT_PATH: &str = "/account";
/// The login session's cookie, set when a sign-in finishes.
pub const SESSION_COOKIE: &str = "demo_session";
/// The request log's `tracing` target.
pub const LOG_TARGET: &str = "demo";
/// The flow kind of a plain sign-in.
pub const LOGIN: &str = "login";
/// The flow kind of "Use another account": the OpenID provider is asked
/// for the login again (`prompt=login`), even when it knows the browser.
pub const ANOTHER_ACCOUNT: &str = "another_account";
/// How long "Stay signed in" keeps the session.
pub const STAY_SIGNED_IN: Duration = Duration::from_secs(30 * 24 * 3600);

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

/// The application's providers, built from the settings: what an
/// application writes to sign in with them (with the pipeline,
/// `sign_in_pipeline`).
#[derive(Clone, Debug)]
pub struct Providers {
    /// The OpenID provider.
    pub oidc: Provider,
    /// The plain OAuth 2.0 provider, if any.
    pub oauth: Option<Provider>,
}

impl Providers {
    /// The providers the settings name, checked (no request made).
    pub fn new(settings: &Settings) -> Result<Self, ProviderError> {
        let oidc = &settings.oidc;
        let mut builder = Provider::oidc(&oidc.issuer, &oidc.client_id, settings.redirect_uri())
            .display_name(&oidc.display_name)
            .response_mode(oidc.response_mode)
            // "Use another account" asks for the login again.
            .prompt_for(ANOTHER_ACCOUNT, Prompt::Login)
            .continue_at(FLOW_PATH);
        if let Some(secret) = &oidc.client_secret {
            builder = builder.client_secret(secret);
        }
        let oauth = match &settings.oauth {
            None => None,
            Some(oauth) => {
                let mut builder = Provider::oauth(
                    oauth.description.clone(),
                    &oauth.client_id,
                    settings.oauth_redirect_uri(),
                )
                .display_name(&oauth.display_name)
                .continue_at(OAUTH_PATH);
                if let Some(secret) = &oauth.client_secret {
                    builder = builder.client_secret(secret);
                }
                Some(builder.build()?)
            }
        };
        Ok(Self {
            oidc: builder.build()?,
            oauth,
        })
    }

    /// Runs the OpenID provider's discovery now, so a wrong issuer fails
    /// at start-up rather than at a person's first sign-in.
    pub async fn discover(&self) -> Result<(), ProviderError> {
        self.oidc.discover().await
    }
}

/// One way to sign in: a provider, its pipeline, and where they live.
#[derive(Clone, Debug)]
struct SignIn {
    /// The pipeline's name (`sso`, `oauth`), also kept in the session:
    /// which provider to sign out of.
    name: &'static str,
    /// What the provider speaks, as the start page says it.
    protocol: &'static str,
    /// The pipeline's pages; `<path>/start` starts it, `<path>/callback`
    /// is the provider's way back.
    path: &'static str,
    provider: Provider,
    pipeline: Pipeline<Body, Response>,
}

impl SignIn {
    fn start_path(&self) -> String {
        format!("{}/start", self.path)
    }
}

/// What the routes share (axum state); clones cheaply.
#[derive(Clone, Debug)]
struct App {
    settings: Arc<Settings>,
    sign_ins: Arc<[SignIn]>,
}

impl App {
    fn sign_in(&self, name: &str) -> Option<&SignIn> {
        self.sign_ins.iter().find(|sign_in| sign_in.name == name)
    }

    fn lifetimes(&self) -> Lifetimes {
        lifetimes(&self.settings)
    }
}

fn lifetimes(settings: &Settings) -> Lifetimes {
    Lifetimes {
        idle: settings.idle_timeout,
        max: settings.max_lifetime,
    }
}

/// The sign-in with `provider`, a pipeline named `name` served at `path`:
/// the provider's two steps, the application's confirmation and "stay
/// signed in?", and how it forgives.
fn sign_in_pipeline(
    provider: &Provider,
    name: &'static str,
    path: &'static str,
    cross_site_callbacks: bool,
    settings: &Settings,
) -> Pipeline<Body, Response> {
    let (shown_as, key) = (
        Arc::<str>::from(provider.display_name()),
        settings.session_key.clone(),
    );
    let (lifetimes, start) = (lifetimes(settings), format!("{path}/start"));
    provider
        .steps(
            Pipeline::builder(name)
                .flow_kind(LOGIN)
                .flow_kind(ANOTHER_ACCOUNT),
        )
        .step("confirm", move |request, flow| {
            confirm(shown_as.clone(), path, request, flow)
        })
        .step("remember", move |request, flow| {
            remember(path, request, flow)
        })
        .cross_site_callbacks(cross_site_callbacks)
        .idle_timeout(settings.idle_timeout)
        .max_lifetime(settings.max_lifetime)
        .replay_window(settings.replay_window)
        // An expired sign-in goes back to the provider, towards the same page.
        .restart_on_expiry(true)
        // A finished sign-in's replay (its callback again, Back, a
        // resubmit) lands where the sign-in did.
        .on_redirect(|to| with_outcome(see_other(to), "replay_answered"))
        .on_finish(move |request, finished| finish(name, key.clone(), request, finished))
        .on_error(move |failure| error_page(failure, &start, lifetimes))
        .build()
}

/// The application's routes over `store`.
pub fn router<St: Store>(store: St, settings: Settings, providers: Providers) -> Router {
    let mut sign_ins = vec![SignIn {
        name: "sso",
        protocol: "OpenID Connect",
        path: FLOW_PATH,
        pipeline: sign_in_pipeline(
            &providers.oidc,
            "sso",
            FLOW_PATH,
            settings.cross_site_callbacks,
            &settings,
        ),
        provider: providers.oidc,
    }];
    if let Some(oauth) = providers.oauth {
        sign_ins.push(SignIn {
            name: "oauth",
            protocol: "plain OAuth 2.0",
            path: OAUTH_PATH,
            pipeline: sign_in_pipeline(&oauth, "oauth", OAUTH_PATH, false, &settings),
            provider: oauth,
        });
    }
    let lifetimes = lifetimes(&settings);
    // The demo is served over plain HTTP on loopback. The flow cookies keep
    // the layer's `SameSite=Lax` (a redirect back with `query` is a
    // top-level GET, which carries them), with `Secure` off so that every
    // browser and HTTP client sends them over `http://`; a pipeline with
    // cross-site callbacks (`form_post`) makes its own `SameSite=None;
    // Secure` ones (Chromium and Firefox treat http://127.0.0.1 and
    // http://localhost as secure). In production, behind TLS, keep the
    // default: `Secure` on.
    let layer = PipelineStateLayer::new(store)
        .key_prefix("auth:pipeline:")
        .signed(settings.flow_key.clone(), [])
        .cookie_secure(false)
        .on_error(move |error: &LayerError| layer_error_page(error, lifetimes));
    let funnel = settings.metrics.clone();
    let mut router = Router::new()
        .route("/", get(home))
        .route(ACCOUNT_PATH, get(account))
        .route("/signout", post(sign_out))
        .route(SIGNED_OUT_PATH, get(signed_out));
    for (index, sign_in) in sign_ins.iter().enumerate() {
        let flow = move |State(app): State<App>, request: Request| async move {
            run_flow(&app, index, request).await
        };
        router = router
            .route(
                &sign_in.start_path(),
                post(move |State(app): State<App>, request: Request| async move {
                    start(&app, index, request).await
                }),
            )
            .route(sign_in.path, get(flow).post(flow))
            // A GET with `query`, a POST with `form_post`: the engine finds
            // the flow by the `state` in the query or in the form.
            .route(&format!("{}/callback", sign_in.path), get(flow).post(flow));
    }
    let app = App {
        settings: Arc::new(settings),
        sign_ins: sign_ins.into(),
    };
    if let Some(handle) = funnel {
        router = router.route(
            "/metrics",
            get(move || async move { with_outcome(metrics::page(&handle), "metrics") }),
        );
    }
    router
        .fallback(move || async move { message_page(&pages::NOT_FOUND, "/sso/start", lifetimes) })
        .method_not_allowed_fallback(move || async move {
            message_page(&pages::METHOD_NOT_ALLOWED, "/sso/start", lifetimes)
        })
        .layer(layer)
        // Outside the layer: it sees the layer's own answers too.
        .layer(middleware::from_fn(resend_failed_posts))
        .with_state(app)
        .layer(middleware::from_fn_with_state("app", log_requests))
        .layer(middleware::map_response(secure_headers))
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

/// The login session: who signed in, with which provider, until when. Kept
/// in a private (encrypted and authenticated) cookie under the session's
/// own key; a real application keeps its own session instead.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Session {
    /// The sign-in pipeline that signed the person in (`sso`, `oauth`).
    via: String,
    issuer: String,
    subject: String,
    name: Option<String>,
    email: Option<String>,
    username: Option<String>,
    /// Seconds since the Unix epoch past which the session is over, when
    /// the person chose to stay signed in; `None`: until the browser
    /// closes.
    until: Option<u64>,
}

impl Session {
    fn display_name(&self) -> &str {
        self.name
            .as_deref()
            .or(self.username.as_deref())
            .or(self.email.as_deref())
            .unwrap_or(&self.subject)
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// The login session the request carries, if any and still good.
fn session(headers: &HeaderMap, key: &Key) -> Option<Session> {
    let mut jar = CookieJar::new();
    for header in headers.get_all(COOKIE) {
        for cookie in Cookie::split_parse(header.to_str().ok()?).flatten() {
            jar.add_original(cookie.into_owned());
        }
    }
    let cookie = jar.private(key).get(SESSION_COOKIE)?;
    let session: Session = serde_json::from_str(cookie.value()).ok()?;
    match session.until {
        Some(until) if until <= unix_now() => None,
        _ => Some(session),
    }
}

/// Whether a POST comes from this site's own pages: what browsers say of
/// it (`Sec-Fetch-Site`, else `Origin`) must name this site's origin.
/// Requests that carry neither (browsers too old to send them, clients
/// that are no browser) pass: the check is against a browser being made to
/// post from another site (CSRF), which modern browsers always mark.
fn from_this_site(headers: &HeaderMap, app_origin: &str) -> bool {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    match (header("sec-fetch-site"), header("origin")) {
        (Some(site), _) => matches!(site, "same-origin" | "none"),
        (None, Some(origin)) => origin == app_origin,
        (None, None) => true,
    }
}

#[derive(Deserialize)]
struct HomeQuery {
    notice: Option<String>,
    provider: Option<String>,
}

/// The sign-in buttons, each a form that starts its sign-in towards
/// `return_to`; with "Use another account" after a sign-out.
fn sign_in_buttons(app: &App, return_to: &str, another_account: bool) -> String {
    let mut buttons = String::new();
    for sign_in in app.sign_ins.iter() {
        let hidden = format!(
            "<input type=\"hidden\" name=\"return_to\" value=\"{}\">",
            escape(return_to)
        );
        buttons.push_str(&format!(
            "<form method=\"post\" action=\"{action}\">{hidden}\
             <button>Sign in with {name}</button></form>",
            action = sign_in.start_path(),
            name = escape(sign_in.provider.display_name()),
        ));
        if another_account && sign_in.name == "sso" {
            buttons.push_str(&format!(
                "<form method=\"post\" action=\"{action}\">{hidden}\
                 <input type=\"hidden\" name=\"account\" value=\"another\">\
                 <button class=\"secondary\">Use another account</button> \
                 <small>{name} asks who you are, even if it still knows you.</small></form>",
                action = sign_in.start_path(),
                name = escape(sign_in.provider.display_name()),
            ));
        }
    }
    buttons
}

/// What the start page says of where sign-ins in progress are kept.
fn where_flows_live(storage: Storage) -> &'static str {
    match storage {
        Storage::Redis => "on the server, in Redis",
        Storage::Memory => {
            "on the server, in its memory (no Redis answered when it started, \
             so sign-ins in progress end when it stops)"
        }
    }
}

async fn home(
    State(app): State<App>,
    Query(query): Query<HomeQuery>,
    request: Request,
) -> Response {
    let provider = query
        .provider
        .as_deref()
        .and_then(|name| app.sign_in(name))
        .map(|sign_in| sign_in.provider.display_name());
    let notice_name = query.notice.as_deref().unwrap_or("");
    let notice = pages::notice(notice_name, provider)
        .map(|text| format!("<p class=\"notice\">{}</p>", escape(&text)))
        .unwrap_or_default();
    let body = match session(request.headers(), &app.settings.session_key) {
        Some(session) => signed_in(&app, &session, &notice).await,
        None => {
            let after_sign_out = notice_name.starts_with("signed_out");
            let names: Vec<String> = app
                .sign_ins
                .iter()
                .map(|sign_in| {
                    format!(
                        "{} ({})",
                        escape(sign_in.provider.display_name()),
                        sign_in.protocol
                    )
                })
                .collect();
            format!(
                "{notice}<h1>Welcome</h1>\
                 <p>This demo signs you in with {providers}, by the authorization \
                 code flow with PKCE. While you sign in, the flow's state (its step, \
                 nonce, PKCE verifier and the identity found so far) lives {place}; \
                 your browser holds only a signed random id.</p>{buttons}\
                 <p class=\"muted\">Your account page needs you signed in: \
                 <a href=\"{ACCOUNT_PATH}\">Your account</a>.</p>",
                providers = names.join(" or "),
                place = where_flows_live(app.settings.storage),
                buttons = sign_in_buttons(&app, "/", after_sign_out),
            )
        }
    };
    with_outcome(page("Welcome", &body).into_response(), "home")
}

/// The start page's body for a signed-in person.
async fn signed_in(app: &App, session: &Session, notice: &str) -> String {
    let sign_in = app.sign_in(&session.via);
    let provider = sign_in.map_or("the identity provider", |sign_in| {
        sign_in.provider.display_name()
    });
    let email = session
        .email
        .as_deref()
        .map(|email| format!(" ({})", escape(email)))
        .unwrap_or_default();
    let login = session
        .username
        .as_deref()
        .map(|login| format!(", login <code>{}</code>", escape(login)))
        .unwrap_or_default();
    let stay = match session.until {
        Some(_) => format!(
            "You stay signed in on this device for {}.",
            pages::in_words(STAY_SIGNED_IN)
        ),
        None => "You stay signed in until you close the browser.".to_owned(),
    };
    let sign_out = match sign_in.map(|sign_in| &sign_in.provider) {
        Some(provider) => match provider
            .logout_url(Some(&app.settings.post_logout_redirect_uri()), None)
            .await
        {
            Ok(Some(_)) => format!(
                "Signing out signs you out at {} too.",
                escape(provider.display_name())
            ),
            Ok(None) => format!(
                "Signing out ends your session on this site only: {} offers no way \
                 to sign you out there from here.",
                escape(provider.display_name())
            ),
            Err(_) => String::new(),
        },
        None => String::new(),
    };
    let again = sign_in.map_or_else(|| "/sso/start".to_owned(), SignIn::start_path);
    format!(
        "{notice}<h1>Signed in as {name}</h1>\
         <p>According to {provider}, you are <strong>{name}</strong>{email}{login}.</p>\
         <p class=\"muted\">{stay} A real application would now show your account \
         (<a href=\"{ACCOUNT_PATH}\">this one shows what it knows</a>). Refresh or go \
         Back as you like: this page is a plain GET.</p>\
         <form method=\"post\" action=\"/signout\"><button>Sign out</button></form>\
         <p class=\"muted\">{sign_out}</p>\
         <form method=\"post\" action=\"{again}\">\
         <input type=\"hidden\" name=\"return_to\" value=\"/\">\
         <button class=\"secondary\">Sign in again</button></form>",
        name = escape(session.display_name()),
        provider = escape(provider),
    )
}

/// A page that needs a signed-in person: what the session says, or the
/// sign-in buttons, which bring the person back here.
async fn account(State(app): State<App>, request: Request) -> Response {
    let body = match session(request.headers(), &app.settings.session_key) {
        Some(session) => {
            let provider = app
                .sign_in(&session.via)
                .map_or("the identity provider", |sign_in| {
                    sign_in.provider.display_name()
                });
            let row = |label: &str, value: Option<&str>| {
                value
                    .map(|value| format!("<tr><th>{label}</th><td>{}</td></tr>", escape(value)))
                    .unwrap_or_default()
            };
            format!(
                "<h1>Your account</h1>\
                 <p>Signed in as <strong>{name}</strong> with {provider}.</p>\
                 <table>{issuer}{subject}{full}{email}{login}</table>\
                 <p><a class=\"button\" href=\"/\">Start page</a></p>",
                name = escape(session.display_name()),
                provider = escape(provider),
                issuer = row("Issuer", Some(&session.issuer)),
                subject = row("Subject", Some(&session.subject)),
                full = row("Name", session.name.as_deref()),
                email = row("E-mail", session.email.as_deref()),
                login = row("Login", session.username.as_deref()),
            )
        }
        None => format!(
            "<h1>Sign in to see your account</h1>\
             <p>This page needs you signed in. Once you are, you come back here.</p>{}",
            sign_in_buttons(&app, ACCOUNT_PATH, false)
        ),
    };
    with_outcome(page("Your account", &body).into_response(), "account")
}

/// What a start form sends: where to go once signed in, and whether to
/// ask the provider for another account.
#[derive(Debug, Default)]
struct StartForm {
    return_to: Option<String>,
    account: Option<String>,
}

impl StartForm {
    fn parse(body: &[u8]) -> Self {
        let mut form = Self::default();
        for (name, value) in form_urlencoded::parse(body) {
            match &*name {
                "return_to" => form.return_to = Some(value.into_owned()),
                "account" => form.account = Some(value.into_owned()),
                _ => {}
            }
        }
        form
    }
}

/// Starts a sign-in of the `index`-th sign-in pipeline, towards the form's
/// `return_to` (default the start page), from this site's pages only.
async fn start(app: &App, index: usize, request: Request) -> Response {
    let sign_in = &app.sign_ins[index];
    if !from_this_site(request.headers(), &app.settings.app_origin) {
        return message_page(
            &pages::FORM_FROM_ANOTHER_SITE,
            &sign_in.start_path(),
            app.lifetimes(),
        );
    }
    // Read what the form sent before starting: the first step is entered
    // as a GET.
    let (parts, body) = request.into_parts();
    let form = to_bytes(body, 4096)
        .await
        .map(|bytes| StartForm::parse(&bytes))
        .unwrap_or_default();
    let kind = match form.account.as_deref() {
        Some("another") => ANOTHER_ACCOUNT,
        _ => LOGIN,
    };
    let return_to = form.return_to.as_deref().unwrap_or("/");
    let response = sign_in
        .pipeline
        .start_to(Request::from_parts(parts, Body::empty()), kind, return_to)
        .await;
    labelled(response, "to_provider")
}

/// `response` with `outcome` for the log, unless it has one.
fn labelled(response: Response, outcome: &'static str) -> Response {
    if response.extensions().get::<Outcome>().is_some() {
        return response;
    }
    with_outcome(response, outcome)
}

/// Every request of a sign-in after its start: the provider's callback and
/// the sign-in's own pages. When the flow is gone but the person is signed
/// in (Back long after signing in: the flow's link names a flow the browser
/// no longer holds), the start page says so instead; a form of an earlier
/// step is answered with the step the sign-in is on now.
async fn run_flow(app: &App, index: usize, request: Request) -> Response {
    let sign_in = &app.sign_ins[index];
    let signed_in = session(request.headers(), &app.settings.session_key).is_some();
    let uri = request.uri().clone();
    let response = sign_in.pipeline.dispatch(request).await;
    let outcome = response
        .extensions()
        .get::<Outcome>()
        .map(|outcome| outcome.0);
    if outcome == Some(pages::STALE_PAGE.outcome) {
        // A GET of the same link shows the step the sign-in is on now.
        let link = match uri.query() {
            Some(query) => format!("{}?{query}&notice=stale", uri.path()),
            None => format!("{}?notice=stale", uri.path()),
        };
        return with_outcome(see_other(&link), pages::STALE_PAGE.outcome);
    }
    let gone = [
        pages::NO_SIGN_IN.outcome,
        pages::EXPIRED.outcome,
        pages::ALREADY_USED.outcome,
        pages::ANSWERED_ELSEWHERE.outcome,
        pages::OTHER_BROWSER.outcome,
    ];
    if signed_in && outcome.is_some_and(|outcome| gone.contains(&outcome)) {
        let mut redirect =
            with_outcome(see_other("/?notice=already_signed_in"), "already_signed_in");
        // Keep the expired flow cookie's removal.
        for cookie in response.headers().get_all(SET_COOKIE) {
            redirect.headers_mut().append(SET_COOKIE, cookie.clone());
        }
        return redirect;
    }
    // The provider crate's steps answer with redirects: to the sign-in's
    // next page once the identity is verified, or to the provider (a
    // sign-in that expired and started again).
    let to_here = response
        .headers()
        .get(LOCATION)
        .and_then(|location| location.to_str().ok())
        .is_some_and(|location| location.starts_with('/'));
    labelled(response, if to_here { "verified" } else { "to_provider" })
}

/// Signs out of this site and, when the provider has an address for it
/// (RP-initiated logout), sends the browser there to sign out too; from
/// this site's pages only.
async fn sign_out(State(app): State<App>, request: Request) -> Response {
    if !from_this_site(request.headers(), &app.settings.app_origin) {
        return message_page(
            &pages::FORM_FROM_ANOTHER_SITE,
            "/sso/start",
            app.lifetimes(),
        );
    }
    let session = session(request.headers(), &app.settings.session_key);
    let sign_in = session
        .as_ref()
        .and_then(|session| app.sign_in(&session.via));
    let (to, outcome) = match sign_in {
        None => ("/?notice=signed_out".to_owned(), "signed_out"),
        Some(sign_in) => match sign_in
            .provider
            .logout_url(
                Some(&app.settings.post_logout_redirect_uri()),
                Some(sign_in.name),
            )
            .await
        {
            Ok(Some(url)) => (url.to_string(), "to_provider_sign_out"),
            Ok(None) => (
                format!("/?notice=signed_out&provider={}", sign_in.name),
                "signed_out",
            ),
            Err(error) => {
                tracing::warn!(
                    target: LOG_TARGET,
                    "no sign-out at the provider: {error} ({})",
                    error.detail()
                );
                (
                    format!("/?notice=signed_out&provider={}", sign_in.name),
                    "signed_out",
                )
            }
        },
    };
    let removal = Cookie::build((SESSION_COOKIE, ""))
        .path("/")
        .max_age(cookie::time::Duration::ZERO)
        .build();
    let mut response = see_other(&to);
    if let Ok(value) = HeaderValue::from_str(&removal.to_string()) {
        response.headers_mut().append(SET_COOKIE, value);
    }
    with_outcome(response, outcome)
}

#[derive(Deserialize)]
struct SignedOutQuery {
    state: Option<String>,
}

/// The provider's way back after signing out there: the start page says
/// so. (Its `state` names the sign-in pipeline, to name the provider; a
/// link that names another only changes the words of the notice.)
async fn signed_out(State(app): State<App>, Query(query): Query<SignedOutQuery>) -> Response {
    let provider = query
        .state
        .as_deref()
        .and_then(|name| app.sign_in(name))
        .map(|sign_in| format!("&provider={}", sign_in.name))
        .unwrap_or_default();
    with_outcome(
        see_other(&format!("/?notice=signed_out_everywhere{provider}")),
        "signed_out",
    )
}

/// The `notice` a step's page shows: a form of an earlier step was just
/// refused.
fn step_notice(request: &Request) -> &'static str {
    let stale = request.uri().query().is_some_and(|query| {
        form_urlencoded::parse(query.as_bytes())
            .any(|(name, value)| name == "notice" && value == "stale")
    });
    if stale {
        "<p class=\"notice\">That page was out of date, so its answer was not used: \
         this is where your sign-in is now.</p>"
    } else {
        ""
    }
}

#[derive(Deserialize)]
struct Decision {
    action: String,
}

/// The sign-in's "Continue as ...?" page, and its answer.
async fn confirm(provider: Arc<str>, path: &'static str, request: Request, flow: SsoFlow) -> Step {
    let identity = Identity::from_flow(&flow)?.ok_or_else(internal)?;
    if request.method() != Method::POST {
        let email = identity
            .email
            .as_deref()
            .map(|email| format!(" ({})", escape(email)))
            .unwrap_or_default();
        let body = format!(
            "{notice}<h1>Continue?</h1>\
             <p>According to {provider}, you are <strong>{name}</strong>{email}.</p>\
             <form method=\"post\" action=\"{action}\">\
             <button name=\"action\" value=\"continue\">Continue as {name}</button>\
             <button class=\"secondary\" name=\"action\" value=\"cancel\">Cancel</button></form>",
            notice = step_notice(&request),
            provider = escape(&provider),
            name = escape(identity.display_name()),
            // Posts back to this flow, whatever the browser's other tabs
            // started since, and says which step the page was made for.
            action = escape(&flow.link(path)),
        );
        return Ok(with_outcome(
            page("Continue?", &body).into_response(),
            "asked_to_confirm",
        ));
    }
    let Form(decision) = Form::<Decision>::from_request(request, &())
        .await
        .map_err(|_| internal())?;
    if decision.action == "continue" {
        flow.advance()?;
        // The next question on a GET page of its own: refresh and Back
        // never post this answer again.
        return Ok(with_outcome(see_other(&flow.link(path)), "confirmed"));
    }
    // Ended as cancelled: Back to this page says so.
    flow.cancel()?;
    Ok(with_outcome(see_other("/?notice=cancelled"), "cancelled"))
}

/// "Stay signed in?": the answer finishes the sign-in.
async fn remember(path: &'static str, request: Request, flow: SsoFlow) -> Step {
    if request.method() != Method::POST {
        let body = format!(
            "{notice}<h1>Stay signed in?</h1>\
             <p>Stay signed in on this device for {days}, or only until you close \
             the browser? On a computer others use, choose No.</p>\
             <form method=\"post\" action=\"{action}\">\
             <button name=\"action\" value=\"stay\">Yes, stay signed in</button>\
             <button class=\"secondary\" name=\"action\" value=\"session\">No</button></form>",
            notice = step_notice(&request),
            days = pages::in_words(STAY_SIGNED_IN),
            action = escape(&flow.link(path)),
        );
        return Ok(with_outcome(
            page("Stay signed in?", &body).into_response(),
            "asked_to_remember",
        ));
    }
    let Form(decision) = Form::<Decision>::from_request(request, &())
        .await
        .map_err(|_| internal())?;
    flow.bind("stay_signed_in", &(decision.action == "stay"))?;
    flow.next().await
}

/// A failure of the application's own steps: the flow ends, the log says
/// why, the person reads that something went wrong on our side.
fn internal() -> FlowError {
    FlowError::failed("the sign-in's state is not what its steps expect")
}

/// The sign-in is done: the login session starts (a private cookie a real
/// application would replace with its own session), and the browser goes
/// where the person was going, with a GET; a replay of the sign-in lands
/// there too.
async fn finish(via: &'static str, key: Key, _request: Request, finished: Finished) -> Step {
    let identity = Identity::from_finished(&finished)?.ok_or_else(internal)?;
    let stay: bool = finished.fetch("stay_signed_in")?.unwrap_or(false);
    let session = Session {
        via: via.to_owned(),
        issuer: identity.issuer.clone(),
        subject: identity.subject.clone(),
        name: identity.name.clone(),
        email: identity.email.clone(),
        username: identity.username.clone(),
        until: stay.then(|| unix_now() + STAY_SIGNED_IN.as_secs()),
    };
    let value = serde_json::to_string(&session).map_err(|_| internal())?;
    let mut cookie = Cookie::build((SESSION_COOKIE, value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax);
    if stay {
        let seconds = i64::try_from(STAY_SIGNED_IN.as_secs()).unwrap_or(i64::MAX);
        cookie = cookie.max_age(cookie::time::Duration::seconds(seconds));
    }
    let mut jar = CookieJar::new();
    jar.private_mut(&key).add(cookie.build());
    let to = finished.return_to.clone().unwrap_or_else(|| "/".to_owned());
    finished.lands_at(&to);
    let mut response = see_other(&to);
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

/// The page for a provider's failure, by its kind.
fn provider_message(kind: ErrorKind) -> Message {
    match kind {
        ErrorKind::InteractionRequired | ErrorKind::ProviderError => pages::PROVIDER_DECLINED,
        ErrorKind::BadCallback => pages::MISSING_ANSWER,
        ErrorKind::Unreachable | ErrorKind::BadResponse => pages::PROVIDER_UNREACHABLE,
        ErrorKind::Misconfigured => pages::MISCONFIGURED,
        ErrorKind::CodeRefused => pages::CODE_REFUSED,
        _ => pages::NOT_VERIFIED,
    }
}

/// The page for a failed request of a sign-in started at `start`.
fn error_page(failure: Failure, start: &str, lifetimes: Lifetimes) -> Response {
    if let Some(kind) = ErrorKind::of(&failure.error) {
        if kind == ErrorKind::AccessDenied {
            // Cancelled at the provider.
            return with_outcome(see_other("/?notice=cancelled"), "cancelled");
        }
        return message_page(&provider_message(kind), start, lifetimes);
    }
    let message = match &failure.error {
        FlowError::NoFlow => pages::NO_SIGN_IN,
        FlowError::Expired => pages::EXPIRED,
        FlowError::OtherBrowser => pages::OTHER_BROWSER,
        FlowError::CrossSite => pages::CROSS_SITE,
        FlowError::NonceMismatch => pages::NOT_THIS_SIGN_IN,
        FlowError::NonceReplayed => pages::ALREADY_USED,
        FlowError::NonceMissing => pages::MISSING_ANSWER,
        // A write of the step's (its nonce spent, the flow claimed) that
        // was sent and not confirmed; any other store failure wrote
        // nothing.
        FlowError::Unavailable(source)
            if source
                .downcast_ref::<StoreError>()
                .is_some_and(|error| !error.nothing_written()) =>
        {
            pages::NOT_SAVED
        }
        FlowError::Unavailable(_) => pages::UNAVAILABLE,
        FlowError::Concurrent => pages::ANSWERED_ELSEWHERE,
        FlowError::SignatureChanged => pages::STEPS_CHANGED,
        FlowError::Ended {
            how: HowEnded::Cancelled,
        } => pages::CANCELLED,
        FlowError::Ended { .. } => pages::ENDED,
        FlowError::StaleStep { .. } => pages::STALE_PAGE,
        FlowError::NotNavigation => pages::NOT_A_PAGE,
        FlowError::ReturnTo(_) => pages::BAD_START,
        _ => pages::INTERNAL,
    };
    message_page(&message, start, lifetimes)
}

/// The page for one of the layer's own answers, with the layer's status.
fn layer_error_page(error: &LayerError, lifetimes: Lifetimes) -> HttpResponse<String> {
    let message = match error {
        LayerError::Unavailable => pages::UNAVAILABLE,
        LayerError::NotConfirmed => pages::NOT_SAVED,
        LayerError::Conflict { .. } => pages::ANSWERED_ELSEWHERE,
        _ => pages::INTERNAL,
    };
    let mut response = HttpResponse::new(render(&message, "/sso/start", lifetimes));
    *response.status_mut() = error.status();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response.extensions_mut().insert(Outcome(message.outcome));
    mark_retry(response.extensions_mut(), &message, lifetimes);
    response
}

/// A message as a response; its "Sign in again" starts at `start`.
fn message_page(message: &Message, start: &str, lifetimes: Lifetimes) -> Response {
    let mut response = (
        message.status,
        axum::response::Html(render(message, start, lifetimes)),
    )
        .into_response();
    response.extensions_mut().insert(Outcome(message.outcome));
    mark_retry(response.extensions_mut(), message, lifetimes);
    response
}

/// A page whose way on is to send the same request again: for a POST,
/// [`resend_failed_posts`] renders it again with a form that does.
#[derive(Clone, Copy, Debug)]
struct Retry {
    message: Message,
    lifetimes: Lifetimes,
}

fn mark_retry(extensions: &mut axum::http::Extensions, message: &Message, lifetimes: Lifetimes) {
    if message.next == pages::Next::TryAgain {
        extensions.insert(Retry {
            message: *message,
            lifetimes,
        });
    }
}

/// The most a form this middleware keeps may hold: the engine's own
/// default limit for a form (a provider's `form_post` answer, the largest
/// the demo gets), so the middleware refuses nothing the engine would take.
const RESEND_LIMIT: usize = 64 * 1024;

/// Keeps a form POST's fields, and when its answer is a page whose way on
/// is "try again" (the store unavailable, a write not confirmed, the
/// provider unreachable), renders that page with a form that sends the
/// same fields to the same address by POST: a "Try again" link would load
/// the address as a GET, which a POST-only route refuses (405).
async fn resend_failed_posts(request: Request, next: Next) -> Response {
    let is_form = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_none_or(|value| value.starts_with("application/x-www-form-urlencoded"));
    if request.method() != Method::POST || !is_form {
        return next.run(request).await;
    }
    let action = request
        .uri()
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |path| path.as_str().to_owned());
    let (parts, body) = request.into_parts();
    let Ok(bytes) = to_bytes(body, RESEND_LIMIT).await else {
        return (
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "This form is larger than this site accepts.",
        )
            .into_response();
    };
    let fields: Vec<(String, String)> = form_urlencoded::parse(&bytes).into_owned().collect();
    let mut response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let Some(retry) = response.extensions().get::<Retry>().copied() else {
        return response;
    };
    let html = render_resend(&retry.message, &action, &fields, retry.lifetimes);
    response
        .headers_mut()
        .remove(axum::http::header::CONTENT_LENGTH);
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    *response.body_mut() = Body::from(html);
    response
}

/// The page of `message` whose "Try again" posts `fields` to `action`
/// again.
fn render_resend(
    message: &Message,
    action: &str,
    fields: &[(String, String)],
    lifetimes: Lifetimes,
) -> String {
    let hidden: String = fields
        .iter()
        .map(|(name, value)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape(name),
                escape(value)
            )
        })
        .collect();
    let body = format!(
        "<h1>{title}</h1><p class=\"problem\">{text}</p>\
         <form method=\"post\" action=\"{action}\">{hidden}<button>Try again</button> \
         <a href=\"/\">Start page</a></form>",
        title = escape(message.title),
        text = escape(&message.text(lifetimes)),
        action = escape(action),
    );
    page(message.title, &body).0
}

/// The HTML of a message's page.
fn render(message: &Message, start: &str, lifetimes: Lifetimes) -> String {
    let next = match message.next {
        pages::Next::StartAgain => format!(
            "<form method=\"post\" action=\"{}\"><button>Sign in again</button> \
             <a href=\"/\">Start page</a></form>",
            escape(start)
        ),
        pages::Next::TryAgain => "<p><a class=\"button\" href=\"\">Try again</a> \
                                  <a href=\"/\">Start page</a></p>"
            .to_owned(),
        pages::Next::Home => "<p><a class=\"button\" href=\"/\">Start page</a></p>".to_owned(),
    };
    let body = format!(
        "<h1>{title}</h1><p class=\"problem\">{text}</p>{next}",
        title = escape(message.title),
        text = escape(&message.text(lifetimes)),
    );
    page(message.title, &body).0
}
