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
///
/// # Implementing a store
///
/// A store keeps the layer's records as opaque bytes. What it must promise
/// is what Redis does with the commands [`RedisStore`](crate::RedisStore)
/// sends: every operation touches one key and is atomic, every record
/// carries a TTL, and the two versioned operations ([`update`](Self::update)
/// and [`delete_if_version`](Self::delete_if_version)) compare the stored
/// record's [`record_version`] and act in the same atomic step. A store that
/// reads, compares and then writes in separate steps loses updates under
/// concurrent requests, which is what this crate exists to prevent. Report
/// your backend's failures as [`StoreError::Backend`] around your client's
/// error, and never turn one into an empty answer.
///
/// The [`contract`](crate::store::contract) module (feature
/// `store-contract`) checks those promises; run it in your store's tests.
/// A store over a map in memory, checked by it:
///
/// ```
/// use std::{collections::HashMap, sync::{Arc, Mutex}, time::Duration};
///
/// use tokio::time::Instant;
/// use tower_pipeline_state::{
///     Store, StoreError,
///     store::{CasOutcome, record_version},
/// };
///
/// /// Records and when they expire, behind one lock: each operation holds
/// /// it from its read to its write, which makes it atomic.
/// #[derive(Clone, Default)]
/// struct MapStore(Arc<Mutex<HashMap<String, (Vec<u8>, Instant)>>>);
///
/// impl MapStore {
///     /// The live record under `key`, dropping it when it has expired.
///     fn live(map: &mut HashMap<String, (Vec<u8>, Instant)>, key: &str) -> Option<Vec<u8>> {
///         match map.get(key) {
///             Some((_, expires)) if *expires <= Instant::now() => {
///                 map.remove(key);
///                 None
///             }
///             found => found.map(|(record, _)| record.clone()),
///         }
///     }
///
///     fn len(&self) -> usize {
///         let mut map = self.0.lock().unwrap();
///         map.retain(|_, (_, expires)| *expires > Instant::now());
///         map.len()
///     }
/// }
///
/// impl Store for MapStore {
///     async fn load(&self, key: &str, refresh: Option<Duration>) -> Result<Option<Vec<u8>>, StoreError> {
///         let mut map = self.0.lock().unwrap();
///         let found = Self::live(&mut map, key);
///         // Only a record of this release's format slides: a later
///         // release's keeps the expiry that release gave it.
///         if let (Some(ttl), Some((record, expires))) = (refresh, map.get_mut(key))
///             && record_version(record).is_some()
///         {
///             *expires = Instant::now() + ttl;
///         }
///         Ok(found)
///     }
///
///     async fn create(&self, key: &str, record: &[u8], ttl: Duration) -> Result<bool, StoreError> {
///         let mut map = self.0.lock().unwrap();
///         if Self::live(&mut map, key).is_some() {
///             return Ok(false);
///         }
///         map.insert(key.to_owned(), (record.to_vec(), Instant::now() + ttl));
///         Ok(true)
///     }
///
///     async fn update(&self, key: &str, version: u64, record: &[u8], ttl: Duration) -> Result<CasOutcome, StoreError> {
///         let mut map = self.0.lock().unwrap();
///         match Self::live(&mut map, key) {
///             None => Ok(CasOutcome::Missing),
///             Some(current) if record_version(&current) != Some(version) => Ok(CasOutcome::Newer(current)),
///             Some(_) => {
///                 map.insert(key.to_owned(), (record.to_vec(), Instant::now() + ttl));
///                 Ok(CasOutcome::Done)
///             }
///         }
///     }
///
///     async fn delete(&self, key: &str) -> Result<(), StoreError> {
///         self.0.lock().unwrap().remove(key);
///         Ok(())
///     }
///
///     async fn delete_if_version(&self, key: &str, version: u64) -> Result<CasOutcome, StoreError> {
///         let mut map = self.0.lock().unwrap();
///         match Self::live(&mut map, key) {
///             None => Ok(CasOutcome::Missing),
///             Some(current) if record_version(&current) != Some(version) => Ok(CasOutcome::Newer(current)),
///             Some(_) => {
///                 map.remove(key);
///                 Ok(CasOutcome::Done)
///             }
///         }
///     }
/// }
///
/// // In the store's tests: every contract, each on a fresh store.
/// # #[cfg(feature = "store-contract")]
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use tower_pipeline_state::store::contract::{self, Subject};
///
/// contract::check(|| async {
///     let store = MapStore::default();
///     let view = store.clone();
///     Subject::new(store, move || view.len())
/// })
/// .await;
/// # });
/// ```
pub trait Store: Send + Sync + 'static {
    /// Reads the record under `key`, `None` when there is none. When
    /// `refresh` is given and the record is of this release's format (its
    /// [`record_version`] reads), the key's TTL is set to it in the same
    /// atomic step (Redis: a script, `GET` then `EXPIRE`); any other record,
    /// a later release's among them, keeps its expiry. A key that holds
    /// something the store cannot read as bytes (Redis: a hash, a list...)
    /// loads as an empty record, which the layer treats as corrupt and
    /// replaces at the next write.
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
