//! Entering a step: the engine runs the step a flow is on (a callback step
//! only for a request that brought its nonce back), or finishes the flow
//! past its last step. This is how a pipeline's definition serves as the
//! [`Engine`] a [`Flow`] holds.

use std::{future::ready, time::Duration};

use http::Request;

use super::{
    Finished, Flow, FlowError, HowEnded, context::Engine, definition::Definition, ended::end_flow,
    funnel, hooks::Landing, presented::is_cross_site_write, scope::Scope, step_future::StepFuture,
};
use crate::backend::{Claimed, Committed};

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
        let kind = funnel::kind_label(&self.kinds, Some(&flow.kind));
        funnel::entered(&self.name, kind, &step.name);
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

    fn replay_window(&self) -> Duration {
        self.lifetimes.replay
    }

    fn kind_label<'k>(&self, kind: &'k str) -> &'k str {
        funnel::kind_label(&self.kinds, Some(kind))
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

/// Claims the flow (one round trip before the response, at the version the
/// request loaded), hands the collected data to the finish hook, then ends
/// the flow. Of two requests finishing one flow, only the one whose claim
/// succeeds runs the hook; the other fails with [`FlowError::Concurrent`].
///
/// With a replay window the claim writes the flow's ended record (finished,
/// landing where the flow's `return_to` says), and the hook may name
/// another landing ([`Finished::lands_at`]), written with the request; with
/// none, the claim deletes the record.
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
            return_to: flow.return_to.clone(),
            landing: Landing::default(),
        };
        let landing = finished.landing.clone();
        let window = flow.engine.replay_window();
        let claimed = if window.is_zero() {
            flow.state.claim().await? == Claimed::Yes
        } else {
            end_flow(
                &flow.state,
                HowEnded::Finished,
                flow.return_to.clone(),
                window,
            )?;
            flow.state.commit().await? == Committed::Yes
        };
        if !claimed {
            return Err(FlowError::Concurrent);
        }
        let result = flow.engine.finish(request, finished).await;
        // (A hook that fails ends the flow as failed, as any step does.)
        if result.is_ok()
            && let Some(location) = landing.location()
        {
            end_flow(&flow.state, HowEnded::Finished, Some(location), window)?;
        }
        if result.is_ok() {
            tracing::info!(
                pipeline = %flow.engine.name(),
                flow = %flow.kind,
                outcome = "finished",
                "pipeline flow finished"
            );
            funnel::ended(
                flow.engine.name(),
                flow.engine.kind_label(&flow.kind),
                "finished",
            );
        }
        result
    })
}
