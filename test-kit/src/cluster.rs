//! A private Redis Cluster per test: cluster-enabled redis-servers on free
//! loopback ports, joined by `redis-cli --cluster create`, stopped (killed)
//! when dropped. 3 masters, or 3 masters and 3 replicas; over TLS too
//! (`tls-port`, `tls-cluster yes`, a private authority). And what the tests
//! do to a live cluster: a slot's migration step by step, a master added,
//! `redis-cli --cluster rebalance`.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::Command,
    thread::sleep,
    time::{Duration, Instant},
};

use crate::{Authority, RedisServer};

/// A private Redis Cluster: its nodes, stopped when dropped.
#[derive(Debug)]
pub struct RedisCluster {
    /// Every node, masters and replicas, in the order they were started.
    pub nodes: Vec<RedisServer>,
    /// The configuration every node was started with (a node added later
    /// gets the same).
    config: Vec<String>,
    /// Over TLS: the authority's certificate, for `redis-cli --tls`.
    ca_file: Option<PathBuf>,
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

/// The lines every node gets.
const CLUSTER_CONFIG: [&str; 5] = [
    "cluster-enabled yes",
    "cluster-config-file {dir}/nodes.conf",
    // A dead master is noticed within about a second.
    "cluster-node-timeout 1000",
    // Replicas may take over whatever their replication lag.
    "cluster-replica-validity-factor 0",
    "cluster-require-full-coverage no",
];

impl RedisCluster {
    /// 3 masters, no replicas.
    pub fn start() -> Self {
        Self::start_with(0, &[])
    }

    /// 3 masters with `replicas` replicas each; `config` lines go to every
    /// node.
    pub fn start_with(replicas: usize, config: &[&str]) -> Self {
        let mut lines: Vec<String> = CLUSTER_CONFIG.map(str::to_owned).to_vec();
        lines.extend(config.iter().map(|line| (*line).to_owned()));
        Self::create(replicas, lines, None)
    }

    /// 3 masters with `replicas` replicas each, over TLS: every node serves
    /// TLS on a port of its own with a certificate `authority` signed,
    /// talks to the others over TLS (`tls-cluster yes`, `tls-replication
    /// yes`), and announces its TLS port to TLS clients. The nodes are
    /// joined over TLS. Each keeps a plain port too, which only the test's
    /// own inspection uses (nodes announce it to plain clients).
    pub fn start_tls(replicas: usize, authority: &Authority) -> Self {
        let mut lines: Vec<String> = CLUSTER_CONFIG.map(str::to_owned).to_vec();
        lines.extend(authority.server_config());
        lines.push("tls-cluster yes".to_owned());
        lines.push("tls-replication yes".to_owned());
        Self::create(replicas, lines, Some(authority.ca_file()))
    }

    fn create(replicas: usize, config: Vec<String>, ca_file: Option<PathBuf>) -> Self {
        let nodes: Vec<RedisServer> = (0..3 * (1 + replicas))
            .map(|_| RedisServer::start_configured(&config))
            .collect();
        let cluster = Self {
            nodes,
            config,
            ca_file,
        };
        let addresses: Vec<String> = cluster.nodes.iter().map(|n| cluster.address(n)).collect();
        cluster.cli(
            ["--cluster", "create"]
                .into_iter()
                .map(str::to_owned)
                .chain(addresses)
                .chain(["--cluster-replicas".to_owned(), replicas.to_string()])
                .chain(["--cluster-yes".to_owned()]),
        );
        cluster.wait_until_settled();
        cluster
    }

    /// Runs `redis-cli` with `args` (over TLS for a TLS cluster) and
    /// returns what it printed; a failure fails the test with its output.
    fn cli(&self, args: impl IntoIterator<Item = String>) -> String {
        let mut command = Command::new("redis-cli");
        if let Some(ca_file) = &self.ca_file {
            command.arg("--tls").arg("--cacert").arg(ca_file);
        }
        let args: Vec<String> = args.into_iter().collect();
        let output = command
            .args(&args)
            .output()
            .expect("redis-cli is installed with redis-server");
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success(),
            "redis-cli {} failed: {printed}",
            args.join(" ")
        );
        printed
    }

    /// A node's address as nodes announce it to clients of this cluster's
    /// kind (the TLS port over TLS).
    fn address(&self, node: &RedisServer) -> String {
        let port = match self.ca_file {
            Some(_) => node.tls_port().expect("a TLS node has a TLS port"),
            None => node.port(),
        };
        format!("127.0.0.1:{port}")
    }

