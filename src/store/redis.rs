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

use std::{future::Future, sync::LazyLock, time::Duration};

use redis::{
    Client, ErrorKind, IntoConnectionInfo, ProtocolVersion, RedisError, RedisResult, Script,
    ServerErrorKind, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
    cmd, pipe,
};

use super::{CasOutcome, Store, StoreError};

/// The versioned compare-and-set (and compare-and-delete); what it takes
/// and answers is described at its top. It reads the stored version from the
/// record's fixed header (see `record.rs`) without decoding the record.
const COMPARE_AND_SET: &str = include_str!("compare_and_set.lua");

/// The script's SHA1 for `EVALSHA`, and its text for `SCRIPT LOAD` after a
/// `NOSCRIPT` (Redis restarted or flushed its script cache, or a replica
/// took over).
static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(COMPARE_AND_SET));

/// How long one connection attempt may take (`connect`, `connect_cluster`
/// and their reconnections): fail fast, the layer answers 503 meanwhile.
pub(super) const CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);

/// How often a command a cluster refused without running it is sent again
/// (a redirect, a failover in progress), with a pause that grows from 0 to
/// 200 ms: about 0.9 s in all, and the layer's `store_timeout` bounds it
/// too.
const REDIRECT_RETRIES: u32 = 8;

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

/// How many replicas must acknowledge a write, and how long to wait for
/// them (`WAIT replicas timeout`); set with
/// [`PipelineStateLayer::durability`](crate::PipelineStateLayer::durability).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Durability {
    pub(crate) replicas: u32,
    pub(crate) timeout: Duration,
}

impl Durability {
    /// `WAIT`'s timeout in whole milliseconds, at least 1 (0 would block
    /// forever).
    fn millis(self) -> u64 {
        let millis = self.timeout.as_millis()
            + u128::from(!self.timeout.subsec_nanos().is_multiple_of(1_000_000));
        u64::try_from(millis).unwrap_or(u64::MAX).max(1)
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
///
/// Every command names one key, so a Redis Cluster never sees one cross
/// slots. With [`durability`](crate::PipelineStateLayer::durability), each
/// write is pipelined with `WAIT replicas timeout` on the same connection.
///
/// # Connections, and how they heal
///
/// | made by | after a connection is killed or Redis restarts |
/// | --- | --- |
/// | [`connect`](RedisStore::connect) (`ConnectionManager`, RESP3) | reconnects by itself as soon as the server closes the connection; a load in flight is sent again once on the new connection |
/// | [`connect_cluster`](RedisStore::connect_cluster) (feature `cluster`) | reconnects to the node whose connection failed; a load is sent again once |
/// | [`from_pool`](RedisStore::from_pool) (feature `bb8`) | a pooled connection that fails is replaced by a fresh one before it goes back to the pool; a load is sent again once on the fresh one |
/// | [`new`](RedisStore::new) with a bare `MultiplexedConnection` | **never heals**: every later request answers 503 until the process makes a new connection; use one of the above |
///
/// In every case a write whose outcome is unknown (the connection dropped
/// while it was in flight) answers 503 and is not sent again.
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
#[derive(Clone)]
pub struct RedisStore<C = ConnectionManager> {
    connection: C,
    durability: Option<Durability>,
}

/// Whatever the connection (redis-rs's cluster connection has no `Debug`).
impl<C> std::fmt::Debug for RedisStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("connection", &std::any::type_name::<C>())
            .field("durability", &self.durability)
            .finish()
    }
}

impl RedisStore<ConnectionManager> {
    /// Connects to Redis at `url` (`redis://host:port/db`, or `rediss://`
    /// with the `tls` feature) with a [`ConnectionManager`], which
    /// multiplexes all requests over one connection and reconnects by itself
    /// after a failure. This is the recommended setup.
    ///
    /// It speaks RESP3, so the manager learns at once that the server
    /// closed the connection and reconnects before the next request needs
    /// it; connection attempts give up after 1 s; and redis-rs's own 500 ms
    /// response timeout is off, so the layer's
    /// [`store_timeout`](crate::PipelineStateLayer::store_timeout) governs.
    ///
    /// # Errors
    /// When Redis cannot be reached, or is older than 6.2 (no `GETEX`):
    /// [`StoreError::ServerTooOld`] names the version found.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), tower_pipeline_state::StoreError> {
    /// use tower_pipeline_state::RedisStore;
    ///
    /// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_client(Client::open(url)?).await
    }

    /// Like [`connect`](Self::connect), with a client you built: a custom
    /// root certificate or client certificate for TLS
    /// (`redis::Client::build_with_tls`, feature `tls`), credentials, a
    /// database. The same settings apply.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use tower_pipeline_state::RedisStore;
    ///
    /// let client = redis::Client::open("redis://127.0.0.1:6379/2")?;
    /// let store = RedisStore::connect_client(client).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_client(client: Client) -> Result<Self, StoreError> {
        let info = client.get_connection_info().clone();
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = Client::open(info.set_redis_settings(settings).into_connection_info()?)?;
        // Fail fast: the layer answers 503 while Redis is away. No response
        // timeout of the client's own (its default is 500 ms): the layer's
        // `store_timeout` bounds every operation, and must be the one that
        // holds when it is configured longer.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECTION_TIMEOUT))
            .set_number_of_retries(1)
            .set_response_timeout(None);
        let mut manager = ConnectionManager::new_with_config(client, config).await?;
        check_server(&mut manager).await?;
        Ok(Self::new(manager))
    }
}

