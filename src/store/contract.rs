//! The [`Store`] contract: what the layer relies on from a store, as
//! functions over any `Store`, for the tests of a store of your own (feature
//! `store-contract`). Each takes a [`Subject`], a fresh, empty store and a
//! way to count its live records, and panics with a message on the first
//! broken promise. [`check`] runs them all; the crate runs them on
//! [`MemoryStore`](super::MemoryStore) and on `RedisStore` over every
//! connection kind. The `Store` trait's documentation shows a store of
//! your own checked this way.
//!
//! The contracts write keys of their own (`k`, `k0`..., `other`...): give
//! each run a store no one else uses. [`records_live_as_long_as_their_last_ttl`]
//! waits 2 s for records to expire.

use std::{fmt, future::Future, time::Duration};

use super::{CasOutcome, Store};

const V1: &[u8] = br#"{"format":1,"version":1,"data":{}}"#;
const V2: &[u8] = br#"{"format":1,"version":2,"data":{"a":1}}"#;
const V3: &[u8] = br#"{"format":1,"version":3,"data":{"a":2}}"#;
/// A record as a later release might write it.
const LATER: &[u8] = br#"{"format":2,"version":1,"fields":{}}"#;
const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);

/// A store under test, and a look behind its back: how many live records
/// it holds (for Redis, `DBSIZE` of a private server, say).
pub struct Subject<S> {
    /// The store, empty.
    pub store: S,
    /// Counts the store's live records, as the backing service sees them.
    pub records: Box<dyn Fn() -> usize + Send + Sync>,
}

impl<S> Subject<S> {
    /// A subject of `store`, whose live records `records` counts.
    ///
    /// ```
    /// use tower_pipeline_state::{MemoryStore, store::contract::Subject};
    ///
    /// let store = MemoryStore::new();
    /// let view = store.clone();
    /// let subject = Subject::new(store, move || view.len());
    /// assert_eq!(subject.records(), 0);
    /// ```
    pub fn new(store: S, records: impl Fn() -> usize + Send + Sync + 'static) -> Self {
        Self {
            store,
            records: Box::new(records),
        }
    }

    /// How many live records the store holds now.
    pub fn records(&self) -> usize {
        (self.records)()
    }
}

impl<S> fmt::Debug for Subject<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subject")
            .field("store", &std::any::type_name::<S>())
            .finish_non_exhaustive()
    }
}

/// Runs every contract, each on a fresh subject from `fresh`.
///
/// # Panics
/// On the first broken contract, naming it.
pub async fn check<S, F, Fut>(mut fresh: F)
where
    S: Store,
    F: FnMut() -> Fut,
    Fut: Future<Output = Subject<S>>,
{
    a_missing_key_loads_as_none(&fresh().await).await;
    a_created_record_loads_as_its_bytes(&fresh().await).await;
    create_refuses_an_existing_key_and_leaves_it_unchanged(&fresh().await).await;
    update_at_the_stored_version_writes(&fresh().await).await;
    update_at_another_version_writes_nothing_and_answers_the_current_record(&fresh().await).await;
    update_of_a_missing_key_creates_nothing(&fresh().await).await;
    a_record_without_the_fixed_header_matches_no_version(&fresh().await).await;
    delete_removes_the_record(&fresh().await).await;
    a_record_is_deleted_only_at_the_version_given(&fresh().await).await;
    records_live_as_long_as_their_last_ttl(&fresh().await).await;
}

/// A key nobody wrote loads as `None`, with or without a refresh, and a
/// refresh creates nothing.
pub async fn a_missing_key_loads_as_none<S: Store>(subject: &Subject<S>) {
    let store = &subject.store;
    assert_eq!(store.load("k", None).await.unwrap(), None);
    assert_eq!(
        store.load("k", Some(MINUTE)).await.unwrap(),
        None,
        "a refresh creates nothing"
    );
    assert_eq!(subject.records(), 0);
}

