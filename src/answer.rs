//! The layer's own answers (the store unavailable with nothing written, a
//! write not confirmed, a conflict, a state too large) and the hook an
//! application sets to render them as its own pages.
//!
//! The default answers are plain text without a link: a "try again" link
//! would turn a failed POST into a GET its route may refuse. An
//! application that renders pages through the hook should offer a form
//! that sends the same request again (the SSO demo does).

use std::{fmt, sync::Arc};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header::CONTENT_TYPE};

/// An answer of the layer's own, given instead of the handler's (or before
/// it ran), as the error hook
/// ([`PipelineStateLayer::on_error`](crate::PipelineStateLayer::on_error))
/// gets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LayerError {
    /// Unavailable, and nothing was written: the flow could not be loaded
    /// (the store failed, did not answer within `store_timeout`, or holds a
    /// record of a newer format; the handler did not run), or the write
    /// after the handler was never sent (the store could not be reached:
    /// connection refused, no connection from the pool; see
    /// [`StoreError::nothing_written`](crate::StoreError::nothing_written)).
    /// `503`. Sending the same request again is safe.
    Unavailable,
    /// The write after the handler was sent, and its outcome is unknown (it
    /// timed out, or its connection dropped while it was in flight): it may
    /// still have been applied, and the next load shows the truth. `503`
    /// instead of the handler's response.
    NotConfirmed,
    /// A concurrent request got there first; nothing was saved. `status` is
    /// the layer's conflict status (default `409`), instead of the
    /// handler's response.
    Conflict {
        /// The configured conflict status.
        status: StatusCode,
    },
    /// The state is over `max_record_size`; nothing was saved. `500`
    /// instead of the handler's response.
    TooLarge,
}

impl LayerError {
    /// A short, stable name for logs and metrics: `unavailable`,
    /// `not_confirmed`, `conflict` or `too_large`.
    ///
    /// ```
    /// use tower_pipeline_state::LayerError;
    ///
    /// assert_eq!(LayerError::NotConfirmed.kind(), "not_confirmed");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unavailable => "unavailable",
            Self::NotConfirmed => "not_confirmed",
            Self::Conflict { .. } => "conflict",
            Self::TooLarge => "too_large",
        }
    }

    /// The status the answer must have: a page of the application's own
    /// should keep it (a `2xx` here would say "saved" when nothing was).
    ///
    /// ```
    /// use http::StatusCode;
    /// use tower_pipeline_state::LayerError;
    ///
    /// assert_eq!(LayerError::Unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
    /// ```
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unavailable | Self::NotConfirmed => StatusCode::SERVICE_UNAVAILABLE,
            Self::Conflict { status } => *status,
            Self::TooLarge => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The layer's own short plain-text message for it. It carries no
    /// link: a link would turn a form's `POST` into a `GET` the route may
    /// refuse, while the browser's reload sends the same request, fields
    /// and all, again. (An application that wants a button renders its own
    /// page with [`on_error`](crate::PipelineStateLayer::on_error).)
    ///
    /// ```
    /// use tower_pipeline_state::LayerError;
    ///
    /// assert!(LayerError::TooLarge.message().contains("too large"));
    /// let unavailable = LayerError::Unavailable.message();
    /// assert!(unavailable.contains("nothing was saved") && !unavailable.contains("http"));
    /// ```
    pub fn message(&self) -> &'static str {
        match self {
            Self::Unavailable => {
                "pipeline state store unavailable; nothing was saved, send the request again\n"
            }
            Self::NotConfirmed => {
                "pipeline state store unavailable; the changes may not have been saved\n"
            }
            Self::Conflict { .. } => {
                "the flow was changed by a concurrent request; nothing was saved, try again\n"
            }
            Self::TooLarge => "pipeline state too large; nothing was saved\n",
        }
    }

    /// The layer's answer when no hook is set: the status and the message
    /// as plain text.
    ///
    /// ```
    /// use tower_pipeline_state::LayerError;
    ///
    /// let response = LayerError::Unavailable.plain_response();
    /// assert_eq!(response.status(), 503);
    /// ```
    pub fn plain_response(&self) -> Response<Bytes> {
        let mut response = Response::new(Bytes::from_static(self.message().as_bytes()));
        *response.status_mut() = self.status();
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

impl std::error::Error for LayerError {}

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

/// Renders `error` through `hook`, or as plain text without one.
pub(crate) fn render(hook: Option<&ErrorHook>, error: LayerError) -> Response<Bytes> {
    match hook {
        Some(hook) => (hook.0)(&error),
        None => error.plain_response(),
    }
}
