//! A small provider, enough for the demo, with two faces on one server:
//!
//! - **Demo ID**, an OpenID Connect provider: discovery, the authorization
//!   code flow with PKCE (S256 only), answers by redirect (`query`) or by an
//!   auto-submitted form (`form_post`) with RFC 9207's `iss`, ID tokens
//!   signed with an ES256 key made at start-up and published as a JWKS.
//! - **Demo Hub**, a plain OAuth 2.0 provider in GitHub's manner (under
//!   `/hub/`): no ID token, an access token for its user API, which says who
//!   the person is (`{"id": 1001, "login": "alice", ...}`).
//!
//! One registered confidential client, two users, single-use codes that
//! live one minute. It keeps no session: it asks for the password at every
//! sign-in, so it has nothing to sign out of and no `end_session_endpoint`.
//! Not for production: no TLS, no consent screen, users in the source.
//!
//! It is the provider's side, so it checks what the application's provider
//! crate sends (PKCE, the redirect URI) with helpers of its own
//! ([`random_token`], [`s256`]).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::{
    Form, Json, Router,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header::AUTHORIZATION},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
};
use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::EncodePrivateKey;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_pipeline_oidc::{OAuthDescription, UserInfoMapping};

use super::html::{escape, page_of, secure_headers};

/// The one client the provider knows (on both faces).
pub const CLIENT_ID: &str = "pipeline-demo";
/// Its secret (a demo: in the source).
pub const CLIENT_SECRET: &str = "pipeline-demo-secret";
/// The OpenID Connect face's name.
pub const OIDC_NAME: &str = "Demo ID";
/// The plain OAuth 2.0 face's name.
pub const HUB_NAME: &str = "Demo Hub";
/// Where the plain OAuth 2.0 face lives on the provider's origin.
const HUB: &str = "/hub";
/// How long an authorization code can be exchanged.
const CODE_TTL: Duration = Duration::from_secs(60);
/// How long an ID token is valid.
const ID_TOKEN_TTL: Duration = Duration::from_secs(5 * 60);

/// A user of the provider.
#[derive(Debug)]
pub struct Account {
    /// The login, also the subject of the ID token.
    pub login: &'static str,
    /// The numeric id Demo Hub's user API gives (GitHub's way: the login
    /// can change, the id cannot).
    pub id: u64,
    /// The password (a demo: in the source).
    pub password: &'static str,
    /// The display name.
    pub name: &'static str,
    /// The e-mail address.
    pub email: &'static str,
}

/// The provider's users.
pub const ACCOUNTS: &[Account] = &[
    Account {
        login: "alice",
        id: 1001,
        password: "wonderland",
        name: "Alice Liddell",
        email: "alice@example.com",
    },
    Account {
        login: "bob",
        id: 1002,
        password: "builder",
        name: "Bob the Builder",
        email: "bob@example.com",
    },
];

/// 256 random bits as URL-safe text: codes, tokens, key ids.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The PKCE S256 challenge of `verifier` (RFC 7636):
/// `BASE64URL(SHA256(verifier))`, what the client sent with the
/// authorization request and the provider compares at the code exchange.
pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Whether `verifier` is the one `challenge` was made from (compared in
/// constant time).
fn verify_pkce(verifier: &str, challenge: &str) -> bool {
    s256(verifier).as_bytes().ct_eq(challenge.as_bytes()).into()
}

/// What Demo Hub is to the provider crate: its endpoints on `issuer` (this
/// provider's origin), and its user API mapped as GitHub's is.
pub fn hub_description(issuer: &str) -> OAuthDescription {
    OAuthDescription::new(
        format!("{issuer}{HUB}"),
        &format!("{issuer}{HUB}/authorize"),
        &format!("{issuer}{HUB}/token"),
        &format!("{issuer}{HUB}/user"),
        UserInfoMapping::fields("id")
            .username("login")
            .name("name")
            .email("email"),
    )
    .expect("the demo provider's endpoints are loopback URLs")
    .scopes(["read:user"])
}

/// Which face a request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Face {
    Oidc,
    Hub,
}

