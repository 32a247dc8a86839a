//! The integration tests, in one binary: one build and one link instead of
//! one per file, and the helpers in `common` compiled once. Each module
//! holds the tests of one subject. A test that needs a process of its own
//! gets a binary of its own, saying why at its top: the demo's browser
//! suite (`demo/tests/browser/`) and the crypto provider's tests
//! (`tests/crypto_provider.rs`) do. The demo's apps are tested in the
//! demo (`demo/tests/it/`). Log capture works across tests here: see
//! `test-kit/src/logs.rs`.

// The suite covers every backend and feature: Cargo.toml builds it only
// with all of them (`required-features`), which `cargo test --all-features`
// and `scripts/test` turn on.

mod callbacks;
mod common;

#[cfg(feature = "cluster")]
mod cluster;
mod concurrency;
mod dispatch_span;
mod durability;
mod error_pages;
mod expiry;
mod failure_kinds;
mod failures;
mod faults;
mod flows;
#[cfg(feature = "metrics")]
mod funnel;
mod healing;
mod hostile;
mod imports;
mod lifecycle;
mod log_levels;
#[cfg(feature = "metrics")]
mod metrics;
mod nested;
mod nested_engine;
mod no_secrets_in_logs;
mod old_servers;
mod pipeline;
mod pipeline_events;
mod planted;
mod properties;
mod rare_logs;
mod readme_axum;
mod replays;
#[cfg(feature = "cluster")]
mod resharding;
mod rolling_upgrade;
mod round_trips;
mod secured;
mod stale_pages;
mod starts;
mod store_contract;
#[cfg(feature = "tls")]
mod tls;
#[cfg(feature = "cluster")]
mod topology_faults;
mod versioned;
