//! A small OAuth 2.0 identity provider, enough for the demo: the
//! authorization code grant with PKCE (S256 only), one registered client,
//! two users, single-use codes that live one minute. Not for production: no
//! TLS, no consent screen, users in the source.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Form, Json, Router,
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use serde::{Deserialize, Serialize};

use super::{
    html::{escape, page},
    pkce,
};

/// The one client the provider knows.
pub(crate) const CLIENT_ID: &str = "pipeline-demo";
/// How long an authorization code can be exchanged.
const CODE_TTL: Duration = Duration::from_secs(60);

/// A user of the provider.
pub(crate) struct Account {
    /// The login, also the subject the application gets.
    pub(crate) login: &'static str,
    /// The password (a demo: in the source).
    pub(crate) password: &'static str,
    /// The display name.
    pub(crate) name: &'static str,
    /// The e-mail address.
    pub(crate) email: &'static str,
}

/// The provider's users.
pub(crate) const ACCOUNTS: &[Account] = &[
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

/// Who signed in, as the token endpoint returns it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Identity {
    /// The user's login.
    pub(crate) login: String,
    /// The display name.
    pub(crate) name: String,
    /// The e-mail address.
    pub(crate) email: String,
}

/// The token endpoint's answer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TokenResponse {
    /// A bearer token (unused by the demo).
    pub(crate) access_token: String,
    /// Always `Bearer`.
    pub(crate) token_type: String,
    /// Who signed in.
    pub(crate) user: Identity,
}

/// A code waiting to be exchanged.
struct Grant {
    redirect_uri: String,
    challenge: String,
    account: &'static Account,
    expires: Instant,
}

#[derive(Clone)]
struct Provider {
    redirect_uri: Arc<str>,
    codes: Arc<Mutex<HashMap<String, Grant>>>,
}

/// The provider's routes: `GET /authorize` (the login form), `POST
/// /authorize` (credentials in, code out), `POST /token` (code and verifier
/// in, identity out). `redirect_uri` is the registered client's callback.
pub(crate) fn router(redirect_uri: String) -> Router {
    let provider = Provider {
        redirect_uri: redirect_uri.into(),
        codes: Arc::default(),
    };
    Router::new()
        .route("/authorize", get(authorize).post(login))
        .route("/token", post(token))
        .with_state(provider)
}

/// The authorization request, as the application's redirect carries it and
/// as the login form posts it back.
#[derive(Debug, Deserialize)]
struct AuthorizeRequest {
    response_type: String,
    client_id: String,
    redirect_uri: String,
    state: String,
    code_challenge: String,
    code_challenge_method: String,
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
        if request.code_challenge_method != "S256" || request.code_challenge.len() != 43 {
            return Err("a PKCE code_challenge with method S256 is required");
        }
        if request.state.is_empty() {
            return Err("a state parameter is required");
        }
        Ok(())
    }
}

/// The answer to an invalid authorization request: an error page, never a
/// redirect (an unchecked redirect URI would make the provider an open
/// redirector).
fn invalid_request(message: &str) -> Response {
    let body = format!("<h1>Invalid request</h1><p>{}</p>", escape(message));
    (StatusCode::BAD_REQUEST, page("Invalid request", &body)).into_response()
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
    let hidden: String = [
        ("response_type", &request.response_type),
        ("client_id", &request.client_id),
        ("redirect_uri", &request.redirect_uri),
        ("state", &request.state),
        ("code_challenge", &request.code_challenge),
        ("code_challenge_method", &request.code_challenge_method),
    ]
    .iter()
    .map(|(name, value)| {
        format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            escape(value)
        )
    })
    .collect();
    let error = error
        .map(|message| format!("<p style=\"color:#b00\">{}</p>", escape(message)))
        .unwrap_or_default();
    let body = format!(
        "<h1>Demo Identity Provider</h1>\
         <p><strong>{client}</strong> asks you to sign in.</p>{error}\
         <form method=\"post\" action=\"/authorize\">{hidden}\
         <label>User <input name=\"username\" autofocus></label><br>\
         <label>Password <input name=\"password\" type=\"password\"></label><br>\
         <button>Sign in</button></form>\
         <p><small>Try alice / wonderland or bob / builder.</small></p>",
        client = escape(&request.client_id),
    );
    (status, page("Sign in – Demo IdP", &body)).into_response()
}

#[derive(Deserialize)]
struct Login {
    username: String,
    password: String,
    #[serde(flatten)]
    request: AuthorizeRequest,
}

async fn login(State(provider): State<Provider>, Form(login): Form<Login>) -> Response {
    let request = &login.request;
    if let Err(message) = provider.check(request) {
        return invalid_request(message);
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
                account,
                expires: Instant::now() + CODE_TTL,
            },
        );
    }
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("code", &code)
        .append_pair("state", &request.state)
        .finish();
    Redirect::to(&format!("{}?{query}", request.redirect_uri)).into_response()
}

#[derive(Deserialize)]
struct TokenRequest {
    grant_type: String,
    code: String,
    redirect_uri: String,
    client_id: String,
    code_verifier: String,
}

async fn token(State(provider): State<Provider>, Form(request): Form<TokenRequest>) -> Response {
    let invalid = |error: &str, description: &str| {
        (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"error": error, "error_description": description})),
        )
            .into_response()
    };
    if request.grant_type != "authorization_code" {
        return invalid("unsupported_grant_type", "only authorization_code");
    }
    if request.client_id != CLIENT_ID {
        return invalid("invalid_client", "unknown client");
    }
    // A code is used once, whether the exchange succeeds or not.
    let Some(grant) = provider.codes.lock().unwrap().remove(&request.code) else {
        return invalid("invalid_grant", "unknown or already used code");
    };
    if grant.expires <= Instant::now() {
        return invalid("invalid_grant", "the code expired");
    }
    if grant.redirect_uri != request.redirect_uri {
        return invalid("invalid_grant", "redirect_uri does not match");
    }
    if !pkce::verify(&request.code_verifier, &grant.challenge) {
        return invalid(
            "invalid_grant",
            "the PKCE verifier does not match the challenge",
        );
    }
    Json(TokenResponse {
        access_token: pkce::random_token(),
        token_type: "Bearer".to_owned(),
        user: Identity {
            login: grant.account.login.to_owned(),
            name: grant.account.name.to_owned(),
            email: grant.account.email.to_owned(),
        },
    })
    .into_response()
}