impl Face {
    fn name(self) -> &'static str {
        match self {
            Self::Oidc => OIDC_NAME,
            Self::Hub => HUB_NAME,
        }
    }

    /// The login form's action.
    fn authorize_path(self) -> &'static str {
        match self {
            Self::Oidc => "/authorize",
            Self::Hub => "/hub/authorize",
        }
    }
}

/// A page of the provider's, in its colour.
fn provider_page(face: Face, title: &str, body: &str) -> Html<String> {
    page_of(face.name(), "#6b3fa0", title, body)
}

/// A code waiting to be exchanged.
struct Grant {
    face: Face,
    redirect_uri: String,
    challenge: String,
    nonce: Option<String>,
    account: &'static Account,
    expires: Instant,
}

/// The signing key: made at start-up, its public half published.
struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    jwk: serde_json::Value,
}

impl SigningKey {
    fn generate() -> Self {
        let secret = loop {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).expect("the operating system's random source failed");
            // Fails only for the rare values past the curve's order.
            if let Ok(secret) = p256::SecretKey::from_slice(&bytes) {
                break secret;
            }
        };
        let der = secret
            .to_pkcs8_der()
            .expect("a P-256 key encodes as PKCS#8");
        let point = secret.public_key().to_sec1_bytes();
        // Uncompressed SEC1: 0x04, then x and y, 32 bytes each.
        let (x, y) = point[1..].split_at(32);
        let kid = random_token()[..16].to_owned();
        Self {
            encoding: EncodingKey::from_ec_der(der.as_bytes()),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
            }),
            kid,
        }
    }
}

/// An access token of Demo Hub's, for its user API.
struct AccessToken {
    account: &'static Account,
    expires: Instant,
}

#[derive(Clone)]
struct Provider {
    issuer: Arc<str>,
    redirect_uri: Arc<str>,
    hub_redirect_uri: Arc<str>,
    key: Arc<SigningKey>,
    codes: Arc<Mutex<HashMap<String, Grant>>>,
    tokens: Arc<Mutex<HashMap<String, AccessToken>>>,
}

/// The provider's routes, as `issuer` (its public origin). Demo ID:
/// discovery, `GET /jwks`, `GET /authorize` (the login form), `POST
/// /authorize` (credentials in, code out, or Cancel), `POST /token` (code
/// and verifier in, ID token out). Demo Hub: `GET`/`POST /hub/authorize`,
/// `POST /hub/token` (an access token out), `GET /hub/user`.
/// `redirect_uri` and `hub_redirect_uri` are the registered client's
/// callbacks on each face.
pub fn router(issuer: String, redirect_uri: String, hub_redirect_uri: String) -> Router {
    let provider = Provider {
        issuer: issuer.into(),
        redirect_uri: redirect_uri.into(),
        hub_redirect_uri: hub_redirect_uri.into(),
        key: Arc::new(SigningKey::generate()),
        codes: Arc::default(),
        tokens: Arc::default(),
    };
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/authorize", get(authorize).post(login))
        .route("/token", post(token))
        .route("/hub/authorize", get(hub_authorize).post(hub_login))
        .route("/hub/token", post(hub_token))
        .route("/hub/user", get(hub_user))
        .with_state(provider)
        .layer(axum::middleware::map_response(secure_headers))
}

async fn discovery(State(provider): State<Provider>) -> Response {
    let issuer = &*provider.issuer;
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": ["openid", "profile", "email"],
        "claims_supported": ["sub", "name", "email", "preferred_username"],
        "authorization_response_iss_parameter_supported": true,
    }))
    .into_response()
}

async fn jwks(State(provider): State<Provider>) -> Response {
    Json(json!({ "keys": [provider.key.jwk] })).into_response()
}

/// The authorization request, as the application's redirect carries it and
/// as the login form posts it back.
#[derive(Debug, Deserialize)]
struct AuthorizeRequest {
    response_type: String,
    client_id: String,
    redirect_uri: String,
    #[serde(default)]
    scope: String,
    state: String,
    #[serde(default)]
    nonce: Option<String>,
    code_challenge: String,
    code_challenge_method: String,
    #[serde(default)]
    response_mode: Option<String>,
}

