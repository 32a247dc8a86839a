//! OpenID Connect on `openidconnect`: discovery (kept), the authorization
//! URL, the code exchange, the ID token's checks (with the JWKS fetched
//! again once on an unknown key), user info, the logout URL.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, TimeDelta, Utc};
use openidconnect::{
    AccessTokenHash, AdditionalProviderMetadata, AuthenticationContextClass, AuthorizationCode,
    ClientId, ClientSecret, CsrfToken, EndSessionUrl, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, JsonWebKeySet, LoginHint, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, ProviderMetadata, Scope, TokenResponse,
    core::{
        CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreClaimName, CoreClaimType,
        CoreClient, CoreClientAuthMethod, CoreGrantType, CoreJsonWebKey,
        CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm,
        CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType, CoreUserInfoClaims,
    },
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::Mutex;
use url::Url;

use crate::{
    Error, ErrorKind, Identity,
    http::HttpClient,
    protocol::{Begun, Pending, check_endpoint, token_error},
    provider::{Options, Prompt, ResponseMode},
};

/// What discovery reads beyond the core metadata: RP-initiated logout's
/// `end_session_endpoint`, and RFC 9207's promise to send `iss` with every
/// authorization response.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub(crate) struct Extra {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    end_session_endpoint: Option<EndSessionUrl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    authorization_response_iss_parameter_supported: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code_challenge_methods_supported: Option<Vec<String>>,
}

impl AdditionalProviderMetadata for Extra {}

type Metadata = ProviderMetadata<
    Extra,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The metadata as discovered, its key set as last fetched, and the client
/// made of both.
struct Discovered {
    metadata: Metadata,
    client: Client,
}

/// One OpenID provider: its issuer and client, and what discovery found.
pub(crate) struct Oidc {
    issuer: IssuerUrl,
    client_id: ClientId,
    client_secret: Option<ClientSecret>,
    /// Discovery's result, kept; `None` until the first sign-in (or
    /// [`Provider::discover`](crate::Provider::discover)), and again after a
    /// failed discovery, so the next sign-in tries again. The lock makes
    /// concurrent first sign-ins share one discovery, and concurrent key
    /// refreshes one fetch.
    discovered: Mutex<Option<Arc<Discovered>>>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("issuer", &self.issuer.as_str())
            .field("client_id", &self.client_id.as_str())
            .finish_non_exhaustive()
    }
}

impl Oidc {
    pub(crate) fn new(
        issuer: IssuerUrl,
        client_id: ClientId,
        client_secret: Option<ClientSecret>,
    ) -> Self {
        Self {
            issuer,
            client_id,
            client_secret,
            discovered: Mutex::new(None),
        }
    }

    pub(crate) fn issuer(&self) -> &str {
        self.issuer.as_str()
    }

    /// The metadata, by discovery on first use.
    async fn discovered(&self, http: &HttpClient) -> Result<Arc<Discovered>, Error> {
        let mut slot = self.discovered.lock().await;
        if let Some(discovered) = slot.as_ref() {
            return Ok(discovered.clone());
        }
        let metadata = Metadata::discover_async(self.issuer.clone(), http)
            .await
            .map_err(|error| discovery_error("discovery", error))?;
        self.check(&metadata)?;
        let discovered = Arc::new(self.client(metadata));
        *slot = Some(discovered.clone());
        Ok(discovered)
    }

    /// Discovers now (or checks what was discovered).
    pub(crate) async fn discover(&self, http: &HttpClient) -> Result<(), Error> {
        self.discovered(http).await.map(drop)
    }

    /// What this client needs of the provider's metadata. `openidconnect`
    /// already refused another issuer than the one asked for.
    fn check(&self, metadata: &Metadata) -> Result<(), Error> {
        let misconfigured = |detail: String| Error::new(ErrorKind::Misconfigured, detail);
        if let Some(methods) = &metadata
            .additional_metadata()
            .code_challenge_methods_supported
            && !methods.iter().any(|method| method == "S256")
        {
            return Err(misconfigured(
                "the provider does not offer PKCE with S256".to_owned(),
            ));
        }
        let token = metadata.token_endpoint().ok_or_else(|| {
            misconfigured("the provider's metadata names no token endpoint".to_owned())
        })?;
        check_endpoint("token endpoint", token.url())?;
        check_endpoint("JWKS", metadata.jwks_uri().url())?;
        check_endpoint(
            "authorization endpoint",
            metadata.authorization_endpoint().url(),
        )?;
        if let Some(user_info) = metadata.userinfo_endpoint() {
            check_endpoint("user info endpoint", user_info.url())?;
        }
        Ok(())
    }