    /// The seed URLs of a TLS cluster (`rediss://`, by IP address).
    pub fn tls_urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| node.tls_url().expect("a TLS cluster"))
            .collect()
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
        self.master_of_slot(self.slot(key))
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

    /// Sets `key` to `value` (with a TTL of 600 s) on its master, behind
    /// the layer's back.
    pub fn set(&self, key: &str, value: &[u8]) {
        self.node(self.master_of(key)).set(key, value);
    }

    /// Calls per command on the node on `port` since its last reset
    /// ([`RedisServer::command_calls`]).
    pub fn command_calls(&self, port: u16) -> BTreeMap<String, u64> {
        self.node(port).command_calls()
    }

    /// Zeroes the command statistics of every live node.
    pub fn reset_stats(&self) {
        for node in self.live() {
            node.reset_stats();
        }
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

    /// The slot `key` hashes to.
    pub fn slot(&self, key: &str) -> u16 {
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut self.live().next().expect("a live node").admin())
            .expect("CLUSTER KEYSLOT")
    }

    /// The id of the node on `port`, as the cluster knows it.
    pub fn node_id(&self, port: u16) -> String {
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut self.node(port).admin())
            .expect("CLUSTER MYID")
    }

    /// Starts one more node, with the configuration of the others, and
    /// joins it to the cluster as a master without slots
    /// (`redis-cli --cluster add-node`). Returns its port.
    pub fn add_master(&mut self) -> u16 {
        let node = RedisServer::start_configured(&self.config);
        let port = node.port();
        let seed = self.address(self.live().next().expect("a live node"));
        let new = self.address(&node);
        self.nodes.push(node);
        self.cli(["--cluster".to_owned(), "add-node".to_owned(), new, seed]);
        self.wait_until_settled();
        port
    }

    /// Moves slots until every master, those without slots included,
    /// serves about as many (`redis-cli --cluster rebalance
    /// --cluster-use-empty-masters`), one slot at a time and its keys with
    /// `MIGRATE`, as an operator does on a live cluster. Returns what
    /// redis-cli printed.
    pub fn rebalance(&self) -> String {
        let seed = self.address(self.live().next().expect("a live node"));
        let printed = self.cli([
            "--cluster".to_owned(),
            "rebalance".to_owned(),
            seed,
            "--cluster-use-empty-masters".to_owned(),
        ]);
        self.wait_until_settled();
        printed
    }

    /// The slots each live master serves, by port.
    pub fn slot_counts(&self) -> BTreeMap<u16, usize> {
        let slots: Vec<redis::Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query(&mut self.live().next().expect("a live node").admin())
            .expect("CLUSTER SLOTS");
        let mut counts = BTreeMap::new();
        for range in slots {
            let redis::Value::Array(range) = range else {
                continue;
            };
            if let (
                Some(redis::Value::Int(start)),
                Some(redis::Value::Int(end)),
                Some(redis::Value::Array(master)),
            ) = (range.first(), range.get(1), range.get(2))
                && let Some(redis::Value::Int(port)) = master.get(1)
            {
                *counts.entry(u16::try_from(*port).unwrap()).or_default() +=
                    usize::try_from(end - start + 1).unwrap();
            }
        }
        counts
    }

    /// Starts moving `slot` from the master serving it to the master on
    /// `to`, as `redis-cli --cluster reshard` does: the target
    /// `IMPORTING`, the source `MIGRATING`. Until [`Migration::finish`],
    /// the source answers `ASK` for the slot's keys it no longer holds (and
    /// for new ones), and the keys move only when the test moves them.
    pub fn begin_migration(&self, slot: u16, to: u16) -> Migration<'_> {
        let from = self.master_of_slot(slot);
        assert_ne!(from, to, "slot {slot} is already on {to}");
        let migration = Migration {
            cluster: self,
            slot,
            from,
            to,
        };
        let (from_id, to_id) = (self.node_id(from), self.node_id(to));
        migration.setslot(to, &["IMPORTING", &from_id]);
        migration.setslot(from, &["MIGRATING", &to_id]);
        migration
    }

    /// The master serving `slot`.
    pub fn master_of_slot(&self, slot: u16) -> u16 {
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
}

/// A slot on its way from one master to another, begun by
/// [`RedisCluster::begin_migration`]: its keys move one at a time when the
/// test says, and the slot changes hands at [`finish`](Self::finish).
#[derive(Debug)]
pub struct Migration<'a> {
    cluster: &'a RedisCluster,
    /// The slot.
    pub slot: u16,
    /// The master it leaves.
    pub from: u16,
    /// The master it goes to.
    pub to: u16,
}

impl Migration<'_> {
    fn setslot(&self, port: u16, args: &[&str]) {
        let _: () = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(self.slot)
            .arg(args)
            .query(&mut self.cluster.node(port).admin())
            .expect("CLUSTER SETSLOT");
    }

    /// The slot's keys still on the source.
    pub fn keys_left(&self) -> Vec<String> {
        redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(self.slot)
            .arg(1000)
            .query(&mut self.cluster.node(self.from).admin())
            .expect("CLUSTER GETKEYSINSLOT")
    }

    /// Moves one key to the target (`MIGRATE`, atomic for the key). A key
    /// already gone (expired, deleted, moved) moves nothing.
    pub fn move_key(&self, key: &str) {
        // Nodes of a TLS cluster migrate over TLS, to the target's TLS port.
        let target = self.cluster.node(self.to);
        let port = match self.cluster.ca_file {
            Some(_) => target.tls_port().unwrap(),
            None => target.port(),
        };
        let _: redis::Value = redis::cmd("MIGRATE")
            .arg("127.0.0.1")
            .arg(port)
            .arg("")
            .arg(0)
            .arg(5000)
            .arg("KEYS")
            .arg(key)
            .query(&mut self.cluster.node(self.from).admin())
            .expect("MIGRATE");
    }

    /// Moves the keys left, then gives the slot to the target on every
    /// master (the target first, then the source, as redis-cli does), and
    /// waits until the cluster agrees.
    pub fn finish(self) {
        for key in self.keys_left() {
            self.move_key(&key);
        }
        let to_id = self.cluster.node_id(self.to);
        self.setslot(self.to, &["NODE", &to_id]);
        self.setslot(self.from, &["NODE", &to_id]);
        for port in self.cluster.masters().into_keys() {
            if port != self.to && port != self.from {
                self.setslot(port, &["NODE", &to_id]);
            }
        }
        self.cluster.wait_until_settled();
    }
}
