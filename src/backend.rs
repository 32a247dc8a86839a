//! What a request's states need from their layer, whatever its store type:
//! load a record, claim or commit it at a version, and the layer's settings.
//! The states and the lazy handle hold it as one `Arc<dyn Backend>`, so they
//! are not generic over the store; [`Shared`](crate::shared::Shared) is the
//! one implementation. The timeout every store operation runs under is here
//! too, beside the boxed future the trait's methods return.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use crate::{
    config::Config, error::LoadError, id::PipelineId, metrics, record::Data, store::StoreError,
};

/// Store operations are boxed (the inner service's future is not): their
/// types are hidden behind the `Store` trait and they run at most a few
/// times a request.
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a load found under a flow's id.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Found {
    /// A live record, at this version.
    Live { version: u64, data: Data },
    /// Nothing: the flow expired or was cleared.
    Missing,
    /// Something that is not a record this release can use (it does not
    /// decode, or is over the size limit): the next write replaces it.
    Unreadable,
}

/// How long a flow's record may live: what the engine knows of its
/// pipeline's lifetimes, which the layer turns into a TTL with its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Lifetime {
    /// The sliding TTL; `None`: the layer's.
    pub(crate) idle: Option<Duration>,
    /// When the record ends whatever happens, in seconds since the Unix
    /// epoch.
    pub(crate) deadline: Option<u64>,
}

impl Lifetime {
    /// The TTL to give the record now: the idle timeout (the layer's
    /// `ttl` when the flow has none of its own), never longer than what is
    /// left before the deadline, and at least a second (Redis refuses 0).
    pub(crate) fn ttl(&self, layer_ttl: Duration) -> Duration {
        let idle = self.idle.unwrap_or(layer_ttl);
        match self.deadline {
            None => idle,
            Some(deadline) => {
                let left = deadline.saturating_sub(unix_now());
                idle.min(Duration::from_secs(left.max(1)))
            }
        }
    }
}

/// Now, in seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// What a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claimed {
    /// The record was deleted by this request: the flow is this request's
    /// to finish.
    Yes,
    /// Another request deleted it first (or it expired).
    AlreadyGone,
    /// A concurrent request changed it: nothing was deleted.
    Changed,
}

/// What a commit found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Committed {
    /// Written by this request (or nothing stored to race for: a state that
    /// was not loaded from a store, or that the flush will create anew).
    Yes,
    /// The record is gone: another request finished or cleared the flow, or
    /// it expired.
    AlreadyGone,
    /// A concurrent request changed it: nothing was written.
    Changed,
    /// The state encodes over the layer's record size limit: nothing was
    /// written.
    TooLarge,
}

/// The layer as a request's states see it. Each operation is one store
/// round trip; none of them is sent by a handler, only by the layer's
/// handles (a lazy load, the engine's claim and commit).
pub(crate) trait Backend: Send + Sync + 'static {
    /// Reads flow `id`'s record, refreshing its TTL as `lifetime` says (the
    /// layer's TTL when `None`: the browser's state). A failure is logged
    /// here.
    fn load(
        self: Arc<Self>,
        id: PipelineId,
        lifetime: Option<Lifetime>,
    ) -> BoxFuture<Result<Found, LoadError>>;

    /// Deletes flow `id`'s record if it still has `version`.
    fn claim(
        self: Arc<Self>,
        id: PipelineId,
        version: u64,
    ) -> BoxFuture<Result<Claimed, StoreError>>;

    /// Writes `data` as flow `id`'s record, at the version after `version`,
    /// if it still has `version`, to live as `lifetime` says (the layer's
    /// TTL when `None`).
    fn commit(
        self: Arc<Self>,
        id: PipelineId,
        version: u64,
        data: Arc<Data>,
        lifetime: Option<Lifetime>,
    ) -> BoxFuture<Result<Committed, StoreError>>;

    /// The layer's settings (the cookies' names and keys, the flow limit,
    /// the error hook).
    fn config(&self) -> &Config;
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
