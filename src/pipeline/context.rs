//! [`Flow`]: what a step gets besides the request: the flow's kind, user and
//! data (`bind` / `fetch`), its nonce, and the ways to move on (`advance`,
//! `next`).

use std::fmt;

use http::{
    Method, Request,
    header::{CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING},
    request::Parts,
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

use super::{
    FlowError, Nonce, Pipeline,
    fields::{DATA, NESTED, NONCE, STEP_INDEX},
    lifecycle, nested,
    running::Running,
    verify::Namespace,
};
use crate::{PipelineState, StateError};

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
    pub(crate) pipeline: Pipeline<B, R>,
    pub(crate) state: PipelineState,
    /// Which step this request is running, for failure reports.
    pub(crate) running: Running,
    /// The request that entered the flow, without its body: the base of the
    /// request [`next`](Flow::next) hands to the following step.
    pub(crate) parts: Parts,
    pub(crate) index: usize,
    pub(crate) kind: String,
    pub(crate) user: Option<String>,
    /// Whose step index, nonce and data this context reads and changes: the
    /// outer flow's, or a nested run's.
    pub(crate) scope: Namespace,
    /// Whose nonce this request brought back (and consumed), if any.
    pub(crate) verified: Option<Namespace>,
}

impl<B, R> Flow<B, R> {
    /// The pipeline's name (in a nested run, the inner pipeline's).
    pub fn pipeline(&self) -> &str {
        self.pipeline.name()
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
        &self.pipeline.inner.steps[self.index].name
    }

    /// Whether this request brought back the flow's nonce (checked in
    /// constant time and consumed before any step ran). In a nested run: the
    /// run's own nonce; the outer flow's does not count, nor the other way
    /// round.
    pub fn nonce_verified(&self) -> bool {
        self.verified.as_ref() == Some(&self.scope)
    }

    /// The flow's nonce, to send out as the OAuth `state` parameter (or in
    /// any redirect that must come back to this flow). Made when the flow
    /// started; [`FlowError::NonceReplayed`] once a callback consumed it.
    /// In a nested run, the run's own nonce.
    pub fn nonce(&self) -> Result<Nonce, FlowError> {
        let nonce = match &self.scope {
            Namespace::Outer => self.state.get::<String>(NONCE)?,
            Namespace::Nested(name) => nested::run(&self.state, name)?.nonce,
        };
        nonce
            .map(Nonce::from_stored)
            .ok_or(FlowError::NonceReplayed)
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
            Namespace::Outer => Ok(self.state.get(DATA)?.unwrap_or_default()),
            Namespace::Nested(name) => Ok(nested::run(&self.state, name)?.data),
        }
    }

    fn set_data(&self, data: Map<String, Value>) -> Result<(), FlowError> {
        match &self.scope {
            Namespace::Outer => Ok(self.state.set(DATA, &data)?),
            Namespace::Nested(name) => nested::change_run(&self.state, name, |run| run.data = data),
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
            Namespace::Outer => {
                self.state.set(STEP_INDEX, &next)?;
                if self.state.contains(NESTED) {
                    self.state.remove(NESTED)?;
                }
                Ok(())
            }
            Namespace::Nested(name) => {
                let next = u64::try_from(next).expect("a step index fits in 64 bits");
                nested::change_run(&self.state, name, |run| run.step_index = next)
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
        let mut parts = self.parts.clone();
        parts.method = Method::GET;
        for header in [CONTENT_TYPE, CONTENT_LENGTH, TRANSFER_ENCODING] {
            parts.headers.remove(header);
        }
        let request = Request::from_parts(parts, B::default());
        let flow = Flow {
            index: self.index + 1,
            ..self
        };
        lifecycle::enter(flow, request).await
    }
}

impl<B, R> fmt::Debug for Flow<B, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flow")
            .field("pipeline", &self.pipeline.name())
            .field("kind", &self.kind)
            .field("user", &self.user)
            .field("step_index", &self.index)
            .field("nonce_verified", &self.nonce_verified())
            .finish_non_exhaustive()
    }
}

/// Reads `key` from a flow's data as `T`.
pub(crate) fn decode_bound<T: DeserializeOwned>(
    data: &Map<String, Value>,
    key: &str,
) -> Result<Option<T>, FlowError> {
    data.get(key)
        .map(|value| {
            T::deserialize(value).map_err(|source| {
                FlowError::State(StateError::Field {
                    field: format!("{DATA}.{key}"),
                    source,
                })
            })
        })
        .transpose()
}
