//! An OpenID Connect client for the authorization code flow, enough to sign
//! in with any provider: discovery, the authorization URL (PKCE S256, the
//! flow's callback state as `state`, an OIDC `nonce`, `form_post` on
//! request), the code exchange (client secret by HTTP Basic or in the
//! form), and the ID token checked with a maintained JOSE crate
//! (`jsonwebtoken`): its signature against the provider's JWKS, its issuer,
//! audience, expiry and nonce. Every failure is an [`OidcError`] whose
//! detail is for the log, never for the page.

use std::{sync::Arc, time::Duration};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio::sync::{Mutex, OnceCell};

use super::{Provider, ResponseMode};

/// What went wrong talking to the provider. The detail (the provider's own
/// words, a decoding error) goes to the log; the page says what it means.
#[derive(Debug)]
pub enum OidcError {
    /// The provider could not be reached, or broke off.
    Unreachable(String),
    /// The provider's metadata does not fit this client (wrong issuer, no
    /// S256, no `form_post`...): a configuration problem.
    Misconfigured(String),
    /// The token endpoint refused the code (`invalid_grant` and friends).
    CodeRefused(String),
    /// The ID token (or the user info) did not pass the checks.
    TokenInvalid(String),
}

impl std::fmt::Display for OidcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreachable(detail) => write!(f, "provider unreachable: {detail}"),
            Self::Misconfigured(detail) => write!(f, "provider misconfigured: {detail}"),
            Self::CodeRefused(detail) => write!(f, "code refused: {detail}"),
            Self::TokenInvalid(detail) => write!(f, "ID token invalid: {detail}"),
        }
    }
}

/// The provider's metadata, from `/.well-known/openid-configuration`: the
/// fields this client reads.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userinfo_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_modes_supported: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge_methods_supported: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
}

/// Who signed in, from the ID token (and the user info endpoint when the
/// ID token carries only the subject).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Identity {
    /// The issuer that vouches for the subject.
    pub issuer: String,
    /// The provider's stable id of the user.
    pub subject: String,
    /// The display name, when the provider gave one.
    pub name: Option<String>,
    /// The e-mail address, when the provider gave one.
    pub email: Option<String>,
    /// The login (`preferred_username`), when the provider gave one.
    pub username: Option<String>,
}

impl Identity {
    /// The best name to greet the user with.
    pub fn display_name(&self) -> &str {
        self.name
            .as_deref()
            .or(self.username.as_deref())
            .or(self.email.as_deref())
            .unwrap_or(&self.subject)
    }

    /// The login, or the subject when the provider sent none.
    pub fn login(&self) -> &str {
        self.username.as_deref().unwrap_or(&self.subject)
    }
}

/// The ID token's claims this client reads.
#[derive(Debug, Deserialize)]
struct IdClaims {
    sub: String,
    #[serde(default)]
    aud: Option<serde_json::Value>,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    preferred_username: Option<String>,
}

/// The user info endpoint's answer.
#[derive(Debug, Deserialize)]
struct UserInfo {
    sub: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    preferred_username: Option<String>,
}

#[derive(Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
    access_token: Option<String>,
}

/// What the application sends the browser to the provider with.
#[derive(Debug)]
pub struct AuthorizationRequest<'a> {
    pub redirect_uri: &'a str,
    /// The flow's callback state (`<reference>.<nonce>`): comes back as
    /// `state`, naming the flow and carrying its nonce.
    pub state: &'a str,
    /// The OIDC nonce: comes back inside the ID token.
    pub nonce: &'a str,
    pub code_challenge: &'a str,
    pub response_mode: ResponseMode,
}

/// One provider's client: its settings, the metadata found by discovery
/// (fetched on first use and kept), and its signing keys (fetched on first
/// use, fetched again when a token names a key not seen yet: rotation).
#[derive(Debug)]
pub struct Client {
    provider: Provider,
    http: reqwest::Client,
    metadata: OnceCell<Arc<Metadata>>,
    keys: Mutex<Option<Arc<JwkSet>>>,
}

/// The algorithms an ID token may be signed with: asymmetric ones only (a
/// symmetric one would make the client secret a signing key, and `none` is
/// no signature).
const ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

impl Client {
    pub fn new(provider: Provider) -> Self {
        Self {
            provider,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                // A provider's endpoints answer directly; a redirect there
                // is a misconfiguration, not something to follow.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("an HTTP client"),
            metadata: OnceCell::new(),
            keys: Mutex::new(None),
        }
    }

