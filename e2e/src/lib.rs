//! End to end over loopback HTTP, against a private redis-server this bench
//! starts (and kills when it ends): throughput, p50/p99 latency and CPU per
//! request of four operations at 1 and 16 concurrent clients, for six ways
//! of keeping a flow's state in Redis behind axum; then memory per flow in
//! Redis.
//!
//! ```text
//! cargo bench -p e2e
//! ```
//!
//! | stack | what it is |
//! | --- | --- |
//! | `pipeline-state (ConnectionManager)` | this crate, `RedisStore::connect` (one multiplexed connection) |
//! | `pipeline-state (bb8 pool)` | this crate, `RedisStore::from_pool` (bb8, 16 connections, no `PING` on checkout) |
//! | `pipeline-state (cluster)` | this crate, `RedisStore::connect_cluster` on a private 3-master Redis Cluster (one connection per master) |
//! | `limit (hand-written)` | no middleware: handlers send the same commands themselves, with the same record (version header) and compare-and-set script |
//! | `plain GETEX + SET EX` | no middleware, no version: handlers `GETEX` the fields and `SET EX` them back (the least a Redis-backed flow costs; it loses updates when requests race) |
//! | `tower-sessions` | tower-sessions 0.14 + tower-sessions-redis-store 0.16 (fred pool of 6, as its docs show) |
//!
//! Every flow holds what a real one does (`flow.rs`): a map of 8 string
//! answers and a counter.
//!
//! | operation | this crate | limit | plain | tower-sessions |
//! | --- | --- | --- | --- | --- |
//! | `read`: read the counter | the load script (`EVALSHA`: `GET`, `EXPIRE`) | `GETEX` | `GETEX` | `GET` (its reads do not slide the TTL) |
//! | `change`: read the counter, set it | the load script + `EVALSHA` (compare-and-set) | `GETEX` + `EVALSHA` | `GETEX` + `SET EX` | `GET` + `SET XX` (no concurrency control) |
//! | `step`: read the answers (typed) and the counter, replace one answer, count, write both | as `change` | as `change` | as `change` | as `change` |
//! | `untouched`: the handler ignores the state | nothing (it loads lazily, when a handler asks) | nothing | nothing | nothing (it loads lazily) |
//!
//! Every client owns one flow (its cookie comes from a first request) and
//! sends its requests one after another over a keep-alive connection; all
//! stacks use the same client (hyper-util's legacy client). Client, servers
//! and redis-server share the machine, so compare rows, not absolutes.
//!
//! Each cell (stack × operation × clients) is measured in `E2E_ROUNDS`
//! short rounds (default 5); within one operation and client count the
//! rounds go stack after stack, in a rotating order, so that each stack's
//! round sits next to the others' in time. On a machine shared with other
//! work, throughput drifts by tens of percent from one minute to the next;
//! ratios between neighbouring rounds drift much less. The table shows the
//! median round's throughput, the percentiles of all rounds' latencies
//! together, and "× limit": the median over rounds of this stack's
//! throughput divided by the limit's in the same round.
//!
//! Wall-clock figures on a shared machine move with everyone else's load,
//! so each round also takes the CPU time spent per request, from Linux's
//! per-thread scheduler statistics (`/proc/<pid>/task/*/schedstat`): this
//! process (servers and client together; the client's share is the same
//! for every stack) and the redis-server. When the machine is saturated
//! (16 clients), throughput follows the sum of the two.
//!
//! Settings (environment): `E2E_ROUNDS` (default 5), `E2E_SECONDS`
//! (measured seconds per round, default 1), `E2E_WARMUP` (seconds of
//! warm-up per round, default 0.25), `E2E_OPS` (default
//! `read,change,untouched,step`), `E2E_CLIENTS` (default `1,16`),
//! `E2E_STACKS` (default
//! `connection-manager,bb8,cluster,limit,plain,tower-sessions`). The goals
//! summary is printed when every operation and the five single-node stacks
//! were measured; the realistic step's goals when `step`, this crate, the
//! limit and plain were; the cluster's ratio to the single-node
//! `ConnectionManager` when both were.
//!
//! Memory per flow: after the rounds, each single-node stack in turn starts
//! one flow on the emptied server and takes 9 steps; `MEMORY USAGE` of its
//! one key is the figure.
//!
//! The cluster row runs the same workload against 3 redis-servers (the
//! single-node rows against 1) on the same cores; its "CPU (redis)" is the
//! three servers' together.
//!
//! One file per concern: the flow's shape (`flow.rs`), the stacks under
//! test (`stack.rs`, with the hand-written limits in `limit.rs` and
//! `plain.rs` and tower-sessions in `sessions.rs`), memory per flow
//! (`memory.rs`),
//! the load and one round's measurement (`load.rs`), CPU time (`cpu.rs`),
//! the table (`report.rs`) and the settings (`settings.rs`). The private
//! redis-server and cluster come from the workspace's test kit.

