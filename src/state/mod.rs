//! [`PipelineState`], the handle a handler reads and changes its flow's
//! state with (`handle.rs`); the engine's security writes, kept even on a
//! server error, and its claim and commit (`secured.rs`); the fields a
//! request changed, with their loaded values (`edits.rs`); and the
//! [`Outcome`] the handle gives the writer when the request ends
//! (`outcome.rs`).

mod edits;
mod handle;
mod outcome;
mod secured;

pub(crate) use self::handle::Origin;
pub use self::handle::{PipelineState, Status};
pub(crate) use self::outcome::{Outcome, Removal};
