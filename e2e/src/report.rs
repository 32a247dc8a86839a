//! The table: per cell, the median round's throughput, the percentiles of
//! all rounds' latencies together, the ratio to the limit in the same
//! round, and CPU time per request; then the goals, the realistic step's
//! goals, memory per flow and the cluster's ratio to a single node.

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::{
    load::{OPS, Op, Round},
    stack::Stack,
};

/// All rounds of one cell.
pub(crate) struct Cell {
    stack: Stack,
    op: Op,
    clients: usize,
    requests: u64,
    errors: u64,
    /// Each round's, in round order.
    rates: Vec<f64>,
    /// The median round's.
    per_second: f64,
    /// Over all rounds' requests.
    p50: Duration,
    p99: Duration,
    /// CPU time per request: this process (servers and client), redis-server.
    cpu: (Duration, Duration),
}

impl Cell {
    pub(crate) fn new(stack: Stack, op: Op, clients: usize, rounds: &[Round]) -> Self {
        let mut latencies = Histogram::<u64>::new(3).unwrap();
        for round in rounds {
            latencies.add(&round.latencies).unwrap();
        }
        let rates: Vec<f64> = rounds.iter().map(|r| r.per_second).collect();
        Cell {
            stack,
            op,
            clients,
            requests: latencies.len(),
            errors: rounds.iter().map(|r| r.errors).sum(),
            per_second: median(rates.clone()),
            rates,
            cpu: {
                let requests = latencies.len().max(1) as u32;
                let (process, redis) = rounds.iter().fold(Default::default(), |sum, r| {
                    let (process, redis): (Duration, Duration) = sum;
                    (process + r.cpu.0, redis + r.cpu.1)
                });
                (process / requests, redis / requests)
            },
            p50: Duration::from_nanos(latencies.value_at_quantile(0.50)),
            p99: Duration::from_nanos(latencies.value_at_quantile(0.99)),
        }
    }
}

pub(crate) fn micros(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e6)
}

pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

/// The median over rounds of `stack`'s throughput over `other`'s in the
/// same round.
pub(crate) fn ratio(cells: &[Cell], stack: Stack, other: Stack, op: Op, clients: usize) -> f64 {
    let ours = &find(cells, stack, op, clients).rates;
    let theirs = &find(cells, other, op, clients).rates;
    median(ours.iter().zip(theirs).map(|(a, b)| a / b).collect())
}

pub(crate) fn find(cells: &[Cell], stack: Stack, op: Op, clients: usize) -> &Cell {
    cells
        .iter()
        .find(|c| c.stack == stack && c.op == op && c.clients == clients)
        .expect("every cell was measured")
}

pub(crate) fn report(
    cells: &[Cell],
    ops: &[Op],
    concurrency: &[usize],
    stacks: &[Stack],
    memory: &[(Stack, u64)],
) {
    let versus = |stack, other, op, clients| {
        if stacks.contains(&other) {
            ratio(cells, stack, other, op, clients)
        } else {
            f64::NAN
        }
    };
    println!();
    println!(
        "| operation | clients | stack | req/s | p50 µs | p99 µs | × limit | × plain | CPU µs/req (process) | CPU µs/req (redis) |"
    );
    println!("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for &op in ops {
        for &clients in concurrency {
            for &stack in stacks {
                let cell = find(cells, stack, op, clients);
                println!(
                    "| {} | {} | {} | {:.0} | {} | {} | {:.2} | {:.2} | {:.1} | {:.1} |",
                    op.name(),
                    clients,
                    stack.name(),
                    cell.per_second,
                    micros(cell.p50),
                    micros(cell.p99),
                    versus(stack, Stack::Limit, op, clients),
                    versus(stack, Stack::Plain, op, clients),
                    cell.cpu.0.as_secs_f64() * 1e6,
                    cell.cpu.1.as_secs_f64() * 1e6,
                );
            }
        }
    }

    let single_node = [
        Stack::ConnectionManager,
        Stack::Bb8,
        Stack::Limit,
        Stack::Plain,
        Stack::TowerSessions,
    ];
    if ops.len() == OPS.len() && single_node.iter().all(|stack| stacks.contains(stack)) {
        goals(cells, concurrency);
    }
    let step_stacks = [
        Stack::ConnectionManager,
        Stack::Bb8,
        Stack::Limit,
        Stack::Plain,
    ];
    if ops.contains(&Op::Step) && step_stacks.iter().all(|stack| stacks.contains(stack)) {
        step_goals(cells, concurrency);
    }
    memory_table(memory);
    if stacks.contains(&Stack::Cluster) && stacks.contains(&Stack::ConnectionManager) {
        println!();
        println!("Cluster (3 masters) × single-node ConnectionManager, median over rounds:");
        for &op in ops {
            for &clients in concurrency {
                println!(
                    "  {:<9} {clients:>2} clients: {:.2}",
                    op.name(),
                    ratio(cells, Stack::Cluster, Stack::ConnectionManager, op, clients)
                );
            }
        }
    }

    let errors: u64 = cells.iter().map(|c| c.errors).sum();
    let requests: u64 = cells.iter().map(|c| c.requests).sum();
    println!();
    println!("{requests} measured requests, {errors} answered other than 200 OK");
}

