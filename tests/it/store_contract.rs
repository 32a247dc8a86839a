//! The `Store` contract: what the layer relies on from a store, each part
//! written once as a function over any `Store` and run on `MemoryStore`, on
//! `RedisStore` over a `ConnectionManager`, on `RedisStore` over a bb8
//! pool, and (feature `cluster`) on `RedisStore` over a cluster connection,
//! the Redis ones against a private redis-server or cluster. `MemoryStore`
//! promises Redis's semantics; this is where the promise is checked.

use std::time::Duration;

use tower_pipeline_state::{
    MemoryStore, RedisStore, Store,
    store::{Bb8Pool, CasOutcome},
};

use crate::common::RedisServer;

const V1: &[u8] = br#"{"format":1,"version":1,"data":{}}"#;
const V2: &[u8] = br#"{"format":1,"version":2,"data":{"a":1}}"#;
const V3: &[u8] = br#"{"format":1,"version":3,"data":{"a":2}}"#;
const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);

/// A store under test, and a look behind its back: how many live records it
/// holds (for Redis, also what keeps its server running).
struct Subject<S> {
    store: S,
    records: Box<dyn Fn() -> usize>,
}

impl<S> Subject<S> {
    fn records(&self) -> usize {
        (self.records)()
    }
}

async fn memory() -> Subject<MemoryStore> {
    let store = MemoryStore::new();
    let view = store.clone();
    Subject {
        store,
        records: Box::new(move || view.len()),
    }
}

/// Counts the keys of `redis`, which lives as long as the count.
fn keys_of(redis: RedisServer) -> Box<dyn Fn() -> usize> {
    Box::new(move || redis.keys().len())
}

async fn connection_manager() -> Subject<RedisStore> {
    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url())
        .await
        .expect("connect to the private redis-server");
    Subject {
        store,
        records: keys_of(redis),
    }
}

async fn bb8_pool() -> Subject<RedisStore<Bb8Pool>> {
    let redis = RedisServer::start();
    let manager = bb8_redis::RedisConnectionManager::new(redis.url()).unwrap();
    // As the crate recommends: no PING before every operation.
    let pool = bb8::Pool::builder()
        .max_size(2)
        .test_on_check_out(false)
        .build(manager)
        .await
        .unwrap();
    Subject {
        store: RedisStore::from_pool(pool).await.unwrap(),
        records: keys_of(redis),
    }
}

/// A 3-master cluster: the contract's keys land in different slots.
#[cfg(feature = "cluster")]
async fn cluster() -> Subject<RedisStore<redis::cluster_async::ClusterConnection>> {
    let cluster = crate::common::RedisCluster::start();
    let store = RedisStore::connect_cluster(cluster.urls())
        .await
        .expect("connect to the private cluster");
    Subject {
        store,
        records: Box::new(move || cluster.keys().len()),
    }
}

async fn a_missing_key_loads_as_none<S: Store>(subject: &Subject<S>) {
    let store = &subject.store;
    assert_eq!(store.load("k", None).await.unwrap(), None);
    assert_eq!(
        store.load("k", Some(MINUTE)).await.unwrap(),
        None,
        "a refresh creates nothing"
    );
    assert_eq!(subject.records(), 0);
}

async fn a_created_record_loads_as_its_bytes<S: Store>(subject: &Subject<S>) {
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

async fn create_refuses_an_existing_key_and_leaves_it_unchanged<S: Store>(subject: &Subject<S>) {
    let store = &subject.store;
    assert!(store.create("k", V1, MINUTE).await.unwrap());
    assert!(!store.create("k", V2, MINUTE).await.unwrap());
    assert_eq!(store.load("k", None).await.unwrap().as_deref(), Some(V1));
    assert_eq!(subject.records(), 1);
}

async fn update_at_the_stored_version_writes<S: Store>(subject: &Subject<S>) {
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

async fn update_at_another_version_writes_nothing_and_answers_the_current_record<S: Store>(
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

async fn update_of_a_missing_key_creates_nothing<S: Store>(subject: &Subject<S>) {
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
/// (`{"format":1,"version":N,`): a record without it matches no version,
/// so nothing overwrites or deletes it by version.
async fn a_record_without_the_fixed_header_matches_no_version<S: Store>(subject: &Subject<S>) {
    let store = &subject.store;
    let records: [&[u8]; 4] = [
        br#"{"version":1,"format":1,"data":{}}"#,
        br#"{"format":1, "version":1, "data":{}}"#,
        br#"{"format":1,"data":{},"version":1}"#,
        b"not a record",
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
    assert_eq!(subject.records(), 4);
}

async fn delete_removes_the_record<S: Store>(subject: &Subject<S>) {
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

/// The compare-and-delete a clear uses.
async fn a_record_is_deleted_only_at_the_version_given<S: Store>(subject: &Subject<S>) {
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
/// shortened to it; some operations then give it a minute.
async fn records_live_as_long_as_their_last_ttl<S: Store>(subject: &Subject<S>) {
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
    assert_eq!(subject.records(), 6);

    tokio::time::sleep(2 * SECOND).await;
    for gone in ["plain", "read", "refused", "shortened"] {
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

/// A test per contract and kind of store, in a module named after the kind.
macro_rules! on_store {
    ($subject:ident: $($contract:ident),+) => {
        mod $subject {
            $(
                #[tokio::test]
                async fn $contract() {
                    super::$contract(&super::$subject().await).await;
                }
            )+
        }
    };
}

macro_rules! on_every_store {
    ($($contract:ident),+ $(,)?) => {
        on_store!(memory: $($contract),+);
        on_store!(connection_manager: $($contract),+);
        on_store!(bb8_pool: $($contract),+);
        #[cfg(feature = "cluster")]
        on_store!(cluster: $($contract),+);
    };
}

on_every_store!(
    a_missing_key_loads_as_none,
    a_created_record_loads_as_its_bytes,
    create_refuses_an_existing_key_and_leaves_it_unchanged,
    update_at_the_stored_version_writes,
    update_at_another_version_writes_nothing_and_answers_the_current_record,
    update_of_a_missing_key_creates_nothing,
    a_record_without_the_fixed_header_matches_no_version,
    delete_removes_the_record,
    a_record_is_deleted_only_at_the_version_given,
    records_live_as_long_as_their_last_ttl,
);
