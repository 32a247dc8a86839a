//! Shared by the integration tests: a private redis-server and the app.
#![allow(dead_code)]

pub mod app;
pub mod redis_server;

pub use app::*;
pub use redis_server::RedisServer;
