//! `durability(replicas, timeout)`: every write waits until that many
//! replicas have it (`WAIT`, pipelined with the write on its connection).
//! With a live replica every acknowledged write is already on the replica;
//! with the replica stopped, writes answer 503 "not confirmed" and never
//! 2xx. Reads are not held up.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tower_pipeline_state::{PipelineStateLayer, RedisStore};

use crate::common::*;

/// A primary and one replica of it, in sync.
fn primary_and_replica() -> (RedisServer, RedisServer) {
    let primary = RedisServer::start();
    let replica =
        RedisServer::start_configured(&[&format!("replicaof 127.0.0.1 {}", primary.port())]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut replica.admin())
            .unwrap();
        if info.contains("master_link_status:up") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replica did not sync: {info}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (primary, replica)
}

const WAIT: Duration = Duration::from_millis(300);

#[tokio::test]
async fn with_a_live_replica_every_acknowledged_write_is_on_the_replica() {
    let _serial = SERIAL.lock().await;
    let (primary, replica) = primary_and_replica();
    let layer = PipelineStateLayer::new(redis_store(&primary.url()).await).durability(1, WAIT);
    let app = serve_with(layer).await;
    let browser = browser();

    // Each write is on the replica the moment it is acknowledged.
    let created = browser.post(app.url("/incr")).send().await.unwrap();
    assert_eq!(created.status(), StatusCode::OK);
    let key = created_key(&created);
    assert_eq!(replica.get(&key), primary.get(&key), "created");
    assert!(replica.get(&key).is_some());

    assert_eq!(text_of(browser.post(app.url("/incr"))).await, "2");
    assert_eq!(replica.get(&key), primary.get(&key), "updated");

    let regenerated = browser.post(app.url("/regenerate")).send().await.unwrap();
    assert_eq!(regenerated.status(), StatusCode::OK);
    let new_key = created_key(&regenerated);
    assert_eq!(
        replica.get(&key),
        None,
        "the old key's delete is replicated"
    );
    assert_eq!(replica.get(&new_key), primary.get(&new_key), "regenerated");

    let cleared = browser.post(app.url("/clear")).send().await.unwrap();
    assert_eq!(cleared.status(), StatusCode::OK);
    assert_eq!(
        replica.keys(),
        Vec::<String>::new(),
        "cleared on the replica too"
    );
}

#[tokio::test]
async fn with_the_replica_stopped_writes_answer_503_and_reads_still_work() {
    let _serial = SERIAL.lock().await;
    let (logs, _guard) = Logs::capture();
    let (primary, mut replica) = primary_and_replica();
    let layer = PipelineStateLayer::new(redis_store(&primary.url()).await).durability(1, WAIT);
    let app = serve_with(layer).await;
    let browser = browser();
    let created = browser.post(app.url("/incr")).send().await.unwrap();
    assert_eq!(created.status(), StatusCode::OK);

    replica.stop();
    let update = browser.post(app.url("/incr")).send().await.unwrap();
    assert_eq!(
        update.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "never 2xx"
    );
    assert_eq!(
        update.text().await.unwrap(),
        "pipeline state store unavailable; the changes may not have been saved\n"
    );
    // The update is on the primary all the same ("not confirmed" is not
    // "not written"): reads, which wait for nothing, show it.
    assert_eq!(text_of(browser.get(app.url("/read"))).await, "count=2");

    let fresh = crate::common::browser();
    let create = fresh.post(app.url("/incr")).send().await.unwrap();
    assert_eq!(create.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        set_cookie(&create),
        None,
        "no cookie for an unconfirmed flow"
    );
    let clear = browser.post(app.url("/clear")).send().await.unwrap();
    assert_eq!(clear.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        !logs
            .matching(&[
                "write not confirmed",
                "0 of 1 replicas acknowledged it within 300ms"
            ])
            .is_empty(),
        "the log says why: {}",
        logs.text()
    );
}