    fn client(&self, metadata: Metadata) -> Discovered {
        // `client_secret_post` only when the provider takes no
        // `client_secret_basic` (the default when it lists none).
        let post_only = metadata
            .token_endpoint_auth_methods_supported()
            .is_some_and(|methods| {
                methods.contains(&CoreClientAuthMethod::ClientSecretPost)
                    && !methods.contains(&CoreClientAuthMethod::ClientSecretBasic)
            });
        let mut client = CoreClient::from_provider_metadata(
            metadata.clone(),
            self.client_id.clone(),
            self.client_secret.clone(),
        );
        if post_only {
            client = client.set_auth_type(oauth2::AuthType::RequestBody);
        }
        Discovered { metadata, client }
    }

    /// The key set fetched again, once for any number of callbacks that
    /// found `stale`'s keys wanting at once: the provider rotated its keys.
    async fn refresh_keys(
        &self,
        http: &HttpClient,
        stale: &Arc<Discovered>,
    ) -> Result<Arc<Discovered>, Error> {
        let mut slot = self.discovered.lock().await;
        if let Some(current) = slot.as_ref()
            && !Arc::ptr_eq(current, stale)
        {
            return Ok(current.clone());
        }
        let keys: JsonWebKeySet<CoreJsonWebKey> =
            JsonWebKeySet::fetch_async(stale.metadata.jwks_uri(), http)
                .await
                .map_err(|error| discovery_error("JWKS", error))?;
        tracing::info!(
            target: crate::LOG_TARGET,
            issuer = %self.issuer.as_str(),
            keys = keys.keys().len(),
            "fetched the provider's keys again: an ID token named a key not seen before"
        );
        let metadata = stale.metadata.clone().set_jwks(keys);
        let discovered = Arc::new(self.client(metadata));
        *slot = Some(discovered.clone());
        Ok(discovered)
    }

