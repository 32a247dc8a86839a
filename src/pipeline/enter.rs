//! Entering a step: the engine runs the step a flow is on (a callback step
//! only for a request that brought its nonce back), or finishes the flow
//! past its last step. This is how a pipeline's definition serves as the
//! [`Engine`] a [`Flow`] holds.

use std::future::ready;

use http::Request;

use super::{
    Finished, Flow, FlowError, context::Engine, definition::Definition,
    presented::is_cross_site_write, scope::Scope, step_future::StepFuture,
};
use crate::backend::Claimed;

impl<B, R> Engine<B, R> for Definition<B, R>
where
    B: Default + Send + 'static,
    R: Send + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn step_name(&self, index: usize) -> &str {
        &self.steps[index].name
    }

    fn reference_param(&self) -> &str {
        &self.reference_param
    }

    fn enter(&self, flow: Flow<B, R>, request: Request<B>) -> StepFuture<R> {
        let cross_site = is_cross_site_write(request.method(), request.headers());
        let Some(step) = self.steps.get(flow.index) else {
            if cross_site {
                return Box::pin(ready(Err(FlowError::CrossSite)));
            }
            return match flow.scope {
                // Past a nested run's last step no finish hook runs:
                // `Flow::nest` ends the run.
                Scope::Nested(_) => Box::pin(ready(Err(FlowError::NestedFinished))),
                Scope::Outer => {
                    flow.running.enter(None);
                    finish(flow, request)
                }
            };
        };
        flow.entering(&step.name);
        if step.callback && !flow.nonce_verified() {
            return Box::pin(ready(Err(FlowError::NonceMissing)));
        }
        if cross_site && !reached_by_cross_site(step.callback, &flow) {
            return Box::pin(ready(Err(FlowError::CrossSite)));
        }
        tracing::debug!(pipeline = %self.name, step = %step.name, index = flow.index, "entering pipeline step");
        step.handler.call(request, flow)
    }

    fn finish(&self, request: Request<B>, finished: Finished) -> StepFuture<R> {
        self.finish.call(request, finished)
    }
}

/// Whether a cross-site POST may enter this step: only a callback step, with
/// its own scope's nonce; or the outer step that runs the nested run whose
/// nonce it brought (whose own callback step is then checked the same way).
fn reached_by_cross_site<B, R>(callback: bool, flow: &Flow<B, R>) -> bool {
    match (&flow.scope, &flow.verified) {
        (_, None) => false,
        (Scope::Outer, Some(Scope::Nested(_))) => true,
        (_, Some(_)) => callback && flow.nonce_verified(),
    }
}

impl<B, R> Flow<B, R> {
    /// Records which step of this context runs, for failure reports.
    pub(crate) fn entering(&self, step: &str) {
        match &self.scope {
            Scope::Outer => self.running.enter(Some(self.index)),
            Scope::Nested(name) => self.running.enter_inner(name, Some(step)),
        }
    }
}

/// Claims the flow (deletes its record at the loaded version, one round trip
/// before the response), hands the collected data to the finish hook, then
/// clears the flow. Of two requests finishing one flow, only the one whose
/// claim succeeds runs the hook; the other fails with
/// [`FlowError::Concurrent`].
fn finish<B, R>(flow: Flow<B, R>, request: Request<B>) -> StepFuture<R>
where
    B: Send + 'static,
    R: Send + 'static,
{
    Box::pin(async move {
        let finished = Finished {
            pipeline: flow.engine.name().to_owned(),
            kind: flow.kind.clone(),
            user: flow.user.clone(),
            data: flow.data()?,
        };
        match flow.state.claim().await? {
            Claimed::Yes => {}
            Claimed::AlreadyGone | Claimed::Changed => return Err(FlowError::Concurrent),
        }
        let result = flow.engine.finish(request, finished).await;
        flow.state.clear_secured()?;
        if result.is_ok() {
            tracing::info!(
                pipeline = %flow.engine.name(),
                flow = %flow.kind,
                outcome = "finished",
                "pipeline flow finished"
            );
        }
        result
    })
}
