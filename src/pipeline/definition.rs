//! [`Pipeline`]: a built, immutable pipeline definition, cheap to clone.

use std::{
    convert::Infallible,
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::{Request, request::Parts};

use super::{Failure, Signature, hooks::FinishHook, step::StepDef};

/// How the engine learns who is making a request.
pub(crate) type UserFn = dyn Fn(&Parts) -> Option<String> + Send + Sync;
/// The application's answer to a failed flow.
pub(crate) type ErrorFn<R> = dyn Fn(Failure) -> R + Send + Sync;
/// The application's redirect to a location.
pub(crate) type RedirectFn<R> = dyn Fn(&str) -> R + Send + Sync;

/// How long a pipeline's flows live.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lifetimes {
    /// The sliding TTL; `None`: the layer's.
    pub(crate) idle: Option<Duration>,
    /// From the start, whatever happens.
    pub(crate) max: Option<Duration>,
    /// How long an ended flow answers its replays; zero: not at all.
    pub(crate) replay: Duration,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Self {
            idle: None,
            max: None,
            replay: Duration::from_secs(120),
        }
    }
}

/// A multi-step flow: a name, the flow kinds it runs, and an ordered list of
/// named steps, each an async function of the request and the flow's
/// [`Flow`](super::Flow) context. Built with [`Pipeline::builder`].
///
/// One route serves the whole flow: [`start`](Self::start) begins a flow and
/// runs its first step; [`dispatch`](Self::dispatch) (or the pipeline used as
/// a tower service) runs whichever step the flow is on. The engine keeps the
/// step index, the flow kind, the starting user, a nonce and the steps' data
/// in the request's [`PipelineState`](crate::PipelineState); it never talks
/// to a store itself.
///
/// `B` is the request body type and `R` the response type (with axum,
/// `axum::body::Body` and `axum::response::Response`). Cloning shares the
/// definition.
pub struct Pipeline<B, R> {
    pub(crate) inner: Arc<Definition<B, R>>,
}

/// What a pipeline is made of.
pub(crate) struct Definition<B, R> {
    pub(crate) name: String,
    pub(crate) kinds: Vec<String>,
    pub(crate) steps: Vec<StepDef<B, R>>,
    pub(crate) signature: Signature,
    pub(crate) nonce_param: String,
    /// The query parameter the application's links name a flow with.
    pub(crate) reference_param: String,
    /// Flow cookies are `SameSite=None; Secure`, for callbacks that come
    /// back as cross-site POSTs.
    pub(crate) cross_site: bool,
    /// `start` takes requests the browser marks as cross-site.
    pub(crate) cross_site_start: bool,
    /// `start` takes requests the browser marks as not a navigation.
    pub(crate) background_start: bool,
    /// The largest callback form read for its `state`.
    pub(crate) form_limit: usize,
    pub(crate) lifetimes: Lifetimes,
    /// An expired flow starts again by itself.
    pub(crate) restart_on_expiry: bool,
    pub(crate) on_redirect: Option<Box<RedirectFn<R>>>,
    pub(crate) user: Box<UserFn>,
    pub(crate) finish: Box<dyn FinishHook<B, R>>,
    pub(crate) on_error: Box<ErrorFn<R>>,
}

impl<B, R> Pipeline<B, R> {
    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The signature of the step list (see [`Signature`]).
    pub fn signature(&self) -> &Signature {
        &self.inner.signature
    }

    /// The step names, in order.
    pub fn step_names(&self) -> impl Iterator<Item = &str> {
        self.inner.steps.iter().map(|step| step.name.as_str())
    }

    /// The flow kinds the pipeline runs.
    pub fn flow_kinds(&self) -> impl Iterator<Item = &str> {
        self.inner.kinds.iter().map(String::as_str)
    }
}

impl<B, R> Clone for Pipeline<B, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<B, R> fmt::Debug for Pipeline<B, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("name", &self.inner.name)
            .field("kinds", &self.inner.kinds)
            .field("steps", &self.step_names().collect::<Vec<_>>())
            .field("signature", &self.inner.signature)
            .field("nonce_param", &self.inner.nonce_param)
            .field("reference_param", &self.inner.reference_param)
            .field("cross_site_callbacks", &self.inner.cross_site)
            .field("cross_site_start", &self.inner.cross_site_start)
            .field("form_limit", &self.inner.form_limit)
            .field("lifetimes", &self.inner.lifetimes)
            .field("restart_on_expiry", &self.inner.restart_on_expiry)
            .finish_non_exhaustive()
    }
}

/// The pipeline as a tower service: every request is
/// [`dispatch`](Pipeline::dispatch)ed to the flow's current step. With axum:
/// `Router::new().route_service("/auth/sso", pipeline)`.
impl<B, R> tower_service::Service<Request<B>> for Pipeline<B, R>
where
    B: http_body::Body + From<bytes::Bytes> + Default + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    R: Send + 'static,
{
    type Response = R;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<R, Infallible>> + Send + 'static>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let pipeline = self.clone();
        Box::pin(async move { Ok(pipeline.dispatch(request).await) })
    }
}
