//! What both modules use: the test kit's private redis-server, loopback
//! servers, client, cookie parsing and log capture, and a store on a
//! private server.

pub(crate) use test_kit::{Logs, RedisServer, Server, browser, cookies::*, listener};
use tower_pipeline_state::RedisStore;

/// A Redis store on a private server.
pub(crate) async fn redis_store(url: &str) -> RedisStore {
    RedisStore::connect(url)
        .await
        .expect("connect to the private redis-server")
}
