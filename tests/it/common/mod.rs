//! Shared by the integration tests: a private redis-server, the test app
//! and the servers it runs on, cookie parsing, log capture, and the lock of
//! the heavy tests. In one binary every helper here has a user, so unused
//! ones are warned about rather than allowed.

pub(crate) mod app;
#[cfg(feature = "cluster")]
pub(crate) mod cluster;
pub(crate) mod cookies;
pub(crate) mod counting;
pub(crate) mod engine;
pub(crate) mod logs;
pub(crate) mod nested;
pub(crate) mod race;
// Stays in `tests/common/`: `benches/e2e.rs` includes it from there.
pub(crate) mod redis_server;
pub(crate) mod serial;
pub(crate) mod server;

pub(crate) use app::*;
#[cfg(feature = "cluster")]
pub(crate) use cluster::RedisCluster;
pub(crate) use cookies::*;
pub(crate) use logs::Logs;
pub(crate) use redis_server::RedisServer;
pub(crate) use serial::SERIAL;
pub(crate) use server::{Server, listener};