impl<C: RedisConnection> RedisStore<C> {
    /// Uses any connection source: a clonable redis-rs async connection
    /// (`ConnectionManager`, `MultiplexedConnection`, a cluster connection)
    /// or, with the `bb8` feature, a `Bb8Pool`. Nothing is checked here:
    /// prefer [`connect`](RedisStore::connect), `connect_cluster` or
    /// `from_pool`, which refuse a server without `GETEX`.
    ///
    /// A connection's own response timeout (redis-rs defaults to 500 ms)
    /// applies on top of the layer's
    /// [`store_timeout`](crate::PipelineStateLayer::store_timeout); configure it off
    /// (`set_response_timeout(None)`) or longer to let the layer's govern, as
    /// [`connect`](RedisStore::connect) does. A bare `MultiplexedConnection`
    /// never reconnects: once its connection is lost, every request answers
    /// 503 (see the table above).
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
        Self {
            connection,
            durability: None,
        }
    }

    /// The same store, its writes confirmed by `WAIT` (see
    /// [`PipelineStateLayer::durability`](crate::PipelineStateLayer::durability)).
    pub(crate) fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = Some(durability);
        self
    }
}

/// The oldest Redis this crate runs on: the first with `GETEX`.
pub(super) const MINIMUM_VERSION: &str = "6.2";

/// Refuses a server without `GETEX` (Redis older than 6.2, or the command
/// renamed away). `GETEX` without a key is answered with an arity error by
/// a server that has it and "unknown command" by one that has not; neither
/// touches a key, so an ACL limited to the layer's prefix allows it.
pub(super) async fn check_server(connection: &mut impl ConnectionLike) -> Result<(), StoreError> {
    if has_getex(probe().query_async(connection).await)? {
        return Ok(());
    }
    let info = cmd("INFO").arg("server").query_async(connection).await;
    Err(StoreError::ServerTooOld {
        found: version_in(info),
        needed: MINIMUM_VERSION,
    })
}

/// The command that tells whether a server has `GETEX`.
pub(super) fn probe() -> redis::Cmd {
    cmd("GETEX")
}

/// Whether the answer to [`probe`] says the server has `GETEX`.
pub(super) fn has_getex(answer: RedisResult<Value>) -> Result<bool, StoreError> {
    // A command routed to one cluster node answers its error as a value.
    match answer.and_then(Value::extract_error) {
        Err(error) if unknown_command(&error) => Ok(false),
        Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::ResponseError) => Ok(true),
        Err(error) => Err(error.into()),
        Ok(other) => Err(StoreError::Protocol(format!(
            "GETEX without a key answered {other:?}"
        ))),
    }
}

fn unknown_command(error: &RedisError) -> bool {
    error
        .detail()
        .is_some_and(|detail| detail.starts_with("unknown command"))
        || error.to_string().contains("unknown command")
}

