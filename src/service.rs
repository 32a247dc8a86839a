//! [`PipelineStateService`]: the tower service the layer wraps around yours.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use tower::Service;

use crate::{
    config::Shared,
    cookies::Incoming,
    future::ResponseFuture,
    state::{Origin, PipelineState},
    store::Store,
};

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

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // The service that was polled ready is the one to call (it may be
        // called later, after the load): take it, leave a clone behind.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        match shared.config.cookie.read(request.headers()) {
            Incoming::Id(id) => ResponseFuture::load(shared, id, inner, request),
            incoming => {
                // No usable id: a fresh state, and no Redis command at all.
                let had_cookie = incoming == Incoming::Rejected;
                if had_cookie {
                    tracing::debug!("pipeline id cookie is malformed or forged; starting fresh");
                }
                let state =
                    PipelineState::from_origin(Origin::New { had_cookie }, Default::default());
                request.extensions_mut().insert(state.clone());
                ResponseFuture::call(shared, state, inner, request)
            }
        }
    }
}
