//! Multi-step flow state (SSO and OAuth logins, account linking, setup
//! wizards) kept in Redis behind one tower layer.
//!
//! [`PipelineStateLayer`] loads a flow's state before your handler runs and
//! writes it back once after, with a sliding TTL. Handlers read and change a
//! [`PipelineState`] in memory, synchronously; they never talk to Redis.
//!
//! * **One load, at most one write.** A request that only reads costs one
//!   Redis round trip (the load); a request that changes the state costs two; a
//!   request that never touches it costs none.
//! * **No update is lost.** Every record carries a version; writes are an
//!   atomic compare-and-set. When another request wrote first, this request's
//!   changes are re-applied on top of the newer record if they touch other
//!   fields, and answered with `409 Conflict` if they touch the same ones.
//! * **Failures are visible.** Redis down or slow: `503`, the handler is not
//!   called. A missing or corrupt record: [`Status::Expired`].
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use tower_pipeline_state::{PipelineState, PipelineStateLayer, RedisStore};
//!
//! async fn count(state: PipelineState) -> String {
//!     let n: u64 = state.get("count").unwrap().unwrap_or(0) + 1;
//!     state.set("count", &n).unwrap();
//!     format!("visit {n}")
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
//! let app = Router::new()
//!     .route("/", get(count))
//!     .layer(PipelineStateLayer::new(store));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod answer;
mod backend;
mod body;
mod config;
mod cookies;
mod error;
#[cfg(feature = "axum")]
mod extract;
mod flush;
mod future;
mod id;
mod layer;
mod lazy;
mod load;
mod lock;
mod log_id;
mod merge;
mod metrics;
pub mod pipeline;
mod record;
mod service;
mod shared;
mod state;
pub mod store;

pub use answer::LayerError;
pub use body::ResponseBody;
pub use config::LoadMode;
pub use cookie::{Key, SameSite};
pub use error::{LoadError, StateError};
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use extract::PipelineStateRejection;
pub use future::ResponseFuture;
pub use id::{ParsePipelineIdError, PipelineId};
pub use layer::PipelineStateLayer;
pub use lazy::LazyPipelineState;
pub use service::PipelineStateService;
pub use state::{PipelineState, Status};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use store::RedisStore;
pub use store::{MemoryStore, Store, StoreError};

/// The README's code blocks, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
