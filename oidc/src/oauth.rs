//! Plain OAuth 2.0 providers (no ID token) on `oauth2`: a small
//! [`OAuthDescription`] of the provider's endpoints and how its user info
//! maps to an [`Identity`], GitHub's as the worked example.

use std::{fmt, sync::Arc};

use oauth2::{
    AsyncHttpClient, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    PkceCodeChallenge, PkceCodeVerifier, Scope, TokenResponse, TokenUrl, basic::BasicClient,
};
use serde_json::{Map, Value};
use url::Url;

use crate::{
    Error, ErrorKind, Identity,
    http::HttpClient,
    protocol::{Begun, Pending, check_endpoint, token_error},
    provider::{Options, Prompt},
};

/// How a provider's user info answer (a JSON object) becomes an
/// [`Identity`]: which field holds the subject, and which the e-mail, its
/// verification, the name and the login; or a function of your own.
///
/// ```
/// use tower_pipeline_oidc::UserInfoMapping;
///
/// // GitLab's /api/v4/user: a numeric `id`, `username`, `name`, `email`.
/// let mapping = UserInfoMapping::fields("id")
///     .email("email")
///     .name("name")
///     .username("username");
/// ```
#[derive(Clone)]
pub struct UserInfoMapping {
    map: Arc<MapFn>,
    fields: Option<Fields>,
}

/// A mapping as a function of the issuer's name and the user info.
type MapFn = dyn Fn(&str, &Map<String, Value>) -> Option<Identity> + Send + Sync;

#[derive(Clone, Debug, Default)]
struct Fields {
    subject: String,
    email: Option<String>,
    email_verified: Option<String>,
    name: Option<String>,
    username: Option<String>,
}

impl fmt::Debug for UserInfoMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.fields {
            Some(fields) => f.debug_tuple("UserInfoMapping").field(fields).finish(),
            None => f.write_str("UserInfoMapping(custom)"),
        }
    }
}

impl UserInfoMapping {
    /// Reads the subject from field `subject` (a string, or a number as
    /// GitHub's `id` is). Without a subject the sign-in fails
    /// ([`ErrorKind::UserInfo`]).
    ///
    /// ```
    /// # use tower_pipeline_oidc::UserInfoMapping;
    /// let mapping = UserInfoMapping::fields("sub");
    /// ```
    pub fn fields(subject: impl Into<String>) -> Self {
        Self::from_fields(Fields {
            subject: subject.into(),
            ..Fields::default()
        })
    }

    fn from_fields(fields: Fields) -> Self {
        let read = fields.clone();
        Self {
            map: Arc::new(move |issuer, info| read.map(issuer, info)),
            fields: Some(fields),
        }
    }

    fn change(self, change: impl FnOnce(&mut Fields)) -> Self {
        let mut fields = self.fields.unwrap_or_default();
        change(&mut fields);
        Self::from_fields(fields)
    }

    /// The field holding the e-mail address (default: none is read).
    ///
    /// ```
    /// # use tower_pipeline_oidc::UserInfoMapping;
    /// let mapping = UserInfoMapping::fields("id").email("email");
    /// ```
    pub fn email(self, field: impl Into<String>) -> Self {
        self.change(|fields| fields.email = Some(field.into()))
    }

    /// The boolean field saying the e-mail address is verified (default:
    /// none, and the address counts as not verified).
    ///
    /// ```
    /// # use tower_pipeline_oidc::UserInfoMapping;
    /// let mapping = UserInfoMapping::fields("sub").email("email").email_verified("email_verified");
    /// ```
    pub fn email_verified(self, field: impl Into<String>) -> Self {
        self.change(|fields| fields.email_verified = Some(field.into()))
    }

    /// The field holding the display name.
    ///
    /// ```
    /// # use tower_pipeline_oidc::UserInfoMapping;
    /// let mapping = UserInfoMapping::fields("id").name("name");
    /// ```
    pub fn name(self, field: impl Into<String>) -> Self {
        self.change(|fields| fields.name = Some(field.into()))
    }

