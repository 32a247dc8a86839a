//! TLS (feature `tls`): a redis-server listening with `tls-port` on a
//! certificate signed by a certificate authority this test makes (rcgen);
//! a flow over `rediss://` with that authority as the custom root, and the
//! same server refused when the authority is not trusted.

use std::net::TcpListener;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use redis::{Client, TlsCertificates};
use reqwest::StatusCode;
use tower_pipeline_state::{PipelineStateLayer, RedisStore};

use crate::common::*;

/// A redis-server with TLS on `tls_port`, and the authority's certificate
/// (PEM) that signed its own.
struct TlsRedis {
    server: RedisServer,
    tls_port: u16,
    authority: String,
}

fn start_tls_redis() -> TlsRedis {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "tower-pipeline-state test authority",
    );
    let authority_key = KeyPair::generate().unwrap();
    let authority = params.self_signed(&authority_key).unwrap();
    let issuer = Issuer::new(params, authority_key);

    let server_key = KeyPair::generate().unwrap();
    let server_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();

    let dir =
        std::env::temp_dir().join(format!("tps-tls-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key, ca) = (
        dir.join("server.crt"),
        dir.join("server.key"),
        dir.join("ca.crt"),
    );
    std::fs::write(&cert, server_cert.pem()).unwrap();
    std::fs::write(&key, server_key.serialize_pem()).unwrap();
    std::fs::write(&ca, authority.pem()).unwrap();

    let tls_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = RedisServer::start_configured(&[
        &format!("tls-port {tls_port}"),
        &format!("tls-cert-file {}", cert.display()),
        &format!("tls-key-file {}", key.display()),
        &format!("tls-ca-cert-file {}", ca.display()),
        "tls-auth-clients no",
    ]);
    TlsRedis {
        server,
        tls_port,
        authority: authority.pem(),
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[tokio::test]
async fn a_flow_runs_over_rediss_with_a_custom_root_certificate() {
    let redis = start_tls_redis();
    let url = format!("rediss://localhost:{}", redis.tls_port);
    let client = Client::build_with_tls(
        url.as_str(),
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
    let redis = start_tls_redis();
    // Without the custom root, only the system's roots are trusted.
    let error = RedisStore::connect(&format!("rediss://localhost:{}", redis.tls_port))
        .await
        .expect_err("an unknown authority is refused");
    assert_eq!(error.kind(), "backend", "{error:?}");
}
