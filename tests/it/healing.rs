//! Connections that heal: after Redis kills the app's connections
//! (`CLIENT KILL TYPE normal`) or restarts on the same port, each kind of
//! connection the README names serves again by itself, failing at most one
//! write per broken connection; a load is sent again on a fresh connection,
//! so the first request that needs Redis succeeds. A bare
//! `MultiplexedConnection` never heals, as the docs say.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use tower_pipeline_state::{PipelineStateLayer, RedisStore, Store};

use crate::common::*;

/// One request of flow `id` (none: a new flow); answers the status and the
/// new flow id, if the response set one.
async fn send(
    app: &Server,
    method: reqwest::Method,
    path: &str,
    id: Option<&str>,
) -> (StatusCode, Option<String>) {
    let mut request = reqwest::Client::new().request(method, app.url(path));
    if let Some(id) = id {
        request = request.header("cookie", format!("pipeline_id={id}"));
    }
    let response = request.send().await.unwrap();
    let cookie = set_cookie(&response).map(|cookie| cookie.value().to_owned());
    (response.status(), cookie)
}

async fn bb8_store(url: &str, size: u32) -> RedisStore<tower_pipeline_state::store::Bb8Pool> {
    let manager = bb8_redis::RedisConnectionManager::new(url).unwrap();
    // As the docs recommend: no PING before every checkout.
    let pool = bb8::Pool::builder()
        .max_size(size)
        .min_idle(size)
        .test_on_check_out(false)
        .build(manager)
        .await
        .unwrap();
    RedisStore::from_pool(pool).await.unwrap()
}

async fn multiplexed_store(url: &str) -> RedisStore<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(url).unwrap();
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    RedisStore::new(
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .unwrap(),
    )
}

/// Kills every connection but the admin one; answers how many.
fn kill_connections(redis: &RedisServer) -> i64 {
    redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "normal", "SKIPME", "yes"])
        .query(&mut redis.admin())
        .expect("CLIENT KILL")
}

/// Sends `rounds` of (increment, read) one after another on flow `id`;
/// answers every status in order and the acknowledged increments.
async fn sequential(app: &Server, id: &str, rounds: usize) -> (Vec<StatusCode>, u64) {
    let mut statuses = Vec::new();
    let mut acknowledged = 0;
    for _ in 0..rounds {
        let (incr, _) = send(app, reqwest::Method::POST, "/incr", Some(id)).await;
        acknowledged += u64::from(incr == StatusCode::OK);
        let (read, _) = send(app, reqwest::Method::GET, "/read", Some(id)).await;
        statuses.extend([incr, read]);
    }
    (statuses, acknowledged)
}

fn tally(statuses: &[StatusCode]) -> BTreeMap<u16, usize> {
    let mut tally = BTreeMap::new();
    for status in statuses {
        *tally.entry(status.as_u16()).or_default() += 1;
    }
    tally
}

fn stored_count(redis: &RedisServer, id: &str) -> u64 {
    let raw = redis
        .get(&format!("pipeline:{id}"))
        .expect("the flow is stored");
    let record: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    record["data"]["count"].as_u64().unwrap()
}

/// Kills the app's connections while it idles, then sends 10 rounds of
/// (increment, read): at most one 503 per killed connection, the last
/// rounds all 2xx, and the stored count holds every acknowledged
/// increment. Answers the statuses.
async fn heals_after_killed_connections<St: Store>(
    redis: &RedisServer,
    store: St,
    kind: &str,
) -> Vec<StatusCode> {
    let app = serve_with(PipelineStateLayer::new(store)).await;
    let (status, id) = send(&app, reqwest::Method::POST, "/incr", None).await;
    assert_eq!(status, StatusCode::OK);
    let id = id.unwrap();
    // Every pooled connection in use once.
    let mut warm = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let request = reqwest::Client::new()
            .get(app.url("/read"))
            .header("cookie", format!("pipeline_id={id}"));
        warm.spawn(async move { request.send().await.unwrap().status() });
    }
    while let Some(status) = warm.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::OK);
    }

    let killed = kill_connections(redis);
    assert!(killed > 0, "{kind}: the app had connections to kill");
    let (statuses, acknowledged) = sequential(&app, &id, 10).await;
    println!(
        "{kind}: killed {killed} connections; answers in order {:?}",
        tally(&statuses)
    );
    let failed = statuses.iter().filter(|s| **s != StatusCode::OK).count();
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::SERVICE_UNAVAILABLE),
        "{kind}: {statuses:?}"
    );
    assert!(
        i64::try_from(failed).unwrap() <= killed,
        "{kind}: at most one 503 per killed connection ({killed}): {statuses:?}"
    );
    assert!(
        statuses[10..].iter().all(|s| *s == StatusCode::OK),
        "{kind}: then only 2xx: {statuses:?}"
    );
    let stored = stored_count(redis, &id);
    assert!(
        (1 + acknowledged..=1 + acknowledged + failed as u64).contains(&stored),
        "{kind}: {acknowledged} acknowledged, {failed} failed, {stored} stored"
    );
    statuses
}

