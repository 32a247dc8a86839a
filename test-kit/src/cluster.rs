//! A private Redis Cluster per test: cluster-enabled redis-servers on free
//! loopback ports, joined by `redis-cli --cluster create`, stopped (killed)
//! when dropped. 3 masters, or 3 masters and 3 replicas.

use std::{
    collections::BTreeMap,
    process::Command,
    thread::sleep,
    time::{Duration, Instant},
};

use crate::RedisServer;

/// A private Redis Cluster: its nodes, stopped when dropped.
#[derive(Debug)]
pub struct RedisCluster {
    /// Every node, masters and replicas, in the order they were started.
    pub nodes: Vec<RedisServer>,
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone)]
pub struct Node {
    /// The node's id in the cluster.
    pub id: String,
    /// Its loopback port.
    pub port: u16,
    /// Whether it is a master (else a replica).
    pub master: bool,
    /// For a replica, the id of its master.
    pub master_id: Option<String>,
    /// Whether it is flagged as failing.
    pub failed: bool,
}

impl RedisCluster {
    /// 3 masters, no replicas.
    pub fn start() -> Self {
        Self::start_with(0, &[])
    }

    /// 3 masters with `replicas` replicas each; `config` lines go to every
    /// node.
    pub fn start_with(replicas: usize, config: &[&str]) -> Self {
        let mut lines = vec![
            "cluster-enabled yes",
            "cluster-config-file {dir}/nodes.conf",
            // A dead master is noticed within about a second.
            "cluster-node-timeout 1000",
            // Replicas may take over whatever their replication lag.
            "cluster-replica-validity-factor 0",
            "cluster-require-full-coverage no",
        ];
        lines.extend_from_slice(config);
        let nodes: Vec<RedisServer> = (0..3 * (1 + replicas))
            .map(|_| RedisServer::start_configured(&lines))
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli is installed with redis-server");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster = Self { nodes };
        cluster.wait_until_settled();
        cluster
    }

    /// The seed URLs a client is given.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|node| node.url()).collect()
    }

    fn node(&self, port: u16) -> &RedisServer {
        self.nodes
            .iter()
            .find(|node| node.port() == port)
            .expect("a node of this cluster")
    }

    /// `CLUSTER NODES` as one node sees it.
    pub fn topology(&self, port: u16) -> Vec<Node> {
        let text: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query(&mut self.node(port).admin())
            .expect("CLUSTER NODES");
        text.lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                let port = fields.get(1)?.split(['@', ':']).nth(1)?.parse().ok()?;
                let flags = fields.get(2)?;
                Some(Node {
                    id: fields[0].to_owned(),
                    port,
                    master: flags.contains("master"),
                    master_id: (fields.get(3)? != &"-").then(|| fields[3].to_owned()),
                    failed: flags.contains("fail"),
                })
            })
            .collect()
    }

    /// The nodes that are up (not stopped by the test).
    fn live(&self) -> impl Iterator<Item = &RedisServer> {
        self.nodes.iter().filter(|node| node.is_running())
    }

    /// Waits until every live node sees every slot served, the same
    /// masters, and every replica in sync with its master.
    pub fn wait_until_settled(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.settled() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not settle: {:?}",
                self.live()
                    .map(|node| self.topology(node.port()))
                    .collect::<Vec<_>>()
            );
            sleep(Duration::from_millis(100));
        }
    }

    fn settled(&self) -> bool {
        let mut views = Vec::new();
        for node in self.live() {
            let Ok(info) = redis::cmd("CLUSTER")
                .arg("INFO")
                .query::<String>(&mut node.admin())
            else {
                return false;
            };
            if !info.contains("cluster_state:ok") || !info.contains("cluster_slots_ok:16384") {
                return false;
            }
            let Ok(replication) = redis::cmd("INFO")
                .arg("replication")
                .query::<String>(&mut node.admin())
            else {
                return false;
            };
            if replication.contains("role:slave") && !replication.contains("master_link_status:up")
            {
                return false;
            }
            let mut masters: Vec<u16> = self
                .topology(node.port())
                .iter()
                .filter(|n| n.master && !n.failed)
                .map(|n| n.port)
                .collect();
            masters.sort_unstable();
            views.push(masters);
        }
        views.windows(2).all(|pair| pair[0] == pair[1])
    }

    /// The ports of the live masters and, per master, its live replicas.
    pub fn masters(&self) -> BTreeMap<u16, Vec<u16>> {
        let port = self.live().next().expect("a live node").port();
        let nodes = self.topology(port);
        let live = |port| self.live().any(|node| node.port() == port);
        nodes
            .iter()
            .filter(|node| node.master && !node.failed && live(node.port))
            .map(|master| {
                let replicas = nodes
                    .iter()
                    .filter(|n| n.master_id.as_deref() == Some(&master.id) && live(n.port))
                    .map(|n| n.port)
                    .collect();
                (master.port, replicas)
            })
            .collect()
    }

    /// The master serving `key`.
    pub fn master_of(&self, key: &str) -> u16 {
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut self.live().next().unwrap().admin())
            .expect("CLUSTER KEYSLOT");
        let slots: Vec<redis::Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query(&mut self.live().next().unwrap().admin())
            .expect("CLUSTER SLOTS");
        for range in slots {
            let redis::Value::Array(range) = range else {
                continue;
            };
            let (Some(redis::Value::Int(start)), Some(redis::Value::Int(end))) =
                (range.first(), range.get(1))
            else {
                continue;
            };
            if (*start..=*end).contains(&i64::from(slot))
                && let Some(redis::Value::Array(master)) = range.get(2)
                && let Some(redis::Value::Int(port)) = master.get(1)
            {
                return u16::try_from(*port).unwrap();
            }
        }
        panic!("no master serves slot {slot}")
    }

    /// Every key on the live masters.
    pub fn keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        for port in self.masters().keys() {
            keys.extend(self.node(*port).keys());
        }
        keys.sort();
        keys
    }

    /// The raw value of `key`, read from its master.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.node(self.master_of(key)).get(key)
    }

    /// Deletes `key` behind the layer's back.
    pub fn del(&self, key: &str) {
        self.node(self.master_of(key)).del(key);
    }

    /// Starts a killed node again on its port, with its `nodes.conf`: it
    /// rejoins the cluster (a killed master comes back as a replica of the
    /// node that took over).
    pub fn restart(&mut self, port: u16) {
        self.nodes
            .iter_mut()
            .find(|node| node.port() == port)
            .expect("a node of this cluster")
            .restart();
    }

    /// Restarts a node with one more configuration line; it rejoins the
    /// cluster with its slots.
    pub fn restart_with(&mut self, port: u16, line: &str) {
        self.nodes
            .iter_mut()
            .find(|node| node.port() == port)
            .expect("a node of this cluster")
            .restart_with(line);
    }

    /// Kills a node (SIGKILL).
    pub fn kill(&mut self, port: u16) {
        self.nodes
            .iter_mut()
            .find(|node| node.port() == port)
            .expect("a node of this cluster")
            .stop();
    }
}
