//! Before the handler: the store call that reads a flow's record, turning
//! the record into the handler's state, and the timeout every store
//! operation runs under.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use bytes::Bytes;
use http::Response;

use crate::{
    answer::LayerErrorKind,
    config::{Config, Shared},
    error::LoadError,
    id::PipelineId,
    metrics,
    record::{FORMAT, decode, format_of},
    state::{Origin, PipelineState},
    store::{Store, StoreError},
};

/// Store operations are boxed (the inner service's future is not): their
/// types are hidden behind the `Store` trait and they run at most twice a
/// request.
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Loads a flow's state, whatever the store type: what a lazy handle keeps
/// to load on first use, without being generic over the store.
pub(crate) trait Load: Send + Sync + 'static {
    /// Reads flow `id`'s record (refreshing its TTL when configured) and
    /// turns it into the handler's state. A failure is logged here.
    fn load(self: Arc<Self>, id: PipelineId) -> BoxFuture<Result<PipelineState, LoadError>>;

    /// The layer's own answer of `kind`, through the application's hook.
    fn answer(&self, kind: LayerErrorKind) -> Response<Bytes>;

    /// The layer's settings (the cookies' names and keys, the flow limit).
    fn config(&self) -> &Config;
}

impl<St: Store> Load for Shared<St> {
    fn load(self: Arc<Self>, id: PipelineId) -> BoxFuture<Result<PipelineState, LoadError>> {
        Box::pin(async move {
            let config = &self.config;
            let refresh = config.refresh_on_load.then_some(config.ttl);
            let key = config.key(id);
            let result = timed(
                metrics::Operation::Load,
                config.store_timeout,
                self.store.load(&key, refresh),
            )
            .await;
            match result {
                Ok(raw) => {
                    let state = state_from(id, raw, config.max_record_size)?;
                    Ok(state.with_claimer(self.clone()))
                }
                Err(error) => {
                    tracing::error!(pipeline.id = %id, %error, "pipeline state not loaded: the store failed; answering 503");
                    Err(LoadError::Store(error))
                }
            }
        })
    }

    fn answer(&self, kind: LayerErrorKind) -> Response<Bytes> {
        self.config.answer(kind)
    }

    fn config(&self) -> &Config {
        &self.config
    }
}

/// The state a loaded (or missing, or unreadable) record gives the handler.
fn state_from(
    id: PipelineId,
    raw: Option<Vec<u8>>,
    max_record_size: usize,
) -> Result<PipelineState, LoadError> {
    let Some(raw) = raw else {
        tracing::debug!(pipeline.id = %id, "pipeline state expired or cleared");
        metrics::load(metrics::Found::Expired);
        return Ok(expired(id, false));
    };
    if let Some(found) = format_of(&raw).filter(|found| *found > FORMAT) {
        tracing::error!(
            pipeline.id = %id,
            format = found,
            supported = FORMAT,
            "pipeline state record has a newer format than this release reads; leaving it alone and answering 503"
        );
        return Err(LoadError::NewerFormat {
            found,
            supported: FORMAT,
        });
    }
    if raw.len() > max_record_size {
        tracing::warn!(pipeline.id = %id, size = raw.len(), limit = max_record_size, "pipeline state record is over the size limit; treating the flow as expired");
        metrics::load(metrics::Found::Corrupt);
        return Ok(expired(id, true));
    }
    match decode(&raw) {
        Ok(record) => {
            metrics::load(metrics::Found::Live);
            Ok(PipelineState::from_origin(
                Origin::Loaded {
                    id,
                    version: record.version,
                },
                record.data,
            ))
        }
        Err(error) => {
            tracing::warn!(pipeline.id = %id, %error, "pipeline state record does not decode; treating the flow as expired");
            metrics::load(metrics::Found::Corrupt);
            Ok(expired(id, true))
        }
    }
}

fn expired(id: PipelineId, leftover: bool) -> PipelineState {
    PipelineState::from_origin(Origin::Expired { id, leftover }, Default::default())
}

/// Runs one store operation under the layer's timeout, and records its
/// latency and failure in the metrics.
pub(crate) async fn timed<T>(
    operation: metrics::Operation,
    limit: Duration,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let started = metrics::Timer::start();
    let result = tokio::time::timeout(limit, call)
        .await
        .unwrap_or(Err(StoreError::Timeout(limit)));
    started.record(operation);
    if let Err(error) = &result {
        metrics::store_failure(operation, error);
    }
    result
}
