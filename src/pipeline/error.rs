//! [`FlowError`]: every way a flow can fail to go on, each with a kind for
//! logs and metrics.

use std::fmt;

use crate::{LoadError, StateError, store::StoreError};

/// Why a request did not continue its flow. The engine hands it to the
/// pipeline's error handler (see
/// [`PipelineBuilder::on_error`](super::PipelineBuilder::on_error)) inside a
/// [`Failure`](super::Failure), and logs it as a `tracing` event whose
/// `outcome` field is [`kind`](Self::kind).
///
/// Some outcomes end the flow (its record replaced by one that says how it
/// ended, which answers the flow's replays for the pipeline's replay
/// window, or with no window deleted and the cookie expired);
/// the others leave it exactly as it was, so a request that must not touch the
/// flow (another user's, a forged callback) cannot end it either. See
/// [`ends_flow`](Self::ends_flow).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlowError {
    /// No flow of this pipeline came with the request: no id, a malformed or
    /// forged one, or the flow of another pipeline. Nothing is changed.
    #[error("no sign-in or setup flow is in progress")]
    NoFlow,
    /// An id came, but its flow is gone: it expired after a period of
    /// inactivity or outlived its maximum lifetime, or it ended and its
    /// replay window passed. The stale cookie is removed (unless the
    /// pipeline would start the flow again but this request may not start
    /// one; see
    /// [`restart_on_expiry`](super::PipelineBuilder::restart_on_expiry)).
    #[error("the flow expired or has already ended; start again")]
    Expired,
    /// The flow was started by a pipeline with other steps (a deployment
    /// changed them since). The flow ends.
    #[error("the steps of this flow changed since it started; start again")]
    SignatureChanged,
    /// The request names a flow (in its link or its `state`) whose cookie
    /// the browser did not send: the flow was started in another browser (a
    /// callback planted in someone else's browser, which is how login CSRF
    /// works), or the browser no longer holds its cookie (it started more
    /// flows than the layer keeps, see
    /// [`PipelineStateLayer::max_flows`](crate::PipelineStateLayer::max_flows)),
    /// or a browser too old to send `Sec-Fetch-Site` withheld it on a
    /// cross-site POST (see [`CrossSite`](Self::CrossSite)). Nothing is
    /// changed.
    #[error("this flow was not started in this browser, or the browser no longer holds it")]
    OtherBrowser,
    /// A cross-site POST the pipeline does not accept: a callback (OpenID
    /// Connect `form_post`, SAML's POST binding) to a pipeline without
    /// [`cross_site_callbacks`](super::PipelineBuilder::cross_site_callbacks),
    /// whose flow cookie (`SameSite=Lax`) the browser did not send on such a
    /// request; or one to a step without the flow's nonce. Browsers mark
    /// such a request with `Sec-Fetch-Site: cross-site`.
    /// Nothing is changed.
    #[error("the request came as a cross-site POST, which this flow does not accept")]
    CrossSite,
    /// The user making this request is not the user who started the flow.
    /// Nothing is changed.
    #[error("this flow was started by another user")]
    UserMismatch,
    /// The flow's stored state is not a valid flow of this pipeline. The flow
    /// ends.
    #[error("the flow's state is corrupt: {0}")]
    Corrupt(Corruption),
    /// The flow kind is not one the pipeline knows: given to
    /// [`Pipeline::start`](super::Pipeline::start), or stored by a release
    /// that knew kinds this one does not. A stored one ends the flow.
    #[error("`{0}` is not a flow kind of this pipeline")]
    UnknownFlowKind(String),
    /// A callback step was entered without the flow's nonce (the OAuth
    /// `state` parameter is absent). Nothing is changed.
    #[error("the request does not carry the flow's state parameter")]
    NonceMissing,
    /// The request carries a nonce that is not the flow's: a forged or
    /// crossed callback. Nothing is changed.
    #[error("the request's state parameter does not belong to this flow")]
    NonceMismatch,
    /// The request carries a nonce, but the flow's nonce was already used: a
    /// replayed callback. Nothing is changed.
    #[error("the request's state parameter was already used")]
    NonceReplayed,
    /// A step or the finish hook ended the flow with this message (for
    /// example "the provider did not return a valid identity"). The flow
    /// ends.
    #[error("{0}")]
    Failed(String),
    /// A step or the finish hook ended the flow with this error (a sign-in
    /// provider's, say), which the error handler can read back typed
    /// ([`cause`](Self::cause)). The flow ends; its kind is `failed`.
    #[error("{0}")]
    FailedWith(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// Reading or writing the flow's state failed: a value that does not
    /// serialize, or a [`fetch`](super::Flow::fetch) with a type that does
    /// not match what was bound. The flow ends.
    #[error(transparent)]
    State(#[from] StateError),
    /// The request has no [`PipelineState`](crate::PipelineState): the route
    /// lacks [`PipelineStateLayer`](crate::PipelineStateLayer).
    #[error("no pipeline state in the request: add PipelineStateLayer to the route")]
    MissingLayer,
    /// The store failed or did not answer in time (loading the flow,
    /// claiming it before the finish hook, or writing a nested run's end),
    /// or the flow was written by a newer release. Answer `503`. A load's
    /// failure changed nothing. For a write during the request (spending
    /// the nonce, the claim) the source is the
    /// [`StoreError`](crate::StoreError):
    /// [`nothing_written`](crate::StoreError::nothing_written) says the
    /// write never left; otherwise it may have landed ("not confirmed"),
    /// as with [`durability`](crate::PipelineStateLayer::durability), where
    /// a write that replicas did not confirm in time is on the primary all
    /// the same, so a claim before the finish hook that was not confirmed
    /// has ended the flow without running the hook (the person starts
    /// over).
    #[error("the flow's store is unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// Another request of this flow got there first: it finished the flow, or
    /// changed it while this request was about to finish it (or to end a
    /// nested run, see [`Flow::nest`](super::Flow::nest)). The finish hook
    /// did not run in this request (nor did the nested run end in it);
    /// nothing is changed.
    #[error("another request of this flow got there first")]
    Concurrent,
    /// What [`Flow::next`](super::Flow::next) returns when a step of a
    /// nested run (see [`Flow::nest`](super::Flow::nest)) moves past the
    /// inner pipeline's last step: a nested run has no finish hook to
    /// answer, so the step returns this as it got it (`flow.next().await`)
    /// and `nest` turns it into [`Nested::Finished`](super::Nested::Finished).
    /// It reaches an error handler only if a step returns it otherwise.
    /// Nothing is changed.
    #[error("the nested pipeline run went past its last step outside Flow::nest")]
    NestedFinished,
    /// The flow this request continues has ended, within the pipeline's
    /// replay window (see
    /// [`PipelineBuilder::replay_window`](super::PipelineBuilder::replay_window)):
    /// the person went Back, or a callback came again, after it finished,
    /// was cancelled or failed. Said only to the browser that ran the flow;
    /// a finished flow's replay is answered with a redirect instead when
    /// the pipeline can (see
    /// [`PipelineBuilder::on_redirect`](super::PipelineBuilder::on_redirect)).
    /// Nothing is changed.
    #[error("{}", match how {
        HowEnded::Finished => "this sign-in or setup has already finished",
        HowEnded::Cancelled => "this sign-in or setup was cancelled",
        _ => "this sign-in or setup has already ended",
    })]
    Ended {
        /// How it ended.
        how: HowEnded,
    },
    /// The request was made from a page rendered for another step than the
    /// one the flow is on (Back, then submit): it is not run, so an answer
    /// meant for one step never binds to another. Re-render `current`.
    /// Nothing is changed.
    #[error("this page is out of date: the flow has moved on to `{current}`")]
    StaleStep {
        /// The step the flow is on.
        current: String,
    },
    /// [`Pipeline::start`](super::Pipeline::start) was called by a request
    /// the browser marks as not a top-level navigation (a `fetch`, a
    /// prefetch, a frame: `Sec-Fetch-Mode` other than `navigate` or
    /// `Sec-Fetch-Dest` other than `document`), and the pipeline does not
    /// allow it ([`background_start`](super::PipelineBuilder::background_start)).
    /// No flow is started; nothing is changed.
    #[error("a flow starts only from a page the browser navigates to")]
    NotNavigation,
    /// The `return_to` given at start is not a path of this site (it must
    /// start with one `/`, hold no `\\`, control characters or spaces, and
    /// be at most 512 bytes). No flow is started.
    #[error("return_to must be a path of this site: {0}")]
    ReturnTo(String),
}

