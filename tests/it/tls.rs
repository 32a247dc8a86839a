//! TLS (feature `tls`): a redis-server listening with `tls-port` on a
//! certificate signed by a certificate authority the test makes (the test
//! kit's `TlsRedis`); a flow over `rediss://` with that authority as the
//! custom root, and the same server refused when the authority is not
//! trusted. How the crate picks rustls's crypto provider is tested in a
//! process of its own: `tests/crypto_provider.rs`.

use redis::{Client, TlsCertificates};
use reqwest::StatusCode;
use tower_pipeline_state::{PipelineStateLayer, RedisStore};

use crate::common::*;

#[tokio::test]
async fn a_flow_runs_over_rediss_with_a_custom_root_certificate() {
    let redis = TlsRedis::start();
    let client = Client::build_with_tls(
        redis.url(),
        TlsCertificates {
            client_tls: None,
            root_cert: Some(redis.authority.clone().into_bytes()),
        },
    )
    .unwrap();
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
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut redis.server.admin())
        .unwrap();
    let app_clients: Vec<&str> = clients
        .lines()
        .filter(|line| !line.contains("cmd=client"))
        .collect();
    assert_eq!(app_clients.len(), 1, "{clients}");
    assert!(
        app_clients[0].contains(&format!("laddr=127.0.0.1:{}", redis.tls_port)),
        "{clients}"
    );
}

#[tokio::test]
async fn rediss_refuses_a_server_whose_certificate_is_not_trusted() {
    let redis = TlsRedis::start();
    // Without the custom root, only the system's roots are trusted.
    let error = RedisStore::connect(&redis.url())
        .await
        .expect_err("an unknown authority is refused");
    assert_eq!(error.kind(), "backend", "{error:?}");
}
