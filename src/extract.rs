//! The axum extractors: `PipelineState` (loaded on extraction),
//! `Option<PipelineState>` and `LazyPipelineState` in handler arguments.

use std::fmt;

use axum::{
    body::Body,
    extract::{FromRequestParts, OptionalFromRequestParts},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header::CONTENT_TYPE, request::Parts};

use crate::{LazyPipelineState, PipelineState, error::LoadError};

/// Why the [`PipelineState`] extractor refused a request; the handler is not
/// called. Its response is the layer's `503` when the state could not be
/// loaded (through the application's error hook, see
/// [`PipelineStateLayer::on_error`](crate::PipelineStateLayer::on_error)),
/// or a `500` that names the missing layer on a route without
/// [`PipelineStateLayer`](crate::PipelineStateLayer).
#[derive(Debug)]
pub struct PipelineStateRejection {
    error: Option<LoadError>,
    response: http::Response<Bytes>,
}

/// What the rejection says on a route without the layer.
const MISSING_LAYER: &str = "PipelineState extractor used on a route without PipelineStateLayer; add the layer to the router";

impl PipelineStateRejection {
    fn missing_layer() -> Self {
        let mut response = http::Response::new(Bytes::from_static(MISSING_LAYER.as_bytes()));
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        Self {
            error: None,
            response,
        }
    }

    fn unavailable(lazy: &LazyPipelineState, error: LoadError) -> Self {
        Self {
            response: lazy.error_response(&error),
            error: Some(error),
        }
    }

    /// Why the state could not be loaded; `None` when the route has no
    /// layer.
    pub fn load_error(&self) -> Option<&LoadError> {
        self.error.as_ref()
    }
}

impl fmt::Display for PipelineStateRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.error {
            Some(error) => fmt::Display::fmt(error, f),
            None => f.write_str(MISSING_LAYER),
        }
    }
}

impl std::error::Error for PipelineStateRejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.as_ref().map(|error| error as _)
    }
}

impl IntoResponse for PipelineStateRejection {
    fn into_response(self) -> Response {
        self.response.map(Body::from)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for LazyPipelineState {
    type Rejection = PipelineStateRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<LazyPipelineState>()
            .cloned()
            .ok_or_else(PipelineStateRejection::missing_layer)
    }
}

/// Loads the state (one round trip in lazy mode when the request carries an
/// id): a handler that takes a `PipelineState` runs only once it is there.
impl<S: Send + Sync> FromRequestParts<S> for PipelineState {
    type Rejection = PipelineStateRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let lazy = LazyPipelineState::from_request_parts(parts, state).await?;
        lazy.load()
            .await
            .map_err(|error| PipelineStateRejection::unavailable(&lazy, error))
    }
}

/// `None` on a route without the layer; a store failure still refuses the
/// request with the layer's `503`.
impl<S: Send + Sync> OptionalFromRequestParts<S> for PipelineState {
    type Rejection = PipelineStateRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        let Some(lazy) = parts.extensions.get::<LazyPipelineState>().cloned() else {
            return Ok(None);
        };
        match lazy.load().await {
            Ok(state) => Ok(Some(state)),
            Err(error) => Err(PipelineStateRejection::unavailable(&lazy, error)),
        }
    }
}