/// How a flow ended ([`FlowError::Ended`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "as")]
#[non_exhaustive]
pub enum HowEnded {
    /// It went through all its steps and its finish hook ran.
    Finished,
    /// A step cancelled it ([`Flow::cancel`](super::Flow::cancel)).
    Cancelled,
    /// A failure ended it.
    Failed {
        /// The failure's [`FlowError::kind`].
        kind: String,
    },
}

impl From<LoadError> for FlowError {
    fn from(error: LoadError) -> Self {
        Self::Unavailable(Box::new(error))
    }
}

impl From<StoreError> for FlowError {
    fn from(error: StoreError) -> Self {
        Self::Unavailable(Box::new(error))
    }
}

impl FlowError {
    /// A failure with a message, to end the flow from a step:
    /// `return Err(FlowError::failed("the provider refused the sign-in"))`.
    ///
    /// ```
    /// use tower_pipeline_state::pipeline::FlowError;
    ///
    /// let error = FlowError::failed("cancelled");
    /// assert_eq!(error.kind(), "failed");
    /// assert_eq!(error.to_string(), "cancelled");
    /// ```
    pub fn failed(message: impl fmt::Display) -> Self {
        Self::Failed(message.to_string())
    }

    /// A failure carrying `error`, to end the flow from a step with a typed
    /// error the error handler reads back with [`cause`](Self::cause).
    ///
    /// ```
    /// use tower_pipeline_state::pipeline::FlowError;
    ///
    /// let error = FlowError::failed_with(std::fmt::Error);
    /// assert_eq!(error.kind(), "failed");
    /// assert!(error.cause::<std::fmt::Error>().is_some());
    /// ```
    pub fn failed_with(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::FailedWith(Box::new(error))
    }