/// A created record loads back byte for byte, with or without a refresh;
/// records are opaque (neither JSON nor UTF-8 matters).
pub async fn a_created_record_loads_as_its_bytes<S: Store>(subject: &Subject<S>) {
    let store = &subject.store;
    assert!(store.create("k", V1, MINUTE).await.unwrap());
    assert_eq!(store.load("k", None).await.unwrap().as_deref(), Some(V1));
    assert_eq!(
        store.load("k", Some(MINUTE)).await.unwrap().as_deref(),
        Some(V1)
    );
    // Records are opaque to the store: neither JSON nor UTF-8 matters.
    let opaque = b"\xff\x00 not a record";
    assert!(store.create("opaque", opaque, MINUTE).await.unwrap());
    assert_eq!(
        store.load("opaque", None).await.unwrap().as_deref(),
        Some(&opaque[..])
    );
    assert_eq!(subject.records(), 2);
}

/// `create` refuses a key that holds a record, and leaves that record as
/// it was.
pub async fn create_refuses_an_existing_key_and_leaves_it_unchanged<S: Store>(
    subject: &Subject<S>,
) {
    let store = &subject.store;
    assert!(store.create("k", V1, MINUTE).await.unwrap());
    assert!(!store.create("k", V2, MINUTE).await.unwrap());
    assert_eq!(store.load("k", None).await.unwrap().as_deref(), Some(V1));
    assert_eq!(subject.records(), 1);
}

/// `update` at the stored version writes, and the version compared next is
/// the one the written record carries.
pub async fn update_at_the_stored_version_writes<S: Store>(subject: &Subject<S>) {
    let store = &subject.store;
    assert!(store.create("k", V1, MINUTE).await.unwrap());
    assert_eq!(
        store.update("k", 1, V2, MINUTE).await.unwrap(),
        CasOutcome::Done
    );
    assert_eq!(store.load("k", None).await.unwrap().as_deref(), Some(V2));
    // The version compared next is the one the written record carries.
    assert_eq!(
        store.update("k", 2, V3, MINUTE).await.unwrap(),
        CasOutcome::Done
    );
    assert_eq!(store.load("k", None).await.unwrap().as_deref(), Some(V3));
    assert_eq!(subject.records(), 1);
}

/// `update` at any other version writes nothing and answers the record as
/// it is ([`CasOutcome::Newer`]).
pub async fn update_at_another_version_writes_nothing_and_answers_the_current_record<S: Store>(
    subject: &Subject<S>,
) {
    let store = &subject.store;
    assert!(store.create("k", V1, MINUTE).await.unwrap());
    for version in [0, 2, 7, u64::MAX] {
        assert_eq!(
            store.update("k", version, V2, MINUTE).await.unwrap(),
            CasOutcome::Newer(V1.to_vec()),
            "version {version}"
        );
    }
    assert_eq!(store.load("k", None).await.unwrap().as_deref(), Some(V1));
    assert_eq!(subject.records(), 1);
}

/// `update` of a missing key creates nothing, and never brings a deleted
/// record back ([`CasOutcome::Missing`]).
pub async fn update_of_a_missing_key_creates_nothing<S: Store>(subject: &Subject<S>) {
    let store = &subject.store;
    assert_eq!(
        store.update("k", 1, V2, MINUTE).await.unwrap(),
        CasOutcome::Missing
    );
    // Nor does it bring a deleted record back.
    assert!(store.create("gone", V1, MINUTE).await.unwrap());
    store.delete("gone").await.unwrap();
    assert_eq!(
        store.update("gone", 1, V2, MINUTE).await.unwrap(),
        CasOutcome::Missing
    );
    assert_eq!(store.load("k", None).await.unwrap(), None);
    assert_eq!(store.load("gone", None).await.unwrap(), None);
    assert_eq!(subject.records(), 0);
}

/// The version is read from the record's fixed header only
/// (`{"format":1,"version":N,`): a record without it, a later release's
/// among them, matches no version, so nothing overwrites or deletes it by
/// version.
pub async fn a_record_without_the_fixed_header_matches_no_version<S: Store>(subject: &Subject<S>) {
    let store = &subject.store;
    let records: [&[u8]; 6] = [
        br#"{"version":1,"format":1,"data":{}}"#,
        br#"{"format":1, "version":1, "data":{}}"#,
        br#"{"format":1,"data":{},"version":1}"#,
        b"not a record",
        br#"{"format":2,"version":1,"data":{}}"#,
        br#"{"format":10,"version":1,"data":{}}"#,
    ];
    for (n, record) in records.into_iter().enumerate() {
        let key = format!("k{n}");
        assert!(store.create(&key, record, MINUTE).await.unwrap());
        assert_eq!(
            store.update(&key, 1, V2, MINUTE).await.unwrap(),
            CasOutcome::Newer(record.to_vec()),
            "update of {record:?}"
        );
        assert_eq!(
            store.delete_if_version(&key, 1).await.unwrap(),
            CasOutcome::Newer(record.to_vec()),
            "versioned delete of {record:?}"
        );
        assert_eq!(
            store.load(&key, None).await.unwrap().as_deref(),
            Some(record)
        );
    }
    assert_eq!(subject.records(), 6);
}

