//! `RedisStore` over a Redis Cluster (feature `cluster`).
//!
//! Every store operation names exactly one key, so nothing ever crosses a
//! slot. The cluster connection is built with no retries of its own: it
//! would send again a command whose connection dropped in flight, and a
//! compare-and-set that had landed, sent twice, answers a false conflict.
//! The store decides instead (see `retry.rs`): a command refused during a
//! failover or answered `MOVED` is sent again, since the server did not run
//! it; one answered `ASK` is followed to the node the redirect names, with
//! `ASKING` (see `asking.rs`); a load is sent again once after a dropped
//! connection; a write whose outcome is unknown answers 503.

use std::collections::BTreeSet;

use redis::{
    IntoConnectionInfo, Value,
    cluster::{ClusterClient, ClusterClientBuilder},
    cluster_async::ClusterConnection,
    cluster_routing::{RoutingInfo, SingleNodeRoutingInfo},
    cmd,
};

use super::{
    RedisStore,
    connection::CONNECTION_TIMEOUT,
    scripts::script_loads,
    server::{MINIMUM_VERSION, has_getex, probe, version_in},
};
use crate::store::StoreError;

#[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
impl RedisStore<ClusterConnection> {
    /// Connects to the Redis Cluster that `nodes` belong to (one reachable
    /// node is enough; the others are discovered), with the same settings
    /// as [`connect`](RedisStore::connect): connection attempts give up
    /// after 1 s, no response timeout of redis-rs's own (the layer's
    /// [`store_timeout`](crate::PipelineStateLayer::store_timeout)
    /// governs), and every master must offer `GETEX` (Redis 6.2 or later).
    ///
    /// # Errors
    /// When no node can be reached or the slots cannot be read, or a master
    /// lacks `GETEX` ([`StoreError::ServerTooOld`], naming the version and
    /// the address of each master that lacks it).
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
        check_masters(&mut connection).await?;
        Ok(Self::new(connection))
    }
}

/// Refuses a cluster any of whose masters lacks `GETEX` (during a rolling
/// upgrade, say): each master, found in `CLUSTER SLOTS`, is asked on its
/// own, and given the store's scripts.
async fn check_masters(connection: &mut ClusterConnection) -> Result<(), StoreError> {
    let slots: Value = cmd("CLUSTER").arg("SLOTS").query_async(connection).await?;
    let mut too_old = Vec::new();
    for (host, port) in masters(&slots)? {
        let node = || {
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                host: host.clone(),
                port,
            })
        };
        if has_getex(connection.route_command(probe(), node()).await)? {
            for load in script_loads() {
                connection
                    .route_command(load, node())
                    .await?
                    .extract_error()?;
            }
            continue;
        }
        let info = connection
            .route_command(cmd("INFO").arg("server").take(), node())
            .await;
        too_old.push(format!("{} at {host}:{port}", version_in(info)));
    }
    if too_old.is_empty() {
        Ok(())
    } else {
        Err(StoreError::ServerTooOld {
            found: too_old.join(", "),
            needed: MINIMUM_VERSION,
        })
    }
}

/// The address of every master in a `CLUSTER SLOTS` answer: per slot
/// range, `[start, end, [host, port, id, ...], replicas...]`.
fn masters(slots: &Value) -> Result<BTreeSet<(String, u16)>, StoreError> {
    let unexpected = || StoreError::Protocol(format!("CLUSTER SLOTS answered {slots:?}"));
    let Value::Array(ranges) = slots else {
        return Err(unexpected());
    };
    let mut masters = BTreeSet::new();
    for range in ranges {
        let Value::Array(range) = range else {
            return Err(unexpected());
        };
        let Some(Value::Array(master)) = range.get(2) else {
            return Err(unexpected());
        };
        let host = match master.first() {
            Some(Value::BulkString(host)) => String::from_utf8_lossy(host).into_owned(),
            Some(Value::SimpleString(host)) => host.clone(),
            _ => return Err(unexpected()),
        };
        let Some(Value::Int(port)) = master.get(1) else {
            return Err(unexpected());
        };
        masters.insert((host, u16::try_from(*port).map_err(|_| unexpected())?));
    }
    Ok(masters)
}