    /// The authorization URL, and what the callback needs kept.
    pub(crate) async fn begin(
        &self,
        http: &HttpClient,
        options: &Options,
        redirect_uri: &oauth2::RedirectUrl,
        state: String,
    ) -> Result<Begun, Error> {
        let discovered = self.discovered(http).await?;
        if options.response_mode == ResponseMode::FormPost {
            // Absent from the metadata means `query` and `fragment` only.
            let offered = discovered
                .metadata
                .response_modes_supported()
                .is_some_and(|modes| modes.contains(&CoreResponseMode::FormPost));
            if !offered {
                return Err(Error::new(
                    ErrorKind::Misconfigured,
                    "the provider does not offer response_mode=form_post",
                ));
            }
        }
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let nonce = Nonce::new_random();
        let sent_nonce = nonce.clone();
        let mut request = discovered
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                move || sent_nonce,
            )
            .set_redirect_uri(std::borrow::Cow::Borrowed(redirect_uri))
            .set_pkce_challenge(challenge)
            .add_scopes(options.scopes.iter().cloned().map(Scope::new));
        for prompt in &options.prompts {
            request = request.add_prompt(match prompt {
                Prompt::None => CoreAuthPrompt::None,
                Prompt::Login => CoreAuthPrompt::Login,
                Prompt::Consent => CoreAuthPrompt::Consent,
                Prompt::SelectAccount => CoreAuthPrompt::SelectAccount,
            });
        }
        if let Some(hint) = &options.login_hint {
            request = request.set_login_hint(LoginHint::new(hint.clone()));
        }
        if let Some(max_age) = options.max_age {
            request = request.set_max_age(max_age);
        }
        for acr in &options.acr_values {
            request = request.add_auth_context_value(AuthenticationContextClass::new(acr.clone()));
        }
        if options.response_mode == ResponseMode::FormPost {
            request = request.add_extra_param("response_mode", "form_post");
        }
        let (url, _state, _nonce) = request.url();
        Ok(Begun {
            url,
            pending: Pending {
                pkce_verifier: Some(verifier.secret().clone()),
                nonce: Some(nonce.secret().clone()),
            },
        })
    }

    /// Whether the provider promised an `iss` parameter with every
    /// authorization response (RFC 9207), as discovered.
    pub(crate) async fn promises_iss(&self, http: &HttpClient) -> Result<bool, Error> {
        Ok(self
            .discovered(http)
            .await?
            .metadata
            .additional_metadata()
            .authorization_response_iss_parameter_supported
            == Some(true))
    }

    /// The code for an identity: the exchange with the PKCE verifier, the
    /// ID token's checks, user info when asked for.
    pub(crate) async fn finish(
        &self,
        http: &HttpClient,
        options: &Options,
        redirect_uri: &oauth2::RedirectUrl,
        code: String,
        pending: Pending,
    ) -> Result<Identity, Error> {
        let discovered = self.discovered(http).await?;
        let (Some(verifier), Some(nonce)) = (pending.pkce_verifier, pending.nonce) else {
            return Err(Error::new(
                ErrorKind::BadCallback,
                "the flow holds no PKCE verifier or nonce for this callback",
            ));
        };
        let tokens = discovered
            .client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|error| Error::new(ErrorKind::Misconfigured, error.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier))
            .set_redirect_uri(std::borrow::Cow::Borrowed(redirect_uri))
            .request_async(http)
            .await
            .map_err(token_error)?;
        let id_token = tokens.id_token().ok_or_else(|| {
            Error::new(
                ErrorKind::IdTokenMissing,
                "the token answer has no id_token",
            )
        })?;
        let nonce = Nonce::new(nonce);

        // The signature against the provider's keys; once more with the key
        // set fetched again when the token names a key not seen before.
        let mut discovered = discovered;
        let mut refreshed = false;
        let claims = loop {
            let verified = id_token
                .claims(&self.verifier(&discovered, options.clock_skew), &nonce)
                .cloned();
            match verified {
                Ok(claims) => break claims,
                Err(openidconnect::ClaimsVerificationError::SignatureVerification(
                    openidconnect::SignatureVerificationError::NoMatchingKey,
                )) if !refreshed => {
                    discovered = self.refresh_keys(http, &discovered).await?;
                    refreshed = true;
                }
                Err(error) => return Err(claims_error(error)),
            }
        };
        let verifier = self.verifier(&discovered, options.clock_skew);

        // `azp`, which openidconnect leaves to the client: when present it
        // must be this client (several audiences are refused already,
        // unless trusted, and none is).
        if let Some(azp) = claims.authorized_party()
            && azp.as_str() != self.client_id.as_str()
        {
            return Err(Error::new(
                ErrorKind::IdTokenAudience,
                format!("azp {:?} is not this client", azp.as_str()),
            ));
        }
        // `at_hash`, when present: the access token is the one this ID
        // token was issued with.
        if let Some(expected) = claims.access_token_hash() {
            let algorithm = id_token
                .signing_alg()
                .map_err(|error| Error::new(ErrorKind::IdTokenSignature, error.to_string()))?;
            let key = id_token
                .signing_key(&verifier)
                .map_err(|error| Error::new(ErrorKind::IdTokenSignature, error.to_string()))?;
            let actual = AccessTokenHash::from_token(tokens.access_token(), algorithm, key)
                .map_err(|error| Error::new(ErrorKind::AccessTokenHash, error.to_string()))?;
            if actual != *expected {
                return Err(Error::new(
                    ErrorKind::AccessTokenHash,
                    "at_hash does not match the access token",
                ));
            }
        }

        let mut identity = Identity::new(claims.issuer().as_str(), claims.subject().as_str());
        identity.email = claims.email().map(|email| email.as_str().to_owned());
        identity.email_verified = identity.email.is_some() && claims.email_verified() == Some(true);
        identity.name = claims
            .name()
            .and_then(|name| name.get(None))
            .map(|name| name.as_str().to_owned());
        identity.username = claims
            .preferred_username()
            .map(|name| name.as_str().to_owned());
        identity.claims = payload(&id_token.to_string())?;

        // Asked for, or by default when the ID token says nothing of the
        // person (providers that keep the profile for user info).
        let wanted = options.user_info.unwrap_or(
            identity.email.is_none() && identity.name.is_none() && identity.username.is_none(),
        );
        if wanted && discovered.metadata.userinfo_endpoint().is_some()
            || options.user_info == Some(true)
        {
            let info: CoreUserInfoClaims = discovered
                .client
                .user_info(
                    tokens.access_token().clone(),
                    Some(claims.subject().clone()),
                )
                .map_err(|error| {
                    Error::new(
                        ErrorKind::Misconfigured,
                        format!("user info asked for, but {error}"),
                    )
                })?
                .request_async(http)
                .await
                .map_err(user_info_error)?;
            fill_from_user_info(&mut identity, &info)?;
        }
        Ok(identity)
    }

    /// The ID token checks: openidconnect's (signature against the key set,
    /// `iss`, `aud`, `exp`, `nonce`, the algorithms the provider lists and
    /// no symmetric one), with `exp` and `iat` given the allowed skew.
    fn verifier<'a>(
        &self,
        discovered: &'a Discovered,
        skew: Duration,
    ) -> openidconnect::IdTokenVerifier<'a, CoreJsonWebKey> {
        let skew = TimeDelta::from_std(skew).unwrap_or(TimeDelta::MAX);
        let asymmetric: Vec<CoreJwsSigningAlgorithm> = discovered
            .metadata
            .id_token_signing_alg_values_supported()
            .iter()
            .filter(|algorithm| !is_symmetric(algorithm))
            .cloned()
            .collect();
        discovered
            .client
            .id_token_verifier()
            .set_allowed_algs(asymmetric)
            // `exp` is checked against this clock: a token that expired
            // less than `skew` ago still passes.
            .set_time_fn(move || Utc::now() - skew)
            .set_issue_time_verifier_fn(move |issued: DateTime<Utc>| {
                let now = Utc::now();
                if issued > now + skew {
                    return Err(format!("iat {issued} is in the future (now {now})"));
                }
                // Just made by the token endpoint: an old one is a replay.
                if issued < now - skew - TimeDelta::minutes(5) {
                    return Err(format!("iat {issued} is too old (now {now})"));
                }
                Ok(())
            })
    }

    /// RP-initiated logout: the provider's `end_session_endpoint` with the
    /// client id and where to come back to; `None` when it has none.
    pub(crate) async fn logout_url(
        &self,
        http: &HttpClient,
        post_logout_redirect_uri: Option<&str>,
        state: Option<&str>,
    ) -> Result<Option<Url>, Error> {
        let discovered = self.discovered(http).await?;
        let Some(endpoint) = &discovered
            .metadata
            .additional_metadata()
            .end_session_endpoint
        else {
            return Ok(None);
        };
        check_endpoint("end session endpoint", endpoint.url())?;
        let mut url = endpoint.url().clone();
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("client_id", self.client_id.as_str());
            if let Some(uri) = post_logout_redirect_uri {
                query.append_pair("post_logout_redirect_uri", uri);
            }
            if let Some(state) = state {
                query.append_pair("state", state);
            }
        }
        Ok(Some(url))
    }
}

