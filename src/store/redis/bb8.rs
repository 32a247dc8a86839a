//! [`Bb8Pool`]: `RedisStore` over a bb8-redis pool the application already
//! owns (feature `bb8`).
//!
//! bb8-redis hands out `MultiplexedConnection`s, which never reconnect, and
//! its manager never reports one broken: a connection the server closed
//! would go back to the pool and fail every operation it serves until bb8
//! retires it (30 minutes by default). So a pooled connection whose command
//! fails with a connection error (I/O, or a reply that does not parse) is
//! replaced, in place, by a fresh one from the pool's own manager before it
//! goes back: the pool heals without a `PING` before every checkout.

use std::{fmt, time::Duration};

use bb8_redis::RedisConnectionManager;
use redis::{Cmd, RedisFuture, RedisResult, Value, aio::ConnectionLike};

use super::{RedisConnection, RedisStore, scripts::load_scripts, server::check_server};
use crate::store::StoreError;

/// A response timeout long enough never to fire: bb8-redis builds its
/// connections with redis-rs's default of 500 ms, which would cut every
/// operation short of a longer
/// [`store_timeout`](crate::PipelineStateLayer::store_timeout). The layer's
/// timeout bounds every operation instead.
const NO_RESPONSE_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// A bb8 pool of Redis connections, for applications that already own one.
/// Each operation holds one pooled connection for its round trip.
#[cfg_attr(docsrs, doc(cfg(feature = "bb8")))]
#[derive(Clone, Debug)]
pub struct Bb8Pool(pub bb8::Pool<RedisConnectionManager>);

/// A connection checked out of a [`Bb8Pool`] for one operation. One whose
/// command fails with a connection error is replaced by a fresh connection
/// before it goes back to the pool.
#[cfg_attr(docsrs, doc(cfg(feature = "bb8")))]
pub struct PooledConnection {
    connection: bb8::PooledConnection<'static, RedisConnectionManager>,
    pool: bb8::Pool<RedisConnectionManager>,
}

impl fmt::Debug for PooledConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledConnection")
            .field("db", &self.connection.get_db())
            .finish_non_exhaustive()
    }
}

impl PooledConnection {
    /// After a command: if it failed with a connection error, swaps the
    /// (dead) connection for a fresh one. When none can be made (Redis is
    /// down), the dead one stays; its next command fails at once, without
    /// reaching Redis, and tries again.
    async fn heal<T>(&mut self, result: &RedisResult<T>) {
        let Err(error) = result else { return };
        if !(error.is_unrecoverable_error() || error.is_io_error()) {
            return;
        }
        match self.pool.dedicated_connection().await {
            Ok(mut fresh) => {
                fresh.set_response_timeout(NO_RESPONSE_TIMEOUT);
                *self.connection = fresh;
                tracing::debug!(%error, "replaced a broken pooled redis connection");
            }
            Err(reconnect) => {
                tracing::debug!(%error, %reconnect, "a pooled redis connection is broken and could not be replaced yet");
            }
        }
    }
}

impl ConnectionLike for PooledConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let result = self.connection.req_packed_command(cmd).await;
            self.heal(&result).await;
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let result = self
                .connection
                .req_packed_commands(pipeline, offset, count)
                .await;
            self.heal(&result).await;
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.connection.get_db()
    }
}

impl RedisConnection for Bb8Pool {
    type Connection = PooledConnection;

    async fn connection(&self) -> Result<PooledConnection, StoreError> {
        match self.0.get_owned().await {
            Ok(mut connection) => {
                // A field of the handle: no round trip.
                connection.set_response_timeout(NO_RESPONSE_TIMEOUT);
                Ok(PooledConnection {
                    connection,
                    pool: self.0.clone(),
                })
            }
            // The pool could not make a connection: nothing was sent.
            Err(bb8::RunError::User(error)) => Err(StoreError::unreachable(error)),
            Err(bb8::RunError::TimedOut) => Err(StoreError::PoolTimeout),
        }
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "bb8")))]
impl RedisStore<Bb8Pool> {
    /// Uses a bb8 pool the application already owns, after checking that
    /// its server offers `GETEX` (Redis 6.2 or later).
    ///
    /// Build the pool without a `PING` before every checkout
    /// (`test_on_check_out(false)`): that would double the round trips of
    /// every operation, and the store does not need it. A connection whose
    /// command fails with a connection error is replaced by a fresh one
    /// before it goes back to the pool, so after Redis restarts or kills
    /// connections each broken connection fails at most one write (a load is
    /// sent again on the fresh connection). redis-rs's 500 ms response
    /// timeout, which bb8-redis sets on every connection, is lifted on each
    /// checkout: the layer's
    /// [`store_timeout`](crate::PipelineStateLayer::store_timeout) governs.
    ///
    /// # Errors
    /// When no connection can be had, or the server lacks `GETEX`
    /// ([`StoreError::ServerTooOld`]).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use bb8_redis::RedisConnectionManager;
    /// use tower_pipeline_state::RedisStore;
    ///
    /// let manager = RedisConnectionManager::new("redis://127.0.0.1:6379")?;
    /// let pool = bb8::Pool::builder()
    ///     .max_size(8)
    ///     .test_on_check_out(false)
    ///     .build(manager)
    ///     .await?;
    /// let store = RedisStore::from_pool(pool).await?;
    /// # Ok(()) }
    /// ```
    pub async fn from_pool(pool: bb8::Pool<RedisConnectionManager>) -> Result<Self, StoreError> {
        let pool = Bb8Pool(pool);
        let mut connection = pool.connection().await?;
        check_server(&mut connection).await?;
        load_scripts(&mut connection).await?;
        drop(connection);
        Ok(Self::new(pool))
    }
}
