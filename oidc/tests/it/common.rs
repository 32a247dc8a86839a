//! The application under test (a sign-in pipeline behind the layer, served
//! on loopback) and a provider the tests control (discovery, JWKS, a token
//! endpoint that signs the ID tokens each test crafts, user info, and a
//! plain OAuth 2.0 token and user endpoint).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    Form, Json, Router,
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, StatusCode, header::AUTHORIZATION},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::EncodePrivateKey;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
pub(crate) use test_kit::{Logs, RedisServer, Server, browser, cookies::flow_cookie, listener};
use tower_pipeline_oidc::{ErrorKind, Identity, Provider, ProviderBuilder};
use tower_pipeline_state::{
    PipelineStateLayer, Store,
    pipeline::{FlowError, Pipeline},
};

/// The client id the test provider knows, and its secret.
pub(crate) const CLIENT_ID: &str = "test-app";
pub(crate) const CLIENT_SECRET: &str = "test-secret";

/// The application: `POST /start` starts a sign-in (kind `login`; `POST
/// /start/another-account` one of kind `another_account`), `/sso` is the
/// registered redirect URI and serves the pipeline. The finish hook answers
/// `200` with the identity as JSON (so tests can read it); the error
/// handler `400` with the failure's kind: the provider crate's
/// (`access_denied`) or the engine's (`flow:nonce_replayed`).
pub(crate) struct App {
    pub(crate) server: Server,
    pub(crate) provider: Provider,
}

impl App {
    /// Serves the application over `store` with the provider `make` builds
    /// for its redirect URI.
    pub(crate) async fn start<St: Store>(
        store: St,
        make: impl FnOnce(String) -> ProviderBuilder,
    ) -> Self {
        let listener = listener().await;
        let redirect_uri = format!("http://{}/sso", listener.local_addr().unwrap());
        let provider = make(redirect_uri).build().expect("valid provider settings");
        let pipeline: Pipeline<Body, Response> = provider
            .steps(
                Pipeline::builder("sso")
                    .flow_kind("login")
                    .flow_kind("another_account"),
            )
            .on_finish(|_request, finished| async move {
                let identity =
                    Identity::from_finished(&finished)?.ok_or(FlowError::failed("no identity"))?;
                Ok(Json(identity).into_response())
            })
            .on_error(|failure| {
                let kind = ErrorKind::of(&failure.error)
                    .map(|kind| kind.as_str().to_owned())
                    .unwrap_or_else(|| format!("flow:{}", failure.error.kind()));
                (StatusCode::BAD_REQUEST, kind).into_response()
            })
            .build();
        let (start, another) = (pipeline.clone(), pipeline.clone());
        let router = Router::new()
            .route(
                "/start",
                post(move |request: Request| async move { start.start(request, "login").await }),
            )
            .route(
                "/start/another-account",
                post(move |request: Request| async move {
                    another.start(request, "another_account").await
                }),
            )
            .route_service("/sso", pipeline)
            .layer(PipelineStateLayer::new(store).cookie_secure(false));
        Self {
            server: Server::axum(listener, router),
            provider,
        }
    }

    /// Starts a sign-in with `client`: the authorization URL the
    /// application sent the browser to, and its query's parameters.
    pub(crate) async fn begin(
        &self,
        client: &reqwest::Client,
    ) -> (String, HashMap<String, String>) {
        self.begin_at(client, "/start").await
    }

    /// [`begin`](Self::begin) at the start route `path`: `/start` starts a
    /// flow of kind `login`, `/start/another-account` one of kind
    /// `another_account`.
    pub(crate) async fn begin_at(
        &self,
        client: &reqwest::Client,
        path: &str,
    ) -> (String, HashMap<String, String>) {
        let response = client.post(self.server.url(path)).send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::SEE_OTHER,
            "{:?}",
            response.text().await
        );
        let location = location(&response);
        let params = query(&location);
        (location, params)
    }
}

/// A response's `Location`.
pub(crate) fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .expect("a Location")
        .to_str()
        .unwrap()
        .to_owned()
}

/// A URL's query parameters.
pub(crate) fn query(url: &str) -> HashMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}

/// `redirect_uri` with `pairs` as its query: the provider's answer.
pub(crate) fn answer(redirect_uri: &str, pairs: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(redirect_uri).unwrap();
    url.query_pairs_mut().extend_pairs(pairs);
    url.into()
}

/// An ES256 signing key, made for the test.
pub(crate) struct Key {
    pub(crate) kid: String,
    encoding: EncodingKey,
    pub(crate) jwk: Value,
}

impl Key {
    pub(crate) fn generate(kid: &str) -> Self {
        let secret = loop {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).unwrap();
            if let Ok(secret) = p256::SecretKey::from_slice(&bytes) {
                break secret;
            }
        };
        let der = secret.to_pkcs8_der().unwrap();
        let point = secret.public_key().to_sec1_bytes();
        let (x, y) = point[1..].split_at(32);
        Self {
            kid: kid.to_owned(),
            encoding: EncodingKey::from_ec_der(der.as_bytes()),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
            }),
        }
    }
}

