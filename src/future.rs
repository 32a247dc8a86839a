//! [`ResponseFuture`]: load (eager mode) → inner service → flush, as a pinned
//! state machine with no boxing around the inner service's future.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use http::{Request, Response, header::SET_COOKIE};
use pin_project::pin_project;
use tower_service::Service;

use crate::{
    ResponseBody,
    answer::LayerError,
    backend::{Backend, BoxFuture, Found},
    body::answer,
    config::{Config, LoadMode},
    cookies::{CookieSlot, Incoming},
    error::LoadError,
    flush::{Flushed, Refusal, write_all},
    id::PipelineId,
    lazy::{Closed, LazyPipelineState},
    metrics,
    shared::Shared,
    state::{Outcome, PipelineState},
    store::Store,
};

/// The response future of [`PipelineStateService`](crate::PipelineStateService).
#[pin_project]
pub struct ResponseFuture<S, ReqBody, St>
where
    S: Service<Request<ReqBody>>,
{
    #[pin]
    step: Step<S, ReqBody>,
    shared: Arc<Shared<St>>,
    /// The request's handle, once the state is there or deferred.
    lazy: Option<LazyPipelineState>,
}

// The waiting request makes `Load` the largest variant; boxing it would cost
// an allocation per request to save space the task holds for one request.
#[allow(clippy::large_enum_variant)]
#[pin_project(project = StepProj)]
enum Step<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    /// Eager mode: waiting for the record; the inner service and request
    /// wait too.
    Load {
        id: PipelineId,
        load: BoxFuture<Result<Found, LoadError>>,
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
    /// Starts a request with what its cookie gave.
    pub(crate) fn new(
        shared: Arc<Shared<St>>,
        incoming: Incoming,
        inner: S,
        request: Request<ReqBody>,
    ) -> Self {
        let lazy = match incoming {
            Incoming::Id(id) if shared.config.load_mode == LoadMode::Eager => {
                let load = shared.clone().load(id, None);
                return Self {
                    step: Step::Load {
                        id,
                        load,
                        pending: Some((inner, request)),
                    },
                    shared,
                    lazy: None,
                };
            }
            Incoming::Id(id) => LazyPipelineState::pending(id, shared.clone()),
            incoming => {
                // No usable id: a fresh state, and no store command at all.
                let had_cookie = incoming == Incoming::Rejected;
                if had_cookie {
                    tracing::debug!("pipeline id cookie is malformed or forged; starting fresh");
                }
                metrics::load(metrics::Found::NoId);
                LazyPipelineState::fresh(had_cookie, shared.clone())
            }
        };
        let mut slot = None;
        let future = enter(&shared, &mut slot, lazy, inner, request);
        Self {
            step: Step::Call { future },
            shared,
            lazy: slot,
        }
    }
}

/// Hands the request its state and calls the inner service.
fn enter<S, ReqBody, St>(
    shared: &Shared<St>,
    slot: &mut Option<LazyPipelineState>,
    lazy: LazyPipelineState,
    mut inner: S,
    mut request: Request<ReqBody>,
) -> S::Future
where
    S: Service<Request<ReqBody>>,
{
    lazy.insert_into(request.extensions_mut(), shared.config.load_mode);
    *slot = Some(lazy);
    inner.call(request)
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
                StepProj::Load { id, load, pending } => {
                    let loaded = ready!(load.as_mut().poll(cx));
                    let (inner, request) = pending.take().expect("polled after completion");
                    let Ok(found) = loaded else {
                        // Logged by the load; the handler is not called.
                        let refused = this.shared.config.answer(LayerError::Unavailable);
                        return Poll::Ready(Ok(answer(refused)));
                    };
                    let state = PipelineState::found(*id, found, this.shared.clone());
                    let lazy = LazyPipelineState::loaded(state, this.shared.clone());
                    let future = enter(this.shared, this.lazy, lazy, inner, request);
                    this.step.set(Step::Call { future });
                }
                StepProj::Call { future } => {
                    let response = ready!(future.poll(cx))?;
                    let lazy = this.lazy.take().expect("polled after completion");
                    let discard = this.shared.config.discard_on_server_error
                        && response.status().is_server_error();
                    let outcomes = to_write(lazy.close(), discard);
                    if outcomes.is_empty() {
                        // Nothing asked for, or nothing changed.
                        return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                    }
                    let shared = this.shared.clone();
                    let flush = Box::pin(async move {
                        write_all(&*shared.store, &shared.config, outcomes).await
                    });
                    this.step.set(Step::Flush {
                        flush,
                        response: Some(response),
                    });
                }
                StepProj::Flush { flush, response } => {
                    let flushed = ready!(flush.as_mut().poll(cx));
                    let response = response.take().expect("polled after completion");
                    return Poll::Ready(Ok(respond(response, flushed, &this.shared.config)));
                }
            }
        }
    }
}

impl<S, ReqBody, St> fmt::Debug for ResponseFuture<S, ReqBody, St>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let step = match self.step {
            Step::Load { .. } => "load",
            Step::Call { .. } => "call",
            Step::Flush { .. } => "flush",
        };
        f.debug_struct("ResponseFuture")
            .field("step", &step)
            .field("state", &self.lazy)
            .finish_non_exhaustive()
    }
}

/// What the request's states need written, with the state of each (its
/// cookie, its security writes); empty when nothing changed (no allocation
/// then).
fn to_write(closed: Closed, discard: bool) -> Vec<(Outcome, PipelineState)> {
    let Closed { main, flows } = closed;
    main.into_iter()
        .chain(flows)
        .filter_map(|state| {
            let outcome = state.end_request(discard);
            // Unchanged, unless its cookie must be set again.
            let renew = matches!(state.cookie_slot(), CookieSlot::Flow(cookie) if cookie.renew);
            (outcome != Outcome::Unchanged || renew).then_some((outcome, state))
        })
        .collect()
}

/// The response once the write is done: the handler's, with the cookie if
/// the id changed, or the layer's own when the write did not happen.
fn respond<B>(
    response: Response<B>,
    flushed: Flushed,
    config: &Config,
) -> Response<ResponseBody<B>> {
    let Flushed { cookies, refused } = flushed;
    let mut response = match refused {
        None => response.map(ResponseBody::inner),
        Some(Refusal::Conflict) => answer(config.answer(config.conflict())),
        Some(Refusal::TooLarge) => answer(config.answer(LayerError::TooLarge)),
        // A write that was never sent (the store unreachable): nothing
        // was written, and saying so lets the person simply try again.
        Some(Refusal::Unavailable) => answer(config.answer(LayerError::Unavailable)),
        // A write that timed out or lost its connection may still have been
        // carried out by Redis: "not confirmed", not "not written".
        Some(Refusal::NotConfirmed) => answer(config.answer(LayerError::NotConfirmed)),
    };
    // The cookies of the writes that landed, whatever the answer: a record
    // written without its cookie would be unreachable.
    for cookie in cookies {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    response
}
