//! [`see_other`]: the redirect a pipeline answers a finished flow's replay
//! with, for axum applications.

use axum::response::{IntoResponse, Redirect, Response};

/// A `303 See Other` to `location`, as axum answers: give it to
/// [`PipelineBuilder::on_redirect`](super::PipelineBuilder::on_redirect).
///
/// ```
/// use axum::{body::Body, response::Response};
/// use tower_pipeline_state::pipeline::{Pipeline, see_other};
///
/// let builder = Pipeline::<Body, Response>::builder("sso").on_redirect(see_other);
/// assert_eq!(see_other("/account").status(), 303);
/// ```
pub fn see_other(location: &str) -> Response {
    Redirect::to(location).into_response()
}
