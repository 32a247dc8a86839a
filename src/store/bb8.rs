//! [`Bb8Pool`]: `RedisStore` over a bb8-redis pool the application already
//! owns (feature `bb8`).

use std::fmt;

use bb8_redis::RedisConnectionManager;
use redis::{Cmd, RedisFuture, Value, aio::ConnectionLike};

use super::{RedisConnection, RedisStore, StoreError};

/// A bb8 pool of Redis connections, for applications that already own one.
/// Each operation holds one pooled connection for its round trip.
#[cfg_attr(docsrs, doc(cfg(feature = "bb8")))]
#[derive(Clone, Debug)]
pub struct Bb8Pool(pub bb8::Pool<RedisConnectionManager>);

/// A connection checked out of a [`Bb8Pool`] for one operation.
#[cfg_attr(docsrs, doc(cfg(feature = "bb8")))]
pub struct PooledConnection(bb8::PooledConnection<'static, RedisConnectionManager>);

impl fmt::Debug for PooledConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledConnection")
            .field("db", &self.0.get_db())
            .finish_non_exhaustive()
    }
}

impl ConnectionLike for PooledConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.0.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.0.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

impl RedisConnection for Bb8Pool {
    type Connection = PooledConnection;

    async fn connection(&self) -> Result<PooledConnection, StoreError> {
        match self.0.get_owned().await {
            Ok(connection) => Ok(PooledConnection(connection)),
            Err(bb8::RunError::User(error)) => Err(error.into()),
            Err(bb8::RunError::TimedOut) => Err(StoreError::PoolTimeout),
        }
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "bb8")))]
impl RedisStore<Bb8Pool> {
    /// Uses a bb8 pool the application already owns.
    ///
    /// bb8 checks each connection with a `PING` when it is handed out unless
    /// told not to: that doubles the round trips of every operation. Turn it
    /// off (`test_on_check_out(false)`); a broken connection still fails its
    /// command, which the layer answers with 503.
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
    /// let store = RedisStore::from_pool(pool);
    /// # Ok(()) }
    /// ```
    pub fn from_pool(pool: bb8::Pool<RedisConnectionManager>) -> Self {
        Self::new(Bb8Pool(pool))
    }
}
