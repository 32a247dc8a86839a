//! [`RedisStore`] and where it gets its connections: the connection kinds
//! ([`RedisConnection`]) and the recommended one, a `ConnectionManager`
//! made by [`RedisStore::connect`].

use std::{future::Future, time::Duration};

use redis::{
    Client, IntoConnectionInfo, ProtocolVersion,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
};

use super::{
    crypto::install_default_provider, scripts::load_scripts, server::check_server, wait::Durability,
};
use crate::store::StoreError;

/// How long one connection attempt may take (`connect`, `connect_cluster`
/// and their reconnections): fail fast, the layer answers 503 meanwhile.
pub(super) const CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);

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

/// Records in Redis (6.2 or later).
///
/// | operation | command |
/// | --- | --- |
/// | load | `EVALSHA` of the load script: `GET key`, then `EXPIRE key ttl` when the record is this release's (`GET key` when refresh on load is off) |
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
    pub(super) connection: C,
    pub(super) durability: Option<Durability>,
    /// When the connection is a cluster's: how to follow `ASK` redirects
    /// (see `asking.rs`).
    #[cfg(feature = "cluster")]
    pub(super) redirects: Option<std::sync::Arc<super::redirects::Redirects>>,
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
    /// With the `tls` feature it first installs rustls's `ring` provider as
    /// the process default, unless one is installed already: rustls cannot
    /// pick one by itself when the binary links another provider too
    /// (`aws-lc-rs`, through some other crate). To use another provider,
    /// install it before the first connect.
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
    /// database. The same settings apply, and the same crypto provider is
    /// installed.
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
        install_default_provider();
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
        load_scripts(&mut manager).await?;
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
            // `RedisConnection` is implemented for every cloneable redis-rs
            // connection at once, so the cluster's cannot carry a method of
            // its own: the store looks once, here.
            #[cfg(feature = "cluster")]
            redirects: (&connection as &dyn std::any::Any)
                .downcast_ref::<redis::cluster_async::ClusterConnection>()
                .map(|cluster| {
                    std::sync::Arc::new(super::redirects::Redirects::new(cluster.clone()))
                }),
            connection,
            durability: None,
        }
    }
}
