//! Shared by the integration tests: the test app and the engine's test
//! pipeline, the checks of an ended flow's record and cookie, a round-trip
//! counting connection, racing clients, and the lock
//! of the heavy tests. What needs nothing of this crate (a private
//! redis-server and cluster, loopback servers, the HTTP client, cookie
//! parsing, log capture) comes from the workspace's `test-kit`, re-exported
//! here so every module reads `crate::common::*`. In one binary every
//! helper here has a user, so unused ones are warned about rather than
//! allowed.

pub(crate) mod app;
pub(crate) mod counting;
pub(crate) mod ended;
pub(crate) mod engine;
pub(crate) mod forgiving;
pub(crate) mod nested;
pub(crate) mod race;
pub(crate) mod serial;

pub(crate) use app::*;
pub(crate) use serial::SERIAL;
#[cfg(feature = "cluster")]
pub(crate) use test_kit::RedisCluster;
pub(crate) use test_kit::{
    Authority, Logs, RedisServer, Server, TlsRedis, browser, cookies::*, listener,
};
