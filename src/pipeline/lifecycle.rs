//! The lifecycle: start a flow, dispatch a request to its current step,
//! finish, fail. Every outcome that is not a step's own answer goes through
//! [`Pipeline::fail`], which logs it with its kind and asks the application
//! for the response.

use bytes::Bytes;
use http::{Method, Request, request::Parts};
use http_body::Body;
use serde_json::Value;
use tracing::{Instrument, Level};

use super::{
    Corruption, Failure, Flow, FlowError, HowEnded, InnerStep, Pipeline,
    check::check_run,
    context::{Engine, entering},
    ended::{end_flow, is_spent},
    fields::{Ended, PIPELINE, Stored},
    funnel,
    presented::{self, Presented},
    running::Running,
    scope::Scope,
    start::check_return_to,
    verify::verify_nonce,
};
use crate::{
    LazyPipelineState, PipelineState, Status,
    backend::{Committed, Lifetime, unix_now},
    cookies::CookieSlot,
    store::StoreError,
};

/// Why a flow was refused, and its kind when known.
type Refused = (FlowError, Option<String>);

impl<B, R> Pipeline<B, R>
where
    B: Body + From<Bytes> + Default + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    R: Send + 'static,
{
    /// Runs the step that the request's flow is on, after checking the flow:
    /// the browser holds it, it belongs to this pipeline, was started by the
    /// user making the request, has this pipeline's signature, a known kind
    /// and a step index in bounds. A request carrying the nonce parameter
    /// (see [`PipelineBuilder::nonce_param`](super::PipelineBuilder::nonce_param),
    /// in the query or, for a form POST, in the form) must bring the flow's
    /// live nonce, or that of a run nested in it (see [`Flow::nest`]), which
    /// is then consumed. A flow whose index is past its last step is
    /// finished.
    ///
    /// The flow is the one the request names: by the reference in its
    /// `state` (`<reference>.<nonce>`, as [`Flow::callback_state`] writes
    /// it) or in its link ([`Flow::link`]); a request that names none
    /// continues the browser's newest flow. It is found through the flow's
    /// own cookie, so a request from a browser that did not start the flow
    /// finds nothing ([`FlowError::OtherBrowser`]).
    ///
    /// Failed checks answer through the error handler. Those that a third
    /// party could provoke (another browser or user, a bad or replayed
    /// nonce) leave the flow exactly as it was; so does a step that fails
    /// with such an outcome.
    pub async fn dispatch(&self, request: Request<B>) -> R {
        // One span per request of a flow, so a trace shows the pipeline,
        // the flow's kind and reference, the step and the outcome.
        let span = tracing::info_span!(
            "pipeline.dispatch",
            pipeline = %self.inner.name,
            flow = tracing::field::Empty,
            reference = tracing::field::Empty,
            step = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        self.dispatch_in(request).instrument(span).await
    }

    async fn dispatch_in(&self, request: Request<B>) -> R {
        let Some(lazy) = request.extensions().get::<LazyPipelineState>().cloned() else {
            return self.fail(None, FlowError::MissingLayer, None, None);
        };
        let (parts, body) = request.into_parts();
        let (presented, body) = match presented::find(&parts, body, self.params()).await {
            Ok(found) => found,
            Err(error) => return self.fail(None, error, None, None),
        };
        let lifetimes = self.inner.lifetimes;
        let selected = lazy
            .flow(
                &parts.headers,
                presented.reference.as_ref(),
                self.inner.cross_site,
                |ticket| Lifetime {
                    idle: lifetimes.idle,
                    deadline: ticket.and_then(|ticket| ticket.deadline),
                },
            )
            .await;
        let state = match selected {
            Ok(Some(state)) => state,
            Ok(None) => return self.fail(None, self.not_held(&parts, &presented), None, None),
            Err(error) => return self.fail(None, error.into(), None, None),
        };
        if let Some(reference) = state.flow_reference() {
            tracing::Span::current().record("reference", reference.as_str());
        }
        let stored = match self.load(&state, &parts) {
            Ok(loaded) => loaded,
            Err((FlowError::Expired, _)) => return self.expired(&lazy, &state, parts).await,
            Err((error, kind)) => {
                let clear = error.ends_flow().then_some(&state);
                return self.fail(clear, error, kind, None);
            }
        };
        if let Some(ended) = stored.ended.clone() {
            return self.answer_ended(stored, ended, presented.nonce.as_deref());
        }
        let kind = stored.kind.clone();
        tracing::Span::current().record("flow", funnel::kind_label(&self.inner.kinds, Some(&kind)));
        if presented.nonce.is_none()
            && presented::is_cross_site_write(&parts.method, &parts.headers)
        {
            // Only a callback, which brings the nonce back, may come from
            // another site.
            return self.fail(None, FlowError::CrossSite, Some(kind), None);
        }
        if let Some(marker) = presented.step
            && marker != stored.step_index
            && parts.method != Method::GET
            && parts.method != Method::HEAD
        {
            // A page made for another step (Back, then submit): its answer
            // must not bind to the step the flow is on now. A GET just
            // shows the current step.
            let current = self.step_name(stored.step_index);
            let error = FlowError::StaleStep { current };
            return self.fail_with(Fate::Leave, error, Some(kind), None, None, stored.return_to);
        }
        // A request that brings a nonce back has it checked and consumed.
        let brought = presented.nonce.as_deref();
        let checked = brought.map(|nonce| verify_nonce(&state, &stored, nonce));
        let verified = match checked.transpose() {
            Ok(verified) => verified,
            // Nonce failures never end the flow (and nothing was consumed).
            Err(error) => return self.fail(None, error, Some(kind), None),
        };
        let index = usize::try_from(stored.step_index).expect("checked against the step count");
        if verified == Some(Scope::Outer)
            && presented::is_cross_site_write(&parts.method, &parts.headers)
            && !self
                .inner
                .steps
                .get(index)
                .is_some_and(|step| step.callback)
        {
            // A cross-site POST brings a nonce to a step that is no
            // callback: refused, the nonce left unspent. (A nested run's
            // nonce is checked against its own step when it is entered.)
            return self.refuse(&state, FlowError::CrossSite, kind);
        }
        let to_callback = match &verified {
            Some(Scope::Outer) => self
                .inner
                .steps
                .get(index)
                .is_some_and(|step| step.callback),
            // A run nested in the step the flow is on, whose own callback
            // step only `nest` can enter (a callback step nests nothing).
            Some(Scope::Nested(_)) => !self
                .inner
                .steps
                .get(index)
                .is_some_and(|step| step.callback),
            None => false,
        };
        if to_callback && let Err(error) = spend_nonce(&state).await {
            // The other of two requests with one nonce spent it first: this
            // one ends nothing, runs no step and writes nothing.
            return self.refuse(&state, error, kind);
        }
        let running = Running::default();
        let flow = self.flow(&state, &running, parts.clone(), index, stored, verified);
        let result = self
            .inner
            .enter(flow, Request::from_parts(parts, body))
            .await;
        self.settle(&state, &running, Some(kind), true, result)
    }

    /// Where this pipeline looks for a request's reference and nonce; a
    /// form is read only by a pipeline that takes callbacks.
    fn params(&self) -> presented::Params<'_> {
        let callbacks = self.inner.cross_site || self.inner.steps.iter().any(|step| step.callback);
        presented::Params {
            nonce: &self.inner.nonce_param,
            reference: &self.inner.reference_param,
            form_limit: callbacks.then_some(self.inner.form_limit),
        }
    }

    /// Why a request found no flow: it named none, or names one whose cookie
    /// the browser did not send: withheld on a cross-site POST (as the
    /// browser marks it) to a pipeline whose cookies are `SameSite=Lax`, or
    /// never there (another browser's flow).
    fn not_held(&self, parts: &Parts, presented: &Presented) -> FlowError {
        match presented.reference {
            None => FlowError::NoFlow,
            Some(_)
                if !self.inner.cross_site
                    && presented::is_cross_site_write(&parts.method, &parts.headers) =>
            {
                FlowError::CrossSite
            }
            Some(_) => FlowError::OtherBrowser,
        }
    }
}

