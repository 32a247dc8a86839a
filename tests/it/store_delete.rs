//! The compare-and-delete a clear uses, against a real redis-server.

use std::time::Duration;

use crate::common::*;
use tower_pipeline_state::{Store, store::UpdateOutcome};

const V1: &[u8] = br#"{"format":1,"version":1,"data":{}}"#;
const V2: &[u8] = br#"{"format":1,"version":2,"data":{"a":1}}"#;

#[tokio::test]
async fn a_record_is_deleted_only_at_the_version_given() {
    let redis = RedisServer::start();
    let store = redis_store(&redis.url()).await;
    let ttl = Duration::from_secs(60);
    assert!(store.create("k", V1, ttl, None).await.unwrap());
    assert_eq!(
        store.update("k", 1, V2, ttl).await.unwrap(),
        UpdateOutcome::Written
    );

    assert_eq!(
        store.delete_if_version("k", 1).await.unwrap(),
        UpdateOutcome::Newer(V2.to_vec()),
        "a clear based on an older version is refused"
    );
    assert_eq!(redis.get("k").as_deref(), Some(V2), "and deletes nothing");

    assert_eq!(
        store.delete_if_version("k", 2).await.unwrap(),
        UpdateOutcome::Written
    );
    assert_eq!(redis.keys(), Vec::<String>::new());
    assert_eq!(
        store.delete_if_version("k", 2).await.unwrap(),
        UpdateOutcome::Missing,
        "a second clear finds nothing"
    );
}