    /// The provider's metadata (discovery on first use; a failure is not
    /// kept, so the next sign-in tries again).
    pub async fn metadata(&self) -> Result<Arc<Metadata>, OidcError> {
        self.metadata
            .get_or_try_init(|| async {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.provider.issuer.trim_end_matches('/')
                );
                let metadata: Metadata = self.get_json(&url).await?;
                if metadata.issuer != self.provider.issuer {
                    return Err(OidcError::Misconfigured(format!(
                        "discovery at {url} names the issuer {:?}, not {:?}",
                        metadata.issuer, self.provider.issuer
                    )));
                }
                if let Some(methods) = &metadata.code_challenge_methods_supported
                    && !methods.iter().any(|method| method == "S256")
                {
                    return Err(OidcError::Misconfigured(
                        "the provider does not support PKCE with S256".to_owned(),
                    ));
                }
                Ok(Arc::new(metadata))
            })
            .await
            .cloned()
    }

    /// The URL that sends the browser to the provider's sign-in.
    pub async fn authorization_url(
        &self,
        request: &AuthorizationRequest<'_>,
    ) -> Result<String, OidcError> {
        let metadata = self.metadata().await?;
        let mut query = form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.provider.client_id)
            .append_pair("redirect_uri", request.redirect_uri)
            .append_pair("scope", "openid profile email")
            .append_pair("state", request.state)
            .append_pair("nonce", request.nonce)
            .append_pair("code_challenge", request.code_challenge)
            .append_pair("code_challenge_method", "S256");
        if request.response_mode == ResponseMode::FormPost {
            // Absent from the metadata means the default, `query` and
            // `fragment` only.
            let supported = metadata
                .response_modes_supported
                .as_ref()
                .is_some_and(|modes| modes.iter().any(|mode| mode == "form_post"));
            if !supported {
                return Err(OidcError::Misconfigured(
                    "the provider does not offer response_mode=form_post".to_owned(),
                ));
            }
            query.append_pair("response_mode", "form_post");
        }
        let endpoint = &metadata.authorization_endpoint;
        let separator = if endpoint.contains('?') { '&' } else { '?' };
        Ok(format!("{endpoint}{separator}{}", query.finish()))
    }

    /// Checks the `iss` a callback carries (RFC 9207), when it carries one:
    /// an answer from another provider is refused (mix-up attacks).
    pub fn check_callback_issuer(&self, iss: Option<&str>) -> Result<(), OidcError> {
        match iss {
            Some(iss) if iss != self.provider.issuer => Err(OidcError::TokenInvalid(format!(
                "the callback's iss {iss:?} is not {:?}",
                self.provider.issuer
            ))),
            _ => Ok(()),
        }
    }

    /// The code for the user's identity, server to server: the token
    /// request with the PKCE verifier, the ID token checked (signature,
    /// issuer, audience, expiry, `nonce`), and the user info when the ID
    /// token has no name or e-mail.
    pub async fn sign_in(
        &self,
        code: &str,
        verifier: &str,
        nonce: &str,
        redirect_uri: &str,
    ) -> Result<Identity, OidcError> {
        let metadata = self.metadata().await?;
        let tokens = self
            .exchange(&metadata, code, verifier, redirect_uri)
            .await?;
        let id_token = tokens
            .id_token
            .ok_or_else(|| OidcError::TokenInvalid("the token answer has no id_token".into()))?;
        let claims = self.verify(&metadata, &id_token, nonce).await?;
        let mut identity = Identity {
            issuer: metadata.issuer.clone(),
            subject: claims.sub,
            name: claims.name,
            email: claims.email,
            username: claims.preferred_username,
        };
        if identity.name.is_none()
            && identity.email.is_none()
            && let (Some(endpoint), Some(access_token)) =
                (&metadata.userinfo_endpoint, &tokens.access_token)
        {
            let info = self.user_info(endpoint, access_token).await?;
            if info.sub != identity.subject {
                return Err(OidcError::TokenInvalid(format!(
                    "the user info is about {:?}, the ID token about {:?}",
                    info.sub, identity.subject
                )));
            }
            identity.name = info.name;
            identity.email = info.email;
            identity.username = identity.username.or(info.preferred_username);
        }
        Ok(identity)
    }

    async fn exchange(
        &self,
        metadata: &Metadata,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<TokenResponse, OidcError> {
        let mut fields = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ];
        let mut request = self
            .http
            .post(&metadata.token_endpoint)
            .header("accept", "application/json");
        match &self.provider.client_secret {
            // The spec's default method when the provider lists none.
            Some(secret) if self.basic_auth(metadata) => {
                let credentials = format!(
                    "{}:{}",
                    form_component(&self.provider.client_id),
                    form_component(secret)
                );
                request = request.header(
                    "authorization",
                    format!("Basic {}", STANDARD.encode(credentials)),
                );
            }
            Some(secret) => {
                fields.push(("client_id", &self.provider.client_id));
                fields.push(("client_secret", secret));
            }
            None => fields.push(("client_id", &self.provider.client_id)),
        }
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let response = request
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|error| OidcError::Unreachable(format!("token endpoint: {error}")))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|error| OidcError::Unreachable(format!("token endpoint: {error}")))?;
        if !status.is_success() {
            return Err(OidcError::CodeRefused(format!(
                "{status}: {}",
                String::from_utf8_lossy(&body)
            )));
        }
        serde_json::from_slice(&body).map_err(|error| {
            OidcError::TokenInvalid(format!("the token answer does not decode: {error}"))
        })
    }

    /// Whether to send the client secret by HTTP Basic (`client_secret_basic`,
    /// the default) rather than in the form (`client_secret_post`).
    fn basic_auth(&self, metadata: &Metadata) -> bool {
        match &metadata.token_endpoint_auth_methods_supported {
            None => true,
            Some(methods) => {
                methods.iter().any(|method| method == "client_secret_basic")
                    || !methods.iter().any(|method| method == "client_secret_post")
            }
        }
    }

    async fn verify(
        &self,
        metadata: &Metadata,
        id_token: &str,
        nonce: &str,
    ) -> Result<IdClaims, OidcError> {
        let header = jsonwebtoken::decode_header(id_token)
            .map_err(|error| OidcError::TokenInvalid(format!("header: {error}")))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(OidcError::TokenInvalid(format!(
                "signed with {:?}, not an asymmetric algorithm",
                header.alg
            )));
        }
        let alg_name = format!("{:?}", header.alg);
        if !metadata.id_token_signing_alg_values_supported.is_empty()
            && !metadata
                .id_token_signing_alg_values_supported
                .contains(&alg_name)
        {
            return Err(OidcError::TokenInvalid(format!(
                "signed with {alg_name}, which the provider does not list"
            )));
        }
        let key = self
            .decoding_key(metadata, header.kid.as_deref(), header.alg)
            .await?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&metadata.issuer]);
        validation.set_audience(&[&self.provider.client_id]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<IdClaims>(id_token, &key, &validation)
            .map_err(|error| OidcError::TokenInvalid(error.to_string()))?
            .claims;
        // Several audiences: the token must have been issued to this client.
        if let Some(serde_json::Value::Array(audiences)) = &claims.aud
            && audiences.len() > 1
            && claims.azp.as_deref() != Some(self.provider.client_id.as_str())
        {
            return Err(OidcError::TokenInvalid(
                "several audiences and azp is not this client".to_owned(),
            ));
        }
        let matches: bool = claims
            .nonce
            .as_deref()
            .is_some_and(|claimed| claimed.as_bytes().ct_eq(nonce.as_bytes()).into());
        if !matches {
            return Err(OidcError::TokenInvalid(
                "the ID token's nonce is not the one this sign-in sent".to_owned(),
            ));
        }
        Ok(claims)
    }

    /// The key that signed a token: by `kid` (fetching the JWKS again once
    /// when the kid is new), or the only key of the right type.
    async fn decoding_key(
        &self,
        metadata: &Metadata,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<DecodingKey, OidcError> {
        let mut keys = self.keys.lock().await;
        for attempt in 0..2 {
            let set = match keys.as_ref() {
                Some(set) if attempt == 0 => set.clone(),
                _ => {
                    let fetched: Arc<JwkSet> = Arc::new(self.get_json(&metadata.jwks_uri).await?);
                    *keys = Some(fetched.clone());
                    fetched
                }
            };
            let found = match kid {
                Some(kid) => set.find(kid),
                None => {
                    let mut fitting = set.keys.iter().filter(|jwk| {
                        DecodingKey::from_jwk(jwk).is_ok_and(|key| key.family() == alg.family())
                    });
                    match (fitting.next(), fitting.next()) {
                        (Some(only), None) => Some(only),
                        _ => None,
                    }
                }
            };
            if let Some(jwk) = found {
                return DecodingKey::from_jwk(jwk)
                    .map_err(|error| OidcError::TokenInvalid(format!("key {kid:?}: {error}")));
            }
        }
        Err(OidcError::TokenInvalid(format!(
            "no key {kid:?} in the provider's JWKS"
        )))
    }

    async fn user_info(&self, endpoint: &str, access_token: &str) -> Result<UserInfo, OidcError> {
        let response = self
            .http
            .get(endpoint)
            .bearer_auth(access_token)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|error| OidcError::Unreachable(format!("user info: {error}")))?;
        if !response.status().is_success() {
            return Err(OidcError::TokenInvalid(format!(
                "user info answered {}",
                response.status()
            )));
        }
        let body = response
            .bytes()
            .await
            .map_err(|error| OidcError::Unreachable(format!("user info: {error}")))?;
        serde_json::from_slice(&body)
            .map_err(|error| OidcError::TokenInvalid(format!("user info does not decode: {error}")))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, OidcError> {
        let response = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|error| OidcError::Unreachable(format!("{url}: {error}")))?;
        if !response.status().is_success() {
            return Err(OidcError::Unreachable(format!(
                "{url} answered {}",
                response.status()
            )));
        }
        let body = response
            .bytes()
            .await
            .map_err(|error| OidcError::Unreachable(format!("{url}: {error}")))?;
        serde_json::from_slice(&body)
            .map_err(|error| OidcError::Misconfigured(format!("{url} does not decode: {error}")))
    }
}

/// `application/x-www-form-urlencoded` encoding of one value, as HTTP Basic
/// client authentication asks for (RFC 6749, section 2.3.1).
fn form_component(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