impl Provider {
    /// Checks the request to `face`; an error says what is wrong with it.
    fn check(&self, face: Face, request: &AuthorizeRequest) -> Result<(), &'static str> {
        if request.client_id != CLIENT_ID {
            return Err("Unknown client.");
        }
        let registered = match face {
            Face::Oidc => &self.redirect_uri,
            Face::Hub => &self.hub_redirect_uri,
        };
        if request.redirect_uri != **registered {
            return Err("The redirect_uri is not the one registered for this client.");
        }
        if request.response_type != "code" {
            return Err("Only response_type=code is supported.");
        }
        if face == Face::Oidc && !request.scope.split(' ').any(|scope| scope == "openid") {
            return Err("The openid scope is required.");
        }
        if request.code_challenge_method != "S256" || request.code_challenge.len() != 43 {
            return Err("A PKCE code_challenge with method S256 is required.");
        }
        if request.state.is_empty() {
            return Err("A state parameter is required.");
        }
        let modes: &[&str] = match face {
            Face::Oidc => &["query", "form_post"],
            Face::Hub => &["query"],
        };
        if !request
            .response_mode
            .as_deref()
            .is_none_or(|mode| modes.contains(&mode))
        {
            return Err("This response_mode is not supported.");
        }
        Ok(())
    }

    /// Sends `params` back to the client, as the request's response mode
    /// asks: a redirect with a query string, or a form the browser submits.
    /// Demo ID adds its `iss` (RFC 9207); Demo Hub, as GitHub, does not.
    fn answer(&self, face: Face, request: &AuthorizeRequest, params: &[(&str, &str)]) -> Response {
        let mut params = params.to_vec();
        params.push(("state", &request.state));
        if face == Face::Oidc {
            params.push(("iss", &self.issuer));
        }
        if request.response_mode.as_deref() == Some("form_post") {
            let fields: String = params
                .iter()
                .map(|(name, value)| {
                    format!(
                        "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
                        escape(value)
                    )
                })
                .collect();
            // Submitted by the browser on load, a cross-site POST to the
            // application; the button is for browsers without scripts.
            let body = format!(
                "<h1>Signing you in…</h1>\
                 <form method=\"post\" action=\"{action}\">{fields}\
                 <noscript><button>Continue</button></noscript></form>\
                 <script>document.forms[0].submit()</script>",
                action = escape(&request.redirect_uri),
            );
            return provider_page(face, "Signing you in", &body).into_response();
        }
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (name, value) in &params {
            query.append_pair(name, value);
        }
        Redirect::to(&format!("{}?{}", request.redirect_uri, query.finish())).into_response()
    }
}

/// The answer to an invalid authorization request: an error page, never a
/// redirect (an unchecked redirect URI would make the provider an open
/// redirector).
fn invalid_request(face: Face, message: &str) -> Response {
    let body = format!(
        "<h1>This sign-in request is not valid</h1><p class=\"problem\">{}</p>",
        escape(message)
    );
    (
        StatusCode::BAD_REQUEST,
        provider_page(face, "Invalid request", &body),
    )
        .into_response()
}

async fn authorize(
    State(provider): State<Provider>,
    Query(request): Query<AuthorizeRequest>,
) -> Response {
    show_login(Face::Oidc, &provider, &request)
}

async fn hub_authorize(
    State(provider): State<Provider>,
    Query(request): Query<AuthorizeRequest>,
) -> Response {
    show_login(Face::Hub, &provider, &request)
}

fn show_login(face: Face, provider: &Provider, request: &AuthorizeRequest) -> Response {
    if let Err(message) = provider.check(face, request) {
        return invalid_request(face, message);
    }
    login_form(face, request, None, StatusCode::OK)
}