fn is_symmetric(algorithm: &CoreJwsSigningAlgorithm) -> bool {
    matches!(
        algorithm,
        CoreJwsSigningAlgorithm::HmacSha256
            | CoreJwsSigningAlgorithm::HmacSha384
            | CoreJwsSigningAlgorithm::HmacSha512
            | CoreJwsSigningAlgorithm::None
    )
}

/// The claims of a compact JWS as its issuer sent them: the payload, which
/// the verifier has checked the signature over.
fn payload(jws: &str) -> Result<Map<String, Value>, Error> {
    use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
    let invalid = |detail: &str| Error::new(ErrorKind::IdTokenInvalid, detail.to_owned());
    let encoded = jws
        .split('.')
        .nth(1)
        .ok_or_else(|| invalid("the ID token has no payload"))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| invalid("the ID token's payload is not base64url"))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| invalid("the ID token's payload is not a JSON object"))
}

/// The user info fills in what the ID token left out; the ID token's own
/// claims win.
fn fill_from_user_info(identity: &mut Identity, info: &CoreUserInfoClaims) -> Result<(), Error> {
    if identity.email.is_none()
        && let Some(email) = info.email()
    {
        identity.email = Some(email.as_str().to_owned());
        identity.email_verified = info.email_verified() == Some(true);
    }
    if identity.name.is_none() {
        identity.name = info
            .name()
            .and_then(|name| name.get(None))
            .map(|name| name.as_str().to_owned());
    }
    if identity.username.is_none() {
        identity.username = info
            .preferred_username()
            .map(|name| name.as_str().to_owned());
    }
    if let Ok(Value::Object(claims)) = serde_json::to_value(info) {
        for (name, value) in claims {
            if !value.is_null() {
                identity.claims.entry(name).or_insert(value);
            }
        }
    }
    Ok(())
}

