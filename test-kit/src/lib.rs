//! What the workspace's tests and benches share, none of it tied to
//! `tower-pipeline-state` (so the crate's own tests can use it without a
//! dependency cycle): a private `redis-server` per test and a private
//! Redis Cluster on free loopback ports (over TLS too, with a certificate
//! authority made for the test), servers on loopback, a
//! cookie-keeping HTTP client and `Set-Cookie` parsing, `tracing` capture,
//! the node `oidc-provider` fixture, and (feature `browser`) headless
//! Chromium under chromedriver.
//!
//! Nothing here touches a Redis the machine already runs: every server is
//! started by the test on a free port and killed when dropped. A missing
//! tool fails the test with [`INSTALL`]; `./scripts/test` installs them all.

#![warn(missing_docs)]

#[cfg(feature = "browser")]
pub mod chromium;
mod client;
mod cluster;
pub mod cookies;
mod logs;
mod oidc_provider;
mod redis_server;
mod server;
mod tls;
mod tls_redis;
mod tools;

pub use client::browser;
pub use cluster::{Migration, Node, RedisCluster};
pub use logs::{Capturing, ClosedSpan, Logs};
pub use oidc_provider::{OidcProvider, Settings as OidcProviderSettings};
pub use redis_server::RedisServer;
pub use server::{Server, free_port, listener};
pub use tls::Authority;
pub use tls_redis::TlsRedis;
pub use tools::{INSTALL, target_dir, tool};
