//! [`Identity`]: who signed in, as the callback step binds it into the flow
//! and later steps and the finish hook read it back.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tower_pipeline_state::pipeline::{Finished, Flow, FlowError};

/// The key the callback step binds the identity under.
pub(crate) const IDENTITY_KEY: &str = "oidc.identity";

/// Who signed in, as the provider vouches: bound into the flow by the
/// callback step, read back by later steps ([`from_flow`](Self::from_flow))
/// and the finish hook ([`from_finished`](Self::from_finished)).
///
/// It holds claims, never a token: no access, refresh or ID token reaches
/// the flow's state.
///
/// ```
/// use tower_pipeline_oidc::Identity;
///
/// let identity = Identity::new("https://id.example.com", "248289761001")
///     .with_email("jane@example.com", true)
///     .with_name("Jane Doe");
/// assert_eq!(identity.display_name(), "Jane Doe");
/// assert!(identity.email_verified);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Identity {
    /// The issuer that vouches for the subject (an OpenID provider's
    /// issuer URL, or a plain OAuth 2.0 provider's configured name, e.g.
    /// `https://github.com`). Together with [`subject`](Self::subject) the
    /// key to store an account link under.
    pub issuer: String,
    /// The provider's stable id of the person (`sub`; GitHub's numeric
    /// `id`). Never reassigned by the provider, unlike an e-mail address.
    pub subject: String,
    /// The e-mail address, when the provider gave one.
    pub email: Option<String>,
    /// Whether the provider says it verified [`email`](Self::email)
    /// (`email_verified`); `false` when it did not say. Link accounts by
    /// e-mail only when this is `true`.
    pub email_verified: bool,
    /// The display name, when the provider gave one.
    pub name: Option<String>,
    /// The login name (`preferred_username`; GitHub's `login`), when the
    /// provider gave one. Not unique over time: key accounts by subject.
    pub username: Option<String>,
    /// Every claim as the provider sent it: the ID token's payload (signature
    /// verified), with user info claims added where the ID token has none;
    /// for a plain OAuth 2.0 provider, the user info answer.
    pub claims: Map<String, Value>,
}

impl Identity {
    /// An identity with only an issuer and a subject; the `with_*` methods
    /// add the rest. For tests of the application's own steps, and for
    /// [`UserInfoMapping::custom`](crate::UserInfoMapping::custom).
    ///
    /// ```
    /// # use tower_pipeline_oidc::Identity;
    /// let identity = Identity::new("https://github.com", "583231");
    /// assert_eq!(identity.display_name(), "583231");
    /// ```
    pub fn new(issuer: impl Into<String>, subject: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            subject: subject.into(),
            email: None,
            email_verified: false,
            name: None,
            username: None,
            claims: Map::new(),
        }
    }

    /// With an e-mail address, and whether the provider verified it.
    ///
    /// ```
    /// # use tower_pipeline_oidc::Identity;
    /// let identity = Identity::new("https://github.com", "583231").with_email("octocat@github.com", false);
    /// assert_eq!(identity.email.as_deref(), Some("octocat@github.com"));
    /// ```
    pub fn with_email(mut self, email: impl Into<String>, verified: bool) -> Self {
        self.email = Some(email.into());
        self.email_verified = verified;
        self
    }

    /// With a display name.
    ///
    /// ```
    /// # use tower_pipeline_oidc::Identity;
    /// let identity = Identity::new("https://github.com", "583231").with_name("The Octocat");
    /// assert_eq!(identity.name.as_deref(), Some("The Octocat"));
    /// ```
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// With a login name.
    ///
    /// ```
    /// # use tower_pipeline_oidc::Identity;
    /// let identity = Identity::new("https://github.com", "583231").with_username("octocat");
    /// assert_eq!(identity.display_name(), "octocat");
    /// ```
    pub fn with_username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// With the provider's claims as they came.
    ///
    /// ```
    /// # use tower_pipeline_oidc::Identity;
    /// let claims = serde_json::json!({"id": 583231, "login": "octocat"});
    /// let identity = Identity::new("https://github.com", "583231")
    ///     .with_claims(claims.as_object().unwrap().clone());
    /// assert_eq!(identity.claims["login"], "octocat");
    /// ```
    pub fn with_claims(mut self, claims: Map<String, Value>) -> Self {
        self.claims = claims;
        self
    }

    /// The best name to greet the person with: the name, else the login,
    /// else the e-mail address, else the subject.
    ///
    /// ```
    /// # use tower_pipeline_oidc::Identity;
    /// let identity = Identity::new("https://id.example.com", "42").with_email("jane@example.com", true);
    /// assert_eq!(identity.display_name(), "jane@example.com");
    /// ```
    pub fn display_name(&self) -> &str {
        self.name
            .as_deref()
            .or(self.username.as_deref())
            .or(self.email.as_deref())
            .unwrap_or(&self.subject)
    }

    /// The identity the callback step bound into this flow; `Ok(None)`
    /// before the callback ran. For the steps after it.
    ///
    /// ```
    /// use tower_pipeline_oidc::Identity;
    /// use tower_pipeline_state::pipeline::{Flow, FlowError};
    /// # use http::Request;
    ///
    /// async fn confirm(_request: Request<String>, flow: Flow<String, String>) -> Result<String, FlowError> {
    ///     let identity = Identity::from_flow(&flow)?.ok_or(FlowError::failed("no identity yet"))?;
    ///     Ok(format!("Continue as {}?", identity.display_name()))
    /// }
    /// ```
    pub fn from_flow<B, R>(flow: &Flow<B, R>) -> Result<Option<Self>, FlowError> {
        flow.fetch(IDENTITY_KEY)
    }

    /// The identity the callback step bound, as the finish hook gets it;
    /// `Ok(None)` when the flow finished without a sign-in.
    ///
    /// ```
    /// use tower_pipeline_oidc::Identity;
    /// use tower_pipeline_state::pipeline::{Finished, FlowError};
    ///
    /// fn signed_in(finished: &Finished) -> Result<String, FlowError> {
    ///     let identity = Identity::from_finished(finished)?.ok_or(FlowError::failed("no identity"))?;
    ///     Ok(format!("{} at {}", identity.subject, identity.issuer))
    /// }
    /// ```
    pub fn from_finished(finished: &Finished) -> Result<Option<Self>, FlowError> {
        finished.fetch(IDENTITY_KEY)
    }

    /// Binds this identity into `flow` under the key the callback step
    /// uses: for a step of the application's own that signs a person in
    /// otherwise (and for tests of later steps).
    ///
    /// ```
    /// use tower_pipeline_oidc::Identity;
    /// use tower_pipeline_state::pipeline::{Flow, FlowError};
    /// # use http::Request;
    ///
    /// async fn guest(_request: Request<String>, flow: Flow<String, String>) -> Result<String, FlowError> {
    ///     Identity::new("urn:example:guests", "guest-1").bind(&flow)?;
    ///     flow.next().await
    /// }
    /// ```
    pub fn bind<B, R>(&self, flow: &Flow<B, R>) -> Result<(), FlowError> {
        flow.bind(IDENTITY_KEY, self)
    }
}