/// The `redis_version` in an answer to `INFO server`, or why it is not
/// known.
pub(super) fn version_in(info: RedisResult<Value>) -> String {
    let text = match info {
        Ok(Value::BulkString(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        Ok(Value::VerbatimString { text, .. }) => text,
        // A cluster connection answers a map of node to reply.
        Ok(Value::Map(nodes)) => nodes
            .into_iter()
            .filter_map(|(_, reply)| match reply {
                Value::BulkString(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
                Value::VerbatimString { text, .. } => Some(text),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Ok(other) => return format!("unknown (INFO answered {other:?})"),
        Err(error) => return format!("unknown (INFO failed: {error})"),
    };
    let mut versions: Vec<&str> = text
        .lines()
        .filter_map(|line| line.trim().strip_prefix("redis_version:"))
        .collect();
    versions.sort_unstable();
    versions.dedup();
    if versions.is_empty() {
        "unknown".to_owned()
    } else {
        versions.join(", ")
    }
}

/// Redis expiries are whole seconds; a partial second is rounded up so a
/// record never lives shorter than asked.
fn seconds(ttl: Duration) -> u64 {
    ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0)
}

/// Whether a failed command is sent again, and after what pause:
/// `attempt` counts the sends so far, less one.
fn retry_after(error: &RedisError, idempotent: bool, attempt: u32) -> Option<Duration> {
    let redirected = matches!(
        error.kind(),
        ErrorKind::Server(
            ServerErrorKind::Moved
                | ServerErrorKind::Ask
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::MasterDown
                | ServerErrorKind::BusyLoading
                | ServerErrorKind::ReadOnly
        ) | ErrorKind::ClusterConnectionNotFound
    );
    if redirected {
        // Not run (a cluster moving slots or failing over): safe to send
        // again, whatever the command, once the cluster has settled.
        let pause = (10u64 << attempt.min(5)).min(200) * u64::from(attempt > 0);
        return (attempt < REDIRECT_RETRIES).then(|| Duration::from_millis(pause));
    }
    if error.is_connection_refusal() {
        // Not run either: the connection could not be opened. A connection
        // that heals has started a new attempt; one more send waits for it.
        // Redis still down answers at once (no pause, no second retry).
        return (attempt == 0).then_some(Duration::ZERO);
    }
    let maybe_run = error.is_unrecoverable_error() || error.is_io_error();
    // Once, at once: the connection kinds that heal have a fresh connection
    // by now (or are making one, which the next command waits for).
    (maybe_run && idempotent && attempt == 0).then_some(Duration::ZERO)
}

/// Sends `$body` (an expression over `$connection`, a connection from
/// `$store`) until it succeeds or [`retry_after`] says to stop.
macro_rules! with_retries {
    ($store:expr, idempotent = $idempotent:expr, |$connection:ident| $body:expr) => {{
        let mut $connection = $store.connection.connection().await?;
        let mut attempt = 0u32;
        loop {
            let result: RedisResult<_> = $body;
            match result {
                Ok(value) => break Ok::<_, StoreError>(value),
                Err(error) => match retry_after(&error, $idempotent, attempt) {
                    Some(pause) => {
                        tracing::debug!(%error, attempt, "redis command not run or lost; sending it again");
                        if !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                        attempt += 1;
                    }
                    None => break Err(StoreError::from(error)),
                },
            }
        }
    }};
}

impl<C: RedisConnection> Store for RedisStore<C> {
    async fn load(
        &self,
        key: &str,
        refresh: Option<Duration>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let command = match refresh {
            Some(ttl) => cmd("GETEX").arg(key).arg("EX").arg(seconds(ttl)).take(),
            None => cmd("GET").arg(key).take(),
        };
        with_retries!(self, idempotent = true, |connection| {
            match command.query_async(&mut connection).await {
                // Something other than a string under the key (planted, or
                // another application's): an unreadable record, not an
                // outage.
                Err(error) if error.code() == Some("WRONGTYPE") => Ok(Some(Vec::new())),
                result => result,
            }
        })
    }

    async fn create(&self, key: &str, record: &[u8], ttl: Duration) -> Result<bool, StoreError> {
        let command = cmd("SET")
            .arg(key)
            .arg(record)
            .arg("NX")
            .arg("EX")
            .arg(seconds(ttl))
            .take();
        let (reply, acknowledged) = with_retries!(self, idempotent = false, |connection| {
            self.send(&mut connection, &command).await
        })?;
        let created = !matches!(reply, Value::Nil);
        self.confirm(created, acknowledged)?;
        Ok(created)
    }

    async fn update(
        &self,
        key: &str,
        version: u64,
        record: &[u8],
        ttl: Duration,
    ) -> Result<CasOutcome, StoreError> {
        self.compare_and_set(key, version, Some((record, ttl)))
            .await
    }

    async fn delete_if_version(&self, key: &str, version: u64) -> Result<CasOutcome, StoreError> {
        self.compare_and_set(key, version, None).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let command = cmd("DEL").arg(key).take();
        // A second `DEL` after a first that landed deletes nothing, but with
        // durability its `WAIT` would then run on a connection that wrote
        // nothing and confirm at once: sent once only.
        let idempotent = self.durability.is_none();
        let (reply, acknowledged) = with_retries!(self, idempotent = idempotent, |connection| {
            self.send(&mut connection, &command).await
        })?;
        self.confirm(matches!(reply, Value::Int(n) if n > 0), acknowledged)
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
    ) -> Result<CasOutcome, StoreError> {
        // `EVALSHA` by hand rather than `Script::invoke_async`, so that
        // `WAIT` can ride in the same pipeline when durability is on; a
        // `NOSCRIPT` (nothing ran: Redis restarted or flushed its scripts)
        // loads the script and sends the command again.
        let mut command = cmd("EVALSHA");
        command.arg(SCRIPT.get_hash()).arg(1).arg(key).arg(version);
        if let Some((record, ttl)) = replacement {
            command.arg(record).arg(seconds(ttl));
        }
        let (reply, acknowledged) = with_retries!(self, idempotent = false, |connection| {
            match self.send(&mut connection, &command).await {
                Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                    match SCRIPT.load_async(&mut connection).await {
                        Ok(_) => self.send(&mut connection, &command).await,
                        Err(error) => Err(error),
                    }
                }
                result => result,
            }
        })?;
        let outcome = match reply {
            Value::Int(1) => CasOutcome::Done,
            Value::Int(0) => CasOutcome::Missing,
            Value::BulkString(current) => CasOutcome::Newer(current),
            other => {
                return Err(StoreError::Protocol(format!(
                    "compare-and-set script answered {other:?}"
                )));
            }
        };
        self.confirm(outcome == CasOutcome::Done, acknowledged)?;
        Ok(outcome)
    }

    /// Sends a write, followed in the same pipeline by `WAIT` when
    /// durability is on. Answers the write's reply and, with `WAIT`, how
    /// many replicas acknowledged.
    async fn send(
        &self,
        connection: &mut C::Connection,
        command: &redis::Cmd,
    ) -> RedisResult<(Value, Option<i64>)> {
        let Some(durability) = self.durability else {
            return command
                .query_async::<Value>(connection)
                .await
                .map(|reply| (reply, None));
        };
        let mut pipeline = pipe();
        pipeline
            .add_command(command.clone())
            .cmd("WAIT")
            .arg(durability.replicas)
            .arg(durability.millis())
            .ignore_errors();
        let replies: Vec<Value> = pipeline.query_async(connection).await?;
        let mut replies = replies.into_iter();
        let (Some(reply), Some(waited)) = (replies.next(), replies.next()) else {
            return Err(RedisError::from((
                ErrorKind::UnexpectedReturnType,
                "a write and WAIT answered fewer than two replies",
            )));
        };
        let reply = reply.extract_error()?;
        let acknowledged = match waited.extract_error()? {
            Value::Int(n) => n,
            other => {
                return Err(RedisError::from((
                    ErrorKind::UnexpectedReturnType,
                    "WAIT answered something other than a number",
                    format!("{other:?}"),
                )));
            }
        };
        Ok((reply, Some(acknowledged)))
    }

    /// A write that changed something, with fewer acknowledgements than
    /// asked for, is not confirmed.
    fn confirm(&self, wrote: bool, acknowledged: Option<i64>) -> Result<(), StoreError> {
        match (self.durability, acknowledged) {
            (Some(durability), Some(acknowledged))
                if wrote && acknowledged < i64::from(durability.replicas) =>
            {
                Err(StoreError::NotReplicated {
                    acknowledged: u32::try_from(acknowledged.max(0)).unwrap_or(0),
                    required: durability.replicas,
                    timeout: durability.timeout,
                })
            }
            _ => Ok(()),
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

    #[test]
    fn wait_timeouts_round_up_to_whole_milliseconds_and_never_reach_zero() {
        let millis = |timeout| {
            Durability {
                replicas: 1,
                timeout,
            }
            .millis()
        };
        assert_eq!(millis(Duration::from_millis(250)), 250);
        assert_eq!(millis(Duration::from_micros(1500)), 2);
        assert_eq!(millis(Duration::from_nanos(1)), 1);
    }

    #[test]
    fn only_commands_that_did_not_run_or_can_run_twice_are_sent_again() {
        let moved = RedisError::from((ErrorKind::Server(ServerErrorKind::Moved), "MOVED"));
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let dropped = RedisError::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        let script = RedisError::from((ErrorKind::Server(ServerErrorKind::ResponseError), "ERR"));

        assert_eq!(retry_after(&moved, false, 0), Some(Duration::ZERO));
        assert_eq!(
            retry_after(&moved, false, 1),
            Some(Duration::from_millis(20))
        );
        assert_eq!(
            retry_after(&moved, false, 7),
            Some(Duration::from_millis(200))
        );
        assert_eq!(retry_after(&moved, false, REDIRECT_RETRIES), None);
        assert_eq!(
            retry_after(&refused, false, 0),
            Some(Duration::ZERO),
            "even a write"
        );
        assert_eq!(retry_after(&refused, false, 1), None);
        assert_eq!(retry_after(&dropped, true, 0), Some(Duration::ZERO));
        assert_eq!(
            retry_after(&dropped, true, 1),
            None,
            "a load is sent again once"
        );
        assert_eq!(
            retry_after(&dropped, false, 0),
            None,
            "a write that may have run is not"
        );
        assert_eq!(retry_after(&script, true, 0), None);
    }
}
