//! Where a command an `ASK` redirect names a node for is sent (feature
//! `cluster`): over the cluster connection, or, when the store was told how
//! to connect to any node of the cluster, over a connection of its own to
//! that node.
//!
//! The cluster connection reaches only the nodes that serve slots. A
//! master just added serves none until the first slot it imports has moved
//! over, and for that whole migration the old node sends the slot's moved
//! keys to it: a store built from seed URLs (`connect_cluster`,
//! `connect_cluster_tls`) connects to it with the seeds' settings (TLS,
//! credentials), one multiplexed connection per node, made when a redirect
//! first names it and replaced after it fails.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use redis::{
    Client, ConnectionAddr, ConnectionInfo, RedisResult,
    aio::{ConnectionLike, MultiplexedConnection},
    cluster_async::ClusterConnection,
    cluster_routing::{RoutingInfo, SingleNodeRoutingInfo},
};

use super::request::Node;
use crate::lock::lock;

/// How a store follows `ASK` redirects: the cluster connection, and how to
/// connect to a node of its own accord, when it knows.
pub(crate) struct Redirects {
    cluster: ClusterConnection,
    nodes: Option<Nodes>,
}

/// The settings to connect to any node with, and the connections made.
struct Nodes {
    /// A seed's connection settings; each node's host and port replace the
    /// seed's.
    template: ConnectionInfo,
    /// How long connecting may take.
    timeout: Duration,
    #[cfg(feature = "tls")]
    certificates: Option<redis::TlsCertificates>,
    connections: Mutex<HashMap<String, MultiplexedConnection>>,
}

/// A connection a redirected command goes over.
pub(super) enum Via {
    /// The cluster connection, to the node's address.
    Cluster(ClusterConnection, SingleNodeRoutingInfo),
    /// The store's own connection to the node.
    Own(MultiplexedConnection),
}

impl Redirects {
    /// Redirects followed over `cluster` alone.
    pub(super) fn new(cluster: ClusterConnection) -> Self {
        Self {
            cluster,
            nodes: None,
        }
    }

    /// Redirects followed over connections of the store's own, made with
    /// `template`'s settings (and `certificates`, over TLS) within
    /// `timeout`.
    pub(super) fn with_template(
        cluster: ClusterConnection,
        template: ConnectionInfo,
        #[cfg(feature = "tls")] certificates: Option<redis::TlsCertificates>,
        timeout: Duration,
    ) -> Self {
        Self {
            cluster,
            nodes: Some(Nodes {
                template,
                timeout,
                #[cfg(feature = "tls")]
                certificates,
                connections: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The connection to send a command redirected to `node` over.
    pub(super) async fn via(&self, node: &Node) -> RedisResult<Via> {
        let Some(nodes) = &self.nodes else {
            let route = SingleNodeRoutingInfo::ByAddress {
                host: node.host.clone(),
                port: node.port,
            };
            return Ok(Via::Cluster(self.cluster.clone(), route));
        };
        let address = format!("{}:{}", node.host, node.port);
        if let Some(connection) = lock(&nodes.connections).get(&address) {
            return Ok(Via::Own(connection.clone()));
        }
        let connection = nodes.connect(node).await?;
        lock(&nodes.connections).insert(address, connection.clone());
        Ok(Via::Own(connection))
    }

    /// Drops the store's own connection to `node` after it failed: the
    /// next redirect there makes a fresh one.
    pub(super) fn forget(&self, node: &Node) {
        if let Some(nodes) = &self.nodes {
            lock(&nodes.connections).remove(&format!("{}:{}", node.host, node.port));
        }
    }
}

impl Nodes {
    async fn connect(&self, node: &Node) -> RedisResult<MultiplexedConnection> {
        let addr = match self.template.addr() {
            ConnectionAddr::TcpTls { insecure, .. } => ConnectionAddr::TcpTls {
                host: node.host.clone(),
                port: node.port,
                insecure: *insecure,
                tls_params: None,
            },
            _ => ConnectionAddr::Tcp(node.host.clone(), node.port),
        };
        let info = self.template.clone().set_addr(addr);
        #[cfg(feature = "tls")]
        let client = match &self.certificates {
            Some(certificates) => Client::build_with_tls(info, certificates.clone())?,
            None => Client::open(info)?,
        };
        #[cfg(not(feature = "tls"))]
        let client = Client::open(info)?;
        // As the cluster connection's: fail fast, and no response timeout
        // of redis-rs's own (the layer's `store_timeout` governs).
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(None);
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }
}

impl Via {
    /// Sends `pipeline` and answers `count` replies after the first
    /// `offset`.
    pub(super) async fn pipeline(
        &mut self,
        pipeline: redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<redis::Value>> {
        match self {
            Self::Cluster(cluster, route) => {
                cluster
                    .route_pipeline(pipeline, offset, count, route.clone())
                    .await
            }
            Self::Own(connection) => {
                connection
                    .req_packed_commands(&pipeline, offset, count)
                    .await
            }
        }
    }

    /// Sends one command.
    pub(super) async fn command(&mut self, command: redis::Cmd) -> RedisResult<redis::Value> {
        match self {
            Self::Cluster(cluster, route) => {
                cluster
                    .route_command(command, RoutingInfo::SingleNode(route.clone()))
                    .await
            }
            Self::Own(connection) => connection.req_packed_command(&command).await,
        }
    }
}