fn discovery_error<E: std::error::Error + 'static>(
    what: &str,
    error: openidconnect::DiscoveryError<E>,
) -> Error {
    use openidconnect::DiscoveryError;
    match error {
        DiscoveryError::Request(error) => Error::new(
            crate::http::failure_kind(&error),
            format!("{what}: {}", crate::http::chain(&error)),
        ),
        DiscoveryError::Response(status, _, _) => Error::new(
            ErrorKind::BadResponse,
            format!("{what}: the provider answered {status}"),
        ),
        DiscoveryError::Parse(error) => Error::new(
            ErrorKind::BadResponse,
            format!("{what}: the answer does not decode at {}", error.path()),
        ),
        DiscoveryError::Validation(detail) => {
            Error::new(ErrorKind::Misconfigured, format!("{what}: {detail}"))
        }
        other => Error::new(ErrorKind::Misconfigured, format!("{what}: {other}")),
    }
}

fn claims_error(error: openidconnect::ClaimsVerificationError) -> Error {
    use openidconnect::{ClaimsVerificationError as Claims, SignatureVerificationError as Sig};
    let kind = match &error {
        Claims::Expired(detail) if detail.starts_with("iat") => ErrorKind::IdTokenIssuedAt,
        Claims::Expired(_) => ErrorKind::IdTokenExpired,
        Claims::InvalidAudience(_) => ErrorKind::IdTokenAudience,
        Claims::InvalidIssuer(_) => ErrorKind::IdTokenIssuer,
        Claims::InvalidNonce(_) => ErrorKind::IdTokenNonce,
        Claims::SignatureVerification(Sig::NoMatchingKey) => ErrorKind::IdTokenUnknownKey,
        Claims::SignatureVerification(_) => ErrorKind::IdTokenSignature,
        _ => ErrorKind::IdTokenInvalid,
    };
    let detail = match &error {
        Claims::SignatureVerification(inner) => format!("signature: {inner}"),
        other => other.to_string(),
    };
    Error::new(kind, detail)
}

fn user_info_error<E: std::error::Error + 'static>(
    error: openidconnect::UserInfoError<E>,
) -> Error {
    use openidconnect::UserInfoError;
    match error {
        UserInfoError::Request(error) => Error::new(
            crate::http::failure_kind(&error),
            format!("user info: {}", crate::http::chain(&error)),
        ),
        UserInfoError::Response(status, _, _) => Error::new(
            ErrorKind::UserInfo,
            format!("user info: the provider answered {status}"),
        ),
        UserInfoError::Parse(error) => Error::new(
            ErrorKind::UserInfo,
            format!("user info does not decode at {}", error.path()),
        ),
        UserInfoError::ClaimsVerification(error) => {
            Error::new(ErrorKind::UserInfo, format!("user info: {error}"))
        }
        other => Error::new(ErrorKind::UserInfo, format!("user info: {other}")),
    }
}