    /// The error a step failed with ([`failed_with`](Self::failed_with)),
    /// if it is an `E`.
    ///
    /// ```
    /// use tower_pipeline_state::pipeline::FlowError;
    ///
    /// assert!(FlowError::failed("text").cause::<std::fmt::Error>().is_none());
    /// ```
    pub fn cause<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match self {
            Self::FailedWith(error) => error.downcast_ref::<E>(),
            _ => None,
        }
    }

    /// A short, stable name for the outcome, as logged in the `outcome` field
    /// of the engine's `tracing` events: `no_flow`, `expired`,
    /// `other_browser`, `cross_site`, `signature_changed`, `user_mismatch`,
    /// `corrupt`, `unknown_flow_kind`,
    /// `nonce_missing`, `nonce_mismatch`, `nonce_replayed`, `failed`,
    /// `state`, `missing_layer`, `unavailable`, `concurrent`,
    /// `nested_finished`, `ended`, `stale_step`, `not_navigation`,
    /// `return_to`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NoFlow => "no_flow",
            Self::Expired => "expired",
            Self::OtherBrowser => "other_browser",
            Self::CrossSite => "cross_site",
            Self::SignatureChanged => "signature_changed",
            Self::UserMismatch => "user_mismatch",
            Self::Corrupt(_) => "corrupt",
            Self::UnknownFlowKind(_) => "unknown_flow_kind",
            Self::NonceMissing => "nonce_missing",
            Self::NonceMismatch => "nonce_mismatch",
            Self::NonceReplayed => "nonce_replayed",
            Self::Failed(_) | Self::FailedWith(_) => "failed",
            Self::State(_) => "state",
            Self::MissingLayer => "missing_layer",
            Self::Unavailable(_) => "unavailable",
            Self::Concurrent => "concurrent",
            Self::NestedFinished => "nested_finished",
            Self::Ended { .. } => "ended",
            Self::StaleStep { .. } => "stale_step",
            Self::NotNavigation => "not_navigation",
            Self::ReturnTo(_) => "return_to",
        }
    }

    /// Whether the engine clears the flow for this outcome. The outcomes a
    /// third party can provoke with a flow that is not theirs (another user,
    /// a forged or replayed callback) leave it alone; so do the ones with no
    /// flow to clear.
    pub fn ends_flow(&self) -> bool {
        match self {
            Self::NoFlow
            | Self::OtherBrowser
            | Self::CrossSite
            | Self::UserMismatch
            | Self::NonceMissing
            | Self::NonceMismatch
            | Self::NonceReplayed
            | Self::MissingLayer
            | Self::Unavailable(_)
            | Self::Concurrent
            | Self::NestedFinished
            | Self::Ended { .. }
            | Self::StaleStep { .. }
            | Self::NotNavigation
            | Self::ReturnTo(_) => false,
            Self::Expired
            | Self::SignatureChanged
            | Self::Corrupt(_)
            | Self::UnknownFlowKind(_)
            | Self::Failed(_)
            | Self::FailedWith(_)
            | Self::State(_) => true,
        }
    }
}

/// What is wrong with a stored flow ([`FlowError::Corrupt`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Corruption {
    /// The flow's fields are missing or of the wrong type.
    Fields(String),
    /// The stored step index is past the end of the pipeline.
    StepOutOfBounds {
        /// The stored index.
        index: u64,
        /// How many steps the pipeline has.
        steps: usize,
    },
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fields(detail) => write!(f, "its fields do not decode: {detail}"),
            Self::StepOutOfBounds { index, steps } => write!(
                f,
                "step index {index} is past the end of a pipeline of {steps} steps"
            ),
        }
    }
}
