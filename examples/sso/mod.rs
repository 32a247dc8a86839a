//! The SSO demo, in parts the example's `main` and the tests both use: a
//! small OAuth 2.0 identity provider (`idp`), the application with its
//! sign-in pipeline (`app`), PKCE helpers (`pkce`) and page rendering
//! (`html`).

pub(crate) mod app;
pub(crate) mod html;
pub(crate) mod idp;
pub(crate) mod pkce;

use std::time::Duration;

/// Where things are: both servers' public origins, and the flow TTL.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// The application's public origin, as browsers reach it (behind a load
    /// balancer, every instance has the same one), e.g.
    /// `http://127.0.0.1:3000`.
    pub(crate) app_origin: String,
    /// The identity provider's origin, e.g. `http://127.0.0.1:3001`.
    pub(crate) idp_origin: String,
    /// How long an abandoned sign-in lives.
    pub(crate) ttl: Duration,
}

impl Settings {
    /// The application's callback URL, registered with the provider: the
    /// pipeline's one route.
    pub(crate) fn redirect_uri(&self) -> String {
        format!("{}{}", self.app_origin, app::FLOW_PATH)
    }
}
