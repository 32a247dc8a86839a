//! Nested pipelines: a step runs another pipeline to its end inside its own
//! flow ([`Flow::nest`]), the inner run kept in one field of the outer
//! flow's state ([`NESTED`]), with its own step index, signature, kind,
//! nonce and data.

use std::fmt;

use http::Request;

use super::{
    Finished, Flow, FlowError, Pipeline,
    check::check_run,
    context::Engine,
    fields::{self, NESTED, Run, missing, runs},
    scope::Scope,
};
use crate::{PipelineState, backend::Committed};

/// What [`Flow::nest`] gives the step that nests a pipeline.
pub enum Nested<R> {
    /// The inner run's current step answered (a page, a redirect to an
    /// identity provider): answer with it. The inner run waits for the next
    /// request of the flow, and the outer flow stays on this step.
    Answer(R),
    /// The inner run moved past its last step: here is everything its steps
    /// bound, its kind, the outer flow's user and the inner pipeline's name.
    /// The run is gone from the flow's state (already written); bind what
    /// the outer flow needs and move on ([`Flow::next`],
    /// [`Flow::advance`]). The inner pipeline's own finish hook is not
    /// called.
    Finished(Finished),
}

impl<R> fmt::Debug for Nested<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Answer(_) => f.write_str("Answer(..)"),
            Self::Finished(finished) => f.debug_tuple("Finished").field(finished).finish(),
        }
    }
}

