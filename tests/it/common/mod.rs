//! Shared by the integration tests: a private redis-server, the test app
//! and the servers it runs on, cookie parsing, log capture, and the lock of
//! the heavy tests. In one binary every helper here has a user, so unused
//! ones are warned about rather than allowed.

pub mod app;
pub mod cookies;
pub mod engine;
pub mod logs;
// Stays in `tests/common/`: `benches/e2e.rs` includes it from there.
#[path = "../../common/redis_server.rs"]
pub mod redis_server;
pub mod serial;
pub mod server;

pub use app::*;
pub use cookies::*;
pub use logs::Logs;
pub use redis_server::RedisServer;
pub use serial::SERIAL;
pub use server::{Server, listener};
