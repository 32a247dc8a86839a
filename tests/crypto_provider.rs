//! Feature `tls` in a binary that links two rustls crypto providers: `ring`
//! (the crate's) and `aws-lc-rs` (a dev-dependency here, as an application
//! may link it through another crate). rustls then cannot pick a provider
//! by itself, and redis-rs builds its TLS settings with rustls's default:
//! without one installed, a `rediss://` connect panicked. The crate's
//! constructors install `ring` as the process default when none is, and
//! leave one the application installed first alone.
//!
//! A binary of its own, and a process of its own per test: the default
//! provider is process-wide and is installed once, so each test needs a
//! process where none is yet. Each test runs this binary again for itself
//! alone ([`in_a_fresh_process`]) and passes when that run does.

use std::{future::Future, process::Command, time::Duration};

use redis::{Client, TlsCertificates, cluster::ClusterClient};
use rustls::crypto::CryptoProvider;
use test_kit::TlsRedis;
use tower_pipeline_state::{RedisStore, store::Store};

/// Set, to the test's name, in the process that runs the test's body.
const FRESH: &str = "TPS_CRYPTO_PROVIDER_TEST";

/// Runs `body` in a process of this binary where nothing has touched
/// rustls's default provider yet: this process, when it is that run,
/// otherwise a new one started for `test` alone.
fn in_a_fresh_process<F: Future<Output = ()>>(test: &str, body: impl FnOnce() -> F) {
    if std::env::var(FRESH).is_ok_and(|name| name == test) {
        assert!(
            CryptoProvider::get_default().is_none(),
            "a fresh process has no default provider"
        );
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(body());
        return;
    }
    let run = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(FRESH, test)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
    );
    assert!(
        run.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{test} in a process of its own: {}\n{stdout}\n{stderr}",
        run.status
    );
}

/// Which provider is the process default: the name of its key provider's
/// type (`Ring`, `AwsLcRs`), or `None`.
fn default_provider() -> Option<String> {
    CryptoProvider::get_default().map(|provider| format!("{:?}", provider.key_provider))
}

/// A client of `redis` that trusts its authority.
fn trusting_client(redis: &TlsRedis) -> Client {
    Client::build_with_tls(
        redis.url(),
        TlsCertificates {
            client_tls: None,
            root_cert: Some(redis.root()),
        },
    )
    .unwrap()
}

/// A record written and read back through `store`.
async fn round_trip(store: &impl Store, redis: &TlsRedis) {
    assert!(
        store
            .create("tls-probe", b"over tls", Duration::from_secs(60))
            .await
            .unwrap()
    );
    assert_eq!(
        store.load("tls-probe", None).await.unwrap().as_deref(),
        Some(&b"over tls"[..])
    );
    assert_eq!(
        redis.server.get("tls-probe").as_deref(),
        Some(&b"over tls"[..])
    );
    assert_eq!(
        redis.tls_clients().len(),
        1,
        "the store's connection is on the TLS port"
    );
}

#[test]
fn rediss_connects_with_two_providers_linked_and_none_installed() {
    in_a_fresh_process(
        "rediss_connects_with_two_providers_linked_and_none_installed",
        || async {
            let redis = TlsRedis::start();
            let store = RedisStore::connect_client(trusting_client(&redis))
                .await
                .expect("connects over rediss://");
            round_trip(&store, &redis).await;
            assert_eq!(default_provider().as_deref(), Some("Ring"));
        },
    );
}

#[test]
fn connect_with_an_untrusted_certificate_is_an_error_not_a_panic() {
    in_a_fresh_process(
        "connect_with_an_untrusted_certificate_is_an_error_not_a_panic",
        || async {
            let redis = TlsRedis::start();
            let error = RedisStore::connect(&redis.url())
                .await
                .expect_err("an unknown authority is refused");
            assert_eq!(error.kind(), "backend", "{error:?}");
            assert_eq!(default_provider().as_deref(), Some("Ring"));
        },
    );
}

#[test]
fn the_cluster_constructor_installs_it_too() {
    in_a_fresh_process("the_cluster_constructor_installs_it_too", || async {
        // A TLS server that is no cluster: the TLS connection is made, then
        // `CLUSTER SLOTS` is refused. An error of the connect, not a panic.
        let redis = TlsRedis::start();
        let builder = ClusterClient::builder([redis.url()]).certs(TlsCertificates {
            client_tls: None,
            root_cert: Some(redis.root()),
        });
        let error = RedisStore::connect_cluster_with(builder)
            .await
            .expect_err("not a cluster");
        assert_eq!(default_provider().as_deref(), Some("Ring"), "{error:?}");
    });
}

#[test]
fn a_provider_the_application_installed_first_stays_the_default() {
    in_a_fresh_process(
        "a_provider_the_application_installed_first_stays_the_default",
        || async {
            rustls::crypto::aws_lc_rs::default_provider()
                .install_default()
                .unwrap();
            let redis = TlsRedis::start();
            let store = RedisStore::connect_client(trusting_client(&redis))
                .await
                .expect("connects over rediss:// with the application's provider");
            round_trip(&store, &redis).await;
            assert_eq!(default_provider().as_deref(), Some("AwsLcRs"));
        },
    );
}