fn login_form(
    face: Face,
    request: &AuthorizeRequest,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let fields = [
        ("response_type", Some(&request.response_type)),
        ("client_id", Some(&request.client_id)),
        ("redirect_uri", Some(&request.redirect_uri)),
        ("scope", Some(&request.scope)),
        ("state", Some(&request.state)),
        ("nonce", request.nonce.as_ref()),
        ("code_challenge", Some(&request.code_challenge)),
        (
            "code_challenge_method",
            Some(&request.code_challenge_method),
        ),
        ("response_mode", request.response_mode.as_ref()),
    ];
    let hidden: String = fields
        .iter()
        .filter_map(|(name, value)| Some((name, (*value)?)))
        .map(|(name, value)| {
            format!(
                "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
                escape(value)
            )
        })
        .collect();
    let error = error
        .map(|message| format!("<p class=\"problem\">{}</p>", escape(message)))
        .unwrap_or_default();
    let body = format!(
        "<h1>Sign in to continue</h1>\
         <p>The application <strong>{client}</strong> asks you to sign in.</p>{error}\
         <form method=\"post\" action=\"{action}\">{hidden}\
         <label>User <input name=\"username\" autocomplete=\"username\" autofocus></label>\
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\"></label>\
         <button name=\"action\" value=\"sign_in\">Sign in</button>\
         <button class=\"secondary\" name=\"action\" value=\"cancel\" formnovalidate>Cancel</button></form>\
         <p><small>Try alice / wonderland or bob / builder.</small></p>",
        client = escape(&request.client_id),
        action = face.authorize_path(),
    );
    (status, provider_page(face, "Sign in", &body)).into_response()
}

#[derive(Deserialize)]
struct Login {
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(flatten)]
    request: AuthorizeRequest,
}

async fn login(State(provider): State<Provider>, Form(login): Form<Login>) -> Response {
    sign_in(Face::Oidc, &provider, &login)
}

async fn hub_login(State(provider): State<Provider>, Form(login): Form<Login>) -> Response {
    sign_in(Face::Hub, &provider, &login)
}

/// The login form's answer: back to the client with a code, or with
/// `access_denied` on Cancel, or the form again.
fn sign_in(face: Face, provider: &Provider, login: &Login) -> Response {
    let request = &login.request;
    if let Err(message) = provider.check(face, request) {
        return invalid_request(face, message);
    }
    if login.action.as_deref() == Some("cancel") {
        return provider.answer(
            face,
            request,
            &[
                ("error", "access_denied"),
                ("error_description", "The user cancelled the sign-in."),
            ],
        );
    }
    let Some(account) = ACCOUNTS
        .iter()
        .find(|account| account.login == login.username && account.password == login.password)
    else {
        return login_form(
            face,
            request,
            Some("Wrong user or password."),
            StatusCode::UNAUTHORIZED,
        );
    };
    let code = random_token();
    {
        let mut codes = provider.codes.lock().unwrap();
        codes.retain(|_, grant| grant.expires > Instant::now());
        codes.insert(
            code.clone(),
            Grant {
                face,
                redirect_uri: request.redirect_uri.clone(),
                challenge: request.code_challenge.clone(),
                nonce: request.nonce.clone(),
                account,
                expires: Instant::now() + CODE_TTL,
            },
        );
    }
    provider.answer(face, request, &[("code", &code)])
}

#[derive(Deserialize)]
struct TokenRequest {
    grant_type: String,
    code: String,
    redirect_uri: String,
    code_verifier: String,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_secret: Option<String>,
}

/// The client's credentials: HTTP Basic (form-encoded id and secret), or
/// the form's `client_id` and `client_secret`.
fn client_credentials(headers: &HeaderMap, request: &TokenRequest) -> Option<(String, String)> {
    if let Some(basic) = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Basic "))
    {
        let decoded = String::from_utf8(STANDARD.decode(basic).ok()?).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        let decode = |part: &str| -> String {
            form_urlencoded::parse(format!("v={part}").as_bytes())
                .next()
                .map(|(_, value)| value.into_owned())
                .unwrap_or_default()
        };
        return Some((decode(id), decode(secret)));
    }
    Some((request.client_id.clone()?, request.client_secret.clone()?))
}

/// Why a token request is refused: its status, the OAuth `error` and a
/// description.
type Refusal = (StatusCode, &'static str, &'static str);

