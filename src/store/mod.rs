//! Where records live: the [`Store`] trait, `RedisStore` for production
//! (feature `redis`, on by default) and [`MemoryStore`] for examples and
//! tests.
//!
//! A store keeps opaque records under string keys with a TTL, and offers the
//! handful of operations the layer needs, each one round trip that touches
//! exactly one key (so a Redis Cluster never sees a command cross slots).
//! Records are produced by the layer; a store only needs [`record_version`]
//! to implement the compare-and-set of [`Store::update`].

#[cfg(feature = "store-contract")]
#[cfg_attr(docsrs, doc(cfg(feature = "store-contract")))]
pub mod contract;
mod error;
mod memory;
mod operations;
#[cfg(feature = "redis")]
mod redis;

pub use self::error::StoreError;
pub use self::memory::MemoryStore;
pub use self::operations::{CasOutcome, Store};
#[cfg(feature = "bb8")]
pub use self::redis::{Bb8Pool, PooledConnection};
#[cfg(feature = "redis")]
pub use self::redis::{RedisConnection, RedisStore};
pub use crate::record::version_of as record_version;
