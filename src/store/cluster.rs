//! `RedisStore` over a Redis Cluster (feature `cluster`).
//!
//! Every store operation names exactly one key, so nothing ever crosses a
//! slot. The cluster connection is built with no retries of its own: it
//! would send again a command whose connection dropped in flight, and a
//! compare-and-set that had landed, sent twice, answers a false conflict.
//! The store decides instead (see `redis.rs`): redirects (`MOVED`, `ASK`)
//! and refusals during a failover are sent again, since the server did not
//! run them; a load is sent again once after a dropped connection; a write
//! whose outcome is unknown answers 503.

use redis::{
    IntoConnectionInfo,
    cluster::{ClusterClient, ClusterClientBuilder},
    cluster_async::ClusterConnection,
};

use super::{
    RedisStore, StoreError,
    redis::{CONNECTION_TIMEOUT, check_server},
};

#[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
impl RedisStore<ClusterConnection> {
    /// Connects to the Redis Cluster that `nodes` belong to (one reachable
    /// node is enough; the others are discovered), with the same settings
    /// as [`connect`](RedisStore::connect): connection attempts give up
    /// after 1 s, no response timeout of redis-rs's own (the layer's
    /// [`store_timeout`](crate::PipelineStateLayer::store_timeout)
    /// governs), and the server must offer `GETEX` (Redis 6.2 or later; the
    /// node the check reaches speaks for the cluster).
    ///
    /// # Errors
    /// When no node can be reached or the slots cannot be read, or a master
    /// without `GETEX` answers ([`StoreError::ServerTooOld`]).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), tower_pipeline_state::StoreError> {
    /// use tower_pipeline_state::RedisStore;
    ///
    /// let store = RedisStore::connect_cluster([
    ///     "redis://10.0.0.1:6379",
    ///     "redis://10.0.0.2:6379",
    ///     "redis://10.0.0.3:6379",
    /// ])
    /// .await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_cluster<T: IntoConnectionInfo>(
        nodes: impl IntoIterator<Item = T>,
    ) -> Result<Self, StoreError> {
        Self::connect_cluster_with(ClusterClient::builder(nodes)).await
    }

    /// Like [`connect_cluster`](Self::connect_cluster), from a builder you
    /// configured: TLS certificates (`certs`, feature `tls`), credentials,
    /// RESP3. The store then sets its own connection timeout (1 s) and
    /// retries (none: see the module's notes) over yours; leave the response
    /// timeout unset so the layer's governs.
    ///
    /// # Errors
    /// As [`connect_cluster`](Self::connect_cluster).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), tower_pipeline_state::StoreError> {
    /// use redis::cluster::ClusterClient;
    /// use tower_pipeline_state::RedisStore;
    ///
    /// let builder = ClusterClient::builder(["redis://10.0.0.1:6379"]).password("secret");
    /// let store = RedisStore::connect_cluster_with(builder).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_cluster_with(builder: ClusterClientBuilder) -> Result<Self, StoreError> {
        let client = builder
            .connection_timeout(CONNECTION_TIMEOUT)
            .retries(0)
            .build()?;
        let mut connection = client.get_async_connection().await?;
        check_server(&mut connection).await?;
        Ok(Self::new(connection))
    }
}
