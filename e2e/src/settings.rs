//! What to measure and for how long, from the environment (see the
//! crate's documentation for the variables).

use std::time::Duration;

use crate::{
    load::{OPS, Op, Timing},
    stack::{STACKS, Stack},
};

/// The client counts measured unless `E2E_CLIENTS` says otherwise.
const CONCURRENCY: [usize; 2] = [1, 16];

/// One run's settings.
pub(crate) struct Settings {
    pub(crate) timing: Timing,
    /// Rounds per cell.
    pub(crate) rounds: usize,
    pub(crate) ops: Vec<Op>,
    /// Client counts.
    pub(crate) concurrency: Vec<usize>,
    pub(crate) stacks: Vec<Stack>,
}

impl Settings {
    /// From `E2E_WARMUP`, `E2E_SECONDS`, `E2E_ROUNDS`, `E2E_OPS`,
    /// `E2E_CLIENTS` and `E2E_STACKS`.
    pub(crate) fn from_env() -> Self {
        Self {
            timing: Timing {
                warmup: env_seconds("E2E_WARMUP", 0.25),
                seconds: env_seconds("E2E_SECONDS", 1.0),
            },
            rounds: std::env::var("E2E_ROUNDS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(5)
                .max(1),
            ops: env_list("E2E_OPS", &OPS, Op::parse),
            concurrency: env_list("E2E_CLIENTS", &CONCURRENCY, |n| n.parse().ok()),
            stacks: env_list("E2E_STACKS", &STACKS, Stack::parse),
        }
    }
}

fn env_seconds(name: &str, default: f64) -> Duration {
    let seconds = std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Duration::from_secs_f64(seconds)
}

/// A comma-separated list from the environment, or `default`.
pub(crate) fn env_list<T>(name: &str, default: &[T], parse: impl Fn(&str) -> Option<T>) -> Vec<T>
where
    T: Copy,
{
    match std::env::var(name) {
        Ok(list) => list
            .split(',')
            .map(|item| {
                parse(item.trim()).unwrap_or_else(|| panic!("{name}: unknown item {item:?}"))
            })
            .collect(),
        Err(_) => default.to_vec(),
    }
}
