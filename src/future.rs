//! [`ResponseFuture`]: load → inner service → flush, as a pinned state
//! machine with no boxing around the inner service's future.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use http::{Request, Response, StatusCode, header::SET_COOKIE};
use pin_project::pin_project;
use tower::Service;

use crate::{
    ResponseBody,
    body::message,
    config::Shared,
    flush::{Flushed, discards, flush, plan, timed},
    id::PipelineId,
    record::decode,
    state::{Origin, PipelineState},
    store::{Store, StoreError},
};

/// Store operations are boxed (the inner service's future is not): their
/// types are hidden behind the `Store` trait and they run at most twice a
/// request.
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The response future of [`PipelineStateService`](crate::PipelineStateService).
#[pin_project]
pub struct ResponseFuture<S, ReqBody, St>
where
    S: Service<Request<ReqBody>>,
{
    #[pin]
    step: Step<S, ReqBody>,
    shared: Arc<Shared<St>>,
    state: Option<PipelineState>,
}

// The waiting request makes `Load` the largest variant; boxing it would cost
// an allocation per request to save space the task holds for one request.
#[allow(clippy::large_enum_variant)]
#[pin_project(project = StepProj)]
enum Step<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    /// Waiting for the record; the inner service and request wait too.
    Load {
        load: BoxFuture<Result<Option<Vec<u8>>, StoreError>>,
        id: PipelineId,
        pending: Option<(S, Request<ReqBody>)>,
    },
    /// The inner service is running.
    Call {
        #[pin]
        future: S::Future,
    },
    /// Writing the changes; the response waits.
    Flush {
        flush: BoxFuture<Flushed>,
        response: Option<S::Response>,
    },
}

impl<S, ReqBody, St> ResponseFuture<S, ReqBody, St>
where
    S: Service<Request<ReqBody>>,
    St: Store,
{
    pub(crate) fn load(
        shared: Arc<Shared<St>>,
        id: PipelineId,
        inner: S,
        request: Request<ReqBody>,
    ) -> Self {
        let store = shared.clone();
        let load = Box::pin(async move {
            let config = &store.config;
            let refresh = config.refresh_on_load.then_some(config.ttl);
            timed(config.timeout, store.store.load(&config.key(id), refresh)).await
        });
        Self {
            step: Step::Load {
                load,
                id,
                pending: Some((inner, request)),
            },
            shared,
            state: None,
        }
    }

    pub(crate) fn call(
        shared: Arc<Shared<St>>,
        state: PipelineState,
        mut inner: S,
        request: Request<ReqBody>,
    ) -> Self {
        Self {
            step: Step::Call {
                future: inner.call(request),
            },
            shared,
            state: Some(state),
        }
    }
}

/// The state a loaded (or missing, or corrupt) record gives the handler.
fn loaded(id: PipelineId, raw: Option<Vec<u8>>) -> PipelineState {
    let Some(raw) = raw else {
        tracing::debug!(pipeline.id = %id, "pipeline state expired or cleared");
        return PipelineState::from_origin(Origin::Expired { id }, Default::default());
    };
    match decode(&raw) {
        Ok(record) => PipelineState::from_origin(
            Origin::Loaded {
                id,
                version: record.version,
            },
            record.data,
        ),
        Err(error) => {
            tracing::warn!(pipeline.id = %id, %error, "pipeline state record does not decode; treating the flow as expired");
            PipelineState::from_origin(Origin::Expired { id }, Default::default())
        }
    }
}

impl<S, ReqBody, ResBody, St> Future for ResponseFuture<S, ReqBody, St>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    St: Store,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.step.as_mut().project() {
                StepProj::Load { load, id, pending } => {
                    let result = ready!(load.as_mut().poll(cx));
                    let (mut inner, mut request) = pending.take().expect("polled after completion");
                    let state = match result {
                        Ok(raw) => loaded(*id, raw),
                        Err(error) => {
                            tracing::error!(pipeline.id = %id, %error, "pipeline state not loaded: the store failed; answering 503 without calling the handler");
                            return Poll::Ready(Ok(message(
                                StatusCode::SERVICE_UNAVAILABLE,
                                "pipeline state store unavailable\n",
                            )));
                        }
                    };
                    request.extensions_mut().insert(state.clone());
                    *this.state = Some(state);
                    let future = inner.call(request);
                    this.step.set(Step::Call { future });
                }
                StepProj::Call { future } => {
                    let response = ready!(future.poll(cx))?;
                    let state = this.state.take().expect("polled after completion");
                    let discard = discards(
                        response.status(),
                        this.shared.config.discard_on_server_error,
                    );
                    let Some(plan) = plan(&state, discard) else {
                        return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                    };
                    let flush = Box::pin(flush(this.shared.clone(), plan));
                    this.step.set(Step::Flush {
                        flush,
                        response: Some(response),
                    });
                }
                StepProj::Flush { flush, response } => {
                    let flushed = ready!(flush.as_mut().poll(cx));
                    let response = response.take().expect("polled after completion");
                    return Poll::Ready(Ok(finish(
                        response,
                        flushed,
                        this.shared.config.conflict_status,
                    )));
                }
            }
        }
    }
}

/// The response once the write is done: the handler's, with the cookie if
/// the id changed, or the layer's own when the write did not happen.
fn finish<B>(
    response: Response<B>,
    flushed: Flushed,
    conflict: StatusCode,
) -> Response<ResponseBody<B>> {
    match flushed {
        Flushed::Saved(cookie) => {
            let mut response = response.map(ResponseBody::inner);
            if let Some(cookie) = cookie {
                response.headers_mut().append(SET_COOKIE, cookie);
            }
            response
        }
        Flushed::Conflict => message(
            conflict,
            "the flow was changed by a concurrent request; nothing was saved, try again\n",
        ),
        Flushed::TooLarge => message(
            StatusCode::INTERNAL_SERVER_ERROR,
            "pipeline state too large; nothing was saved\n",
        ),
        // A write that timed out or lost its connection may still have been
        // carried out by Redis: "not confirmed", not "not written".
        Flushed::Failed => message(
            StatusCode::SERVICE_UNAVAILABLE,
            "pipeline state store unavailable; the changes may not have been saved\n",
        ),
    }
}
