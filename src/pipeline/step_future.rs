//! [`StepFuture`]: what a step, the finish hook and the engine's entering
//! of a step return.

use std::{future::Future, pin::Pin};

use super::FlowError;

/// The future a step (or the finish hook) returns, boxed: steps are stored
/// side by side, and a step that calls [`Flow::next`](super::Flow::next)
/// runs the next step inside its own future.
pub(crate) type StepFuture<R> =
    Pin<Box<dyn Future<Output = Result<R, FlowError>> + Send + 'static>>;
