//! What a step is: an async function of the request and the flow's
//! [`Flow`] context, stored behind one object-safe trait.

use std::future::Future;

use http::Request;

use super::{Flow, FlowError, step_future::StepFuture};

/// One step's handler, type-erased. Implemented for every
/// `Fn(Request<B>, Flow<B, R>) -> impl Future<Output = Result<R, FlowError>>`,
/// which is what [`PipelineBuilder::step`](super::PipelineBuilder::step)
/// takes.
pub(crate) trait StepHandler<B, R>: Send + Sync + 'static {
    fn call(&self, request: Request<B>, flow: Flow<B, R>) -> StepFuture<R>;
}

impl<F, Fut, B, R> StepHandler<B, R> for F
where
    F: Fn(Request<B>, Flow<B, R>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, FlowError>> + Send + 'static,
{
    fn call(&self, request: Request<B>, flow: Flow<B, R>) -> StepFuture<R> {
        Box::pin(self(request, flow))
    }
}

/// A named step of a pipeline.
pub(crate) struct StepDef<B, R> {
    pub(crate) name: String,
    /// Entered only by a request that brought the flow's nonce back.
    pub(crate) callback: bool,
    pub(crate) handler: Box<dyn StepHandler<B, R>>,
}
