//! [`RedisStore`]: records in Redis, one command (or one pipelined round
//! trip) per operation, each on one key.
//!
//! What a failed command may be sent again, and when, is decided here
//! ([`retry_after`]): a command the server refused without running it
//! (`MOVED`, `ASK`, `TRYAGAIN`, `CLUSTERDOWN`, `READONLY`, a connection that
//! could not even be opened) is sent again a few times; a command that may
//! have run (the connection dropped while it was in flight) is sent again
//! only when running it twice does no harm (a load, a plain delete). A
//! compare-and-set or a `SET NX` whose outcome is unknown is never sent
//! twice: a second run after a first that landed would answer a false
//! conflict. The layer answers 503, "not confirmed", instead.

mod asking;
#[cfg(feature = "bb8")]
mod bb8;
#[cfg(feature = "cluster")]
mod cluster;
mod commands;
mod connection;
mod crypto;
mod durability;
#[cfg(feature = "cluster")]
mod redirects;
mod request;
mod retry;
mod scripts;
mod sent;
mod server;
mod wait;

#[cfg(feature = "bb8")]
pub use self::bb8::{Bb8Pool, PooledConnection};
pub use self::connection::{RedisConnection, RedisStore};