/// `delete` removes that record and no other; deleting nothing is no
/// error.
pub async fn delete_removes_the_record<S: Store>(subject: &Subject<S>) {
    let store = &subject.store;
    assert!(store.create("k", V1, MINUTE).await.unwrap());
    assert!(store.create("other", V1, MINUTE).await.unwrap());
    store.delete("k").await.unwrap();
    assert_eq!(store.load("k", None).await.unwrap(), None);
    store
        .delete("k")
        .await
        .expect("deleting nothing is no error");
    assert_eq!(
        store.load("other", None).await.unwrap().as_deref(),
        Some(V1)
    );
    assert_eq!(subject.records(), 1);
}

/// `delete_if_version` (the compare-and-delete a clear and a claim use)
/// deletes only at the version given.
pub async fn a_record_is_deleted_only_at_the_version_given<S: Store>(subject: &Subject<S>) {
    let store = &subject.store;
    assert!(store.create("k", V1, MINUTE).await.unwrap());
    assert_eq!(
        store.update("k", 1, V2, MINUTE).await.unwrap(),
        CasOutcome::Done
    );

    assert_eq!(
        store.delete_if_version("k", 1).await.unwrap(),
        CasOutcome::Newer(V2.to_vec()),
        "a clear based on an older version is refused"
    );
    assert_eq!(
        store.load("k", None).await.unwrap().as_deref(),
        Some(V2),
        "and deletes nothing"
    );

    assert_eq!(
        store.delete_if_version("k", 2).await.unwrap(),
        CasOutcome::Done
    );
    assert_eq!(subject.records(), 0);
    assert_eq!(
        store.delete_if_version("k", 2).await.unwrap(),
        CasOutcome::Missing,
        "a second clear finds nothing"
    );
}

/// TTLs, seen the only way the trait shows them: by waiting until a record
/// with 1 s to live is gone. Every record here starts with 1 s or is
/// shortened to it; some operations then give it a minute. A refreshing
/// load gives it only to a record of this release's format: a later
/// release's keeps its own.
pub async fn records_live_as_long_as_their_last_ttl<S: Store>(subject: &Subject<S>) {
    let store = &subject.store;
    let created = |key| store.create(key, V1, SECOND);
    assert!(created("plain").await.unwrap());
    assert!(created("read").await.unwrap());
    assert!(store.load("read", None).await.unwrap().is_some());
    assert!(created("refreshed").await.unwrap());
    assert!(
        store
            .load("refreshed", Some(MINUTE))
            .await
            .unwrap()
            .is_some()
    );
    assert!(created("updated").await.unwrap());
    assert_eq!(
        store.update("updated", 1, V2, MINUTE).await.unwrap(),
        CasOutcome::Done
    );
    assert!(created("refused").await.unwrap());
    assert_eq!(
        store.update("refused", 7, V2, MINUTE).await.unwrap(),
        CasOutcome::Newer(V1.to_vec())
    );
    assert!(store.create("shortened", V1, MINUTE).await.unwrap());
    assert_eq!(
        store.update("shortened", 1, V2, SECOND).await.unwrap(),
        CasOutcome::Done
    );
    // A later release's record keeps its expiry through a refreshing load.
    assert!(store.create("later", LATER, SECOND).await.unwrap());
    assert!(store.load("later", Some(MINUTE)).await.unwrap().is_some());
    assert_eq!(subject.records(), 7);

    tokio::time::sleep(2 * SECOND).await;
    for gone in ["plain", "read", "refused", "shortened", "later"] {
        assert_eq!(store.load(gone, None).await.unwrap(), None, "{gone}");
    }
    assert_eq!(
        store.load("refreshed", None).await.unwrap().as_deref(),
        Some(V1),
        "a load with a refresh extends the TTL"
    );
    assert_eq!(
        store.load("updated", None).await.unwrap().as_deref(),
        Some(V2),
        "an update sets the TTL"
    );
    assert_eq!(subject.records(), 2);
}
