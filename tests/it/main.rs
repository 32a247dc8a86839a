//! The integration tests, in one binary: one build and one link instead of
//! one per file, and the helpers in `common` compiled once. Each module
//! holds the tests of one subject. A test that needs a process of its own
//! would get a binary of its own, saying why at its top; none does now
//! (log capture works across tests: see `common/logs.rs`).

mod common;

#[cfg(feature = "cluster")]
mod cluster;
mod concurrency;
mod durability;
mod failures;
mod faults;
mod healing;
mod hostile;
mod lifecycle;
mod old_servers;
mod pipeline;
mod pipeline_events;
mod properties;
mod round_trips;
mod sso;
mod stacks;
mod store_contract;
#[cfg(feature = "tls")]
mod tls;
#[cfg(feature = "cluster")]
mod topology_faults;
