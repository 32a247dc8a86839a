//! [`Flow`]: what a step gets besides the request: the flow's kind, user and
//! data (`bind` / `fetch`), its nonce, and the ways to move on (`advance`,
//! `next`).

use std::{fmt, sync::Arc, time::Duration};

use http::{
    Method, Request,
    header::{CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING},
    request::Parts,
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

use super::{
    Finished, FlowError, HowEnded, Nonce,
    ended::end_flow,
    fields::{self, DATA, NESTED, NONCE, STEP_INDEX, decode_bound},
    funnel,
    running::Running,
    scope::Scope,
    step_future::StepFuture,
};
use crate::{PipelineState, StateError, cookies::Reference};

/// What a [`Flow`] needs of its pipeline, whatever it is: its name, its
/// steps' names, the parameter its links name a flow with, and entering a
/// step. A pipeline's definition is the one implementation; a `Flow` holds
/// it this way so that a step (which takes a `Flow`) and a pipeline (which
/// holds steps) do not name each other.
pub(crate) trait Engine<B, R>: Send + Sync {
    /// The pipeline's name.
    fn name(&self) -> &str;

    /// The name of step `index`.
    fn step_name(&self, index: usize) -> &str;

    /// The query parameter the application's links name a flow with.
    fn reference_param(&self) -> &str;

    /// Runs the step at `flow`'s index with `request`, or finishes the flow
    /// past its last step.
    fn enter(&self, flow: Flow<B, R>, request: Request<B>) -> StepFuture<R>;

    /// Runs the pipeline's finish hook.
    fn finish(&self, request: Request<B>, finished: Finished) -> StepFuture<R>;

    /// How long an ended flow of this pipeline answers its replays.
    fn replay_window(&self) -> Duration;

    /// `kind` as a metrics label: one this pipeline declared, or `unknown`.
    fn kind_label<'k>(&self, kind: &'k str) -> &'k str;
}

/// The context a step runs in: the flow's kind and user, its data, its
/// nonce, and the ways to move on.
///
/// Everything works in memory on the request's
/// [`PipelineState`](crate::PipelineState); the layer writes the result once
/// the response is ready. The flow's step index, nonce and data are separate
/// fields of the state: if another request of the same flow changed one of
/// the fields this request changes (two submissions of one step both move
/// the step index), this request's response is replaced by the layer's
/// conflict answer (409 by default) and nothing it did is kept.
///
/// A step of a pipeline run nested in another flow's step (see
/// [`nest`](Flow::nest)) gets a `Flow` of its own run: its step index and
/// name, pipeline, kind, nonce and data (`bind`, `fetch`, `advance`...) are
/// the nested run's, kept in one field of the outer flow's state, and its
/// user is the outer flow's. Two submissions of one inner step both change
/// that field, so the second gets the conflict answer too.
///
/// ```
/// # use tower_pipeline_state::pipeline::{Flow, FlowError};
/// # use http::Request;
/// async fn pick_org(request: Request<String>, flow: Flow<String, String>) -> Result<String, FlowError> {
///     flow.bind("org", "acme")?;
///     let org: Option<String> = flow.fetch("org")?;
///     assert_eq!(org.as_deref(), Some("acme"));
///     flow.next().await
/// }
/// ```
pub struct Flow<B, R> {
    /// The pipeline whose step runs (in a nested run, the inner one).
    pub(crate) engine: Arc<dyn Engine<B, R>>,
    pub(crate) state: PipelineState,
    /// Which step this request is running, for failure reports.
    pub(crate) running: Running,
    /// The request that entered the flow, without its body: the base of the
    /// request [`next`](Flow::next) hands to the following step.
    pub(crate) parts: Parts,
    pub(crate) index: usize,
    pub(crate) kind: String,
    pub(crate) user: Option<String>,
    /// The flow's reference (its cookie's name); `None` on a detached
    /// state.
    pub(crate) reference: Option<Reference>,
    /// Whose step index, nonce and data this context reads and changes: the
    /// outer flow's, or a nested run's.
    pub(crate) scope: Scope,
    /// Whose nonce this request brought back (and consumed), if any.
    pub(crate) verified: Option<Scope>,
    /// Where the application sends the person once the flow is done.
    pub(crate) return_to: Option<String>,
}

impl<B, R> Flow<B, R> {
    /// The pipeline's name (in a nested run, the inner pipeline's).
    pub fn pipeline(&self) -> &str {
        self.engine.name()
    }

    /// The flow kind the flow was started with.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The user who started the flow (and, as the engine checked, is making
    /// this request); `None` when anonymous.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The index of the step running, from 0.
    pub fn step_index(&self) -> usize {
        self.index
    }

    /// The name of the step running.
    pub fn step_name(&self) -> &str {
        self.engine.step_name(self.index)
    }

    /// Whether this request brought back the flow's nonce (checked in
    /// constant time and consumed before any step ran). In a nested run: the
    /// run's own nonce; the outer flow's does not count, nor the other way
    /// round.
    pub fn nonce_verified(&self) -> bool {
        self.verified.as_ref() == Some(&self.scope)
    }

