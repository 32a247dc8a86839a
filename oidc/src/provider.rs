//! [`Provider`] and its [`ProviderBuilder`]: one sign-in provider, OpenID
//! Connect or plain OAuth 2.0, with the options of its authorization
//! request.

use std::{fmt, sync::Arc, time::Duration};

use oauth2::{ClientId, ClientSecret, RedirectUrl};
use openidconnect::IssuerUrl;
use url::Url;

use crate::{
    Error, ErrorKind, Identity, Limits, OAuthDescription,
    http::HttpClient,
    oidc::Oidc,
    protocol::{Begun, Callback, Pending},
};

/// The default [`ProviderBuilder::clock_skew`].
const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(120);

/// How the provider sends the browser back with the answer.
///
/// ```
/// use tower_pipeline_oidc::ResponseMode;
///
/// assert_eq!(ResponseMode::default(), ResponseMode::Query);
/// assert_eq!(ResponseMode::FormPost.as_str(), "form_post");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseMode {
    /// A redirect with the answer in the query string (the default): a
    /// top-level GET, which carries the flow's `SameSite=Lax` cookie.
    #[default]
    Query,
    /// An auto-submitted form: a cross-site POST, which carries only
    /// `SameSite=None` cookies. The code stays out of the URL (and so out
    /// of the browser's history and `Referer`s); the pipeline must accept
    /// cross-site callbacks, which [`Provider::steps`] turns on.
    FormPost,
}

impl ResponseMode {
    /// `query` or `form_post`, as OpenID Connect spells it.
    ///
    /// ```
    /// # use tower_pipeline_oidc::ResponseMode;
    /// assert_eq!(ResponseMode::Query.as_str(), "query");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Query => "query",
            Self::FormPost => "form_post",
        }
    }
}

/// A `prompt` value (OpenID Connect Core, section 3.1.2.1): what the
/// provider should ask the person even when it knows them.
///
/// ```
/// use tower_pipeline_oidc::Prompt;
///
/// assert_eq!(Prompt::SelectAccount.as_str(), "select_account");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Prompt {
    /// `none`: show nothing; answer `login_required` (or another
    /// [`ErrorKind::InteractionRequired`]) rather than ask.
    None,
    /// `login`: sign in again even with a session at the provider (after
    /// the application's sign-out, so that "sign in" lets another person
    /// in).
    Login,
    /// `consent`: ask for consent again.
    Consent,
    /// `select_account`: let the person choose among their accounts.
    SelectAccount,
}

impl Prompt {
    /// The value as sent.
    ///
    /// ```
    /// # use tower_pipeline_oidc::Prompt;
    /// assert_eq!(Prompt::Login.as_str(), "login");
    /// ```
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Login => "login",
            Self::Consent => "consent",
            Self::SelectAccount => "select_account",
        }
    }
}

impl Options {
    /// The options for a flow of `kind`: its own prompts added.
    pub(crate) fn for_kind(&self, kind: &str) -> std::borrow::Cow<'_, Self> {
        let mut own = self
            .kind_prompts
            .iter()
            .filter(|(of, _)| of == kind)
            .map(|(_, prompt)| *prompt)
            .peekable();
        if own.peek().is_none() {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut options = self.clone();
        for prompt in own {
            if !options.prompts.contains(&prompt) {
                options.prompts.push(prompt);
            }
        }
        std::borrow::Cow::Owned(options)
    }
}

/// What the callback step does once the identity is bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Then {
    /// Runs the next step (or the finish hook) in the callback's request.
    Next,
    /// Moves the flow on and redirects to this path with the flow's
    /// reference: the next step renders on a plain GET, so a reload does
    /// not send the provider's answer again.
    Redirect(String),
}

/// The options of the authorization request and of the callback.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub(crate) scopes: Vec<String>,
    pub(crate) prompts: Vec<Prompt>,
    /// Prompts sent only for flows of a kind, after `prompts`.
    pub(crate) kind_prompts: Vec<(String, Prompt)>,
    pub(crate) login_hint: Option<String>,
    pub(crate) max_age: Option<Duration>,
    pub(crate) acr_values: Vec<String>,
    pub(crate) response_mode: ResponseMode,
    /// `None`: when the ID token says nothing of the person.
    pub(crate) user_info: Option<bool>,
    pub(crate) clock_skew: Duration,
    pub(crate) then: Then,
}

