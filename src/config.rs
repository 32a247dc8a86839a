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

/// What a layer's services and their response futures share.
#[derive(Debug)]
pub(crate) struct Shared<St> {
    pub(crate) store: Arc<St>,
    pub(crate) config: Config,
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
