//! The demo's apps end to end, in one binary: the SSO demo over HTTP with
//! its built-in provider (`sso`: signing in; `sso_forgives`: Back, refresh,
//! waiting and retries; `sso_providers`: plain OAuth 2.0, `oidc-provider`,
//! sign-out and the demo's own defences; `sso_failures`: the pages when the
//! flow store fails, and their retries; `sso_logs`: no secret in any log
//! line; `sso_metrics`: the funnel at `/metrics`; `sso_kit`, what they
//! share), and the hyper and warp examples' services running a flow
//! (`stacks`).
//! Headless Chromium drives the SSO demo in the other test binary,
//! `tests/browser/`.

mod common;
mod sso;
mod sso_failures;
mod sso_forgives;
mod sso_kit;
mod sso_logs;
mod sso_metrics;
mod sso_providers;
mod stacks;