    /// The field holding the login name.
    ///
    /// ```
    /// # use tower_pipeline_oidc::UserInfoMapping;
    /// let mapping = UserInfoMapping::fields("id").username("login");
    /// ```
    pub fn username(self, field: impl Into<String>) -> Self {
        self.change(|fields| fields.username = Some(field.into()))
    }

    /// A mapping of your own: gets the provider's issuer name and the user
    /// info object; `None` refuses the sign-in ([`ErrorKind::UserInfo`]).
    ///
    /// ```
    /// use tower_pipeline_oidc::{Identity, UserInfoMapping};
    ///
    /// // A provider that nests the account: {"data": {"uid": "...", "mail": "..."}}.
    /// let mapping = UserInfoMapping::custom(|issuer, info| {
    ///     let data = info.get("data")?.as_object()?;
    ///     let identity = Identity::new(issuer, data.get("uid")?.as_str()?);
    ///     Some(match data.get("mail").and_then(|mail| mail.as_str()) {
    ///         Some(mail) => identity.with_email(mail, false),
    ///         None => identity,
    ///     })
    /// });
    /// ```
    pub fn custom<F>(map: F) -> Self
    where
        F: Fn(&str, &Map<String, Value>) -> Option<Identity> + Send + Sync + 'static,
    {
        Self {
            map: Arc::new(map),
            fields: None,
        }
    }

    fn apply(&self, issuer: &str, info: &Map<String, Value>) -> Option<Identity> {
        (self.map)(issuer, info)
    }
}

impl Fields {
    fn map(&self, issuer: &str, info: &Map<String, Value>) -> Option<Identity> {
        let subject = match info.get(&self.subject)? {
            Value::String(text) if !text.is_empty() => text.clone(),
            Value::Number(number) => number.to_string(),
            _ => return None,
        };
        let text = |field: &Option<String>| {
            field
                .as_ref()
                .and_then(|field| info.get(field))
                .and_then(Value::as_str)
                .filter(|text| !text.is_empty())
                .map(str::to_owned)
        };
        let mut identity = Identity::new(issuer, subject);
        identity.email = text(&self.email);
        identity.email_verified = identity.email.is_some()
            && self
                .email_verified
                .as_ref()
                .and_then(|field| info.get(field))
                .and_then(Value::as_bool)
                == Some(true);
        identity.name = text(&self.name);
        identity.username = text(&self.username);
        identity.claims = info.clone();
        Some(identity)
    }
}

/// A plain OAuth 2.0 provider (no ID token, no discovery): its endpoints,
/// the scopes it needs for user info, whether it takes PKCE, and how its
/// user info maps to an [`Identity`]. [`github`](Self::github) is the
/// worked example.
///
/// ```
/// use tower_pipeline_oidc::{OAuthDescription, UserInfoMapping};
///
/// let gitlab = OAuthDescription::new(
///     "https://gitlab.com",
///     "https://gitlab.com/oauth/authorize",
///     "https://gitlab.com/oauth/token",
///     "https://gitlab.com/api/v4/user",
///     UserInfoMapping::fields("id").email("email").name("name").username("username"),
/// )
/// .expect("valid URLs")
/// .scopes(["read_user"]);
/// ```
#[derive(Clone, Debug)]
pub struct OAuthDescription {
    pub(crate) issuer: String,
    authorization_url: AuthUrl,
    token_url: TokenUrl,
    user_info_url: Url,
    mapping: UserInfoMapping,
    pub(crate) scopes: Vec<String>,
    pkce: bool,
    client_secret_in_body: bool,
    login_hint_param: String,
}