    /// The flow's nonce. Send [`callback_state`](Self::callback_state) out as
    /// the provider's `state`: it carries this nonce and names the flow.
    /// Made when the flow started; [`FlowError::NonceReplayed`] once a
    /// callback consumed it.
    /// In a nested run, the run's own nonce.
    pub fn nonce(&self) -> Result<Nonce, FlowError> {
        let nonce = match &self.scope {
            Scope::Outer => self.state.get::<String>(NONCE)?,
            Scope::Nested(name) => fields::run(&self.state, name)?.nonce,
        };
        nonce
            .map(Nonce::from_stored)
            .ok_or(FlowError::NonceReplayed)
    }

    /// The flow's reference: what names this flow among the browser's
    /// flows, in the application's links ([`link`](Self::link)) and inside
    /// [`callback_state`](Self::callback_state). It is not the flow's id
    /// (which never leaves its cookie) and not secret: a request naming it
    /// from a browser that does not hold the flow's cookie finds nothing.
    /// `None` only for a flow on a detached state (unit tests), which has no
    /// cookie of its own.
    pub fn reference(&self) -> Option<&str> {
        self.reference.as_ref().map(Reference::as_str)
    }

    /// `path` with the flow's reference added as a query parameter (named
    /// by [`PipelineBuilder::reference_param`](super::PipelineBuilder::reference_param),
    /// default `flow`): the URL for the application's own links and form
    /// actions, so that each tab continues its own flow. `path` unchanged
    /// when the flow has no reference.
    ///
    /// ```
    /// # use tower_pipeline_state::pipeline::{Flow, FlowError};
    /// # use http::Request;
    /// async fn ask(_request: Request<String>, flow: Flow<String, String>) -> Result<String, FlowError> {
    ///     let action = flow.link("/wizard"); // "/wizard?flow=<reference>"
    ///     Ok(format!("<form method=post action='{action}'>...</form>"))
    /// }
    /// ```
    pub fn link(&self, path: &str) -> String {
        let Some(reference) = &self.reference else {
            return path.to_owned();
        };
        let separator = if path.contains('?') { '&' } else { '?' };
        let name: String =
            form_urlencoded::byte_serialize(self.engine.reference_param().as_bytes()).collect();
        // The step the flow is on as the page is made (after an `advance`,
        // the next one): a request from a page made for another step is
        // told apart.
        let step = self
            .state
            .get::<u64>(STEP_INDEX)
            .ok()
            .flatten()
            .unwrap_or(0);
        format!("{path}{separator}{name}={reference}.{step}")
    }

    /// Where the application meant to send the person once the flow is
    /// done, chosen at start
    /// ([`Pipeline::start_to`](super::Pipeline::start_to)); `None` when the
    /// flow was started without one.
    ///
    /// ```
    /// # use tower_pipeline_state::pipeline::{Flow, FlowError};
    /// # use http::Request;
    /// async fn done(_request: Request<String>, flow: Flow<String, String>) -> Result<String, FlowError> {
    ///     Ok(format!("303 See Other: {}", flow.return_to().unwrap_or("/")))
    /// }
    /// ```
    pub fn return_to(&self) -> Option<&str> {
        self.return_to.as_deref()
    }

    /// Ends the flow as cancelled: the person chose to stop. Its record is
    /// replaced by one that says so for the pipeline's replay window (see
    /// [`PipelineBuilder::replay_window`](super::PipelineBuilder::replay_window)),
    /// so Back to one of its pages answers [`FlowError::Ended`] with
    /// [`HowEnded::Cancelled`](super::HowEnded::Cancelled), not an error
    /// about another browser; the finish hook does not run. Answer with the
    /// page to show (the flow's [`return_to`](Self::return_to), say). The
    /// flow is ended even if the answer is a server error.
    ///
    /// ```
    /// # use tower_pipeline_state::pipeline::{Flow, FlowError};
    /// # use http::Request;
    /// async fn cancel(_request: Request<String>, flow: Flow<String, String>) -> Result<String, FlowError> {
    ///     flow.cancel()?;
    ///     Ok("The sign-in was cancelled.".to_owned())
    /// }
    /// ```
    pub fn cancel(&self) -> Result<(), FlowError> {
        end_flow(
            &self.state,
            HowEnded::Cancelled,
            None,
            self.engine.replay_window(),
        )?;
        tracing::info!(
            pipeline = %self.engine.name(),
            flow = %self.kind,
            outcome = "cancelled",
            "pipeline flow cancelled"
        );
        funnel::ended(
            self.engine.name(),
            self.engine.kind_label(&self.kind),
            "cancelled",
        );
        Ok(())
    }