#[derive(Debug)]
pub(crate) enum Protocol {
    Oidc(Oidc),
    OAuth(Box<OAuthDescription>),
}

pub(crate) struct Inner {
    pub(crate) display_name: String,
    pub(crate) client_id: ClientId,
    pub(crate) client_secret: Option<ClientSecret>,
    pub(crate) redirect_uri: RedirectUrl,
    pub(crate) options: Options,
    pub(crate) http: HttpClient,
    pub(crate) protocol: Protocol,
}

/// One sign-in provider, OpenID Connect ([`Provider::oidc`]) or plain OAuth
/// 2.0 ([`Provider::oauth`]), and the two steps that sign in with it:
/// [`authorize`](Self::authorize) (off to the provider) and
/// [`callback`](Self::callback) (back with a code, out with an
/// [`Identity`]). [`steps`](Self::steps) adds both to a pipeline.
///
/// Cheap to clone: clones share the discovered metadata and keys. Build one
/// per provider at start-up and keep it.
///
/// ```
/// use tower_pipeline_oidc::Provider;
///
/// let provider = Provider::oidc(
///     "https://id.example.com",
///     "my-client",
///     "https://app.example.com/sso/callback",
/// )
/// .client_secret("...")
/// .build()
/// .expect("valid settings");
/// assert_eq!(provider.issuer(), "https://id.example.com");
/// ```
#[derive(Clone)]
pub struct Provider {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider")
            .field("display_name", &self.inner.display_name)
            .field("issuer", &self.issuer())
            .field("client_id", &self.inner.client_id.as_str())
            .field("redirect_uri", &self.inner.redirect_uri.as_str())
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl Provider {
    /// An OpenID Connect provider found by discovery at
    /// `<issuer>/.well-known/openid-configuration` (on the first sign-in,
    /// or at start-up with [`discover`](Self::discover)), for the client
    /// `client_id` whose registered redirect URI is `redirect_uri`, exactly
    /// as registered: it is sent with the authorization request and the
    /// code exchange as given. Asks for `openid profile email`.
    ///
    /// ```
    /// use tower_pipeline_oidc::Provider;
    ///
    /// let builder = Provider::oidc("https://accounts.google.com", "1234.apps.googleusercontent.com", "https://app.example.com/sso/callback");
    /// ```
    pub fn oidc(
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        redirect_uri: impl Into<String>,
    ) -> ProviderBuilder {
        ProviderBuilder::new(
            Kind::Oidc(issuer.into()),
            client_id.into(),
            redirect_uri.into(),
            vec!["profile".to_owned(), "email".to_owned()],
        )
    }

    /// A plain OAuth 2.0 provider as `description` says (its endpoints and
    /// user info mapping), for the client `client_id` whose registered
    /// redirect URI is `redirect_uri`, exactly.
    ///
    /// ```
    /// use tower_pipeline_oidc::{OAuthDescription, Provider};
    ///
    /// let builder = Provider::oauth(OAuthDescription::github(), "Iv1.8a61f9b3a7aba766", "https://app.example.com/sso/github/callback");
    /// ```
    pub fn oauth(
        description: OAuthDescription,
        client_id: impl Into<String>,
        redirect_uri: impl Into<String>,
    ) -> ProviderBuilder {
        let scopes = description.scopes.clone();
        ProviderBuilder::new(
            Kind::OAuth(Box::new(description)),
            client_id.into(),
            redirect_uri.into(),
            scopes,
        )
    }

    /// The issuer: an OpenID provider's issuer URL, or a plain OAuth 2.0
    /// provider's name from its description. Every [`Identity`] it signs in
    /// carries it.
    ///
    /// ```
    /// # use tower_pipeline_oidc::{OAuthDescription, Provider};
    /// let github = Provider::oauth(OAuthDescription::github(), "id", "https://app.example/cb").build().unwrap();
    /// assert_eq!(github.issuer(), "https://github.com");
    /// ```
    pub fn issuer(&self) -> &str {
        match &self.inner.protocol {
            Protocol::Oidc(oidc) => oidc.issuer(),
            Protocol::OAuth(description) => &description.issuer,
        }
    }

    /// The name to show on the sign-in button ("Sign in with ..."): set by
    /// [`ProviderBuilder::display_name`], else the issuer's host.
    ///
    /// ```
    /// # use tower_pipeline_oidc::Provider;
    /// let provider = Provider::oidc("https://id.example.com", "app", "https://app.example/cb").build().unwrap();
    /// assert_eq!(provider.display_name(), "id.example.com");
    /// ```
    pub fn display_name(&self) -> &str {
        &self.inner.display_name
    }

    /// The redirect URI, as registered and sent.
    ///
    /// ```
    /// # use tower_pipeline_oidc::Provider;
    /// let provider = Provider::oidc("https://id.example.com", "app", "https://app.example/cb").build().unwrap();
    /// assert_eq!(provider.redirect_uri(), "https://app.example/cb");
    /// ```
    pub fn redirect_uri(&self) -> &str {
        self.inner.redirect_uri.as_str()
    }

    /// Runs discovery now, and keeps its result: call it at start-up so a
    /// wrong issuer, an unreachable provider or metadata that does not fit
    /// fails there rather than on a person's first sign-in. Once it
    /// succeeded it costs nothing. A plain OAuth 2.0 provider has nothing
    /// to discover.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), tower_pipeline_oidc::Error> {
    /// use tower_pipeline_oidc::Provider;
    ///
    /// let provider = Provider::oidc("https://id.example.com", "app", "https://app.example/cb").build()?;
    /// provider.discover().await?;
    /// # Ok(()) }
    /// ```
    pub async fn discover(&self) -> Result<(), Error> {
        match &self.inner.protocol {
            Protocol::Oidc(oidc) => oidc.discover(&self.inner.http).await,
            Protocol::OAuth(_) => Ok(()),
        }
    }

    /// Where to send the browser to sign out at the provider too
    /// (OpenID Connect RP-Initiated Logout): the provider's
    /// `end_session_endpoint` with this client's id, and
    /// `post_logout_redirect_uri` (which must be registered with the
    /// provider) and `state` when given. `Ok(None)` when the provider has no
    /// such endpoint (and for every plain OAuth 2.0 provider): end the
    /// application's session only, and say so.
    ///
    /// No `id_token_hint` is sent: the ID token never goes to the browser.
    /// Providers then ask the person to confirm the sign-out.
    ///
    /// ```no_run
    /// # async fn run(provider: tower_pipeline_oidc::Provider) -> Result<(), tower_pipeline_oidc::Error> {
    /// match provider.logout_url(Some("https://app.example.com/"), None).await? {
    ///     Some(url) => println!("redirect to {url}"),
    ///     None => println!("signed out of this application only"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn logout_url(
        &self,
        post_logout_redirect_uri: Option<&str>,
        state: Option<&str>,
    ) -> Result<Option<Url>, Error> {
        match &self.inner.protocol {
            Protocol::Oidc(oidc) => {
                oidc.logout_url(&self.inner.http, post_logout_redirect_uri, state)
                    .await
            }
            Protocol::OAuth(_) => Ok(None),
        }
    }

