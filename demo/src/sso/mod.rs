//! The SSO demo, in parts its binary (`src/bin/sso.rs`) and the demo's tests
//! (`tests/it/sso.rs`, the browser suite) all use: the application with its
//! sign-in pipelines on `tower-pipeline-oidc` (`app`), a small built-in
//! provider that speaks OpenID Connect and plain OAuth 2.0 (`idp`), the words
//! of the pages (`pages`) and their rendering (`html`).
//!
//! The application writes no protocol code of its own: the provider crate
//! does discovery, PKCE, the code exchange and the ID token's checks.

pub mod app;
pub mod html;
pub mod idp;
pub mod metrics;
pub mod pages;

use std::time::Duration;

use tower_pipeline_oidc::{OAuthDescription, ResponseMode};
use tower_pipeline_state::Key;

/// The site's name: in every page's title and header.
pub const SITE: &str = "Demo app";

/// The OpenID provider the application signs in with (at `/sso`).
#[derive(Clone, Debug)]
pub struct OidcSettings {
    /// The issuer: discovery is at `<issuer>/.well-known/openid-configuration`,
    /// and ID tokens must carry exactly this `iss`.
    pub issuer: String,
    /// The application's client id there (the ID token's `aud`).
    pub client_id: String,
    /// The client secret, for a confidential client; `None` for a public one.
    pub client_secret: Option<String>,
    /// The name on the sign-in button, "Sign in with ...".
    pub display_name: String,
    /// `query` (default) or `form_post`.
    pub response_mode: ResponseMode,
}

/// A plain OAuth 2.0 provider the application signs in with too (at
/// `/oauth`): no ID token, the identity comes from its user API.
#[derive(Clone, Debug)]
pub struct OAuthSettings {
    /// Its endpoints and how its user info maps to an identity.
    pub description: OAuthDescription,
    /// The application's client id there.
    pub client_id: String,
    /// The client secret.
    pub client_secret: Option<String>,
    /// The name on the sign-in button.
    pub display_name: String,
}

/// Where sign-ins in progress are kept, as the start page says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// In Redis, shared by every app server.
    Redis,
    /// In this process's memory (`MemoryStore`): no Redis answered.
    Memory,
}

/// Where things are and how the demo behaves. Every app server of one
/// deployment gets the same settings (the same keys above all).
#[derive(Clone)]
pub struct Settings {
    /// The application's public origin, as browsers reach it (behind a load
    /// balancer, every instance has the same one), e.g.
    /// `http://127.0.0.1:3000`.
    pub app_origin: String,
    /// The OpenID provider.
    pub oidc: OidcSettings,
    /// A plain OAuth 2.0 provider, if any.
    pub oauth: Option<OAuthSettings>,
    /// Whether the OpenID sign-in accepts its callback as a cross-site
    /// POST (`PipelineBuilder::cross_site_callbacks`): the flow's cookie is
    /// then `SameSite=None; Secure`. The binary turns it on with
    /// `form_post`, which needs it; off, a `form_post` callback arrives
    /// without the flow's cookie and gets the "another site" page (the
    /// browser suite runs the demo so to show it).
    pub cross_site_callbacks: bool,
    /// How long a sign-in waits without a request (the pipelines'
    /// `idle_timeout`).
    pub idle_timeout: Duration,
    /// How long a sign-in may take at all, from its start (the pipelines'
    /// `max_lifetime`).
    pub max_lifetime: Duration,
    /// How long a finished, cancelled or failed sign-in answers its own
    /// replays (the pipelines' `replay_window`; default 2 minutes): a
    /// refresh, Back, or the provider's answer delivered again.
    pub replay_window: Duration,
    /// Where the flows are kept.
    pub storage: Storage,
    /// Signs the flow cookies (the layer's key).
    pub flow_key: Key,
    /// Encrypts the login session's cookie: a key of its own, so the
    /// session and the flows never vouch for each other.
    pub session_key: Key,
    /// Where the sign-in funnel is read for `/metrics`; `None`: no
    /// `/metrics` page. The binary installs a recorder for the process
    /// ([`metrics::install`]); a test gives one of its own.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("app_origin", &self.app_origin)
            .field("oidc", &self.oidc.issuer)
            .field(
                "oauth",
                &self.oauth.as_ref().map(|oauth| &oauth.display_name),
            )
            .field("cross_site_callbacks", &self.cross_site_callbacks)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_lifetime", &self.max_lifetime)
            .field("replay_window", &self.replay_window)
            .field("storage", &self.storage)
            .field("metrics", &self.metrics.is_some())
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// The demo as `cargo run -p demo` runs it: the application at
    /// `app_origin` signing in with the built-in provider at `idp_origin`
    /// (Demo ID by `query`, and Demo Hub), sign-ins that wait 10 minutes
    /// and take 30 at most, kept in Redis, fresh keys.
    pub fn builtin(app_origin: &str, idp_origin: &str) -> Self {
        Self {
            app_origin: app_origin.to_owned(),
            oidc: OidcSettings {
                issuer: idp_origin.to_owned(),
                client_id: idp::CLIENT_ID.to_owned(),
                client_secret: Some(idp::CLIENT_SECRET.to_owned()),
                display_name: idp::OIDC_NAME.to_owned(),
                response_mode: ResponseMode::Query,
            },
            oauth: Some(OAuthSettings {
                description: idp::hub_description(idp_origin),
                client_id: idp::CLIENT_ID.to_owned(),
                client_secret: Some(idp::CLIENT_SECRET.to_owned()),
                display_name: idp::HUB_NAME.to_owned(),
            }),
            cross_site_callbacks: false,
            idle_timeout: Duration::from_secs(10 * 60),
            max_lifetime: Duration::from_secs(30 * 60),
            replay_window: Duration::from_secs(2 * 60),
            storage: Storage::Redis,
            flow_key: Key::generate(),
            session_key: Key::generate(),
            metrics: None,
        }
    }

    /// The built-in provider's routes, for these settings' application.
    pub fn builtin_provider(&self) -> axum::Router {
        idp::router(
            self.oidc.issuer.clone(),
            self.redirect_uri(),
            self.oauth_redirect_uri(),
        )
    }

    /// The OpenID sign-in's callback URL, registered with the provider.
    pub fn redirect_uri(&self) -> String {
        format!("{}{}", self.app_origin, app::CALLBACK_PATH)
    }

    /// The plain OAuth 2.0 sign-in's callback URL.
    pub fn oauth_redirect_uri(&self) -> String {
        format!("{}{}", self.app_origin, app::OAUTH_CALLBACK_PATH)
    }

    /// Where a provider sends the browser back after signing out there
    /// (RP-initiated logout): register it as a post-logout redirect URI.
    pub fn post_logout_redirect_uri(&self) -> String {
        format!("{}{}", self.app_origin, app::SIGNED_OUT_PATH)
    }
}