/// Which key signs the next ID token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signer {
    /// The first key the JWKS publishes.
    Published,
    /// A key the JWKS never publishes.
    Unknown,
}

/// The `at_hash` of the next ID token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AtHash {
    Right,
    Wrong,
    Absent,
}

/// How the next ID token is made: every field left at its default makes a
/// valid token for the grant.
#[derive(Clone, Debug)]
pub(crate) struct Craft {
    pub(crate) iss: Option<String>,
    pub(crate) aud: Option<Value>,
    pub(crate) azp: Option<String>,
    pub(crate) nonce: Option<String>,
    /// Seconds added to `exp` (default 300 s from now).
    pub(crate) exp: i64,
    /// Seconds added to `iat` (default now).
    pub(crate) iat: i64,
    pub(crate) signer: Signer,
    pub(crate) at_hash: AtHash,
}

impl Default for Craft {
    fn default() -> Self {
        Self {
            iss: None,
            aud: None,
            azp: None,
            nonce: None,
            exp: 300,
            iat: 0,
            signer: Signer::Published,
            at_hash: AtHash::Right,
        }
    }
}

struct Grant {
    nonce: Option<String>,
    challenge: Option<String>,
    redirect_uri: String,
}

/// The test provider's state: what it publishes, what it was asked.
pub(crate) struct IdpState {
    pub(crate) issuer: String,
    /// The keys the JWKS publishes.
    pub(crate) keys: Mutex<Vec<Key>>,
    unknown: Key,
    grants: Mutex<HashMap<String, Grant>>,
    access_tokens: Mutex<Vec<String>>,
    pub(crate) craft: Mutex<Craft>,
    /// Discovery's `authorization_response_iss_parameter_supported`.
    pub(crate) promises_iss: bool,
    /// How long the token endpoint waits before answering.
    pub(crate) token_delay: Mutex<Duration>,
    /// Bytes of padding in the token answer.
    pub(crate) token_padding: Mutex<usize>,
    pub(crate) jwks_fetches: AtomicUsize,
    pub(crate) token_requests: AtomicUsize,
}

/// The provider the tests control, on loopback.
pub(crate) struct Idp {
    /// Serves while the test runs.
    _server: Server,
    pub(crate) state: Arc<IdpState>,
}

impl Idp {
    /// Starts the provider; `promises_iss` is what its discovery says of
    /// the `iss` parameter (RFC 9207).
    pub(crate) async fn start(promises_iss: bool) -> Self {
        let listener = listener().await;
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(IdpState {
            issuer,
            keys: Mutex::new(vec![Key::generate("key-1")]),
            unknown: Key::generate("never-published"),
            grants: Mutex::default(),
            access_tokens: Mutex::default(),
            craft: Mutex::default(),
            promises_iss,
            token_delay: Mutex::new(Duration::ZERO),
            token_padding: Mutex::new(0),
            jwks_fetches: AtomicUsize::new(0),
            token_requests: AtomicUsize::new(0),
        });
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/token", post(token))
            .route("/userinfo", get(user_info))
            .route("/oauth/token", post(oauth_token))
            .route("/oauth/user", get(oauth_user))
            .with_state(state.clone());
        Self {
            _server: Server::axum(listener, router),
            state,
        }
    }

    pub(crate) fn issuer(&self) -> &str {
        &self.state.issuer
    }

    /// Sets how the next ID token is made.
    pub(crate) fn craft(&self, craft: Craft) {
        *self.state.craft.lock().unwrap() = craft;
    }

    /// Publishes a new key in place of the old one: a rotation.
    pub(crate) fn rotate(&self, kid: &str) {
        *self.state.keys.lock().unwrap() = vec![Key::generate(kid)];
    }

    /// What the provider's login would do: a code for the authorization
    /// request `params`.
    pub(crate) fn grant(&self, params: &HashMap<String, String>) -> String {
        let code = format!("code-{}", random());
        self.state.grants.lock().unwrap().insert(
            code.clone(),
            Grant {
                nonce: params.get("nonce").cloned(),
                challenge: params.get("code_challenge").cloned(),
                redirect_uri: params["redirect_uri"].clone(),
            },
        );
        code
    }

    /// The access tokens the provider issued.
    pub(crate) fn access_tokens(&self) -> Vec<String> {
        self.state.access_tokens.lock().unwrap().clone()
    }

    pub(crate) fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    pub(crate) fn token_requests(&self) -> usize {
        self.state.token_requests.load(Ordering::SeqCst)
    }
}

pub(crate) fn random() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).unwrap();
    URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn discovery(State(idp): State<Arc<IdpState>>) -> Json<Value> {
    let issuer = &idp.issuer;
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "jwks_uri": format!("{issuer}/jwks"),
        "end_session_endpoint": format!("{issuer}/logout"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        "authorization_response_iss_parameter_supported": idp.promises_iss,
    }))
}

