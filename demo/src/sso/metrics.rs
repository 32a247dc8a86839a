//! The sign-in funnel at `/metrics`: the crate's counters (feature
//! `metrics`: flows started, steps entered, how each request of a flow
//! ended, flows finished, replays answered; the layer's loads, writes and
//! store failures) in Prometheus's text format, rendered by
//! `metrics-exporter-prometheus` from the recorder the process installed.
//!
//! The page is open to anyone who can reach the demo. Its labels never
//! carry an id, a reference, a nonce or anything a person sent, but in
//! production serve it where only the scraper reaches it.

use axum::{
    http::{HeaderValue, header::CONTENT_TYPE},
    response::{IntoResponse, Response},
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Installs a Prometheus recorder as the process's `metrics` recorder and
/// returns the handle that renders it.
///
/// # Errors
/// When the process already has a recorder.
pub fn install() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    PrometheusBuilder::new().install_recorder()
}

/// The `/metrics` page: everything `handle` has recorded, in the text
/// exposition format.
pub fn page(handle: &PrometheusHandle) -> Response {
    let mut response = handle.render().into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