pub(crate) fn goals(cells: &[Cell], concurrency: &[usize]) {
    println!();
    println!("Goals (this crate with ConnectionManager; bb8 in brackets):");
    for &clients in concurrency {
        let ratio = |op, other| {
            format!(
                "{:.2} [{:.2}]",
                ratio(cells, Stack::ConnectionManager, other, op, clients),
                ratio(cells, Stack::Bb8, other, op, clients),
            )
        };
        println!(
            "  {clients:>2} clients: untouched {} × limit (goal ≥ 0.9); read {} × limit (goal ≥ 0.95); change {} × limit (goal ≥ 0.9), {} × tower-sessions",
            ratio(Op::Untouched, Stack::Limit),
            ratio(Op::Read, Stack::Limit),
            ratio(Op::Change, Stack::Limit),
            ratio(Op::Change, Stack::TowerSessions),
        );
        let cpu = |stack, op| {
            let (process, redis) = find(cells, stack, op, clients).cpu;
            (process + redis).as_secs_f64() * 1e6
        };
        for op in [Op::Read, Op::Change] {
            println!(
                "     CPU per {:<6} (process + redis): {:.1} [{:.1}] µs vs limit {:.1} µs, tower-sessions {:.1} µs",
                op.name(),
                cpu(Stack::ConnectionManager, op),
                cpu(Stack::Bb8, op),
                cpu(Stack::Limit, op),
                cpu(Stack::TowerSessions, op),
            );
        }
        for op in OPS {
            let p99 = |stack| micros(find(cells, stack, op, clients).p99);
            println!(
                "     p99 {:<9} {} [{}] µs vs limit {} µs (goal ≤ 1.1 × limit), tower-sessions {} µs",
                op.name(),
                p99(Stack::ConnectionManager),
                p99(Stack::Bb8),
                p99(Stack::Limit),
                p99(Stack::TowerSessions),
            );
        }
    }
}

/// The realistic step against both hand-written limits: the goals of the
/// change path.
pub(crate) fn step_goals(cells: &[Cell], concurrency: &[usize]) {
    println!();
    println!("Realistic step (this crate with ConnectionManager; bb8 in brackets):");
    for &clients in concurrency {
        let both = |of: &dyn Fn(Stack) -> f64| {
            format!(
                "{:.2} [{:.2}]",
                of(Stack::ConnectionManager),
                of(Stack::Bb8)
            )
        };
        let throughput = |other| both(&|stack| ratio(cells, stack, other, Op::Step, clients));
        let cell = |stack| find(cells, stack, Op::Step, clients);
        let limit = cell(Stack::Limit);
        println!(
            "  {clients:>2} clients: {} × limit (goal ≥ 0.97), {} × plain (goal ≥ 0.90)",
            throughput(Stack::Limit),
            throughput(Stack::Plain),
        );
        println!(
            "     p99 {} × limit (goal ≤ 1.1); CPU per request, process {} × limit (goal ≤ 1.1), redis {} × limit (goal ≤ 1.05)",
            both(&|stack| cell(stack).p99.as_secs_f64() / limit.p99.as_secs_f64()),
            both(&|stack| cell(stack).cpu.0.as_secs_f64() / limit.cpu.0.as_secs_f64()),
            both(&|stack| cell(stack).cpu.1.as_secs_f64() / limit.cpu.1.as_secs_f64()),
        );
    }
}

/// `MEMORY USAGE` of one flow after 9 steps, per stack, and this crate's
/// over the limit's (same record format, goal ≤ 1.05).
pub(crate) fn memory_table(memory: &[(Stack, u64)]) {
    if memory.is_empty() {
        return;
    }
    println!();
    println!("Memory per flow in Redis after 9 steps (MEMORY USAGE):");
    let limit = memory.iter().find(|(stack, _)| *stack == Stack::Limit);
    for &(stack, bytes) in memory {
        match limit {
            Some(&(_, limit)) => println!(
                "  {:<34} {bytes:>5} bytes ({:.2} × limit)",
                stack.name(),
                bytes as f64 / limit as f64
            ),
            None => println!("  {:<34} {bytes:>5} bytes", stack.name()),
        }
    }
}
