//! [`RedisStore`]: records in Redis, one command (or one pipelined round
//! trip) per operation.

use std::{future::Future, sync::LazyLock, time::Duration};

use redis::{
    Client, Script, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
    cmd,
};

use super::{Store, StoreError, UpdateOutcome};

/// The versioned compare-and-set (and compare-and-delete); what it takes
/// and answers is described at its top. It reads the stored version from the
/// record's fixed header (see `record.rs`) without decoding the record.
const COMPARE_AND_SET: &str = include_str!("compare_and_set.lua");

/// `redis::Script` sends `EVALSHA` and, after a `NOSCRIPT` (Redis restarted
/// or flushed its script cache), loads the script and retries.
static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(COMPARE_AND_SET));

/// Something [`RedisStore`] can get a Redis connection from.
///
/// Implemented for every cloneable redis-rs async connection
/// ([`ConnectionManager`], `MultiplexedConnection`, a cluster connection) and,
/// with the `bb8` feature, for `Bb8Pool`.
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub trait RedisConnection: Send + Sync + 'static {
    /// The connection one operation runs on.
    type Connection: ConnectionLike + Send;

    /// A connection for one operation.
    fn connection(&self) -> impl Future<Output = Result<Self::Connection, StoreError>> + Send;
}

impl<C> RedisConnection for C
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    type Connection = C;

    async fn connection(&self) -> Result<C, StoreError> {
        Ok(self.clone())
    }
}

/// Records in Redis (6.2 or later, for `GETEX`).
///
/// | operation | command |
/// | --- | --- |
/// | load | `GETEX key EX ttl` (`GET key` when refresh on load is off) |
/// | create | `SET key record NX EX ttl` |
/// | update | `EVALSHA` of a compare-and-set script (`GET`, then `SET ... EX ttl` if the version matches) |
/// | delete | `DEL key` |
/// | delete if version | `EVALSHA` of the same script without a record (`GET`, then `DEL` if the version matches) |
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
#[derive(Clone, Debug)]
pub struct RedisStore<C = ConnectionManager> {
    connection: C,
}

impl RedisStore<ConnectionManager> {
    /// Connects to Redis at `url` (`redis://host:port/db`) with a
    /// [`ConnectionManager`], which multiplexes all requests over one
    /// connection and reconnects by itself after a failure. This is the
    /// recommended setup.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), tower_pipeline_state::StoreError> {
    /// use tower_pipeline_state::RedisStore;
    ///
    /// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let client = Client::open(url)?;
        // Fail fast: the layer answers 503 while Redis is away, and the
        // manager reconnects on the next command after an I/O error. No
        // response timeout of the client's own (its default is 500 ms): the
        // layer's `timeout` bounds every operation, and must be the one that
        // holds when it is configured longer.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1)
            .set_response_timeout(None);
        let manager = ConnectionManager::new_with_config(client, config).await?;
        Ok(Self::new(manager))
    }
}

impl<C: RedisConnection> RedisStore<C> {
    /// Uses any connection source: a clonable redis-rs async connection
    /// (`ConnectionManager`, `MultiplexedConnection`, a cluster connection)
    /// or, with the `bb8` feature, a `Bb8Pool`.
    ///
    /// A connection's own response timeout (redis-rs defaults to 500 ms)
    /// applies on top of the layer's
    /// [`store_timeout`](crate::PipelineStateLayer::store_timeout); configure it off
    /// (`set_response_timeout(None)`) or longer to let the layer's govern, as
    /// [`connect`](RedisStore::connect) does.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use tower_pipeline_state::RedisStore;
    ///
    /// let client = redis::Client::open("redis://127.0.0.1:6379")?;
    /// let connection = client.get_multiplexed_async_connection().await?;
    /// let store = RedisStore::new(connection);
    /// # Ok(()) }
    /// ```
    pub fn new(connection: C) -> Self {
        Self { connection }
    }
}

/// Redis expiries are whole seconds; a partial second is rounded up so a
/// record never lives shorter than asked.
fn seconds(ttl: Duration) -> u64 {
    ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0)
}

impl<C: RedisConnection> Store for RedisStore<C> {
    async fn load(
        &self,
        key: &str,
        refresh: Option<Duration>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let mut connection = self.connection.connection().await?;
        let command = match refresh {
            Some(ttl) => cmd("GETEX").arg(key).arg("EX").arg(seconds(ttl)).take(),
            None => cmd("GET").arg(key).take(),
        };
        match command.query_async(&mut connection).await {
            // Something other than a string under the key (planted, or
            // another application's): an unreadable record, not an outage.
            Err(error) if error.code() == Some("WRONGTYPE") => Ok(Some(Vec::new())),
            result => Ok(result?),
        }
    }

    async fn create(&self, key: &str, record: &[u8], ttl: Duration) -> Result<bool, StoreError> {
        let mut connection = self.connection.connection().await?;
        let created: Option<String> = cmd("SET")
            .arg(key)
            .arg(record)
            .arg("NX")
            .arg("EX")
            .arg(seconds(ttl))
            .query_async(&mut connection)
            .await?;
        Ok(created.is_some())
    }

    async fn update(
        &self,
        key: &str,
        version: u64,
        record: &[u8],
        ttl: Duration,
    ) -> Result<UpdateOutcome, StoreError> {
        self.compare_and_set(key, version, Some((record, ttl)))
            .await
    }

    async fn delete_if_version(
        &self,
        key: &str,
        version: u64,
    ) -> Result<UpdateOutcome, StoreError> {
        self.compare_and_set(key, version, None).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let mut connection = self.connection.connection().await?;
        let _: i64 = cmd("DEL").arg(key).query_async(&mut connection).await?;
        Ok(())
    }
}

impl<C: RedisConnection> RedisStore<C> {
    /// One run of the compare-and-set script: write `replacement` (record
    /// and TTL), or delete the key when there is none, if the stored version
    /// is `version`.
    async fn compare_and_set(
        &self,
        key: &str,
        version: u64,
        replacement: Option<(&[u8], Duration)>,
    ) -> Result<UpdateOutcome, StoreError> {
        let mut invocation = SCRIPT.key(key);
        invocation.arg(version);
        if let Some((record, ttl)) = replacement {
            invocation.arg(record).arg(seconds(ttl));
        }
        let mut connection = self.connection.connection().await?;
        let reply: Value = invocation.invoke_async(&mut connection).await?;
        match reply {
            Value::Int(1) => Ok(UpdateOutcome::Written),
            Value::Int(0) => Ok(UpdateOutcome::Missing),
            Value::BulkString(current) => Ok(UpdateOutcome::Newer(current)),
            other => Err(StoreError::Protocol(format!(
                "compare-and-set script answered {other:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_round_up_to_whole_seconds() {
        assert_eq!(seconds(Duration::from_secs(600)), 600);
        assert_eq!(seconds(Duration::from_millis(1500)), 2);
        assert_eq!(seconds(Duration::from_millis(1)), 1);
    }
}
