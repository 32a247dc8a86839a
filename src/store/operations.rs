//! [`Store`]: the operations a store offers the layer, and [`CasOutcome`],
//! what a compare-and-set or a compare-and-delete found.

use std::{future::Future, time::Duration};

use super::StoreError;
#[cfg(doc)]
use crate::store::record_version;

/// What a compare-and-set ([`Store::update`]) or a compare-and-delete
/// ([`Store::delete_if_version`]) found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CasOutcome {
    /// The record had the expected version and was replaced (an update) or
    /// deleted (a delete).
    Done,
    /// No record under that key (expired or deleted meanwhile): nothing was
    /// written, so a cleared flow is never brought back.
    Missing,
    /// The record has another version (a concurrent request wrote first):
    /// nothing was written; here is the record as it is now.
    Newer(Vec<u8>),
}

/// A place to keep records, with a TTL per key.
///
/// Each method is one round trip to the backing service. Implementations must
/// be safe to call concurrently from many requests.
pub trait Store: Send + Sync + 'static {
    /// Reads the record under `key`, `None` when there is none. When
    /// `refresh` is given, the key's TTL is set to it by the same command
    /// (Redis: `GETEX key EX ttl`). A key that holds something the store
    /// cannot read as bytes (Redis: a hash, a list...) loads as an empty
    /// record, which the layer treats as corrupt and replaces at the next
    /// write.
    fn load(
        &self,
        key: &str,
        refresh: Option<Duration>,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;

    /// Creates `record` under `key` with `ttl` unless something already has
    /// that key (Redis: `SET key record NX EX ttl`); returns whether it was
    /// created.
    fn create(
        &self,
        key: &str,
        record: &[u8],
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Atomically replaces the record under `key` with `record` and sets its
    /// TTL, only if the stored record's [`record_version`] is `version`.
    fn update(
        &self,
        key: &str,
        version: u64,
        record: &[u8],
        ttl: Duration,
    ) -> impl Future<Output = Result<CasOutcome, StoreError>> + Send;

    /// Deletes the record under `key`, if any.
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Atomically deletes the record under `key` only if its
    /// [`record_version`] is `version`: [`CasOutcome::Done`] when it was
    /// deleted, [`CasOutcome::Missing`] when there was none,
    /// [`CasOutcome::Newer`] (nothing deleted) when a concurrent request
    /// wrote first. The layer uses it to clear a loaded flow and to claim a
    /// flow before its finish hook, so a clear never drops a concurrent
    /// request's acknowledged write, and of two requests that both clear or
    /// finish one flow only the first succeeds. A load then a delete is not
    /// atomic and must not stand in for it.
    fn delete_if_version(
        &self,
        key: &str,
        version: u64,
    ) -> impl Future<Output = Result<CasOutcome, StoreError>> + Send;
}
