//! The layer's settings and the state every request of one layer shares.

use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};

use crate::{
    answer::{ErrorHook, LayerError, render},
    cookies::CookieConfig,
    id::PipelineId,
};

/// When the layer reads a flow's record from the store; set with
/// [`PipelineStateLayer::load_mode`](crate::PipelineStateLayer::load_mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LoadMode {
    /// Only when the request asks for the state: the axum extractor, or
    /// [`LazyPipelineState::load`](crate::LazyPipelineState::load). A request
    /// whose handler never asks costs no store command, and its flow's TTL
    /// does not slide.
    #[default]
    Lazy,
    /// Before the inner service, for every request that carries an id: the
    /// [`PipelineState`](crate::PipelineState) is in the extensions, loaded,
    /// when the inner service runs, and a store failure answers 503 without
    /// calling it.
    Eager,
}

/// Everything [`PipelineStateLayer`](crate::PipelineStateLayer)'s builder
/// methods set.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) key_prefix: String,
    pub(crate) ttl: Duration,
    pub(crate) refresh_on_load: bool,
    pub(crate) discard_on_server_error: bool,
    pub(crate) conflict_status: StatusCode,
    pub(crate) store_timeout: Duration,
    pub(crate) load_mode: LoadMode,
    pub(crate) max_record_size: usize,
    pub(crate) cookie: CookieConfig,
    pub(crate) error_hook: Option<ErrorHook>,
    /// Replicas that must acknowledge each write, and how long to wait for
    /// them; the `WAIT` itself is sent by the store (`RedisStore`), on the
    /// connection that wrote. Kept here to check it against
    /// `store_timeout` when the layer is built.
    pub(crate) durability: Option<(u32, Duration)>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            key_prefix: "pipeline:".to_owned(),
            ttl: Duration::from_secs(10 * 60),
            refresh_on_load: true,
            discard_on_server_error: true,
            conflict_status: StatusCode::CONFLICT,
            store_timeout: Duration::from_secs(1),
            load_mode: LoadMode::Lazy,
            max_record_size: 64 * 1024,
            cookie: CookieConfig::default(),
            error_hook: None,
            durability: None,
        }
    }
}

impl Config {
    /// The layer's own answer `error`, through the application's hook.
    pub(crate) fn answer(&self, error: LayerError) -> Response<Bytes> {
        render(self.error_hook.as_ref(), error)
    }

    /// The layer's conflict answer, with the configured status.
    pub(crate) fn conflict(&self) -> LayerError {
        LayerError::Conflict {
            status: self.conflict_status,
        }
    }

    /// The Redis key of flow `id`. Built by hand rather than with `format!`:
    /// it runs on every load and every write, and the formatting machinery
    /// cost several times the copy itself (measured with callgrind in
    /// `benches/overhead.rs`).
    pub(crate) fn key(&self, id: PipelineId) -> String {
        let mut key = String::with_capacity(self.key_prefix.len() + PipelineId::LEN);
        key.push_str(&self.key_prefix);
        key.push_str(id.encode(&mut [0; PipelineId::LEN]));
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_the_prefix_then_the_id_text() {
        let id = PipelineId::generate();
        let config = Config {
            key_prefix: "auth:pipeline:".to_owned(),
            ..Config::default()
        };
        assert_eq!(config.key(id), format!("auth:pipeline:{id}"));
        assert_eq!(Config::default().key(id), format!("pipeline:{id}"));
    }
}
