//! An in-process store with the same semantics as Redis (TTL, versions,
//! conflicts), for examples, quick starts and tests of logic that is not
//! about Redis. Records live in this process only.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tokio::time::Instant;

use super::{
    StoreError,
    operations::{CasOutcome, Store},
};
use crate::lock::lock;
use crate::record::version_of as record_version;

/// Expired entries are swept out every this many creations, so memory stays
/// bounded by the live flows even if nobody reads the dead ones.
const SWEEP_EVERY: u64 = 256;

/// Records in a `HashMap` in this process, with TTLs and the same
/// compare-and-set as [`RedisStore`](super::RedisStore). Cloning shares the
/// map.
///
/// ```
/// use tower_pipeline_state::{MemoryStore, PipelineStateLayer};
///
/// let store = MemoryStore::new();
/// let layer = PipelineStateLayer::new(store.clone());
/// assert!(store.is_empty());
/// # drop(layer);
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Entries>>,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<String, Entry>,
    creations: u64,
}

#[derive(Debug)]
struct Entry {
    record: Vec<u8>,
    version: Option<u64>,
    expires: Instant,
}

impl Entry {
    fn new(record: &[u8], ttl: Duration) -> Self {
        Self {
            record: record.to_vec(),
            version: record_version(record),
            expires: Instant::now() + ttl,
        }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of live (unexpired) records.
    pub fn len(&self) -> usize {
        let now = Instant::now();
        self.lock().map.values().filter(|e| e.expires > now).count()
    }

    /// Whether no live record is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        lock(&self.inner)
    }
}

impl Entries {
    /// The live entry under `key`; an expired one is dropped on the way.
    fn live(&mut self, key: &str) -> Option<&mut Entry> {
        if self.map.get(key)?.expires <= Instant::now() {
            self.map.remove(key);
            return None;
        }
        self.map.get_mut(key)
    }
}

impl Entries {
    /// The live entry under `key` if it has `version`; otherwise what a
    /// compare-and-set reports (missing, or the newer record).
    fn at_version(&mut self, key: &str, version: u64) -> Result<&mut Entry, CasOutcome> {
        let entry = self.live(key).ok_or(CasOutcome::Missing)?;
        if entry.version != Some(version) {
            return Err(CasOutcome::Newer(entry.record.clone()));
        }
        Ok(entry)
    }
}

impl Store for MemoryStore {
    async fn load(
        &self,
        key: &str,
        refresh: Option<Duration>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let mut entries = self.lock();
        Ok(entries.live(key).map(|entry| {
            // As Redis's load script: only this release's format slides.
            if let Some(ttl) = refresh
                && entry.version.is_some()
            {
                entry.expires = Instant::now() + ttl;
            }
            entry.record.clone()
        }))
    }

    async fn create(&self, key: &str, record: &[u8], ttl: Duration) -> Result<bool, StoreError> {
        let mut entries = self.lock();
        entries.creations += 1;
        if entries.creations.is_multiple_of(SWEEP_EVERY) {
            let now = Instant::now();
            entries.map.retain(|_, entry| entry.expires > now);
        }
        if entries.live(key).is_some() {
            return Ok(false);
        }
        entries.map.insert(key.to_owned(), Entry::new(record, ttl));
        Ok(true)
    }

    async fn update(
        &self,
        key: &str,
        version: u64,
        record: &[u8],
        ttl: Duration,
    ) -> Result<CasOutcome, StoreError> {
        let mut entries = self.lock();
        Ok(match entries.at_version(key, version) {
            Ok(entry) => {
                *entry = Entry::new(record, ttl);
                CasOutcome::Done
            }
            Err(outcome) => outcome,
        })
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.lock().map.remove(key);
        Ok(())
    }

    async fn delete_if_version(&self, key: &str, version: u64) -> Result<CasOutcome, StoreError> {
        let mut entries = self.lock();
        if let Err(outcome) = entries.at_version(key, version) {
            return Ok(outcome);
        }
        entries.map.remove(key);
        Ok(CasOutcome::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &[u8] = br#"{"format":1,"version":1,"data":{}}"#;
    const V2: &[u8] = br#"{"format":1,"version":2,"data":{"a":1}}"#;
    const MINUTE: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn compare_and_set_follows_versions() {
        let store = MemoryStore::new();
        assert!(store.create("k", V1, MINUTE).await.unwrap());
        assert!(!store.create("k", V2, MINUTE).await.unwrap());
        assert_eq!(
            store.update("k", 7, V2, MINUTE).await.unwrap(),
            CasOutcome::Newer(V1.to_vec())
        );
        assert_eq!(
            store.update("k", 1, V2, MINUTE).await.unwrap(),
            CasOutcome::Done
        );
        assert_eq!(store.load("k", None).await.unwrap().as_deref(), Some(V2));
        store.delete("k").await.unwrap();
        assert_eq!(
            store.update("k", 2, V2, MINUTE).await.unwrap(),
            CasOutcome::Missing
        );
    }

    #[tokio::test]
    async fn compare_and_delete_follows_versions() {
        let store = MemoryStore::new();
        store.create("k", V1, MINUTE).await.unwrap();
        assert_eq!(
            store.delete_if_version("k", 7).await.unwrap(),
            CasOutcome::Newer(V1.to_vec())
        );
        assert_eq!(store.len(), 1, "a stale version deletes nothing");
        assert_eq!(
            store.delete_if_version("k", 1).await.unwrap(),
            CasOutcome::Done
        );
        assert!(store.is_empty());
        assert_eq!(
            store.delete_if_version("k", 1).await.unwrap(),
            CasOutcome::Missing
        );
    }

    #[tokio::test(start_paused = true)]
    async fn records_expire_and_loads_slide_the_ttl() {
        let store = MemoryStore::new();
        store.create("k", V1, MINUTE).await.unwrap();
        tokio::time::advance(Duration::from_secs(50)).await;
        assert!(store.load("k", Some(MINUTE)).await.unwrap().is_some());
        tokio::time::advance(Duration::from_secs(50)).await;
        assert!(store.load("k", None).await.unwrap().is_some());
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(store.load("k", None).await.unwrap().is_none());
        assert!(store.is_empty());
    }
}
