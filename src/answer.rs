//! The layer's own answers (the store unavailable, a write not confirmed, a
//! conflict, a state too large) and the hook an application sets to render
//! them as its own pages.

use std::{fmt, sync::Arc};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header::CONTENT_TYPE};

/// Why the layer answered by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LayerErrorKind {
    /// The flow could not be loaded: the store failed, did not answer within
    /// `store_timeout`, or holds a record of a newer format. `503`; the
    /// handler did not run.
    Unavailable,
    /// The write after the handler was not confirmed (it may still have
    /// been applied). `503` instead of the handler's response.
    NotConfirmed,
    /// A concurrent request got there first; nothing was saved. The
    /// configured conflict status (default `409`) instead of the handler's
    /// response.
    Conflict,
    /// The state is over `max_record_size`; nothing was saved. `500`
    /// instead of the handler's response.
    TooLarge,
}

impl LayerErrorKind {
    /// A short, stable name for logs and metrics: `unavailable`,
    /// `not_confirmed`, `conflict` or `too_large`.
    ///
    /// ```
    /// use tower_pipeline_state::LayerErrorKind;
    ///
    /// assert_eq!(LayerErrorKind::NotConfirmed.as_str(), "not_confirmed");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unavailable => "unavailable",
            Self::NotConfirmed => "not_confirmed",
            Self::Conflict => "conflict",
            Self::TooLarge => "too_large",
        }
    }
}

/// An answer of the layer's own, as the error hook
/// ([`PipelineStateLayer::on_error`](crate::PipelineStateLayer::on_error))
/// gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerError {
    kind: LayerErrorKind,
    status: StatusCode,
}

impl LayerError {
    pub(crate) fn new(kind: LayerErrorKind, conflict_status: StatusCode) -> Self {
        let status = match kind {
            LayerErrorKind::Unavailable | LayerErrorKind::NotConfirmed => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            LayerErrorKind::Conflict => conflict_status,
            LayerErrorKind::TooLarge => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self { kind, status }
    }

    pub(crate) fn unavailable() -> Self {
        Self {
            kind: LayerErrorKind::Unavailable,
            status: StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Why the layer answered.
    pub fn kind(&self) -> LayerErrorKind {
        self.kind
    }

    /// The status the answer must have: a page of the application's own
    /// should keep it (a `2xx` here would say "saved" when nothing was).
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The layer's own short plain-text message for it.
    pub fn message(&self) -> &'static str {
        match self.kind {
            LayerErrorKind::Unavailable => "pipeline state store unavailable\n",
            LayerErrorKind::NotConfirmed => {
                "pipeline state store unavailable; the changes may not have been saved\n"
            }
            LayerErrorKind::Conflict => {
                "the flow was changed by a concurrent request; nothing was saved, try again\n"
            }
            LayerErrorKind::TooLarge => "pipeline state too large; nothing was saved\n",
        }
    }

    /// The layer's answer when no hook is set: the status and the message
    /// as plain text.
    pub fn plain_response(&self) -> Response<Bytes> {
        let mut response = Response::new(Bytes::from_static(self.message().as_bytes()));
        *response.status_mut() = self.status;
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}

impl fmt::Display for LayerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message().trim_end())
    }
}

/// Renders one of the layer's answers.
type Render = dyn Fn(&LayerError) -> Response<Bytes> + Send + Sync;

/// The application's renderer of the layer's answers.
#[derive(Clone)]
pub(crate) struct ErrorHook(Arc<Render>);

impl ErrorHook {
    pub(crate) fn new<F, T>(render: F) -> Self
    where
        F: Fn(&LayerError) -> Response<T> + Send + Sync + 'static,
        T: Into<Bytes>,
    {
        Self(Arc::new(move |error| render(error).map(Into::into)))
    }
}

impl fmt::Debug for ErrorHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ErrorHook(..)")
    }
}

/// Renders `kind` through `hook`, or as plain text without one.
pub(crate) fn render(
    hook: Option<&ErrorHook>,
    kind: LayerErrorKind,
    conflict_status: StatusCode,
) -> Response<Bytes> {
    let error = LayerError::new(kind, conflict_status);
    match hook {
        Some(hook) => (hook.0)(&error),
        None => error.plain_response(),
    }
}