impl OAuthDescription {
    /// A provider: `issuer` names it in every [`Identity`] it signs in
    /// (and is what an `iss` parameter in its answers must be, RFC 9207);
    /// then its authorization, token and user info URLs, and the mapping
    /// of its user info. PKCE (S256) is on, the client secret goes by HTTP
    /// Basic, no scope is asked for. The token and user info URLs must be
    /// HTTPS (plain HTTP on loopback only): tokens go there.
    ///
    /// ```
    /// use tower_pipeline_oidc::{OAuthDescription, UserInfoMapping};
    ///
    /// let provider = OAuthDescription::new(
    ///     "https://accounts.example",
    ///     "https://accounts.example/authorize",
    ///     "https://accounts.example/token",
    ///     "https://api.accounts.example/me",
    ///     UserInfoMapping::fields("id"),
    /// );
    /// assert!(provider.is_ok());
    /// ```
    pub fn new(
        issuer: impl Into<String>,
        authorization_url: &str,
        token_url: &str,
        user_info_url: &str,
        mapping: UserInfoMapping,
    ) -> Result<Self, Error> {
        let url = |what: &str, text: &str| {
            Url::parse(text).map_err(|error| {
                Error::new(
                    ErrorKind::Misconfigured,
                    format!("the {what} {text:?}: {error}"),
                )
            })
        };
        let authorization = url("authorization URL", authorization_url)?;
        let token = url("token URL", token_url)?;
        let user_info = url("user info URL", user_info_url)?;
        check_endpoint("token URL", &token)?;
        check_endpoint("user info URL", &user_info)?;
        check_endpoint("authorization URL", &authorization)?;
        Ok(Self {
            issuer: issuer.into(),
            authorization_url: AuthUrl::from_url(authorization),
            token_url: TokenUrl::from_url(token),
            user_info_url: user_info,
            mapping,
            scopes: Vec::new(),
            pkce: true,
            client_secret_in_body: false,
            login_hint_param: "login_hint".to_owned(),
        })
    }

    /// GitHub (an OAuth App or a GitHub App's user authorization): the
    /// subject is the numeric account `id` (stable; the `login` can be
    /// renamed), the login, the name, and the public e-mail address.
    /// GitHub's `/user` does not say whether that address is verified, so
    /// [`Identity::email_verified`] stays `false`; link accounts by subject.
    /// Scope `read:user`. PKCE is sent (GitHub accepts S256); the client
    /// secret goes in the form body, as GitHub documents it.
    ///
    /// ```
    /// use tower_pipeline_oidc::{OAuthDescription, Provider};
    ///
    /// let github = Provider::oauth(
    ///     OAuthDescription::github(),
    ///     "Iv1.8a61f9b3a7aba766",
    ///     "https://app.example.com/sso/github/callback",
    /// )
    /// .client_secret("...")
    /// .display_name("GitHub")
    /// .build()
    /// .expect("valid settings");
    /// ```
    pub fn github() -> Self {
        Self::new(
            "https://github.com",
            "https://github.com/login/oauth/authorize",
            "https://github.com/login/oauth/access_token",
            "https://api.github.com/user",
            UserInfoMapping::fields("id")
                .username("login")
                .name("name")
                .email("email"),
        )
        .expect("GitHub's URLs are valid")
        .scopes(["read:user"])
        .client_secret_in_body(true)
        .login_hint_param("login")
    }

    /// The scopes to ask for (replacing the description's).
    ///
    /// ```
    /// # use tower_pipeline_oidc::OAuthDescription;
    /// let github = OAuthDescription::github().scopes(["read:user", "user:email"]);
    /// ```
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Whether to send PKCE (S256) (default on). Turn it off only for a
    /// provider that refuses requests carrying it.
    ///
    /// ```
    /// # use tower_pipeline_oidc::{OAuthDescription, UserInfoMapping};
    /// # let description = OAuthDescription::github();
    /// let description = description.pkce(true);
    /// ```
    pub fn pkce(mut self, pkce: bool) -> Self {
        self.pkce = pkce;
        self
    }

    /// Sends the client secret in the token request's form
    /// (`client_secret_post`) instead of by HTTP Basic (the default).
    ///
    /// ```
    /// # use tower_pipeline_oidc::OAuthDescription;
    /// let description = OAuthDescription::github().client_secret_in_body(true);
    /// ```
    pub fn client_secret_in_body(mut self, in_body: bool) -> Self {
        self.client_secret_in_body = in_body;
        self
    }

