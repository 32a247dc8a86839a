//! A small OpenID Connect provider, enough for the demo: discovery, the
//! authorization code flow with PKCE (S256 only), answers by redirect
//! (`query`) or by an auto-submitted form (`form_post`), ID tokens signed
//! with an ES256 key made at start-up and published as a JWKS, one
//! registered confidential client, two users, single-use codes that live one
//! minute. Not for production: no TLS, no consent screen, users in the
//! source.

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
use subtle::ConstantTimeEq;

use super::{
    html::{escape, page_of},
    pkce,
};

/// The one client the provider knows.
pub const CLIENT_ID: &str = "pipeline-demo";
/// Its secret (a demo: in the source).
pub const CLIENT_SECRET: &str = "pipeline-demo-secret";
/// How long an authorization code can be exchanged.
const CODE_TTL: Duration = Duration::from_secs(60);
/// How long an ID token is valid.
const ID_TOKEN_TTL: Duration = Duration::from_secs(5 * 60);

/// A user of the provider.
#[derive(Debug)]
pub struct Account {
    /// The login, also the subject of the ID token.
    pub login: &'static str,
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
        password: "wonderland",
        name: "Alice Liddell",
        email: "alice@example.com",
    },
    Account {
        login: "bob",
        password: "builder",
        name: "Bob the Builder",
        email: "bob@example.com",
    },
];

/// A code waiting to be exchanged.
struct Grant {
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
        let kid = pkce::random_token()[..16].to_owned();
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

#[derive(Clone)]
struct Provider {
    issuer: Arc<str>,
    redirect_uri: Arc<str>,
    key: Arc<SigningKey>,
    codes: Arc<Mutex<HashMap<String, Grant>>>,
}

/// The provider's routes, as `issuer` (its public origin): discovery,
/// `GET /jwks`, `GET /authorize` (the login form), `POST /authorize`
/// (credentials in, code out, or Cancel), `POST /token` (code and verifier
/// in, ID token out). `redirect_uri` is the registered client's callback.
pub fn router(issuer: String, redirect_uri: String) -> Router {
    let provider = Provider {
        issuer: issuer.into(),
        redirect_uri: redirect_uri.into(),
        key: Arc::new(SigningKey::generate()),
        codes: Arc::default(),
    };
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/authorize", get(authorize).post(login))
        .route("/token", post(token))
        .with_state(provider)
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
    /// Checks the request; an error says what is wrong with it.
    fn check(&self, request: &AuthorizeRequest) -> Result<(), &'static str> {
        if request.client_id != CLIENT_ID {
            return Err("unknown client");
        }
        if request.redirect_uri != *self.redirect_uri {
            return Err("redirect_uri is not the one registered for this client");
        }
        if request.response_type != "code" {
            return Err("only response_type=code is supported");
        }
        if !request.scope.split(' ').any(|scope| scope == "openid") {
            return Err("the openid scope is required");
        }
        if request.code_challenge_method != "S256" || request.code_challenge.len() != 43 {
            return Err("a PKCE code_challenge with method S256 is required");
        }
        if request.state.is_empty() {
            return Err("a state parameter is required");
        }
        if !matches!(
            request.response_mode.as_deref(),
            None | Some("query" | "form_post")
        ) {
            return Err("response_mode must be query or form_post");
        }
        Ok(())
    }

    /// Sends `params` back to the client, as the request's response mode
    /// asks: a redirect with a query string, or a form the browser submits.
    fn answer(&self, request: &AuthorizeRequest, params: &[(&str, &str)]) -> Response {
        let mut params = params.to_vec();
        params.push(("state", &request.state));
        params.push(("iss", &self.issuer));
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
            return page_of("Demo identity provider", "#6b3fa0", "Signing you in", &body)
                .into_response();
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
fn invalid_request(message: &str) -> Response {
    let body = format!(
        "<h1>This sign-in request is not valid</h1><p class=\"problem\">{}</p>",
        escape(message)
    );
    (
        StatusCode::BAD_REQUEST,
        page_of(
            "Demo identity provider",
            "#6b3fa0",
            "Invalid request",
            &body,
        ),
    )
        .into_response()
}

async fn authorize(
    State(provider): State<Provider>,
    Query(request): Query<AuthorizeRequest>,
) -> Response {
    if let Err(message) = provider.check(&request) {
        return invalid_request(message);
    }
    login_form(&request, None, StatusCode::OK)
}

fn login_form(request: &AuthorizeRequest, error: Option<&str>, status: StatusCode) -> Response {
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
         <form method=\"post\" action=\"/authorize\">{hidden}\
         <label>User <input name=\"username\" autocomplete=\"username\" autofocus></label>\
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\"></label>\
         <button name=\"action\" value=\"sign_in\">Sign in</button>\
         <button class=\"secondary\" name=\"action\" value=\"cancel\" formnovalidate>Cancel</button></form>\
         <p><small>Try alice / wonderland or bob / builder.</small></p>",
        client = escape(&request.client_id),
    );
    (
        status,
        page_of("Demo identity provider", "#6b3fa0", "Sign in", &body),
    )
        .into_response()
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
    let request = &login.request;
    if let Err(message) = provider.check(request) {
        return invalid_request(message);
    }
    if login.action.as_deref() == Some("cancel") {
        return provider.answer(
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
            request,
            Some("Wrong user or password."),
            StatusCode::UNAUTHORIZED,
        );
    };
    let code = pkce::random_token();
    {
        let mut codes = provider.codes.lock().unwrap();
        codes.retain(|_, grant| grant.expires > Instant::now());
        codes.insert(
            code.clone(),
            Grant {
                redirect_uri: request.redirect_uri.clone(),
                challenge: request.code_challenge.clone(),
                nonce: request.nonce.clone(),
                account,
                expires: Instant::now() + CODE_TTL,
            },
        );
    }
    provider.answer(request, &[("code", &code)])
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

async fn token(
    State(provider): State<Provider>,
    headers: HeaderMap,
    Form(request): Form<TokenRequest>,
) -> Response {
    let invalid = |status: StatusCode, error: &str, description: &str| {
        (
            status,
            Json(json!({"error": error, "error_description": description})),
        )
            .into_response()
    };
    let authenticated = client_credentials(&headers, &request).is_some_and(|(id, secret)| {
        id == CLIENT_ID && bool::from(secret.as_bytes().ct_eq(CLIENT_SECRET.as_bytes()))
    });
    if !authenticated {
        return invalid(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret",
        );
    }
    if request.grant_type != "authorization_code" {
        return invalid(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only authorization_code",
        );
    }
    // A code is used once, whether the exchange succeeds or not.
    let Some(grant) = provider.codes.lock().unwrap().remove(&request.code) else {
        return invalid(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "unknown or already used code",
        );
    };
    if grant.expires <= Instant::now() {
        return invalid(StatusCode::BAD_REQUEST, "invalid_grant", "the code expired");
    }
    if grant.redirect_uri != request.redirect_uri {
        return invalid(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "redirect_uri does not match",
        );
    }
    if !pkce::verify(&request.code_verifier, &grant.challenge) {
        return invalid(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the PKCE verifier does not match the challenge",
        );
    }
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
                Html(format!("signing failed: {}", escape(&error.to_string()))),
            )
                .into_response();
        }
    };
    Json(json!({
        "access_token": pkce::random_token(),
        "token_type": "Bearer",
        "expires_in": ID_TOKEN_TTL.as_secs(),
        "id_token": id_token,
    }))
    .into_response()
}
