//! The layer's settings and the state every request of one layer shares.

use std::{sync::Arc, time::Duration};

use http::StatusCode;

use crate::{cookies::CookieConfig, id::PipelineId};

/// Everything [`PipelineStateLayer`](crate::PipelineStateLayer)'s builder
/// methods set. Defaults follow DESIGN.md.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) key_prefix: String,
    pub(crate) ttl: Duration,
    pub(crate) refresh_on_load: bool,
    pub(crate) discard_on_server_error: bool,
    pub(crate) conflict_status: StatusCode,
    pub(crate) timeout: Duration,
    pub(crate) max_record_size: usize,
    pub(crate) cookie: CookieConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            key_prefix: "pipeline:".to_owned(),
            ttl: Duration::from_secs(10 * 60),
            refresh_on_load: true,
            discard_on_server_error: true,
            conflict_status: StatusCode::CONFLICT,
            timeout: Duration::from_secs(1),
            max_record_size: 64 * 1024,
            cookie: CookieConfig::default(),
        }
    }
}

impl Config {
    pub(crate) fn key(&self, id: PipelineId) -> String {
        format!("{}{id}", self.key_prefix)
    }
}

/// What a layer's services and their response futures share.
#[derive(Debug)]
pub(crate) struct Shared<St> {
    pub(crate) store: Arc<St>,
    pub(crate) config: Config,
}
