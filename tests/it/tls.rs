//! TLS (feature `tls`), with a certificate authority each test makes
//! (rcgen, in the test kit): a redis-server listening with `tls-port`, a
//! flow over `rediss://` with that authority as the custom root, and the
//! same server refused when the authority is not trusted; and a Redis
//! Cluster over TLS (`tls-port`, `tls-cluster yes`, `tls-replication yes`),
//! reached from `rediss://` seeds with `connect_cluster_tls`: the plain
//! cluster's lifecycle and race, a slot migrating to a master just added,
//! and every connection the app opens on a TLS port. How the crate picks
//! rustls's crypto provider is tested in a process of its own:
//! `tests/crypto_provider.rs`.

use redis::{Client, TlsCertificates};
use reqwest::StatusCode;
use tower_pipeline_state::{
    PipelineStateLayer, RedisStore, Store,
    store::{CasOutcome, record_version},
};

use crate::common::*;

/// The authority as the root a client trusts.
fn trusting(authority: &Authority) -> TlsCertificates {
    TlsCertificates {
        client_tls: None,
        root_cert: Some(authority.pem().as_bytes().to_vec()),
    }
}

/// The application's connections to a node: every client but the test's
/// own admin connection (which lists them) and the cluster bus.
fn app_clients(node: &RedisServer) -> Vec<String> {
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut node.admin())
        .unwrap();
    clients
        .lines()
        .filter(|line| !line.contains("cmd=client"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_flow_runs_over_rediss_with_a_custom_root_certificate() {
    let redis = TlsRedis::start();
    let url = format!("rediss://localhost:{}", redis.tls_port);
    let client = Client::build_with_tls(url.as_str(), trusting(&redis.authority)).unwrap();
    let store = RedisStore::connect_client(client).await.unwrap();
    let app = serve_with(PipelineStateLayer::new(store)).await;
    let browser = browser();

    let created = browser.post(app.url("/incr")).send().await.unwrap();
    assert_eq!(created.status(), StatusCode::OK);
    let key = created_key(&created);
    assert_eq!(text_of(browser.post(app.url("/incr"))).await, "2");
    assert_eq!(text_of(browser.get(app.url("/read"))).await, "count=2");
    assert_eq!(redis.server.keys(), [key]);
    browser.post(app.url("/clear")).send().await.unwrap();
    assert_eq!(redis.server.keys(), Vec::<String>::new());

    // The commands came over the TLS port: the only client connected
    // (besides the test's admin one on the plain port) is on it.
    let clients = app_clients(&redis.server);
    assert_eq!(clients.len(), 1, "{clients:?}");
    assert!(
        clients[0].contains(&format!("laddr=127.0.0.1:{}", redis.tls_port)),
        "{clients:?}"
    );
}

#[tokio::test]
async fn rediss_refuses_a_server_whose_certificate_is_not_trusted() {
    let redis = TlsRedis::start();
    // Without the custom root, only the system's roots are trusted.
    let error = RedisStore::connect(&format!("rediss://localhost:{}", redis.tls_port))
        .await
        .expect_err("an unknown authority is refused");
    assert_eq!(error.kind(), "backend", "{error:?}");
}

async fn tls_cluster_store(
    cluster: &RedisCluster,
    authority: &Authority,
) -> RedisStore<redis::cluster_async::ClusterConnection> {
    RedisStore::connect_cluster_tls(cluster.tls_urls(), trusting(authority))
        .await
        .expect("connect to the private TLS cluster")
}

/// Every connection of the app to any node is on the node's TLS port (and
/// there are some).
fn only_tls_clients(cluster: &RedisCluster) {
    let mut checked = 0;
    for node in cluster.nodes.iter().filter(|node| node.is_running()) {
        let tls = format!("laddr=127.0.0.1:{} ", node.tls_port().unwrap());
        for client in app_clients(node) {
            // Replication links are the nodes' own.
            if client.contains("flags=S") || client.contains("flags=M") {
                continue;
            }
            assert!(client.contains(&tls), "a plain connection: {client}");
            checked += 1;
        }
    }
    assert!(checked > 0, "the app's connections were found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_lives_its_whole_life_on_a_tls_cluster() {
    let _serial = SERIAL.lock().await;
    let authority = Authority::new();
    let cluster = RedisCluster::start_tls(0, &authority);
    let store = tls_cluster_store(&cluster, &authority).await;
    // A clone keeps the store's connections open for the check after.
    crate::cluster::lifecycle(&cluster, store.clone()).await;
    only_tls_clients(&cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_clients_racing_over_two_app_servers_on_a_tls_cluster_with_replicas_lose_nothing() {
    let _serial = SERIAL.lock().await;
    let authority = Authority::new();
    let cluster = RedisCluster::start_tls(1, &authority);
    let stores = [
        tls_cluster_store(&cluster, &authority).await,
        tls_cluster_store(&cluster, &authority).await,
    ];
    crate::cluster::race(&cluster, stores.clone()).await;
    only_tls_clients(&cluster);
}

/// A master added to the TLS cluster, its first slot migrating to it: the
/// store follows `ASK` to it over a TLS connection of its own, trusting the
/// same authority, before the cluster connection knows the master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_migrating_on_a_tls_cluster_is_followed_over_tls() {
    let _serial = SERIAL.lock().await;
    let authority = Authority::new();
    let mut cluster = RedisCluster::start_tls(0, &authority);
    let store = tls_cluster_store(&cluster, &authority).await;
    let key = "pipeline:0123456789abcdef0123456789abcdef";
    let record = br#"{"format":1,"version":1,"data":{"count":1}}"#;
    let minute = std::time::Duration::from_secs(60);
    assert!(store.create(key, record, minute).await.unwrap());

    let added = cluster.add_master();
    let migration = cluster.begin_migration(cluster.slot(key), added);
    migration.move_key(key);
    cluster.reset_stats();
    let v2 = br#"{"format":1,"version":2,"data":{"count":2}}"#;
    assert_eq!(
        store.update(key, 1, v2, minute).await.unwrap(),
        CasOutcome::Done
    );
    assert_eq!(
        record_version(&store.load(key, Some(minute)).await.unwrap().unwrap()),
        Some(2)
    );
    let on_added = cluster.command_calls(added);
    assert!(
        on_added.get("asking").is_some_and(|n| *n >= 2),
        "{on_added:?}"
    );
    only_tls_clients(&cluster);
    migration.finish();
    assert_eq!(
        record_version(&store.load(key, None).await.unwrap().unwrap()),
        Some(2)
    );
}