pub mod instructions;

mod cpu;
mod flow;
mod limit;
mod load;
mod memory;
mod plain;
mod report;
mod sessions;
mod settings;
mod stack;

use std::time::Duration;

use test_kit::{RedisCluster, RedisServer};

use crate::{
    cpu::process_id,
    load::{Op, Round, client, measure},
    memory::memory_per_flow,
    report::{Cell, micros, report},
    settings::Settings,
    stack::{Stack, app, serve},
};

/// Every stack's flows live this long (seconds), sliding.
const TTL_SECONDS: u64 = 600;

/// Starts the servers, measures every cell, prints the table.
pub async fn run() {
    let Settings {
        timing,
        rounds,
        ops,
        concurrency,
        stacks,
    } = Settings::from_env();
    let redis = RedisServer::start();
    let redis_pids = vec![process_id(&mut redis.admin())];
    let cluster = stacks.contains(&Stack::Cluster).then(RedisCluster::start);
    let (cluster_urls, cluster_pids) = match &cluster {
        Some(cluster) => (
            cluster.urls(),
            cluster
                .nodes
                .iter()
                .map(|node| process_id(&mut node.admin()))
                .collect(),
        ),
        None => (Vec::new(), Vec::new()),
    };
    eprintln!(
        "private redis-server on port {}; {} cells × {rounds} rounds of {:?} warm-up + {:?}",
        redis.port(),
        stacks.len() * ops.len() * concurrency.len(),
        timing.warmup,
        timing.seconds
    );
    let mut servers = Vec::new();
    for &stack in &stacks {
        let router = app(stack, &redis.url(), &cluster_urls).await;
        servers.push((stack, serve(router).await));
    }
    let client = client();
    let mut measured: Vec<((Stack, Op, usize), Vec<Round>)> = Vec::new();
    for &op in &ops {
        for &clients in &concurrency {
            for round in 1..=rounds {
                // A rotating order, so no stack always follows the same one.
                for i in 0..servers.len() {
                    let (stack, addr) = servers[(i + round) % servers.len()];
                    let pids = if stack == Stack::Cluster {
                        &cluster_pids
                    } else {
                        &redis_pids
                    };
                    let result = measure(&client, pids, addr, stack, op, clients, timing).await;
                    eprintln!(
                        "round {round}  {:<9} {:>2} clients  {:<34} {:>8.0} req/s  p50 {:>5} µs  p99 {:>5} µs",
                        op.name(),
                        clients,
                        stack.name(),
                        result.per_second,
                        micros(Duration::from_nanos(
                            result.latencies.value_at_quantile(0.5)
                        )),
                        micros(Duration::from_nanos(
                            result.latencies.value_at_quantile(0.99)
                        )),
                    );
                    let key = (stack, op, clients);
                    match measured.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, rounds)) => rounds.push(result),
                        None => measured.push((key, vec![result])),
                    }
                }
            }
        }
    }
    let cells: Vec<Cell> = measured
        .iter()
        .map(|&((stack, op, clients), ref rounds)| Cell::new(stack, op, clients, rounds))
        .collect();
    let mut memory = Vec::new();
    let mut admin = redis.admin();
    for &(stack, addr) in &servers {
        if stack != Stack::Cluster {
            memory.push((
                stack,
                memory_per_flow(&client, &mut admin, addr, stack).await,
            ));
        }
    }
    report(&cells, &ops, &concurrency, &stacks, &memory);
    drop(redis);
    drop(cluster);
}