impl<B, R> Pipeline<B, R>
where
    B: Default + Send + 'static,
    R: Send + 'static,
{
    pub(super) fn flow(
        &self,
        state: &PipelineState,
        running: &Running,
        parts: Parts,
        index: usize,
        stored: Stored,
        verified: Option<Scope>,
    ) -> Flow<B, R> {
        Flow {
            engine: self.inner.clone(),
            state: state.clone(),
            running: running.clone(),
            parts,
            index,
            kind: stored.kind,
            user: stored.uid,
            reference: state.flow_reference(),
            scope: Scope::Outer,
            verified,
            return_to: stored.return_to,
        }
    }

    /// The name of step `index` (past the last: the finish).
    fn step_name(&self, index: u64) -> String {
        usize::try_from(index)
            .ok()
            .and_then(|index| self.inner.steps.get(index))
            .map_or_else(|| "finish".to_owned(), |step| step.name.clone())
    }

    /// Reads and checks the stored flow: a flow past its deadline reads as
    /// expired.
    fn load(&self, state: &PipelineState, parts: &Parts) -> Result<Stored, Refused> {
        match state.status() {
            Status::New => return Err((FlowError::NoFlow, None)),
            Status::Expired => return Err((FlowError::Expired, None)),
            Status::Loaded => {}
        }
        let ours = state
            .get::<Value>(PIPELINE)
            .ok()
            .flatten()
            .is_some_and(|name| name.as_str() == Some(self.inner.name.as_str()));
        if !ours {
            // Another pipeline's flow (or not a flow at all): not ours to end.
            return Err((FlowError::NoFlow, None));
        }
        let stored: Stored = state.read().map_err(|error| {
            (
                FlowError::Corrupt(Corruption::Fields(error.to_string())),
                None,
            )
        })?;
        let kind = Some(stored.kind.clone());
        // The user first: a request that is not the starter's must not be
        // able to end the flow by provoking any other outcome.
        if (self.inner.user)(parts) != stored.uid {
            return Err((FlowError::UserMismatch, kind));
        }
        if stored.ended.is_some() {
            // An ended flow runs no step: whether this release still has
            // its steps and kind does not change how it ended, and a replay
            // must not end it again (as failed, over a finished one).
            return Ok(stored);
        }
        if stored.deadline.is_some_and(|end| end <= unix_now()) {
            return Err((FlowError::Expired, kind));
        }
        match check_run(
            &self.inner,
            &stored.signature,
            &stored.kind,
            stored.step_index,
        ) {
            Ok(()) => Ok(stored),
            Err(error) => Err((error, kind)),
        }
    }

    /// The response for a step's result: its own answer, or the error
    /// handler's. An outcome that ends the flow ends it (its record answers
    /// its replays for the replay window); one that must not move the flow
    /// (for a flow that was loaded, `revert`) puts back the state as
    /// loaded, undoing what the request did so far (but for a nonce spent
    /// before the step). A start that fails keeps nothing.
    pub(super) fn settle(
        &self,
        state: &PipelineState,
        running: &Running,
        kind: Option<String>,
        revert: bool,
        result: Result<R, FlowError>,
    ) -> R {
        let step = running
            .step()
            .and_then(|index| self.inner.steps.get(index))
            .map(|step| step.name.clone());
        let flow = funnel::kind_label(&self.inner.kinds, kind.as_deref());
        let (outcome, took) = match &result {
            Ok(_) => ("answered", running.elapsed()),
            Err(error) => (error.kind(), running.elapsed()),
        };
        // No step running once the steps ran: the finish hook was.
        let at = step.as_deref().or(Some("finish"));
        funnel::request(&self.inner.name, flow, at, outcome, Some(took));
        // The funnel's labels: `finish` for the finish hook.
        tracing::Span::current().record("step", at);
        let error = match result {
            Ok(response) => {
                tracing::Span::current().record("outcome", "answered");
                return response;
            }
            Err(error) => error,
        };
        let inner = running.inner();
        let return_to = state
            .read::<Stored>()
            .ok()
            .and_then(|stored| stored.return_to);
        let fate = match revert {
            true if !error.ends_flow() && !state.is_cleared() => {
                if let Err(restore) = state.revert() {
                    tracing::error!(pipeline = %self.inner.name, error = %restore, "could not put the flow back as it was");
                }
                Fate::Leave
            }
            true => Fate::End(state),
            false => Fate::Discard(state),
        };
        self.fail_with(fate, error, kind, step, inner, return_to)
    }

    /// Refuses a request that must leave its flow as loaded: what it did so
    /// far (a nonce it consumed in memory) is undone, nothing is written.
    fn refuse(&self, state: &PipelineState, error: FlowError, kind: String) -> R {
        if let Err(restore) = state.revert() {
            tracing::error!(pipeline = %self.inner.name, error = %restore, "could not put the flow back as it was");
        }
        self.fail(None, error, Some(kind), None)
    }

    /// Logs `error` with its kind, ends the flow if `end` is given, and
    /// answers with the application's response.
    pub(super) fn fail(
        &self,
        end: Option<&PipelineState>,
        error: FlowError,
        kind: Option<String>,
        step: Option<String>,
    ) -> R {
        let fate = end.map_or(Fate::Leave, Fate::End);
        self.fail_with(fate, error, kind, step, None, None)
    }

    /// [`fail`](Self::fail), saying what becomes of the flow, the nested
    /// run's step the error came out of, if it did, and the flow's
    /// `return_to` for the error handler.
    pub(super) fn fail_with(
        &self,
        fate: Fate<'_>,
        error: FlowError,
        kind: Option<String>,
        step: Option<String>,
        inner: Option<InnerStep>,
        return_to: Option<String>,
    ) -> R {
        let flow = funnel::kind_label(&self.inner.kinds, kind.as_deref());
        if step.is_none() {
            // Refused before any step ran (a step's own failure was counted
            // with its step, by `settle`).
            funnel::request(&self.inner.name, flow, None, error.kind(), None);
        }
        let span = tracing::Span::current();
        span.record("flow", flow);
        // `-`, as the funnel says it, for a request refused before any step.
        span.record("step", step.as_deref().unwrap_or("-"));
        span.record("outcome", error.kind());
        // Kept even if the answer is a server error: an ended flow stays
        // ended. (Ending only fails on a finished request, which a running
        // handler never has.)
        let cleared = match fate {
            Fate::Leave => false,
            Fate::Discard(state) => state.clear_secured().is_ok(),
            Fate::End(state) => {
                let expired = matches!(error, FlowError::Expired);
                funnel::ended(
                    &self.inner.name,
                    flow,
                    if expired { "expired" } else { "failed" },
                );
                let how = HowEnded::Failed {
                    kind: error.kind().to_owned(),
                };
                end_flow(state, how, None, self.inner.lifetimes.replay).is_ok()
            }
        };
        log(
            &self.inner.name,
            &error,
            kind.as_deref(),
            step.as_deref(),
            inner.as_ref(),
            cleared,
        );
        (self.inner.on_error)(Failure {
            error,
            kind,
            step,
            inner,
            return_to,
        })
    }

    /// The answer for a flow whose record expired (or outlived its
    /// deadline): with [`restart_on_expiry`](super::PipelineBuilder::restart_on_expiry),
    /// a new flow of the same kind towards the same `return_to`, as its
    /// cookie says, entered at its first step (never a callback step: the
    /// request is entered as a `GET`, and the new flow has a new nonce);
    /// otherwise [`FlowError::Expired`], with the `return_to`. The expired
    /// flow's cookie is expired either way, but for a request that may not
    /// start a flow (cross-site, in the background) to a flow that would
    /// start again: that leaves it to the person's own navigation.
    async fn expired(&self, lazy: &LazyPipelineState, state: &PipelineState, parts: Parts) -> R {
        let ticket = match state.cookie_slot() {
            CookieSlot::Flow(cookie) => cookie.ticket,
            CookieSlot::Main => None,
        };
        let ticket = ticket.filter(|ticket| ticket.pipeline == self.inner.name);
        let kind = ticket.as_ref().map(|ticket| ticket.kind.clone());
        let return_to = ticket
            .as_ref()
            .and_then(|ticket| ticket.return_to.clone())
            .filter(|to| check_return_to(to).is_ok());
        let restartable = self.inner.restart_on_expiry
            && kind
                .as_ref()
                .is_some_and(|kind| self.inner.kinds.contains(kind));
        let restart = restartable && self.may_restart(&parts.headers).is_ok();
        if let (true, Some(kind)) = (restart, kind.as_deref()) {
            if let Err(error) = state.clear_secured() {
                tracing::error!(pipeline = %self.inner.name, %error, "could not end the expired flow");
            }
            tracing::info!(
                pipeline = %self.inner.name,
                flow = kind,
                outcome = "restarted",
                "pipeline flow expired and started again"
            );
            funnel::ended(&self.inner.name, kind, "expired");
            funnel::restarted(&self.inner.name, kind);
            let replacing = state.flow_reference();
            return self
                .open(lazy, entering(parts), kind, return_to, replacing.as_ref())
                .await;
        }
        // A flow that would start again, but not on this request (from
        // another site, or in the background), keeps its cookie: the
        // person's own navigation restarts it.
        let fate = if restartable {
            Fate::Leave
        } else {
            Fate::End(state)
        };
        self.fail_with(fate, FlowError::Expired, kind, None, None, return_to)
    }

    /// The answer for a request to an ended flow, within its replay window
    /// and from the browser that ran it: a finished flow's replay (its
    /// callback again, a refresh or a resubmit of its last step) is sent
    /// where the flow landed, when the pipeline can redirect; anything else
    /// gets [`FlowError::Ended`]. A `state` that is not the flow's last
    /// nonce is a forgery, as ever. Nothing is written.
    fn answer_ended(&self, stored: Stored, ended: Ended, presented: Option<&str>) -> R {
        let kind = Some(stored.kind.clone());
        if presented.is_some_and(|nonce| !is_spent(&stored, nonce)) {
            return self.fail_with(
                Fate::Leave,
                FlowError::NonceMismatch,
                kind,
                None,
                None,
                None,
            );
        }
        let location = ended.location.or(stored.return_to.clone());
        if let (HowEnded::Finished, Some(location), Some(redirect)) =
            (&ended.how, location, &self.inner.on_redirect)
        {
            tracing::info!(
                pipeline = %self.inner.name,
                flow = %stored.kind,
                outcome = "replay_answered",
                "a finished flow's replay was sent where the flow landed"
            );
            let flow = funnel::kind_label(&self.inner.kinds, Some(&stored.kind));
            funnel::replay_answered(&self.inner.name, flow);
            funnel::request(&self.inner.name, flow, None, "replay_answered", None);
            let span = tracing::Span::current();
            span.record("flow", flow);
            span.record("step", "-");
            span.record("outcome", "replay_answered");
            return redirect(&location);
        }
        let error = FlowError::Ended { how: ended.how };
        self.fail_with(Fate::Leave, error, kind, None, None, stored.return_to)
    }
}