/// Restarts Redis (empty) while the app idles: the first request, a load,
/// succeeds and sees the flow expired; then 10 rounds of (increment, read)
/// on a new flow fail at most `broken` writes (connections the restart
/// broke that are found broken by a write), and end in 2xx only.
async fn serves_at_once_after_a_restart<St: Store>(
    redis: &mut RedisServer,
    store: St,
    broken: usize,
    kind: &str,
) {
    let app = serve_with(PipelineStateLayer::new(store)).await;
    let (_, id) = send(&app, reqwest::Method::POST, "/incr", None).await;
    let id = id.unwrap();
    redis.restart();
    let (status, _) = send(&app, reqwest::Method::GET, "/status", Some(&id)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{kind}: the first request after the restart"
    );
    let (mut new_id, mut failed) = (None, 0);
    while new_id.is_none() {
        let (status, id) = send(&app, reqwest::Method::POST, "/incr", None).await;
        assert!(status == StatusCode::OK || status == StatusCode::SERVICE_UNAVAILABLE);
        failed += usize::from(status != StatusCode::OK);
        new_id = id;
    }
    let (statuses, _) = sequential(&app, new_id.as_deref().unwrap(), 10).await;
    failed += statuses.iter().filter(|s| **s != StatusCode::OK).count();
    println!(
        "{kind} after a restart: {failed} writes failed; then answers {:?}",
        tally(&statuses)
    );
    assert!(failed <= broken, "{kind}: {statuses:?}");
    assert!(
        statuses[10..].iter().all(|s| *s == StatusCode::OK),
        "{kind}: {statuses:?}"
    );
}

#[tokio::test]
async fn a_connection_manager_heals_after_its_connection_is_killed() {
    let _serial = SERIAL.lock().await;
    let redis = RedisServer::start();
    let store = redis_store(&redis.url()).await;
    heals_after_killed_connections(&redis, store, "ConnectionManager").await;
}

#[tokio::test]
async fn a_bb8_pool_heals_after_its_connections_are_killed() {
    let _serial = SERIAL.lock().await;
    let redis = RedisServer::start();
    let store = bb8_store(&redis.url(), 4).await;
    heals_after_killed_connections(&redis, store, "bb8 pool of 4").await;
}

#[tokio::test]
async fn a_connection_manager_serves_the_first_request_after_a_restart() {
    let _serial = SERIAL.lock().await;
    let mut redis = RedisServer::start();
    let store = redis_store(&redis.url()).await;
    serves_at_once_after_a_restart(&mut redis, store, 0, "ConnectionManager").await;
}

#[tokio::test]
async fn a_bb8_pool_serves_the_first_request_after_a_restart() {
    let _serial = SERIAL.lock().await;
    let mut redis = RedisServer::start();
    let store = bb8_store(&redis.url(), 4).await;
    serves_at_once_after_a_restart(&mut redis, store, 4, "bb8 pool of 4").await;
}

#[tokio::test]
async fn a_connection_manager_creates_a_flow_as_the_first_request_after_a_restart() {
    let _serial = SERIAL.lock().await;
    let mut redis = RedisServer::start();
    let app = serve_with(PipelineStateLayer::new(redis_store(&redis.url()).await)).await;
    send(&app, reqwest::Method::POST, "/incr", None).await;
    redis.restart();
    // The manager reconnected when the server closed the connection (or is
    // reconnecting now): the first command, a write, finds a live one.
    let (status, id) = send(&app, reqwest::Method::POST, "/incr", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(redis.keys(), [format!("pipeline:{}", id.unwrap())]);
}

#[tokio::test]
async fn a_bare_multiplexed_connection_never_heals() {
    let _serial = SERIAL.lock().await;
    let redis = RedisServer::start();
    let app = serve_with(PipelineStateLayer::new(
        multiplexed_store(&redis.url()).await,
    ))
    .await;
    let (_, id) = send(&app, reqwest::Method::POST, "/incr", None).await;
    let id = id.unwrap();
    assert_eq!(kill_connections(&redis), 1);
    let (statuses, _) = sequential(&app, &id, 3).await;
    assert_eq!(
        statuses,
        [StatusCode::SERVICE_UNAVAILABLE; 6],
        "the README tells users to prefer RedisStore::connect for this reason"
    );
}

#[cfg(feature = "cluster")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_connection_heals_after_its_connections_are_killed() {
    let _serial = SERIAL.lock().await;
    let cluster = RedisCluster::start();
    let store = crate::cluster::cluster_store(&cluster).await;
    let app = serve_with(PipelineStateLayer::new(store)).await;
    let (_, id) = send(&app, reqwest::Method::POST, "/incr", None).await;
    let id = id.unwrap();
    let mut killed = 0;
    for node in &cluster.nodes {
        killed += kill_connections(node);
    }
    let (statuses, acknowledged) = sequential(&app, &id, 10).await;
    println!(
        "cluster: killed {killed} connections; answers {:?}",
        tally(&statuses)
    );
    let failed = statuses.iter().filter(|s| **s != StatusCode::OK).count();
    assert!(i64::try_from(failed).unwrap() <= killed, "{statuses:?}");
    assert!(
        statuses[10..].iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    let stored = crate::cluster::stored_count(&cluster, &id).unwrap();
    assert!((1 + acknowledged..=1 + acknowledged + failed as u64).contains(&stored));
}
