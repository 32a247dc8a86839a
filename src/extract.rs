//! The axum extractors: `PipelineState` (loaded on extraction),
//! `Option<PipelineState>` and `LazyPipelineState` in handler arguments.

use axum::{
    extract::{FromRequestParts, OptionalFromRequestParts},
    response::{IntoResponse, Response},
};
use http::{StatusCode, request::Parts};

use crate::{LazyPipelineState, PipelineState, error::LoadError};

/// Why the [`PipelineState`] extractor refused a request; the handler is not
/// called.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineStateRejection {
    /// The route has no [`PipelineStateLayer`](crate::PipelineStateLayer):
    /// a `500` that names the missing layer.
    #[error(
        "PipelineState extractor used on a route without PipelineStateLayer; add the layer to the router"
    )]
    MissingLayer,
    /// The store failed or did not answer in time: a `503`, as the layer
    /// answers in eager mode.
    #[error(transparent)]
    Unavailable(#[from] LoadError),
}

impl IntoResponse for PipelineStateRejection {
    fn into_response(self) -> Response {
        match self {
            Self::MissingLayer => {
                (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
            }
            Self::Unavailable(error) => error.into_response(),
        }
    }
}

impl IntoResponse for LoadError {
    fn into_response(self) -> Response {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "pipeline state store unavailable\n",
        )
            .into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for LazyPipelineState {
    type Rejection = PipelineStateRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<LazyPipelineState>()
            .cloned()
            .ok_or(PipelineStateRejection::MissingLayer)
    }
}

/// Loads the state (one `GETEX` in lazy mode when the request carries an
/// id): a handler that takes a `PipelineState` runs only once it is there.
impl<S: Send + Sync> FromRequestParts<S> for PipelineState {
    type Rejection = PipelineStateRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let lazy = LazyPipelineState::from_request_parts(parts, state).await?;
        Ok(lazy.load().await?)
    }
}

/// `None` on a route without the layer; a store failure still refuses the
/// request with `503`.
impl<S: Send + Sync> OptionalFromRequestParts<S> for PipelineState {
    type Rejection = LoadError;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        match parts.extensions.get::<LazyPipelineState>() {
            Some(lazy) => lazy.load().await.map(Some),
            None => Ok(None),
        }
    }
}
