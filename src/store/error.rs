//! [`StoreError`]: why a store operation failed, whatever the backend.

use std::{error::Error, time::Duration};

/// A failure to talk to the store. The layer answers `503 Service
/// Unavailable` for it and logs this text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend reported an error after the command may have been sent
    /// (a connection reset or dropped, a server error reply...): a write's
    /// outcome is unknown. The source is the backend's own error type, for
    /// instance a `redis::RedisError`.
    #[error("store backend: {0}")]
    Backend(#[source] Box<dyn Error + Send + Sync + 'static>),
    /// The store could not be reached and the command was never sent, so
    /// nothing was written: the connection was refused or could not be
    /// made, or the connection source gave none. The source is the
    /// backend's own error.
    #[error("store unreachable, nothing sent: {0}")]
    Unreachable(#[source] Box<dyn Error + Send + Sync + 'static>),
    /// The operation did not finish within the layer's
    /// [`store_timeout`](crate::PipelineStateLayer::store_timeout).
    #[error("no answer from the store within {0:?}")]
    Timeout(Duration),
    /// A connection pool could not hand out a connection in time: nothing
    /// was sent.
    #[error("no connection available from the pool in time; nothing sent")]
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

    /// A store that could not be reached: the command was never sent, so
    /// nothing was written ([`StoreError::Unreachable`]).
    ///
    /// ```
    /// use tower_pipeline_state::StoreError;
    ///
    /// let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    /// let error = StoreError::unreachable(refused);
    /// assert!(error.nothing_written());
    /// assert_eq!(error.kind(), "unreachable");
    /// ```
    pub fn unreachable(source: impl Error + Send + Sync + 'static) -> Self {
        Self::Unreachable(Box::new(source))
    }

    /// Whether the failure is known to have written nothing: the command
    /// was never sent (the store unreachable, no connection from the pool),
    /// or the server was refused when connecting. A failed write for which
    /// this is `false` may still have been applied: its outcome is unknown
    /// ("not confirmed").
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_pipeline_state::StoreError;
    ///
    /// assert!(StoreError::PoolTimeout.nothing_written());
    /// // The command may have reached the server before the time ran out.
    /// assert!(!StoreError::Timeout(Duration::from_secs(1)).nothing_written());
    /// ```
    pub fn nothing_written(&self) -> bool {
        matches!(
            self,
            Self::Unreachable(_) | Self::PoolTimeout | Self::ServerTooOld { .. }
        )
    }

    /// A stable name of the kind of failure, for logs and metrics labels:
    /// `backend`, `unreachable`, `timeout`, `pool_timeout`, `protocol`,
    /// `server_too_old` or `not_replicated`.
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
            Self::Unreachable(_) => "unreachable",
            Self::Timeout(_) => "timeout",
            Self::PoolTimeout => "pool_timeout",
            Self::Protocol(_) => "protocol",
            Self::ServerTooOld { .. } => "server_too_old",
            Self::NotReplicated { .. } => "not_replicated",
        }
    }
}