#[tokio::test]
async fn asking_for_more_replicas_than_there_are_is_never_confirmed() {
    let _serial = SERIAL.lock().await;
    let (primary, _replica) = primary_and_replica();
    let layer = PipelineStateLayer::new(redis_store(&primary.url()).await).durability(2, WAIT);
    let app = serve_with(layer).await;
    let created = browser().post(app.url("/incr")).send().await.unwrap();
    assert_eq!(created.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
#[should_panic(expected = "durability needs at least one replica to wait for, got 0")]
async fn zero_replicas_are_refused() {
    let redis = RedisServer::start();
    let _ = PipelineStateLayer::new(redis_store(&redis.url()).await).durability(0, WAIT);
}

#[tokio::test]
#[should_panic(expected = "the durability timeout must be longer than zero")]
async fn a_zero_wait_is_refused() {
    let redis = RedisServer::start();
    let _ = PipelineStateLayer::new(redis_store(&redis.url()).await).durability(1, Duration::ZERO);
}

#[tokio::test]
#[should_panic(expected = "must be shorter than store_timeout")]
async fn a_wait_as_long_as_the_store_timeout_is_refused() {
    let redis = RedisServer::start();
    let layer = PipelineStateLayer::new(redis_store(&redis.url()).await)
        .durability(1, Duration::from_secs(1))
        .store_timeout(Duration::from_secs(1));
    let _ = serve_with(layer).await;
}

#[tokio::test]
async fn durability_works_over_a_bb8_pool_too() {
    let _serial = SERIAL.lock().await;
    let (primary, replica) = primary_and_replica();
    let manager = bb8_redis::RedisConnectionManager::new(primary.url()).unwrap();
    let pool = bb8::Pool::builder()
        .max_size(4)
        .test_on_check_out(false)
        .build(manager)
        .await
        .unwrap();
    let store = RedisStore::from_pool(pool).await.unwrap();
    let app = serve_with(PipelineStateLayer::new(store).durability(1, WAIT)).await;
    let created = browser().post(app.url("/incr")).send().await.unwrap();
    assert_eq!(created.status(), StatusCode::OK);
    let key = created_key(&created);
    assert_eq!(replica.get(&key), primary.get(&key));
}

/// What an asynchronous replica loses at a failover, and what `durability`
/// does about it. The replica is cut off from the primary (pointed at a
/// port where nothing listens, as a network partition would), so it misses
/// the next writes; the primary dies; the replica is promoted (`REPLICAOF
/// NO ONE`, what Sentinel or a cluster failover does). The write the primary
/// acknowledged with 2xx is gone. The same write under `durability(1, ...)`
/// answered 503.
#[tokio::test]
async fn without_durability_a_failover_loses_an_acknowledged_write_that_durability_refuses() {
    let _serial = SERIAL.lock().await;
    let (mut primary, replica) = primary_and_replica();
    let plain = serve_with(PipelineStateLayer::new(redis_store(&primary.url()).await)).await;
    let durable =
        serve_with(PipelineStateLayer::new(redis_store(&primary.url()).await).durability(1, WAIT))
            .await;
    let browser = browser();
    let created = browser.post(plain.url("/incr")).send().await.unwrap();
    let key = created_key(&created);
    // Both servers see count=1 on the replica (a durable write to sync).
    assert_eq!(text_of(browser.post(durable.url("/incr"))).await, "2");

    let nowhere = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(nowhere)
        .query(&mut replica.admin())
        .unwrap();
    let durable_write = browser.post(durable.url("/incr")).send().await.unwrap();
    assert_eq!(
        durable_write.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "not confirmed: no replica has it"
    );
    let plain_write = browser.post(plain.url("/incr")).send().await.unwrap();
    assert_eq!(
        plain_write.status(),
        StatusCode::OK,
        "acknowledged by the primary alone"
    );
    assert_eq!(plain_write.text().await.unwrap(), "4");

    primary.stop();
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut replica.admin())
        .unwrap();
    let raw = replica.get(&key).expect("the flow survived the failover");
    let record: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        record["data"]["count"], 2,
        "the acknowledged 4 (and the unconfirmed 3) are lost; the durable 2 is not"
    );
}
