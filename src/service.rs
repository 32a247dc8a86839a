//! [`PipelineStateService`]: the tower service the layer wraps around yours.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use tower_service::Service;

use crate::{future::ResponseFuture, shared::Shared, store::Store};

/// Loads the flow's state before calling the inner service and writes it
/// back after. Made by [`PipelineStateLayer`](crate::PipelineStateLayer).
#[derive(Debug)]
pub struct PipelineStateService<S, St> {
    inner: S,
    shared: Arc<Shared<St>>,
}

impl<S, St> PipelineStateService<S, St> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<St>>) -> Self {
        Self { inner, shared }
    }

    /// The wrapped service.
    ///
    /// ```
    /// use tower_layer::Layer;
    /// use tower_pipeline_state::{MemoryStore, PipelineStateLayer};
    ///
    /// let service = PipelineStateLayer::new(MemoryStore::new()).layer("inner");
    /// assert_eq!(*service.get_ref(), "inner");
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    ///
    /// ```
    /// use tower_layer::Layer;
    /// use tower_pipeline_state::{MemoryStore, PipelineStateLayer};
    ///
    /// let mut service = PipelineStateLayer::new(MemoryStore::new()).layer(1);
    /// *service.get_mut() += 1;
    /// assert_eq!(*service.get_ref(), 2);
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    ///
    /// ```
    /// use tower_layer::Layer;
    /// use tower_pipeline_state::{MemoryStore, PipelineStateLayer};
    ///
    /// let service = PipelineStateLayer::new(MemoryStore::new()).layer("inner");
    /// assert_eq!(service.into_inner(), "inner");
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, St> Clone for PipelineStateService<S, St> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S, St, ReqBody, ResBody> Service<Request<ReqBody>> for PipelineStateService<S, St>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    St: Store,
{
    type Response = Response<crate::ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, St>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The service that was polled ready is the one to call (it may be
        // called later, after the load): take it, leave a clone behind.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let incoming = self.shared.config.cookie.read(request.headers());
        ResponseFuture::new(self.shared.clone(), incoming, inner, request)
    }
}