    /// The authorization URL for a flow of `kind` whose callback state is
    /// `state`, and the secrets the callback needs.
    pub(crate) async fn begin(&self, state: String, kind: &str) -> Result<Begun, Error> {
        let inner = &self.inner;
        let options = inner.options.for_kind(kind);
        match &inner.protocol {
            Protocol::Oidc(oidc) => {
                oidc.begin(&inner.http, &options, &inner.redirect_uri, state)
                    .await
            }
            Protocol::OAuth(description) => {
                Ok(description.begin(&inner.client_id, &options, &inner.redirect_uri, state))
            }
        }
    }

    /// The callback's answer for an identity: the mix-up check, the
    /// provider's error, the code exchanged and checked.
    pub(crate) async fn complete(
        &self,
        callback: Callback,
        pending: Pending,
    ) -> Result<Identity, Error> {
        let inner = &self.inner;
        let promised = match &inner.protocol {
            Protocol::Oidc(oidc) => oidc.promises_iss(&inner.http).await?,
            Protocol::OAuth(_) => false,
        };
        callback.check_issuer(self.issuer(), promised)?;
        if let Some(error) = callback.provider_error() {
            return Err(error);
        }
        let code = callback
            .code
            .filter(|code| !code.is_empty())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::BadCallback,
                    "the answer has no code and no error",
                )
            })?;
        match &inner.protocol {
            Protocol::Oidc(oidc) => {
                oidc.finish(
                    &inner.http,
                    &inner.options,
                    &inner.redirect_uri,
                    code,
                    pending,
                )
                .await
            }
            Protocol::OAuth(description) => {
                description
                    .finish(
                        &inner.http,
                        &inner.client_id,
                        inner.client_secret.as_ref(),
                        &inner.redirect_uri,
                        code,
                        pending,
                    )
                    .await
            }
        }
    }
}

