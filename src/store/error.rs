//! [`StoreError`]: why a store operation failed, whatever the backend.

use std::{error::Error, time::Duration};

/// A failure to talk to the store. The layer answers `503 Service
/// Unavailable` for it and logs this text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend reported an error (connection refused or reset, a server
    /// error reply...). The source is the backend's own error type, for
    /// instance a `redis::RedisError`.
    #[error("store backend: {0}")]
    Backend(#[source] Box<dyn Error + Send + Sync + 'static>),
    /// The operation did not finish within the layer's
    /// [`store_timeout`](crate::PipelineStateLayer::store_timeout).
    #[error("no answer from the store within {0:?}")]
    Timeout(Duration),
    /// A connection pool could not hand out a connection in time.
    #[error("no connection available from the pool in time")]
    PoolTimeout,
    /// The store answered something this crate does not expect.
    #[error("unexpected reply from the store: {0}")]
    Protocol(String),
    /// The server lacks a command the layer needs: Redis older than 6.2
    /// has no `GETEX` (or it was renamed away). Returned when connecting,
    /// so the application refuses to start rather than answer 503 later.
    #[error(
        "the Redis server does not offer GETEX (version found: {found}); this crate needs Redis {needed} or later, with GETEX available"
    )]
    ServerTooOld {
        /// The `redis_version` the server reported (several, comma
        /// separated, for a cluster of mixed versions).
        found: String,
        /// The oldest version that works.
        needed: &'static str,
    },
    /// A write was applied on the primary, but fewer replicas than the
    /// layer's [`durability`](crate::PipelineStateLayer::durability) asks
    /// for acknowledged it in time: not confirmed, it could be lost at a
    /// failover.
    #[error(
        "write not confirmed: {acknowledged} of {required} replicas acknowledged it within {timeout:?}"
    )]
    NotReplicated {
        /// Replicas that acknowledged the write.
        acknowledged: u32,
        /// Replicas asked for.
        required: u32,
        /// How long the write waited for them.
        timeout: Duration,
    },
}

impl StoreError {
    /// A backend error, boxed: what a [`Store`](super::Store) implementation
    /// returns for its client's errors.
    ///
    /// ```
    /// use tower_pipeline_state::StoreError;
    ///
    /// let error = StoreError::backend(std::io::Error::other("connection reset"));
    /// assert_eq!(error.to_string(), "store backend: connection reset");
    /// ```
    pub fn backend(source: impl Error + Send + Sync + 'static) -> Self {
        Self::Backend(Box::new(source))
    }

    /// A stable name of the kind of failure, for logs and metrics labels:
    /// `backend`, `timeout`, `pool_timeout`, `protocol`, `server_too_old` or
    /// `not_replicated`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_pipeline_state::StoreError;
    ///
    /// assert_eq!(StoreError::Timeout(Duration::from_secs(1)).kind(), "timeout");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Backend(_) => "backend",
            Self::Timeout(_) => "timeout",
            Self::PoolTimeout => "pool_timeout",
            Self::Protocol(_) => "protocol",
            Self::ServerTooOld { .. } => "server_too_old",
            Self::NotReplicated { .. } => "not_replicated",
        }
    }
}

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
impl From<redis::RedisError> for StoreError {
    fn from(error: redis::RedisError) -> Self {
        Self::backend(error)
    }
}
