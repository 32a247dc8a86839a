//! Sign-in providers as steps of
//! [`tower-pipeline-state`](tower_pipeline_state)'s pipeline engine: OpenID
//! Connect from discovery, and plain OAuth 2.0 providers (GitHub...) with a
//! user-info mapping, on the field's maintained crates, `openidconnect` and
//! `oauth2`.
//!
//! A [`Provider`] gives a pipeline two steps. The authorization step sends
//! the browser to the provider with PKCE (S256, always), an OpenID Connect
//! `nonce`, the flow's callback state as `state` (naming the flow and
//! carrying its one-time nonce), and the options you chose (scopes,
//! [`Prompt`], `login_hint`, `max_age`, `acr_values`, [`ResponseMode`]).
//! The callback step, which the engine enters only with the flow's `state`,
//! checks the answer's `iss` (mix-up defence), turns the provider's
//! `error=` into a typed failure, exchanges the code server to server,
//! verifies the ID token against the provider's keys (fetched again once
//! when a token names a key not seen before), and binds an [`Identity`]
//! into the flow for the steps after it and the finish hook.
//!
//! ```
//! use axum::{Router, body::Body, extract::Request, response::{IntoResponse, Redirect, Response}, routing::post};
//! use tower_pipeline_oidc::{ErrorKind, Identity, Provider};
//! use tower_pipeline_state::{MemoryStore, PipelineStateLayer, pipeline::{FlowError, Pipeline}};
//!
//! let provider = Provider::oidc("https://id.example.com", "my-client", "https://app.example.com/sso")
//!     .client_secret("from your secret store")
//!     .build()
//!     .expect("valid provider settings");
//!
//! let sign_in: Pipeline<Body, Response> = provider
//!     .steps(Pipeline::builder("sso").flow_kind("login"))
//!     .on_finish(|_request, finished| async move {
//!         let identity = Identity::from_finished(&finished)?.ok_or(FlowError::failed("no identity"))?;
//!         // Start your session for (identity.issuer, identity.subject).
//!         Ok(Redirect::to("/").into_response())
//!     })
//!     .on_error(|failure| match ErrorKind::of(&failure.error) {
//!         Some(ErrorKind::AccessDenied) => Redirect::to("/?cancelled").into_response(),
//!         _ => (axum::http::StatusCode::BAD_REQUEST, failure.error.to_string()).into_response(),
//!     })
//!     .build();
//!
//! let start = sign_in.clone();
//! let app: Router = Router::new()
//!     .route("/sso/start", post(move |request: Request| async move { start.start(request, "login").await }))
//!     .route_service("/sso", sign_in)
//!     .layer(PipelineStateLayer::new(MemoryStore::new()));
//! ```
//!
//! # Safe by construction
//!
//! - **The redirect URI is the registered one**, given once and sent as
//!   given with the authorization request and the code exchange.
//! - **Tokens stay in the back channel.** The code is exchanged server to
//!   server; no access, refresh or ID token goes to the browser, into the
//!   flow's state or into a log line. The PKCE verifier and the nonce live
//!   in the flow's state on the server until the callback removes them.
//! - **Bounded talk.** Every request to a provider has a time limit and
//!   every answer a size limit ([`Limits`]); no redirect is followed;
//!   tokens and keys travel over HTTPS only (plain HTTP on loopback, for
//!   development).
//! - **Typed failures.** Every failure is an [`ErrorKind`] with a stable
//!   name; the flow ends with a sentence that names nothing the provider
//!   sent, and the provider's detail goes to the log (target
//!   `tower_pipeline_oidc`).
//! - **No implicit flow**: the authorization code flow only, with PKCE.
//!
//! # What the engine adds
//!
//! The `state` is the engine's per-flow nonce, compared in constant time
//! and spent before the callback step runs, so an answer is used once; the
//! flow lives under a cookie of its own, so an answer that reaches a
//! browser which did not start the flow finds nothing (login CSRF). See
//! the root crate's SECURITY.md.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
mod http;
mod identity;
mod oauth;
mod oidc;
mod protocol;
mod provider;
mod steps;

pub use error::{Error, ErrorKind};
pub use http::Limits;
pub use identity::Identity;
pub use oauth::{OAuthDescription, UserInfoMapping};
pub use provider::{Prompt, Provider, ProviderBuilder, ResponseMode};
pub use steps::StepFuture;

/// The `tracing` target of this crate's log lines.
pub(crate) const LOG_TARGET: &str = "tower_pipeline_oidc";
