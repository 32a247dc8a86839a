//! What the application's hooks receive: [`Finished`] for the finish hook,
//! [`Failure`] for the error handler.

use std::{
    future::Future,
    sync::{Arc, Mutex},
};

use http::Request;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{FlowError, fields::decode_bound, step_future::StepFuture};
use crate::lock::lock;

/// A flow that went through all its steps, as handed to the finish hook (see
/// [`PipelineBuilder::on_finish`](super::PipelineBuilder::on_finish)). The
/// flow is claimed before the hook (its record replaced by the ended one),
/// so it cannot be finished twice.
///
/// A pipeline run nested in another flow's step ends with one too, handed to
/// that step in [`Nested::Finished`](super::Nested::Finished) rather than to
/// the inner pipeline's finish hook.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Finished {
    /// The pipeline's name.
    pub pipeline: String,
    /// The flow kind the flow was started with.
    pub kind: String,
    /// The user who started (and continued) the flow, if one was signed in.
    pub user: Option<String>,
    /// Everything the steps bound.
    pub data: Map<String, Value>,
    /// Where the application meant to send the person once the flow is
    /// done, chosen at start ([`Pipeline::start_to`](super::Pipeline::start_to)).
    pub return_to: Option<String>,
    /// Where the finish sends the person, for the flow's replays.
    pub(crate) landing: Landing,
}

/// Where a finished flow sent the person, named by its finish hook
/// ([`Finished::lands_at`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct Landing(Arc<Mutex<Option<String>>>);

impl Landing {
    /// The location the hook named, if it named one.
    pub(crate) fn location(&self) -> Option<String> {
        lock(&self.0).clone()
    }
}

impl Finished {
    /// Reads what a step bound under `key` as `T`; `Ok(None)` when nothing
    /// was.
    ///
    /// ```
    /// # use tower_pipeline_state::pipeline::Finished;
    /// # fn identity(finished: &Finished) -> Result<(), tower_pipeline_state::pipeline::FlowError> {
    /// let user: Option<String> = finished.fetch("user")?;
    /// # Ok(()) }
    /// ```
    pub fn fetch<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, FlowError> {
        decode_bound(&self.data, key)
    }

    /// Names where the finish sends the person (the page the hook's answer
    /// redirects to, or shows), so that a replay of the finished flow
    /// within the pipeline's replay window (a refresh, a Back, the callback
    /// delivered again) is sent there too, instead of failing. Without it,
    /// replays are sent to the flow's `return_to`, if it has one.
    ///
    /// ```
    /// # use tower_pipeline_state::pipeline::{Finished, FlowError};
    /// # fn hook(finished: Finished) -> Result<String, FlowError> {
    /// finished.lands_at("/account");
    /// Ok("303 See Other: /account".to_owned())
    /// # }
    /// ```
    pub fn lands_at(&self, location: impl Into<String>) {
        *lock(&self.landing.0) = Some(location.into());
    }
}

/// A request that did not continue its flow, as handed to the error handler
/// (see [`PipelineBuilder::on_error`](super::PipelineBuilder::on_error)).
#[derive(Debug)]
#[non_exhaustive]
pub struct Failure {
    /// What went wrong.
    pub error: FlowError,
    /// The flow's kind, when the flow got far enough to know it (a login
    /// flow may send the user elsewhere than a setup flow, as Sentry does).
    pub kind: Option<String>,
    /// The step that was running, when one was.
    pub step: Option<String>,
    /// The nested run the failure came out of, when [`step`](Self::step)
    /// returned an error that [`Flow::nest`](super::Flow::nest) gave it.
    pub inner: Option<InnerStep>,
    /// Where the application meant to send the person once the flow is
    /// done, when the flow had one
    /// ([`Pipeline::start_to`](super::Pipeline::start_to)), read from the
    /// flow or, for one that expired, from its cookie: an error page can
    /// offer to start again from there.
    pub return_to: Option<String>,
}

/// Where in a nested pipeline run a failure came from (see
/// [`Failure::inner`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InnerStep {
    /// The inner pipeline's name.
    pub pipeline: String,
    /// The inner step that was running; `None` when the run failed its
    /// checks before any of its steps ran.
    pub step: Option<String>,
}

/// The application's finish hook, type-erased.
pub(crate) trait FinishHook<B, R>: Send + Sync + 'static {
    fn call(&self, request: Request<B>, finished: Finished) -> StepFuture<R>;
}

impl<F, Fut, B, R> FinishHook<B, R> for F
where
    F: Fn(Request<B>, Finished) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, FlowError>> + Send + 'static,
{
    fn call(&self, request: Request<B>, finished: Finished) -> StepFuture<R> {
        Box::pin(self(request, finished))
    }
}
