//! Before the handler: the store call that reads a flow's record, and what
//! the record turns out to be ([`Found`]).

use crate::{
    backend::{Found, Lifetime, timed},
    config::Config,
    error::LoadError,
    id::PipelineId,
    log_id::log_id,
    metrics,
    record::{DecodeError, FORMAT, Format, decode, format_of},
    store::Store,
};

/// Reads flow `id`'s record and says what it is, refreshing its TTL (when
/// refresh on load is on) as `lifetime` says, the layer's TTL without one. A store failure, or a record of a newer format, is logged here
/// and answered `Err` (the request gets `503`).
pub(crate) async fn load<St: Store>(
    store: &St,
    config: &Config,
    id: PipelineId,
    lifetime: Option<Lifetime>,
) -> Result<Found, LoadError> {
    let refresh = config
        .refresh_on_load
        .then(|| lifetime.map_or(config.ttl, |lifetime| lifetime.ttl(config.ttl)));
    let key = config.key(id);
    let result = timed(
        metrics::Operation::Load,
        config.store_timeout,
        store.load(&key, refresh),
    )
    .await;
    match result {
        Ok(raw) => found(id, raw, config.max_record_size),
        Err(error) => {
            // Nothing is lost (the handler does not run), but the store
            // needs an operator.
            tracing::warn!(pipeline.log_id = %log_id(id), %error, kind = error.kind(), "pipeline state not loaded: the store failed; answering 503");
            Err(LoadError::Store(error))
        }
    }
}

/// What a loaded (or missing, or unreadable) record is.
fn found(id: PipelineId, raw: Option<Vec<u8>>, max_record_size: usize) -> Result<Found, LoadError> {
    let Some(raw) = raw else {
        tracing::debug!(pipeline.log_id = %log_id(id), "pipeline state expired or cleared");
        metrics::load(metrics::Found::Expired);
        return Ok(Found::Missing);
    };
    if raw.len() > max_record_size {
        // Still told apart from a later release's record, which may be
        // larger than this release allows: that one is left alone.
        if let Format::Newer(found) = format_of(&raw) {
            return Err(newer_format(id, found));
        }
        tracing::warn!(pipeline.log_id = %log_id(id), size = raw.len(), limit = max_record_size, "pipeline state record is over the size limit; treating the flow as expired");
        metrics::load(metrics::Found::Corrupt);
        return Ok(Found::Unreadable);
    }
    match decode(&raw) {
        Ok(record) => {
            metrics::load(metrics::Found::Live);
            Ok(Found::Live {
                version: record.version,
                data: record.data,
            })
        }
        Err(DecodeError::NewerFormat(found)) => Err(newer_format(id, found)),
        Err(error) => {
            tracing::warn!(pipeline.log_id = %log_id(id), %error, "pipeline state record does not decode; treating the flow as expired");
            metrics::load(metrics::Found::Corrupt);
            Ok(Found::Unreadable)
        }
    }
}

/// A record a later release wrote (a rolling deploy): logged, and refused
/// so that nothing this release does deletes or overwrites it.
fn newer_format(id: PipelineId, found: String) -> LoadError {
    // An operator's matter (a deploy in progress, or one rolled back); the
    // record is kept.
    tracing::warn!(
        pipeline.log_id = %log_id(id),
        format = %found,
        supported = FORMAT,
        "pipeline state record has a newer format than this release reads; leaving it alone and answering 503"
    );
    LoadError::NewerFormat {
        found,
        supported: FORMAT,
    }
}
