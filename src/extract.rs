//! The axum extractor: `PipelineState` and `Option<PipelineState>` in
//! handler arguments.

use std::convert::Infallible;

use axum::{
    extract::{FromRequestParts, OptionalFromRequestParts},
    response::{IntoResponse, Response},
};
use http::{StatusCode, request::Parts};

use crate::PipelineState;

/// The rejection when a handler asks for [`PipelineState`] on a route
/// without [`PipelineStateLayer`](crate::PipelineStateLayer): a `500` that
/// names the missing layer.
#[derive(Debug, Clone, Copy)]
pub struct MissingPipelineStateLayer;

impl IntoResponse for MissingPipelineStateLayer {
    fn into_response(self) -> Response {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "PipelineState extractor used on a route without PipelineStateLayer; add the layer to the router",
        )
            .into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PipelineState {
    type Rejection = MissingPipelineStateLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<PipelineState>()
            .cloned()
            .ok_or(MissingPipelineStateLayer)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for PipelineState {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<PipelineState>().cloned())
    }
}
