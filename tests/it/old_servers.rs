//! Redis older than 6.2 has no `GETEX`: every store constructor that can
//! check refuses such a server when connecting, with an error that names
//! the version found and the one needed, rather than locking users out
//! later (a flow created with `SET` and never loaded again). A server with
//! `GETEX` renamed away stands in for an old one.

use tower_pipeline_state::{RedisStore, StoreError};

use crate::common::*;

fn without_getex() -> RedisServer {
    RedisServer::start_configured(&[r#"rename-command GETEX """#])
}

fn assert_refused(error: StoreError) {
    let text = error.to_string();
    assert_eq!(error.kind(), "server_too_old", "{error:?}");
    let version: String = redis::cmd("INFO")
        .arg("server")
        .query::<String>(&mut RedisServer::start().admin())
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("redis_version:").map(str::to_owned))
        .unwrap();
    assert!(
        text.contains(&format!("version found: {version}")),
        "{text}"
    );
    assert!(text.contains("needs Redis 6.2 or later"), "{text}");
}

#[tokio::test]
async fn connect_refuses_a_server_without_getex() {
    let redis = without_getex();
    let error = RedisStore::connect(&redis.url())
        .await
        .expect_err("refused");
    assert_refused(error);
}

#[tokio::test]
async fn from_pool_refuses_a_server_without_getex() {
    let redis = without_getex();
    let manager = bb8_redis::RedisConnectionManager::new(redis.url()).unwrap();
    let pool = bb8::Pool::builder()
        .test_on_check_out(false)
        .build(manager)
        .await
        .unwrap();
    let error = RedisStore::from_pool(pool).await.expect_err("refused");
    assert_refused(error);
}

#[tokio::test]
async fn a_server_with_getex_is_accepted_by_every_constructor() {
    let redis = RedisServer::start();
    RedisStore::connect(&redis.url()).await.unwrap();
    let manager = bb8_redis::RedisConnectionManager::new(redis.url()).unwrap();
    let pool = bb8::Pool::builder().build(manager).await.unwrap();
    RedisStore::from_pool(pool).await.unwrap();
    assert_eq!(
        redis.keys(),
        Vec::<String>::new(),
        "the check writes nothing"
    );
}
