//! The `Store` contract (`tower_pipeline_state::store::contract`), each
//! part run as a test of its own on `MemoryStore`, on `RedisStore` over a
//! `ConnectionManager`, on `RedisStore` over a bb8 pool, and on `RedisStore`
//! over a cluster connection, the Redis ones against a private redis-server
//! or cluster. `MemoryStore` promises Redis's semantics; this is where the
//! promise is checked. The store the `Store` docs implement runs it too, in
//! their doctest.

use tower_pipeline_state::{
    MemoryStore, RedisStore,
    store::{Bb8Pool, contract::Subject},
};

use crate::common::RedisServer;

async fn memory() -> Subject<MemoryStore> {
    let store = MemoryStore::new();
    let view = store.clone();
    Subject::new(store, move || view.len())
}

/// Counts the keys of `redis`, which lives as long as the count.
fn keys_of(redis: RedisServer) -> impl Fn() -> usize + Send + Sync + 'static {
    move || redis.keys().len()
}

async fn connection_manager() -> Subject<RedisStore> {
    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url())
        .await
        .expect("connect to the private redis-server");
    Subject::new(store, keys_of(redis))
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
    Subject::new(RedisStore::from_pool(pool).await.unwrap(), keys_of(redis))
}

/// A 3-master cluster: the contract's keys land in different slots.
#[cfg(feature = "cluster")]
async fn cluster() -> Subject<RedisStore<redis::cluster_async::ClusterConnection>> {
    let cluster = crate::common::RedisCluster::start();
    let store = RedisStore::connect_cluster(cluster.urls())
        .await
        .expect("connect to the private cluster");
    Subject::new(store, move || cluster.keys().len())
}

/// A test per contract and kind of store, in a module named after the kind.
macro_rules! on_store {
    ($subject:ident: $($contract:ident),+) => {
        mod $subject {
            use tower_pipeline_state::store::contract;
            $(
                #[tokio::test]
                async fn $contract() {
                    contract::$contract(&super::$subject().await).await;
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