    /// The value to send out as the provider's `state` (OAuth 2.0, OpenID
    /// Connect) or `RelayState` (SAML): `<reference>.<nonce>`. It names this
    /// flow among the browser's flows and carries the flow's [`Nonce`],
    /// which the callback must bring back once. URL-safe as it is.
    /// [`FlowError::NonceReplayed`] once a callback consumed the nonce.
    ///
    /// ```
    /// # use tower_pipeline_state::pipeline::{Flow, FlowError};
    /// # use http::Request;
    /// async fn redirect(_request: Request<String>, flow: Flow<String, String>) -> Result<String, FlowError> {
    ///     let state = flow.callback_state()?;
    ///     flow.advance()?;
    ///     Ok(format!("https://idp.example/authorize?client_id=app&state={state}"))
    /// }
    /// ```
    pub fn callback_state(&self) -> Result<String, FlowError> {
        let nonce = self.nonce()?;
        Ok(match &self.reference {
            Some(reference) => format!("{reference}.{}", nonce.as_str()),
            None => nonce.as_str().to_owned(),
        })
    }

    /// Binds `value` under `key` in the flow's data, for later steps and the
    /// finish hook.
    pub fn bind<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), FlowError> {
        let value = serde_json::to_value(value).map_err(StateError::Serialize)?;
        let mut data = self.data()?;
        data.insert(key.to_owned(), value);
        self.set_data(data)
    }

    /// Reads what was bound under `key` as `T`; `Ok(None)` when nothing was.
    pub fn fetch<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, FlowError> {
        decode_bound(&self.data()?, key)
    }

    /// Removes what was bound under `key`, returning whether anything was.
    pub fn unbind(&self, key: &str) -> Result<bool, FlowError> {
        let mut data = self.data()?;
        let removed = data.remove(key).is_some();
        if removed {
            self.set_data(data)?;
        }
        Ok(removed)
    }

    /// Everything bound so far.
    pub fn data(&self) -> Result<Map<String, Value>, FlowError> {
        match &self.scope {
            Scope::Outer => Ok(self.state.get(DATA)?.unwrap_or_default()),
            Scope::Nested(name) => Ok(fields::run(&self.state, name)?.data),
        }
    }

    fn set_data(&self, data: Map<String, Value>) -> Result<(), FlowError> {
        match &self.scope {
            Scope::Outer => Ok(self.state.set(DATA, &data)?),
            Scope::Nested(name) => fields::change_run(&self.state, name, |run| run.data = data),
        }
    }

    /// Moves the flow to the next step without running it: the flow's next
    /// request enters it. For a step that sends the user away (to an
    /// identity provider) or redirects to the flow's route after a form
    /// post. After the last step, the next request finishes the flow.
    /// Calling it twice in one step moves one step, not two.
    ///
    /// When the outer flow moves on, the runs nested in its step that did
    /// not finish are dropped (see [`nest`](Flow::nest)).
    pub fn advance(&self) -> Result<(), FlowError> {
        let next = self.index + 1;
        match &self.scope {
            Scope::Outer => {
                self.state.set(STEP_INDEX, &next)?;
                if self.state.contains(NESTED) {
                    self.state.remove(NESTED)?;
                }
                Ok(())
            }
            Scope::Nested(name) => {
                let next = u64::try_from(next).expect("a step index fits in 64 bits");
                fields::change_run(&self.state, name, |run| run.step_index = next)
            }
        }
    }
}

impl<B, R> Flow<B, R>
where
    B: Default + Send + 'static,
    R: Send + 'static,
{
    /// Moves the flow to the next step and runs it now, answering with its
    /// response; after the last step, runs the finish hook instead and
    /// clears the flow. In a nested run, after the last step, it returns
    /// [`FlowError::NestedFinished`], which the step returns as it got it
    /// and [`nest`](Flow::nest) turns into
    /// [`Nested::Finished`](super::Nested::Finished).
    ///
    /// The next step receives this request as a `GET` with an empty body
    /// (same URI, headers and extensions, less the body's headers): it is
    /// entered, not submitted to, so it should render.
    pub async fn next(self) -> Result<R, FlowError> {
        self.advance()?;
        let request = Request::from_parts(entering(self.parts.clone()), B::default());
        let engine = self.engine.clone();
        let flow = Flow {
            index: self.index + 1,
            ..self
        };
        engine.enter(flow, request).await
    }
}

impl<B, R> fmt::Debug for Flow<B, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flow")
            .field("pipeline", &self.engine.name())
            .field("kind", &self.kind)
            .field("user", &self.user)
            .field("step_index", &self.index)
            .field("reference", &self.reference)
            .field("nonce_verified", &self.nonce_verified())
            .finish_non_exhaustive()
    }
}

/// A request as a step is entered rather than submitted to (by
/// [`Flow::next`], or by [`Pipeline::start`](super::Pipeline::start)): a
/// `GET`, with the same URI, headers and extensions, less the body's
/// headers (the body itself is empty).
pub(crate) fn entering(mut parts: Parts) -> Parts {
    parts.method = Method::GET;
    for header in [CONTENT_TYPE, CONTENT_LENGTH, TRANSFER_ENCODING] {
        parts.headers.remove(header);
    }
    parts
}