impl<B, R> Flow<B, R>
where
    B: Default + Send + 'static,
    R: Send + 'static,
{
    /// Runs pipeline `inner` inside this step, one request at a time, and
    /// hands its bound data over when it ends: an identity-provider sign-in
    /// inside an integration's setup, say.
    ///
    /// The first call from this step starts an inner run of flow kind `kind`
    /// (one of `inner`'s kinds) at its step 0, with `inner`'s signature, a
    /// fresh nonce and no data, and runs that step with `request`. Every
    /// later request of the flow reaches this step again (the outer flow
    /// stays on it), and `nest` runs the inner run's current step, checked
    /// as a flow is: its signature must be `inner`'s, its kind known, its
    /// step index in bounds. While the inner run answers,
    /// [`Nested::Answer`]; once it moves past its last step (that step calls
    /// [`next`](Flow::next), or a request comes after it
    /// [`advance`](Flow::advance)d), [`Nested::Finished`], and the run is
    /// gone. A run in progress keeps the kind it started with.
    ///
    /// The inner steps are `inner`'s own, run as they would be alone: each
    /// gets a `Flow` of the inner run (its step index, nonce and data; the
    /// outer flow's user). The inner pipeline's error handler and finish
    /// hook are not called. A callback step of `inner` is entered only by a
    /// request that brought the inner run's nonce ([`Flow::nonce`] in an
    /// inner step) back; the outer flow's nonce does not count for it, nor
    /// the inner one for the outer flow's callback steps. The inner run
    /// lives in the outer flow's state, under one field for all runs; the
    /// outer flow moving on ([`advance`](Flow::advance),
    /// [`next`](Flow::next)) drops a run it did not finish.
    ///
    /// # Finishing once
    ///
    /// Before it returns [`Nested::Finished`], `nest` writes the flow's state
    /// (the run removed) at the version the request loaded: one more Redis
    /// round trip in the request that ends the run, so that of two requests
    /// ending one run (a double submit) only one gets the data; the other
    /// fails with [`FlowError::Concurrent`] and keeps nothing. If the step
    /// then fails with an outcome that leaves the flow as it was, the flow
    /// stays as written then: the run is gone. Requests that do not end a
    /// run cost what any step costs (one read, one write).
    ///
    /// # Errors
    ///
    /// What the inner step returned, or why the run was refused
    /// ([`FlowError::UnknownFlowKind`], [`FlowError::SignatureChanged`],
    /// [`FlowError::Corrupt`], [`FlowError::NonceMissing`] for an inner
    /// callback step without the inner nonce...). Return it from the step:
    /// the outer pipeline's error handler gets it with the outer step in
    /// [`Failure::step`](super::Failure::step) and the inner pipeline and
    /// step in [`Failure::inner`](super::Failure::inner), and it ends the
    /// outer flow or leaves it as loaded as for any step
    /// ([`FlowError::ends_flow`]). Ending the run: [`FlowError::Concurrent`]
    /// (see above), [`FlowError::Unavailable`] when the store fails, and
    /// [`FlowError::Failed`] when the state is over the layer's record size
    /// limit. A step of a nested run cannot nest again
    /// ([`FlowError::Failed`]).
    ///
    /// ```
    /// use http::Request;
    /// use tower_pipeline_state::pipeline::{Flow, FlowError, Nested, Pipeline};
    ///
    /// // The identity provider's sign-in, a pipeline of its own (it can run
    /// // alone too).
    /// let identity = Pipeline::<String, String>::builder("identity")
    ///     .flow_kind("login")
    ///     .step("authorize", |_request, flow| async move {
    ///         flow.advance()?;
    ///         let state = flow.callback_state()?;
    ///         Ok(format!("redirect to https://idp.example/authorize?state={state}"))
    ///     })
    ///     .callback("callback", |_request, flow| async move {
    ///         flow.bind("email", "alice@example.com")?;
    ///         flow.next().await
    ///     })
    ///     .on_finish(|_request, _finished| async { Ok("signed in".to_owned()) })
    ///     .on_error(|failure| failure.error.to_string())
    ///     .build();
    ///
    /// // The integration's setup: its second step signs in with the provider.
    /// async fn sign_in(
    ///     identity: Pipeline<String, String>,
    ///     request: Request<String>,
    ///     flow: Flow<String, String>,
    /// ) -> Result<String, FlowError> {
    ///     match flow.nest(&identity, "login", request).await? {
    ///         Nested::Answer(answer) => Ok(answer),
    ///         Nested::Finished(finished) => {
    ///             let email: Option<String> = finished.fetch("email")?;
    ///             flow.bind("email", &email)?;
    ///             flow.next().await
    ///         }
    ///     }
    /// }
    ///
    /// let setup = Pipeline::<String, String>::builder("setup")
    ///     .flow_kind("integration")
    ///     // The integration was chosen on the page that started the flow.
    ///     .step("welcome", |_request, flow| async move { flow.next().await })
    ///     .step("identity", move |request, flow| sign_in(identity.clone(), request, flow))
    ///     .step("confirm", |_request, flow| async move { flow.next().await })
    ///     .on_finish(|_request, finished| async move {
    ///         let email: Option<String> = finished.fetch("email")?;
    ///         Ok(format!("connected as {}", email.unwrap_or_default()))
    ///     })
    ///     .on_error(|failure| match failure.inner {
    ///         Some(inner) => format!("{} failed in {}: {}", inner.pipeline, failure.step.unwrap_or_default(), failure.error),
    ///         None => failure.error.to_string(),
    ///     })
    ///     .build();
    ///
    /// // Run without a layer here (a detached state): starting enters
    /// // `welcome`, which moves on to `identity`, whose inner run sends the
    /// // user to the provider.
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use tower_pipeline_state::{LazyPipelineState, PipelineState};
    /// let state = PipelineState::detached();
    /// let mut connect = Request::post("/setup").body(String::new()).unwrap();
    /// connect.extensions_mut().insert(LazyPipelineState::from(state.clone()));
    /// let answer = setup.start(connect, "integration").await;
    /// assert!(answer.starts_with("redirect to https://idp.example/authorize?state="));
    /// # });
    /// ```
    pub async fn nest(
        &self,
        inner: &Pipeline<B, R>,
        kind: &str,
        request: Request<B>,
    ) -> Result<Nested<R>, FlowError> {
        let name = inner.name();
        if let Scope::Nested(outer) = &self.scope {
            return Err(FlowError::failed(format!(
                "pipeline `{name}` cannot run nested in `{outer}`, itself a nested run: runs nest one level deep"
            )));
        }
        self.running.enter_inner(name, None);
        let run = match runs(&self.state)?.remove(name) {
            Some(run) => {
                check_run(&inner.inner, &run.signature, &run.kind, run.step_index)?;
                run
            }
            None => self.begin(inner, kind)?,
        };
        let (parts, body) = request.into_parts();
        let flow = Flow {
            engine: inner.inner.clone(),
            state: self.state.clone(),
            running: self.running.clone(),
            parts: parts.clone(),
            index: usize::try_from(run.step_index).expect("checked against the step count"),
            kind: run.kind,
            user: self.user.clone(),
            reference: self.reference.clone(),
            scope: Scope::Nested(name.to_owned()),
            verified: self.verified.clone(),
            return_to: self.return_to.clone(),
        };
        match inner
            .inner
            .enter(flow, Request::from_parts(parts, body))
            .await
        {
            Ok(answer) => {
                self.running.leave_inner();
                Ok(Nested::Answer(answer))
            }
            Err(FlowError::NestedFinished) if past_last(&self.state, inner)? => {
                let finished = self.end(inner).await?;
                self.running.leave_inner();
                Ok(Nested::Finished(finished))
            }
            Err(error) => Err(error),
        }
    }

    /// Starts a run of `inner` in this step.
    fn begin(&self, inner: &Pipeline<B, R>, kind: &str) -> Result<Run, FlowError> {
        if !inner.flow_kinds().any(|known| known == kind) {
            return Err(FlowError::UnknownFlowKind(kind.to_owned()));
        }
        let run = Run::start(kind, inner.signature());
        let mut runs = runs(&self.state)?;
        runs.insert(inner.name().to_owned(), run.clone());
        self.state.set(NESTED, &runs)?;
        tracing::info!(
            pipeline = %inner.name(),
            flow = kind,
            nested_in = %self.engine.name(),
            outcome = "started",
            "nested pipeline run started"
        );
        Ok(run)
    }

    /// Removes the run of `inner` that went past its last step and writes
    /// the state now, at the loaded version: of two requests ending one
    /// run, only the first gets its data.
    async fn end(&self, inner: &Pipeline<B, R>) -> Result<Finished, FlowError> {
        let name = inner.name();
        let mut runs = runs(&self.state)?;
        let run = runs.remove(name).ok_or_else(|| missing(name))?;
        if runs.is_empty() {
            self.state.remove(NESTED)?;
        } else {
            self.state.set(NESTED, &runs)?;
        }
        match self.state.commit().await? {
            Committed::Yes => {}
            Committed::AlreadyGone | Committed::Changed => return Err(FlowError::Concurrent),
            Committed::TooLarge => {
                return Err(FlowError::failed(
                    "the flow's state is over the record size limit",
                ));
            }
        }
        tracing::info!(
            pipeline = %name,
            flow = %run.kind,
            nested_in = %self.engine.name(),
            outcome = "finished",
            "nested pipeline run finished"
        );
        Ok(Finished {
            pipeline: name.to_owned(),
            kind: run.kind,
            user: self.user.clone(),
            data: run.data,
            return_to: self.return_to.clone(),
            landing: Default::default(),
        })
    }
}

/// Whether `inner`'s run is past its last step.
fn past_last<B, R>(state: &PipelineState, inner: &Pipeline<B, R>) -> Result<bool, FlowError> {
    let index = fields::run(state, inner.name())?.step_index;
    Ok(usize::try_from(index).map_or(true, |index| index >= inner.inner.steps.len()))
}
