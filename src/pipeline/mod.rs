//! The pipeline engine: multi-step flows (SSO and OAuth logins, account
//! linking, setup wizards) on top of [`PipelineState`](crate::PipelineState).
//!
//! A [`Pipeline`] is a name, the flow kinds it runs, and an ordered list of
//! named steps. Each step is an async function of the request and a [`Flow`]
//! context; it answers with a page, or binds what it learnt
//! ([`Flow::bind`]) and moves on ([`Flow::advance`], [`Flow::next`]). One
//! route serves the whole flow: the engine keeps which step the flow is on
//! and runs it. When the last step moves on, the application's finish hook
//! gets everything the steps bound ([`Finished`]), and the flow is emptied,
//! so it cannot run again: for a while its record keeps only how it ended,
//! to answer a refresh or a callback delivered again
//! ([`PipelineBuilder::replay_window`]).
//!
//! On every request the engine checks the flow before any step runs: it
//! exists, belongs to this pipeline, the user making the request is the one
//! who started it, its [`Signature`] (a hash of the step names) is this
//! pipeline's, its kind is known and its step index in bounds. A request that
//! brings back the flow's [`Nonce`] (the OAuth `state` parameter) has it
//! checked in constant time and consumed. Every way a request can fail is a
//! [`FlowError`] with a kind, logged as a `tracing` event and handed to the
//! application's error handler to answer.
//!
//! # Several flows in one browser
//!
//! Every flow has a cookie of its own (`<cookie name>.<reference>`), so
//! starting one never ends another: two tabs can each sign in. A request
//! continues the flow it names, by the reference in its `state`
//! ([`Flow::callback_state`], for callbacks) or its URL ([`Flow::link`], for
//! the application's own links and forms); one that names none continues
//! the browser's newest flow. The flow's id never leaves its cookie, so a
//! callback that reaches a browser which did not start the flow finds
//! nothing ([`FlowError::OtherBrowser`]). Callbacks that come back as a
//! cross-site form POST (OpenID Connect `form_post`, SAML) are read from
//! the form; see [`PipelineBuilder::cross_site_callbacks`].
//!
//! The engine knows nothing of Redis: it reads and changes the request's
//! [`PipelineState`](crate::PipelineState), and
//! [`PipelineStateLayer`](crate::PipelineStateLayer) does one load and at
//! most one write. Two submissions of one step race on the step index: the
//! first moves the flow, the second is answered `409 Conflict` by the layer.
//!
//! # Nested pipelines
//!
//! A step can run another pipeline inside its flow with [`Flow::nest`]: an
//! identity provider's sign-in inside an integration's setup, say. The inner
//! run has its own step index, signature, kind, nonce and data, kept in one
//! field of the outer flow's state (no record of its own); its steps are
//! ordinary steps, so the same pipeline can also run alone.
//! While the inner run answers ([`Nested::Answer`]), the outer flow stays on
//! the nesting step and each of its requests runs the inner run's current
//! step. When the inner run moves past its last step, `nest` returns
//! [`Nested::Finished`] with everything the inner steps bound, the run is
//! gone, and the outer step binds what it needs and moves on. The inner
//! pipeline's own finish hook and error handler are not called.
//!
//! A request that brings a nonce back has it compared with the outer flow's
//! and every nested run's, and consumes the one it matches: a callback step
//! opens only with its own run's nonce. An inner step's error comes out of
//! `nest`; returned by the outer step, it reaches the outer pipeline's error
//! handler, with [`Failure::inner`] naming the inner pipeline and step. The
//! request that ends an inner run writes the state at the version it loaded
//! before handing the data over (one more Redis round trip in that request
//! only), so two submissions of the inner last step end the run once: the
//! other fails with [`FlowError::Concurrent`]. [`Flow::nest`] shows an
//! example.
//!
//! # A three-step wizard
//!
//! ```
//! use axum::{
//!     Form, Router,
//!     body::Body,
//!     extract::{FromRequest, Request},
//!     http::{Method, StatusCode},
//!     response::{Html, IntoResponse, Response},
//!     routing::post,
//! };
//! use serde::Deserialize;
//! use tower_pipeline_state::{
//!     MemoryStore, PipelineStateLayer,
//!     pipeline::{Flow, FlowError, Pipeline},
//! };
//!
//! #[derive(Deserialize)]
//! struct Answer {
//!     value: String,
//! }
//!
//! /// Asks for `key` on a GET; on a POST binds the answer and runs the next step.
//! async fn ask(key: &'static str, request: Request, flow: Flow<Body, Response>) -> Result<Response, FlowError> {
//!     if request.method() != Method::POST {
//!         // `flow.link` names this flow in the URL: each tab continues its own.
//!         let action = flow.link("/wizard");
//!         let form = format!("<form method=post action='{action}'>{key}: <input name=value><button>Next</button></form>");
//!         return Ok(Html(form).into_response());
//!     }
//!     let Form(answer) = Form::<Answer>::from_request(request, &()).await.map_err(FlowError::failed)?;
//!     flow.bind(key, &answer.value)?;
//!     flow.next().await
//! }
//!
//! async fn confirm(request: Request, flow: Flow<Body, Response>) -> Result<Response, FlowError> {
//!     if request.method() != Method::POST {
//!         let team: String = flow.fetch("team")?.unwrap_or_default();
//!         let action = flow.link("/wizard");
//!         let form = format!("<form method=post action='{action}'>Create {team}? <button>Create</button></form>");
//!         return Ok(Html(form).into_response());
//!     }
//!     flow.next().await
//! }
//!
//! let wizard = Pipeline::builder("wizard")
//!     .flow_kind("setup")
//!     .step("team", |request, flow| ask("team", request, flow))
//!     .step("plan", |request, flow| ask("plan", request, flow))
//!     .step("confirm", confirm)
//!     .on_finish(|_request, finished| async move {
//!         let team: String = finished.fetch("team")?.unwrap_or_default();
//!         let plan: String = finished.fetch("plan")?.unwrap_or_default();
//!         Ok(Html(format!("Created {team} on the {plan} plan")).into_response())
//!     })
//!     .on_error(|failure| (StatusCode::BAD_REQUEST, failure.error.to_string()).into_response())
//!     .build();
//!
//! let starter = wizard.clone();
//! let app: Router = Router::new()
//!     .route("/wizard/start", post(move |request: Request| async move {
//!         starter.start(request, "setup").await
//!     }))
//!     .route_service("/wizard", wizard)
//!     .layer(PipelineStateLayer::new(MemoryStore::new()));
//! ```

mod builder;
mod check;
mod context;
mod definition;
mod ended;
mod enter;
mod error;
mod fields;
mod funnel;
mod hooks;
mod lifecycle;
mod nested;
mod nonce;
mod presented;
#[cfg(feature = "axum")]
mod redirect;
mod running;
mod scope;
mod signature;
mod start;
mod step;
mod step_future;
#[cfg(test)]
mod tests;
mod verify;

pub use builder::PipelineBuilder;
pub use context::Flow;
pub use definition::Pipeline;
pub use error::{Corruption, FlowError, HowEnded};
pub use hooks::{Failure, Finished, InnerStep};
pub use nested::Nested;
pub use nonce::Nonce;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use redirect::see_other;
pub use signature::Signature;
