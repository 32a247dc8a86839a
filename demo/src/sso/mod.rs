//! The SSO demo, in parts its binary (`src/bin/sso.rs`) and the demo's tests
//! (`tests/it/sso.rs`, the browser suite) all use: an
//! OpenID Connect client (`oidc`) that signs in against any provider, a
//! small built-in OpenID provider (`idp`), the application with its sign-in
//! pipeline (`app`), the words of its pages (`pages`), PKCE helpers (`pkce`)
//! and page rendering (`html`).

pub mod app;
pub mod html;
pub mod idp;
pub mod oidc;
pub mod pages;
pub mod pkce;

use std::time::Duration;

use tower_pipeline_state::Key;

/// How the provider sends the browser back with the code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseMode {
    /// A redirect with the code in the query string: a top-level GET, on
    /// which the browser sends the flow's `SameSite=Lax` cookie.
    Query,
    /// An auto-submitted form: a cross-site POST, on which the browser sends
    /// only `SameSite=None` cookies. The sign-in pipeline then accepts
    /// cross-site callbacks, which gives each flow such a cookie (see
    /// [`Settings::cross_site_callbacks`] and `app.rs`).
    FormPost,
}

impl ResponseMode {
    /// `query` or `form_post`, as OpenID Connect spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Query => "query",
            Self::FormPost => "form_post",
        }
    }

    /// Reads `query` or `form_post`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "query" => Some(Self::Query),
            "form_post" => Some(Self::FormPost),
            _ => None,
        }
    }
}

/// The OpenID provider the application signs in with.
#[derive(Clone, Debug)]
pub struct Provider {
    /// The issuer: discovery is at `<issuer>/.well-known/openid-configuration`,
    /// and ID tokens must carry exactly this `iss`.
    pub issuer: String,
    /// The application's client id at the provider (the ID token's `aud`).
    pub client_id: String,
    /// The client secret, for a confidential client; `None` for a public one.
    pub client_secret: Option<String>,
    /// A name to show on the start page.
    pub display_name: String,
}

/// Where things are and how the demo behaves. Every app server of one
/// deployment gets the same settings (the same `key` above all).
#[derive(Clone)]
pub struct Settings {
    /// The application's public origin, as browsers reach it (behind a load
    /// balancer, every instance has the same one), e.g.
    /// `http://127.0.0.1:3000`.
    pub app_origin: String,
    /// The provider.
    pub provider: Provider,
    /// `query` (default) or `form_post`.
    pub response_mode: ResponseMode,
    /// Whether the sign-in pipeline accepts its callback as a cross-site
    /// POST (`PipelineBuilder::cross_site_callbacks`): the flow's cookie is
    /// then `SameSite=None; Secure`. The example turns it on with
    /// `form_post`, which needs it; off, a `form_post` callback arrives
    /// without the flow's cookie and gets the "another site" page (the
    /// browser suite runs the demo so to show it).
    pub cross_site_callbacks: bool,
    /// How long an abandoned sign-in lives.
    pub ttl: Duration,
    /// Signs the flow cookie and the login session cookie.
    pub key: Key,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("app_origin", &self.app_origin)
            .field("provider", &self.provider.issuer)
            .field("response_mode", &self.response_mode)
            .field("cross_site_callbacks", &self.cross_site_callbacks)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// The application's callback URL, registered with the provider.
    pub fn redirect_uri(&self) -> String {
        format!("{}{}", self.app_origin, app::CALLBACK_PATH)
    }
}