fn token_error((status, error, description): Refusal) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// The grant a token request redeems for `face`: the client authenticated,
/// the code known, unexpired, of this face, for this redirect URI and
/// PKCE verifier. A code is used once, whether the exchange succeeds or
/// not.
fn redeem(
    face: Face,
    provider: &Provider,
    headers: &HeaderMap,
    request: &TokenRequest,
) -> Result<Grant, Refusal> {
    let authenticated = client_credentials(headers, request).is_some_and(|(id, secret)| {
        id == CLIENT_ID && bool::from(secret.as_bytes().ct_eq(CLIENT_SECRET.as_bytes()))
    });
    if !authenticated {
        return Err((
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret",
        ));
    }
    if request.grant_type != "authorization_code" {
        return Err((
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only authorization_code",
        ));
    }
    let Some(grant) = provider.codes.lock().unwrap().remove(&request.code) else {
        return Err((
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "unknown or already used code",
        ));
    };
    if grant.face != face {
        return Err((
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the code is not for this endpoint",
        ));
    }
    if grant.expires <= Instant::now() {
        return Err((StatusCode::BAD_REQUEST, "invalid_grant", "the code expired"));
    }
    if grant.redirect_uri != request.redirect_uri {
        return Err((
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "redirect_uri does not match",
        ));
    }
    if !verify_pkce(&request.code_verifier, &grant.challenge) {
        return Err((
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the PKCE verifier does not match the challenge",
        ));
    }
    Ok(grant)
}

/// Demo ID's token endpoint: an ID token for the code.
async fn token(
    State(provider): State<Provider>,
    headers: HeaderMap,
    Form(request): Form<TokenRequest>,
) -> Response {
    let grant = match redeem(Face::Oidc, &provider, &headers, &request) {
        Ok(grant) => grant,
        Err(refused) => return token_error(refused),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is past 1970")
        .as_secs();
    let account = grant.account;
    let mut claims = json!({
        "iss": &*provider.issuer,
        "sub": account.login,
        "aud": CLIENT_ID,
        "iat": now,
        "exp": now + ID_TOKEN_TTL.as_secs(),
        "name": account.name,
        "email": account.email,
        "preferred_username": account.login,
    });
    if let Some(nonce) = grant.nonce {
        claims["nonce"] = json!(nonce);
    }
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(provider.key.kid.clone());
    let id_token = match jsonwebtoken::encode(&header, &claims, &provider.key.encoding) {
        Ok(token) => token,
        Err(error) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html(format!("Signing failed: {}", escape(&error.to_string()))),
            )
                .into_response();
        }
    };
    Json(json!({
        "access_token": random_token(),
        "token_type": "Bearer",
        "expires_in": ID_TOKEN_TTL.as_secs(),
        "id_token": id_token,
    }))
    .into_response()
}

/// Demo Hub's token endpoint: an access token for its user API, and no ID
/// token (plain OAuth 2.0).
async fn hub_token(
    State(provider): State<Provider>,
    headers: HeaderMap,
    Form(request): Form<TokenRequest>,
) -> Response {
    let grant = match redeem(Face::Hub, &provider, &headers, &request) {
        Ok(grant) => grant,
        Err(refused) => return token_error(refused),
    };
    let token = random_token();
    {
        let mut tokens = provider.tokens.lock().unwrap();
        tokens.retain(|_, token| token.expires > Instant::now());
        tokens.insert(
            token.clone(),
            AccessToken {
                account: grant.account,
                expires: Instant::now() + ID_TOKEN_TTL,
            },
        );
    }
    Json(json!({"access_token": token, "token_type": "bearer", "scope": "read:user"}))
        .into_response()
}

/// Demo Hub's user API: who the bearer of the access token is.
async fn hub_user(State(provider): State<Provider>, headers: HeaderMap) -> Response {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let account = bearer.and_then(|token| {
        let tokens = provider.tokens.lock().unwrap();
        tokens
            .get(token)
            .filter(|token| token.expires > Instant::now())
            .map(|token| token.account)
    });
    match account {
        Some(account) => Json(json!({
            "id": account.id,
            "login": account.login,
            "name": account.name,
            "email": account.email,
        }))
        .into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Bad credentials"})),
        )
            .into_response(),
    }
}