enum Kind {
    Oidc(String),
    OAuth(Box<OAuthDescription>),
}

/// Settings of a [`Provider`]; made by [`Provider::oidc`] or
/// [`Provider::oauth`], checked by [`build`](Self::build).
pub struct ProviderBuilder {
    kind: Kind,
    client_id: String,
    client_secret: Option<String>,
    redirect_uri: String,
    display_name: Option<String>,
    limits: Limits,
    options: Options,
}

impl fmt::Debug for ProviderBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderBuilder")
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl ProviderBuilder {
    fn new(kind: Kind, client_id: String, redirect_uri: String, scopes: Vec<String>) -> Self {
        Self {
            kind,
            client_id,
            client_secret: None,
            redirect_uri,
            display_name: None,
            limits: Limits::default(),
            options: Options {
                scopes,
                prompts: Vec::new(),
                kind_prompts: Vec::new(),
                login_hint: None,
                max_age: None,
                acr_values: Vec::new(),
                response_mode: ResponseMode::Query,
                user_info: None,
                clock_skew: DEFAULT_CLOCK_SKEW,
                then: Then::Next,
            },
        }
    }

    /// The client secret, for a confidential client (default: none, a
    /// public client that relies on PKCE alone). Sent to the token endpoint
    /// only, by HTTP Basic unless the provider takes it only in the form.
    ///
    /// ```
    /// # use tower_pipeline_oidc::Provider;
    /// let secret = std::env::var("SSO_CLIENT_SECRET").unwrap_or_default();
    /// let builder = Provider::oidc("https://id.example.com", "app", "https://app.example/cb").client_secret(secret);
    /// ```
    pub fn client_secret(mut self, secret: impl Into<String>) -> Self {
        self.client_secret = Some(secret.into());
        self
    }

    /// The name to show on the sign-in button (default: the issuer's
    /// host).
    ///
    /// ```
    /// # use tower_pipeline_oidc::Provider;
    /// let builder = Provider::oidc("https://login.microsoftonline.com/common/v2.0", "app", "https://app.example/cb")
    ///     .display_name("Microsoft");
    /// ```
    pub fn display_name(mut self, name: impl Into<String>) -> Self {
        self.display_name = Some(name.into());
        self
    }

    /// The scopes to ask for besides `openid` (which an OpenID provider
    /// always gets), replacing the default: `profile email` for OpenID
    /// Connect, the description's for plain OAuth 2.0.
    ///
    /// ```
    /// # use tower_pipeline_oidc::Provider;
    /// let builder = Provider::oidc("https://id.example.com", "app", "https://app.example/cb")
    ///     .scopes(["email"]);
    /// ```
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.options.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Adds a `prompt` value (default: none sent, the provider decides).
    /// [`Prompt::Login`] after the application's sign-out lets another
    /// person sign in; [`Prompt::SelectAccount`] offers the choice of
    /// account.
    ///
    /// ```
    /// use tower_pipeline_oidc::{Prompt, Provider};
    ///
    /// let builder = Provider::oidc("https://id.example.com", "app", "https://app.example/cb")
    ///     .prompt(Prompt::SelectAccount);
    /// ```
    pub fn prompt(mut self, prompt: Prompt) -> Self {
        if !self.options.prompts.contains(&prompt) {
            self.options.prompts.push(prompt);
        }
        self
    }

    /// Adds a `prompt` value sent only for flows of `kind` (the kind given
    /// to [`Pipeline::start`](tower_pipeline_state::pipeline::Pipeline::start);
    /// a flow that starts again after expiring keeps its kind), after those
    /// [`prompt`](Self::prompt) adds for every flow. Default: none. One
    /// pipeline with two kinds then offers both a plain sign-in and "Use
    /// another account" ([`Prompt::Login`], or [`Prompt::SelectAccount`]
    /// where the provider supports it), which a person needs after signing
    /// out of the application while still signed in at the provider.
    ///
    /// ```
    /// use tower_pipeline_oidc::{Prompt, Provider};
    ///
    /// let builder = Provider::oidc("https://id.example.com", "app", "https://app.example/cb")
    ///     .prompt_for("another_account", Prompt::Login);
    /// // Pipeline::builder("sso").flow_kind("login").flow_kind("another_account"), and
    /// // `sign_in.start(request, "another_account")` behind "Use another account".
    /// ```
    pub fn prompt_for(mut self, kind: impl Into<String>, prompt: Prompt) -> Self {
        let kind = kind.into();
        if !self
            .options
            .kind_prompts
            .iter()
            .any(|(of, known)| *of == kind && *known == prompt)
        {
            self.options.kind_prompts.push((kind, prompt));
        }
        self
    }

    /// The `login_hint`: the account to suggest (an e-mail address, a
    /// login). Default: none.
    ///
    /// ```
    /// # use tower_pipeline_oidc::Provider;
    /// let builder = Provider::oidc("https://id.example.com", "app", "https://app.example/cb")
    ///     .login_hint("jane@example.com");
    /// ```
    pub fn login_hint(mut self, hint: impl Into<String>) -> Self {
        self.options.login_hint = Some(hint.into());
        self
    }

    /// `max_age`: the longest time since the person last signed in at the
    /// provider, past which it asks again (OpenID Connect only; default:
    /// none). Whole seconds.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_pipeline_oidc::Provider;
    /// let builder = Provider::oidc("https://id.example.com", "app", "https://app.example/cb")
    ///     .max_age(Duration::from_secs(15 * 60));
    /// ```
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.options.max_age = Some(max_age);
        self
    }

    /// Adds an `acr_values` entry: an authentication context class the
    /// provider should satisfy, in order of preference (OpenID Connect
    /// only; default: none).
    ///
    /// ```
    /// # use tower_pipeline_oidc::Provider;
    /// let builder = Provider::oidc("https://id.example.com", "app", "https://app.example/cb")
    ///     .acr_value("urn:mace:incommon:iap:silver");
    /// ```
    pub fn acr_value(mut self, acr: impl Into<String>) -> Self {
        self.options.acr_values.push(acr.into());
        self
    }

    /// How the answer comes back (default [`ResponseMode::Query`]).
    /// [`ResponseMode::FormPost`] needs a pipeline that accepts cross-site
    /// callbacks: [`Provider::steps`] turns that on; a pipeline built
    /// otherwise must call
    /// [`cross_site_callbacks(true)`](tower_pipeline_state::pipeline::PipelineBuilder::cross_site_callbacks)
    /// itself. An OpenID provider that does not list `form_post` in its
    /// metadata is refused ([`ErrorKind::Misconfigured`]).
    ///
    /// ```
    /// use tower_pipeline_oidc::{Provider, ResponseMode};
    ///
    /// let builder = Provider::oidc("https://id.example.com", "app", "https://app.example/cb")
    ///     .response_mode(ResponseMode::FormPost);
    /// ```
    pub fn response_mode(mut self, mode: ResponseMode) -> Self {
        self.options.response_mode = mode;
        self
    }

    /// Whether the callback asks the OpenID provider's user info endpoint
    /// too: `true` always, `false` never. Default: when the ID token has no
    /// e-mail, name or login and the provider has the endpoint (providers
    /// that keep the profile for user info, as `oidc-provider` does). Its
    /// claims fill in what the ID token left out; a different `sub` fails
    /// the sign-in ([`ErrorKind::UserInfo`]). A plain OAuth 2.0 provider
    /// always asks its user info URL: that is where its identity comes
    /// from.
    ///
    /// ```
    /// # use tower_pipeline_oidc::Provider;
    /// let builder = Provider::oidc("https://id.example.com", "app", "https://app.example/cb")
    ///     .user_info(true);
    /// ```
    pub fn user_info(mut self, fetch: bool) -> Self {
        self.options.user_info = Some(fetch);
        self
    }

    /// How far the provider's clock may be from this server's (default
    /// 2 minutes): an ID token that expired less than this ago still
    /// passes, and one whose `iat` is more than this in the future, or
    /// more than this plus 5 minutes in the past, is refused
    /// ([`ErrorKind::IdTokenIssuedAt`]).
    ///
    /// # Panics
    /// If `skew` is over 10 minutes.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_pipeline_oidc::Provider;
    /// let builder = Provider::oidc("https://id.example.com", "app", "https://app.example/cb")
    ///     .clock_skew(Duration::from_secs(30));
    /// ```
    pub fn clock_skew(mut self, skew: Duration) -> Self {
        assert!(
            skew <= Duration::from_secs(600),
            "a clock skew over 10 minutes accepts stale tokens"
        );
        self.options.clock_skew = skew;
        self
    }

    /// The time and size limits on every request to the provider (default
    /// [`Limits::default`]: 10 s, 256 KiB).
    ///
    /// ```
    /// # use std::time::Duration;
    /// use tower_pipeline_oidc::{Limits, Provider};
    ///
    /// let builder = Provider::oidc("https://id.example.com", "app", "https://app.example/cb")
    ///     .limits(Limits::default().timeout(Duration::from_secs(5)));
    /// ```
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// After binding the identity, the callback step moves the flow on and
    /// redirects (303) to `path` with the flow's reference
    /// ([`Flow::link`](tower_pipeline_state::pipeline::Flow::link)), where
    /// the next step renders on a plain GET: a reload or Back then does not
    /// send the provider's answer again. Default: the callback runs the
    /// next step (or the finish hook) at once, in its own request, which
    /// suits a finish hook that redirects.
    ///
    /// ```
    /// # use tower_pipeline_oidc::Provider;
    /// // The pipeline's route is /sso: a "continue as ...?" step renders there.
    /// let builder = Provider::oidc("https://id.example.com", "app", "https://app.example/sso/callback")
    ///     .continue_at("/sso");
    /// ```
    pub fn continue_at(mut self, path: impl Into<String>) -> Self {
        self.options.then = Then::Redirect(path.into());
        self
    }

    /// The provider, with its settings checked: the issuer a valid URL
    /// (HTTPS, or HTTP on loopback), the redirect URI an absolute URL
    /// without a fragment, a client id, the OpenID-only options only for
    /// an OpenID provider. Makes no request (see
    /// [`Provider::discover`]).
    ///
    /// ```
    /// use tower_pipeline_oidc::{ErrorKind, Provider};
    ///
    /// let error = Provider::oidc("http://id.example.com", "app", "https://app.example/cb")
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(error.kind(), ErrorKind::Misconfigured); // plain HTTP off loopback
    /// ```
    pub fn build(self) -> Result<Provider, Error> {
        let misconfigured = |detail: String| Error::new(ErrorKind::Misconfigured, detail);
        if self.client_id.is_empty() {
            return Err(misconfigured("the client id is empty".to_owned()));
        }
        let redirect = Url::parse(&self.redirect_uri).map_err(|error| {
            misconfigured(format!("the redirect URI {:?}: {error}", self.redirect_uri))
        })?;
        if redirect.fragment().is_some() || !matches!(redirect.scheme(), "https" | "http") {
            return Err(misconfigured(format!(
                "the redirect URI {:?} must be an http(s) URL without a fragment",
                self.redirect_uri
            )));
        }
        // Sent as given, not as `Url` would re-spell it: the provider
        // compares it with the registered one character for character.
        let redirect_uri = RedirectUrl::new(self.redirect_uri.clone()).map_err(|error| {
            misconfigured(format!("the redirect URI {:?}: {error}", self.redirect_uri))
        })?;
        let client_id = ClientId::new(self.client_id);
        let client_secret = self.client_secret.map(ClientSecret::new);
        let (protocol, host) = match self.kind {
            Kind::Oidc(issuer) => {
                let url = Url::parse(&issuer)
                    .map_err(|error| misconfigured(format!("the issuer {issuer:?}: {error}")))?;
                crate::protocol::check_endpoint("issuer", &url)?;
                let host = url.host_str().unwrap_or_default().to_owned();
                // As given: the ID token's `iss` must be exactly this.
                let issuer = IssuerUrl::new(issuer.clone())
                    .map_err(|error| misconfigured(format!("the issuer {issuer:?}: {error}")))?;
                (
                    Protocol::Oidc(Oidc::new(issuer, client_id.clone(), client_secret.clone())),
                    host,
                )
            }
            Kind::OAuth(description) => {
                if self.options.max_age.is_some() || !self.options.acr_values.is_empty() {
                    return Err(misconfigured(
                        "max_age and acr_values are OpenID Connect options; this provider is plain OAuth 2.0"
                            .to_owned(),
                    ));
                }
                let host = Url::parse(&description.issuer)
                    .ok()
                    .and_then(|url| url.host_str().map(str::to_owned))
                    .unwrap_or_else(|| description.issuer.clone());
                (Protocol::OAuth(description), host)
            }
        };
        Ok(Provider {
            inner: Arc::new(Inner {
                display_name: self.display_name.unwrap_or(host),
                client_id,
                client_secret,
                redirect_uri,
                options: self.options,
                http: HttpClient::new(self.limits),
                protocol,
            }),
        })
    }
}