/// What a failure does to the request's flow.
#[derive(Clone, Copy)]
pub(super) enum Fate<'s> {
    /// Nothing: it stays as loaded (or as the request put it back).
    Leave,
    /// A flow this request started: nothing of it is kept.
    Discard(&'s PipelineState),
    /// It ends, as failed: its record answers its replays for the replay
    /// window.
    End(&'s PipelineState),
}

/// Writes the state now, with the nonce the request brought consumed, at
/// the version the request loaded (one round trip before the step): of two
/// requests bringing one nonce (a callback delivered twice at once) only
/// one enters a step, so a provider's code is spent once, and the nonce
/// stays spent whatever the step then returns, since a step's failure puts
/// the flow back only as far as this write.
async fn spend_nonce(state: &PipelineState) -> Result<(), FlowError> {
    match state.commit().await? {
        Committed::Yes => Ok(()),
        Committed::AlreadyGone | Committed::Changed => Err(FlowError::Concurrent),
        // Only a field was removed: a record over the limit now was over
        // it when loaded, which the load refuses.
        Committed::TooLarge => Err(FlowError::failed(
            "the flow's state is over the record size limit",
        )),
    }
}

/// One `tracing` event per failed request, with the outcome's kind (and
/// the nested run's pipeline and step when the error came out of one).
fn log(
    pipeline: &str,
    error: &FlowError,
    kind: Option<&str>,
    step: Option<&str>,
    inner: Option<&InnerStep>,
    cleared: bool,
) {
    let outcome = error.kind();
    let inner_pipeline = inner.map(|inner| inner.pipeline.as_str());
    let inner_step = inner.and_then(|inner| inner.step.as_deref());
    // The level says who should look: what a person's click or a third
    // party provokes is `info` (a replay, Back, a foreign or forged
    // callback) or `debug` (no flow at all); `warn` is for an operator (the
    // store failing, a corrupt record); `error` for what risks data or
    // means the application is wired wrong.
    macro_rules! event {
        ($level:expr) => {
            tracing::event!(
                $level,
                pipeline, outcome, flow = kind, step, inner_pipeline, inner_step, cleared, error = %error,
                "pipeline flow did not continue"
            )
        };
    }
    match level(error) {
        Level::DEBUG => event!(Level::DEBUG),
        Level::INFO => event!(Level::INFO),
        Level::WARN => event!(Level::WARN),
        _ => event!(Level::ERROR),
    }
}

/// The level a failure is logged at (see [`log`]).
fn level(error: &FlowError) -> Level {
    match error {
        FlowError::NoFlow => Level::DEBUG,
        // A mid-request write (a nonce spent, a claim) sent and not
        // confirmed: data may be lost.
        FlowError::Unavailable(source)
            if source
                .downcast_ref::<StoreError>()
                .is_some_and(|error| !error.nothing_written()) =>
        {
            Level::ERROR
        }
        FlowError::Corrupt(_) | FlowError::Unavailable(_) => Level::WARN,
        FlowError::State(_) | FlowError::MissingLayer => Level::ERROR,
        _ => Level::INFO,
    }
}
