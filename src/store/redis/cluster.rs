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

use std::{collections::BTreeSet, sync::Arc};

use redis::{
    ConnectionInfo, IntoConnectionInfo, Value,
    cluster::{ClusterClient, ClusterClientBuilder},
    cluster_async::ClusterConnection,
    cluster_routing::{RoutingInfo, SingleNodeRoutingInfo},
    cmd,
};

use super::{
    RedisStore,
    connection::CONNECTION_TIMEOUT,
    crypto::install_default_provider,
    redirects::Redirects,
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
    /// governs), every master must offer `GETEX` (Redis 6.2 or later), and
    /// with the `tls` feature rustls's `ring` provider is installed as the
    /// process default unless one is installed already.
    ///
    /// While a slot migrates, a command its old node redirects with `ASK`
    /// is sent to the new node with `ASKING`, however long the migration
    /// lasts. The store reaches that node over a connection of its own,
    /// made with the first seed's settings, even before the cluster
    /// connection knows it (a master just added, its first slot migrating).
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
        let seeds = seeds(nodes)?;
        let store = Self::connect_cluster_with(ClusterClient::builder(seeds.clone())).await?;
        Ok(store.reaching_any_node(seeds, None))
    }

    /// Like [`connect_cluster`](Self::connect_cluster), over TLS with
    /// `certificates`: the root that signed the nodes' certificates (a
    /// private authority) and, for mutual TLS, the client's. The seeds are
    /// `rediss://` URLs; every node is reached over TLS with the same
    /// certificates, those the cluster connection discovers and those a
    /// migrating slot's redirect names.
    ///
    /// # Errors
    /// As [`connect_cluster`](Self::connect_cluster); a node whose
    /// certificate `certificates` does not trust is refused.
    ///
    /// ```no_run
    /// # async fn run(authority_pem: Vec<u8>) -> Result<(), tower_pipeline_state::StoreError> {
    /// use redis::TlsCertificates;
    /// use tower_pipeline_state::RedisStore;
    ///
    /// let certificates = TlsCertificates { client_tls: None, root_cert: Some(authority_pem) };
    /// let store = RedisStore::connect_cluster_tls(
    ///     ["rediss://10.0.0.1:6380", "rediss://10.0.0.2:6380"],
    ///     certificates,
    /// )
    /// .await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(all(feature = "cluster", feature = "tls"))))]
    pub async fn connect_cluster_tls<T: IntoConnectionInfo>(
        nodes: impl IntoIterator<Item = T>,
        certificates: redis::TlsCertificates,
    ) -> Result<Self, StoreError> {
        let seeds = seeds(nodes)?;
        let builder = ClusterClient::builder(seeds.clone()).certs(certificates.clone());
        let store = Self::connect_cluster_with(builder).await?;
        Ok(store.reaching_any_node(seeds, Some(certificates)))
    }

    /// Like [`connect_cluster`](Self::connect_cluster), from a builder you
    /// configured: credentials, RESP3, TLS certificates (`certs`, feature
    /// `tls`; [`connect_cluster_tls`](Self::connect_cluster_tls) takes them
    /// too). The store then sets its own connection timeout (1 s) and
    /// retries (none: see the module's notes) over yours; leave the response
    /// timeout unset so the layer's governs.
    ///
    /// The builder's settings cannot be read back, so `ASK` redirects are
    /// followed over the cluster connection alone, which reaches the masters
    /// that serve slots: a key moved to a master that serves none yet (its
    /// first slot migrating to it) is sent again, up to about 0.9 s, and
    /// then answered 503. Prefer `connect_cluster` or `connect_cluster_tls`
    /// when masters are added to a live cluster.
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
        install_default_provider();
        let client = builder
            .connection_timeout(CONNECTION_TIMEOUT)
            .retries(0)
            .build()?;
        let mut connection = client.get_async_connection().await?;
        check_masters(&mut connection).await?;
        Ok(Self::new(connection))
    }
}

impl RedisStore<ClusterConnection> {
    /// Follows `ASK` redirects over connections of its own, made with the
    /// first seed's settings, so that a node the cluster connection does
    /// not know yet (a master whose first slot is migrating to it) is
    /// reached too.
    fn reaching_any_node(
        mut self,
        seeds: Vec<ConnectionInfo>,
        certificates: Option<TlsCertificates>,
    ) -> Self {
        if let Some(template) = seeds.into_iter().next() {
            // Without the `tls` feature there are none to pass.
            #[cfg(not(feature = "tls"))]
            let _: Option<()> = certificates;
            self.redirects = Some(Arc::new(Redirects::with_template(
                self.connection.clone(),
                template,
                #[cfg(feature = "tls")]
                certificates,
                CONNECTION_TIMEOUT,
            )));
        }
        self
    }
}

/// The seeds' connection settings, read once.
fn seeds<T: IntoConnectionInfo>(
    nodes: impl IntoIterator<Item = T>,
) -> Result<Vec<ConnectionInfo>, StoreError> {
    Ok(nodes
        .into_iter()
        .map(IntoConnectionInfo::into_connection_info)
        .collect::<Result<_, _>>()?)
}

/// TLS certificates, where the `tls` feature has them.
#[cfg(feature = "tls")]
type TlsCertificates = redis::TlsCertificates;
#[cfg(not(feature = "tls"))]
type TlsCertificates = ();

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