    /// The authorization parameter that carries
    /// [`ProviderBuilder::login_hint`](crate::ProviderBuilder::login_hint)
    /// (default `login_hint`, as OpenID Connect names it; GitHub's is
    /// `login`).
    ///
    /// ```
    /// # use tower_pipeline_oidc::OAuthDescription;
    /// let description = OAuthDescription::github().login_hint_param("login");
    /// ```
    pub fn login_hint_param(mut self, name: impl Into<String>) -> Self {
        self.login_hint_param = name.into();
        self
    }

    /// The authorization URL, and what the callback needs.
    pub(crate) fn begin(
        &self,
        client_id: &ClientId,
        options: &Options,
        redirect_uri: &oauth2::RedirectUrl,
        state: String,
    ) -> Begun {
        let client =
            BasicClient::new(client_id.clone()).set_auth_uri(self.authorization_url.clone());
        let mut request = client
            .authorize_url(move || CsrfToken::new(state))
            .set_redirect_uri(std::borrow::Cow::Borrowed(redirect_uri))
            .add_scopes(options.scopes.iter().cloned().map(Scope::new));
        let mut pending = Pending::default();
        if self.pkce {
            let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
            request = request.set_pkce_challenge(challenge);
            pending.pkce_verifier = Some(verifier.secret().clone());
        }
        let prompts: Vec<&str> = options.prompts.iter().map(Prompt::as_str).collect();
        if !prompts.is_empty() {
            request = request.add_extra_param("prompt", prompts.join(" "));
        }
        if let Some(hint) = &options.login_hint {
            request = request.add_extra_param(self.login_hint_param.clone(), hint.clone());
        }
        let (url, _state) = request.url();
        Begun { url, pending }
    }

    /// The code for an identity: the exchange, then the user info mapped.
    pub(crate) async fn finish(
        &self,
        http: &HttpClient,
        client_id: &ClientId,
        client_secret: Option<&ClientSecret>,
        redirect_uri: &oauth2::RedirectUrl,
        code: String,
        pending: Pending,
    ) -> Result<Identity, Error> {
        let mut client = BasicClient::new(client_id.clone())
            .set_auth_uri(self.authorization_url.clone())
            .set_token_uri(self.token_url.clone());
        if let Some(secret) = client_secret {
            client = client.set_client_secret(secret.clone());
        }
        if self.client_secret_in_body {
            client = client.set_auth_type(oauth2::AuthType::RequestBody);
        }
        let mut request = client
            .exchange_code(AuthorizationCode::new(code))
            .set_redirect_uri(std::borrow::Cow::Borrowed(redirect_uri));
        if let Some(verifier) = pending.pkce_verifier {
            request = request.set_pkce_verifier(PkceCodeVerifier::new(verifier));
        } else if self.pkce {
            return Err(Error::new(
                ErrorKind::BadCallback,
                "the flow holds no PKCE verifier for this callback",
            ));
        }
        let tokens = request.request_async(http).await.map_err(token_error)?;

        let info = http
            .call(
                http::Request::get(self.user_info_url.as_str())
                    .header(http::header::ACCEPT, "application/json")
                    .header(
                        http::header::AUTHORIZATION,
                        format!("Bearer {}", tokens.access_token().secret()),
                    )
                    .body(Vec::new())
                    .map_err(|error| Error::new(ErrorKind::Misconfigured, error.to_string()))?,
            )
            .await
            .map_err(|error| {
                Error::new(
                    crate::http::failure_kind(&error),
                    format!("user info: {}", crate::http::chain(&error)),
                )
            })?;
        if !info.status().is_success() {
            return Err(Error::new(
                ErrorKind::UserInfo,
                format!("user info: the provider answered {}", info.status()),
            ));
        }
        let info: Map<String, Value> = serde_json::from_slice(info.body())
            .map_err(|_| Error::new(ErrorKind::UserInfo, "user info is not a JSON object"))?;
        self.mapping.apply(&self.issuer, &info).ok_or_else(|| {
            Error::new(
                ErrorKind::UserInfo,
                "the user info mapping found no subject in the answer",
            )
        })
    }
}
