//! Errors a handler can get from [`PipelineState`](crate::PipelineState) and
//! [`LazyPipelineState`](crate::LazyPipelineState).

use crate::store::StoreError;

/// What went wrong reading or changing a flow's state in memory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// A field holds a value of another shape than the type asked for.
    #[error("pipeline state field `{field}` does not decode as the requested type: {source}")]
    Field {
        /// The field that was read.
        field: String,
        /// Why it did not decode.
        #[source]
        source: serde_json::Error,
    },
    /// The whole state does not decode as the requested type.
    #[error("pipeline state does not decode as the requested type: {0}")]
    Read(#[source] serde_json::Error),
    /// A value could not be turned into JSON.
    #[error("value cannot be stored in the pipeline state: {0}")]
    Serialize(#[source] serde_json::Error),
    /// A whole state must serialize to a JSON object (a struct or a map).
    #[error("pipeline state must be a JSON object (a struct or a map), not {0}")]
    NotAnObject(&'static str),
    /// The request is over and its changes were already written (or
    /// discarded); a handle kept past its request cannot change anything.
    #[error(
        "the request this pipeline state belongs to has finished; changes are no longer accepted"
    )]
    Finished,
}

/// The flow's state could not be loaded (the cause is logged). Answer `503
/// Service Unavailable`:
/// [`LazyPipelineState::error_response`](crate::LazyPipelineState::error_response)
/// gives the layer's own answer (through the application's error hook), and
/// the axum extractor answers with it by itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The store failed or did not answer in time.
    #[error("pipeline state store unavailable")]
    Store(#[source] StoreError),
    /// The flow's record was written by a newer release (during a rolling
    /// deploy): this one leaves it alone rather than lose it.
    #[error(
        "pipeline state record has format {found}, newer than this release reads ({supported}); left alone"
    )]
    NewerFormat {
        /// The record's format, as the record spells the number (a later
        /// release's number may be past any fixed-width integer).
        found: String,
        /// The format this release reads and writes.
        supported: u32,
    },
}