async fn jwks(State(idp): State<Arc<IdpState>>) -> Json<Value> {
    idp.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let keys: Vec<Value> = idp
        .keys
        .lock()
        .unwrap()
        .iter()
        .map(|key| key.jwk.clone())
        .collect();
    Json(json!({ "keys": keys }))
}

/// An OAuth error answer of the token endpoint.
fn oauth_error(error: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response()
}

/// Checks a code request (client, code, redirect URI, PKCE verifier) and
/// gives its grant, or the OAuth error code to answer with.
fn redeem(
    idp: &IdpState,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<Grant, &'static str> {
    let refuse = |error: &'static str| Err(error);
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    let by_basic = headers
        .get(AUTHORIZATION)
        .is_some_and(|value| value == basic.as_str());
    let by_form = form.get("client_id").map(String::as_str) == Some(CLIENT_ID)
        && form.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET);
    if !by_basic && !by_form {
        return refuse("invalid_client");
    }
    if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return refuse("unsupported_grant_type");
    }
    let Some(grant) = form
        .get("code")
        .and_then(|code| idp.grants.lock().unwrap().remove(code))
    else {
        return refuse("invalid_grant");
    };
    if form.get("redirect_uri") != Some(&grant.redirect_uri) {
        return refuse("invalid_grant");
    }
    if let Some(challenge) = &grant.challenge {
        let verifier = form.get("code_verifier").map(String::as_str).unwrap_or("");
        if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != *challenge {
            return refuse("invalid_grant");
        }
    }
    Ok(grant)
}

async fn token(
    State(idp): State<Arc<IdpState>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    idp.token_requests.fetch_add(1, Ordering::SeqCst);
    let delay = *idp.token_delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    let grant = match redeem(&idp, &headers, &form) {
        Ok(grant) => grant,
        Err(error) => return oauth_error(error),
    };
    let craft = idp.craft.lock().unwrap().clone();
    let access_token = format!("at-{}", random());
    idp.access_tokens.lock().unwrap().push(access_token.clone());
    let now = now();
    let mut claims = json!({
        "iss": craft.iss.clone().unwrap_or_else(|| idp.issuer.clone()),
        "sub": "alice-sub",
        "aud": craft.aud.clone().unwrap_or_else(|| json!(CLIENT_ID)),
        "iat": now + craft.iat,
        "exp": now + craft.exp,
        "email": "alice@example.org",
        "email_verified": true,
        "name": "Alice Liddell",
        "groups": ["readers"],
    });
    if let Some(nonce) = craft.nonce.clone().or(grant.nonce) {
        claims["nonce"] = json!(nonce);
    }
    if let Some(azp) = craft.azp {
        claims["azp"] = json!(azp);
    }
    match craft.at_hash {
        AtHash::Right => {
            let digest = Sha256::digest(access_token.as_bytes());
            claims["at_hash"] = json!(URL_SAFE_NO_PAD.encode(&digest[..16]));
        }
        AtHash::Wrong => claims["at_hash"] = json!(URL_SAFE_NO_PAD.encode([7u8; 16])),
        AtHash::Absent => {}
    }
    let id_token = {
        let keys = idp.keys.lock().unwrap();
        let key = match craft.signer {
            Signer::Published => &keys[0],
            Signer::Unknown => &idp.unknown,
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap()
    };
    let padding = "x".repeat(*idp.token_padding.lock().unwrap());
    Json(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": 300,
        "id_token": id_token,
        "padding": padding,
    }))
    .into_response()
}

/// The bearer token of a request, if the provider issued it.
fn bearer(idp: &IdpState, headers: &HeaderMap) -> bool {
    headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|token| {
            idp.access_tokens
                .lock()
                .unwrap()
                .iter()
                .any(|issued| issued == token)
        })
}

async fn user_info(State(idp): State<Arc<IdpState>>, headers: HeaderMap) -> Response {
    if !bearer(&idp, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    Json(json!({
        "sub": "alice-sub",
        "preferred_username": "alice",
        "email": "other@example.org",
    }))
    .into_response()
}

async fn oauth_token(
    State(idp): State<Arc<IdpState>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    idp.token_requests.fetch_add(1, Ordering::SeqCst);
    if let Err(error) = redeem(&idp, &headers, &form) {
        return oauth_error(error);
    }
    let access_token = format!("at-{}", random());
    idp.access_tokens.lock().unwrap().push(access_token.clone());
    Json(json!({ "access_token": access_token, "token_type": "bearer", "scope": "read:user" }))
        .into_response()
}

async fn oauth_user(State(idp): State<Arc<IdpState>>, headers: HeaderMap) -> Response {
    if !bearer(&idp, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    Json(json!({
        "id": 583231,
        "login": "octocat",
        "name": "The Octocat",
        "email": "octocat@example.org",
    }))
    .into_response()
}

/// An OpenID Connect provider for the test provider `idp`, with its client
/// secret.
pub(crate) fn oidc(idp: &Idp, redirect_uri: String) -> ProviderBuilder {
    Provider::oidc(idp.issuer(), CLIENT_ID, redirect_uri).client_secret(CLIENT_SECRET)
}
