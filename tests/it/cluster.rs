//! The layer on a Redis Cluster (3 masters, private, started per test):
//! the whole lifecycle, racing increments over two app servers, and the
//! refusal of a cluster without `GETEX`. Failover and resharding under load
//! are in `topology_faults.rs`.

use std::collections::BTreeSet;

use redis::cluster_async::ClusterConnection;
use reqwest::StatusCode;
use tower_pipeline_state::{PipelineStateLayer, RedisStore, StoreError};

use crate::common::{race::*, *};

pub(crate) async fn cluster_store(cluster: &RedisCluster) -> RedisStore<ClusterConnection> {
    RedisStore::connect_cluster(cluster.urls())
        .await
        .expect("connect to the private cluster")
}

/// The `count` of flow `id`, read from its master behind the layer.
pub(crate) fn stored_count(cluster: &RedisCluster, id: &str) -> Option<u64> {
    let raw = cluster.get(&format!("pipeline:{id}"))?;
    let record: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    record["data"]["count"].as_u64()
}

fn id_of(response: &reqwest::Response) -> String {
    set_cookie(response)
        .expect("the response sets the flow cookie")
        .value()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_lives_its_whole_life_on_a_cluster() {
    let _serial = SERIAL.lock().await;
    let cluster = RedisCluster::start();
    lifecycle(&cluster, cluster_store(&cluster).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_lives_its_whole_life_on_a_cluster_with_replicas() {
    let _serial = SERIAL.lock().await;
    let cluster = RedisCluster::start_with(1, &[]);
    lifecycle(&cluster, cluster_store(&cluster).await).await;
}

/// Create, read, change, regenerate 20 times in a row, write after expiry,
/// clear, through `store` on `cluster`.
pub(crate) async fn lifecycle(cluster: &RedisCluster, store: RedisStore<ClusterConnection>) {
    let app = serve_with(PipelineStateLayer::new(store)).await;
    let browser = browser();

    // Create, read, change.
    let created = browser.post(app.url("/incr")).send().await.unwrap();
    let mut id = id_of(&created);
    assert_eq!(created.text().await.unwrap(), "1");
    assert_eq!(cluster.keys(), [format!("pipeline:{id}")]);
    assert_eq!(text_of(browser.get(app.url("/read"))).await, "count=1");
    assert_eq!(text_of(browser.post(app.url("/incr"))).await, "2");

    // Regenerate 20 times in a row: each moves the flow to a new key, most
    // often in another slot on another master; never two live copies.
    let mut masters = BTreeSet::new();
    for n in 0..20 {
        let regenerated = browser.post(app.url("/regenerate")).send().await.unwrap();
        assert_eq!(regenerated.status(), StatusCode::OK, "regenerate {n}");
        let new_id = id_of(&regenerated);
        assert_ne!(new_id, id);
        assert_eq!(regenerated.text().await.unwrap(), new_id);
        let key = format!("pipeline:{new_id}");
        assert_eq!(cluster.keys(), std::slice::from_ref(&key), "regenerate {n}");
        masters.insert(cluster.master_of(&key));
        id = new_id;
    }
    assert!(
        masters.len() > 1,
        "the flow moved between masters: {masters:?}"
    );
    assert_eq!(
        text_of(browser.get(app.url("/read"))).await,
        "count=2",
        "the state moved with the flow"
    );

    // A write after the flow expired starts a new one under a new id.
    cluster.del(&format!("pipeline:{id}"));
    assert_eq!(
        text_of(browser.get(app.url("/status"))).await,
        "expired none"
    );
    let restarted = browser.post(app.url("/incr")).send().await.unwrap();
    let new_id = id_of(&restarted);
    assert_ne!(new_id, id);
    assert_eq!(restarted.text().await.unwrap(), "1");
    assert_eq!(cluster.keys(), [format!("pipeline:{new_id}")]);

    // Clear.
    let cleared = browser.post(app.url("/clear")).send().await.unwrap();
    assert_eq!(cleared.status(), StatusCode::OK);
    assert!(removes(&set_cookie(&cleared).unwrap()));
    assert_eq!(cluster.keys(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_app_servers_share_a_flow_on_a_cluster() {
    let _serial = SERIAL.lock().await;
    let cluster = RedisCluster::start();
    let one = serve_with(PipelineStateLayer::new(cluster_store(&cluster).await)).await;
    // One seed node is enough: the others are discovered.
    let seed = RedisStore::connect_cluster([cluster.urls()[2].clone()])
        .await
        .unwrap();
    let two = serve_with(PipelineStateLayer::new(seed)).await;
    let browser = browser();

    assert_eq!(text_of(browser.post(one.url("/incr"))).await, "1");
    assert_eq!(text_of(browser.post(two.url("/incr"))).await, "2");
    assert_eq!(text_of(browser.get(one.url("/read"))).await, "count=2");
    let regenerated = browser.post(two.url("/regenerate")).send().await.unwrap();
    let id = id_of(&regenerated);
    assert_eq!(
        text_of(browser.get(one.url("/status"))).await,
        format!("loaded {id}")
    );
    assert_eq!(text_of(browser.post(one.url("/incr"))).await, "3");
    browser.post(two.url("/clear")).send().await.unwrap();
    assert_eq!(text_of(browser.get(one.url("/status"))).await, "new none");
    assert_eq!(cluster.keys(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_clients_racing_over_two_app_servers_on_a_cluster_lose_nothing() {
    let _serial = SERIAL.lock().await;
    let cluster = RedisCluster::start();
    let stores = [cluster_store(&cluster).await, cluster_store(&cluster).await];
    race(&cluster, stores).await;
}

/// 16 clients × 20 concurrent increments of one flow, over two app servers
/// with a store each: only 200 and 409, and the stored count is 1 + the
/// 200s.
pub(crate) async fn race(cluster: &RedisCluster, stores: [RedisStore<ClusterConnection>; 2]) {
    let [one, two] = stores;
    let one = serve_with(PipelineStateLayer::new(one)).await;
    let two = serve_with(PipelineStateLayer::new(two)).await;
    let id = start_flow(&one).await; // count = 1

    let tally = race_increments(&[&one, &two], &id, 16, 20).await;
    let (ok, conflicts) = (
        tally.count(StatusCode::OK),
        tally.count(StatusCode::CONFLICT),
    );
    assert_eq!(
        ok + conflicts,
        320,
        "only 200 and 409: {:?}",
        tally.statuses
    );
    assert!(ok > 0);
    assert_eq!(
        stored_count(cluster, &id),
        Some(1 + ok),
        "every acknowledged increment is stored, none more ({conflicts} conflicts)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_without_getex_is_refused_when_connecting() {
    let _serial = SERIAL.lock().await;
    let cluster = RedisCluster::start_with(0, &[r#"rename-command GETEX """#]);
    let error = RedisStore::connect_cluster(cluster.urls())
        .await
        .expect_err("a cluster without GETEX is refused");
    assert!(
        matches!(&error, StoreError::ServerTooOld { found, needed: "6.2" } if found.starts_with(char::is_numeric)),
        "{error:?}"
    );
    assert_eq!(error.kind(), "server_too_old");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_with_one_master_without_getex_is_refused_and_the_master_named() {
    let _serial = SERIAL.lock().await;
    let mut cluster = RedisCluster::start();
    let old = *cluster.masters().keys().nth(1).unwrap();
    cluster.restart_with(old, r#"rename-command GETEX """#);
    cluster.wait_until_settled();
    let error = RedisStore::connect_cluster(cluster.urls())
        .await
        .expect_err("a cluster with a master without GETEX is refused");
    let StoreError::ServerTooOld { found, .. } = &error else {
        panic!("{error:?}");
    };
    assert!(found.ends_with(&format!(" at 127.0.0.1:{old}")), "{found}");
    assert!(!found.contains(','), "only that master: {found}");
}
