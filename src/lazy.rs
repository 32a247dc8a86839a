//! [`LazyPipelineState`]: the handle the layer puts in every request's
//! extensions, which reads the flow's record from the store the first time
//! the request asks for it.

use std::{
    fmt,
    sync::{Arc, Mutex, MutexGuard},
};

use bytes::Bytes;
use http::{Extensions, HeaderMap, Response};
use tokio::sync::OnceCell;

use crate::{
    LayerError,
    backend::{Backend, Lifetime},
    config::LoadMode,
    cookies::{CookieSlot, FlowCookie, Reference, Ticket},
    error::LoadError,
    id::PipelineId,
    lock::lock,
    state::{Origin, PipelineState},
};

/// The flow's state for the current request, loaded on first use: what
/// [`PipelineStateLayer`](crate::PipelineStateLayer) puts in every request's
/// extensions.
///
/// In the default [`LoadMode::Lazy`], a request that carries a flow id costs
/// no store command until something calls [`load`](Self::load) (the axum
/// extractor for [`PipelineState`] does). Without an id, or in
/// [`LoadMode::Eager`], the state is there already and `load` returns at
/// once. It also holds the pipeline engine's flows, each in a cookie of its
/// own (see [`pipeline`](crate::pipeline)): the engine starts and finds them
/// through this handle, and the layer writes them with the rest when the
/// request ends. hyper, warp and plain tower code take it from the
/// extensions:
///
/// ```
/// use bytes::Bytes;
/// use http::{Request, Response};
/// use tower_pipeline_state::LazyPipelineState;
///
/// async fn handler(request: Request<String>) -> Response<Bytes> {
///     let lazy = request.extensions().get::<LazyPipelineState>().expect("the layer is installed");
///     let state = match lazy.load().await {
///         Ok(state) => state,
///         // The store is down: the layer's 503 (or its error hook's page).
///         Err(error) => return lazy.error_response(&error),
///     };
///     let visits: u64 = state.get("visits").unwrap().unwrap_or(0) + 1;
///     state.set("visits", &visits).unwrap();
///     Response::new(Bytes::from(format!("visit {visits}")))
/// }
/// ```
#[derive(Clone)]
pub struct LazyPipelineState(Arc<Scope>);

/// Everything the request's handlers share about its states.
struct Scope {
    /// The browser's state (the layer's cookie): set when it is loaded, or
    /// made when first asked for if there is nothing to load.
    main: OnceCell<PipelineState>,
    /// The id to load it from; `None`: no usable id came.
    id: Option<PipelineId>,
    /// A cookie of ours came but was malformed or forged.
    had_cookie: bool,
    /// The layer, to load with and answer through; `None` for a handle made
    /// from a detached state.
    layer: Option<Arc<dyn Backend>>,
    /// The flows this request started or continued, each with its own
    /// cookie; written after the browser's state.
    flows: Mutex<Flows>,
}

#[derive(Default)]
struct Flows {
    states: Vec<PipelineState>,
    /// The request ended: a flow started or loaded now is never written.
    closed: bool,
}

/// What a request leaves to write when it ends.
pub(crate) struct Closed {
    /// The browser's state, if it was asked for.
    pub(crate) main: Option<PipelineState>,
    /// The flows the request started or continued.
    pub(crate) flows: Vec<PipelineState>,
}

impl LazyPipelineState {
    fn with(
        main: Option<PipelineState>,
        id: Option<PipelineId>,
        had_cookie: bool,
        layer: Option<Arc<dyn Backend>>,
    ) -> Self {
        Self(Arc::new(Scope {
            main: OnceCell::new_with(main),
            id,
            had_cookie,
            layer,
            flows: Mutex::default(),
        }))
    }

    /// No usable id came (`had_cookie`: a malformed or forged one did): a
    /// fresh state, made when first asked for.
    pub(crate) fn fresh(had_cookie: bool, layer: Arc<dyn Backend>) -> Self {
        Self::with(None, None, had_cookie, Some(layer))
    }

    /// A state to load from the store on first use.
    pub(crate) fn pending(id: PipelineId, layer: Arc<dyn Backend>) -> Self {
        Self::with(None, Some(id), true, Some(layer))
    }

    /// A state loaded before the handler (eager mode).
    pub(crate) fn loaded(state: PipelineState, layer: Arc<dyn Backend>) -> Self {
        Self::with(Some(state), None, true, Some(layer))
    }

    /// The flow's state, read from the store the first time it is asked for
    /// in this request (one round trip); later calls return the same handle at
    /// once.
    ///
    /// # Errors
    /// [`LoadError`] when the store failed or did not answer in time, or the
    /// record was written by a newer release. Answer the request with
    /// [`error_response`](Self::error_response) (a `503`); the next call
    /// tries the store again.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use tower_pipeline_state::{LazyPipelineState, PipelineState, Status};
    ///
    /// let lazy = LazyPipelineState::from(PipelineState::detached());
    /// let state = lazy.load().await.unwrap();
    /// assert_eq!(state.status(), Status::New);
    /// # });
    /// ```
    pub async fn load(&self) -> Result<PipelineState, LoadError> {
        let scope = &*self.0;
        if let Some(state) = scope.main.get() {
            return Ok(state.clone());
        }
        match (scope.id, &scope.layer) {
            (Some(id), Some(layer)) => scope
                .main
                .get_or_try_init(|| PipelineState::load(layer, id, None))
                .await
                .cloned(),
            _ => {
                let fresh = || async {
                    let state = new_state(scope.had_cookie);
                    if self.flows().closed {
                        // Asked for after its request: never written.
                        state.end_request(false);
                    }
                    state
                };
                Ok(scope.main.get_or_init(fresh).await.clone())
            }
        }
    }

    /// The answer for a failed [`load`](Self::load): the layer's `503`,
    /// through the application's error hook
    /// ([`PipelineStateLayer::on_error`](crate::PipelineStateLayer::on_error))
    /// when it has one.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use tower_pipeline_state::{LazyPipelineState, PipelineState};
    ///
    /// let lazy = LazyPipelineState::from(PipelineState::detached());
    /// let state = match lazy.load().await {
    ///     Ok(state) => state,
    ///     Err(error) => {
    ///         let page = lazy.error_response(&error);
    ///         assert_eq!(page.status(), 503);
    ///         return;
    ///     }
    /// };
    /// # drop(state);
    /// # });
    /// ```
    pub fn error_response(&self, error: &LoadError) -> Response<Bytes> {
        let _ = error; // one answer for every load failure, whatever its cause
        match &self.0.layer {
            Some(layer) => layer.config().answer(LayerError::Unavailable),
            // A detached state never fails to load.
            None => LayerError::Unavailable.plain_response(),
        }
    }

    /// Whether the state is there (loaded, or never needed a load): when
    /// `true`, [`load`](Self::load) returns at once without a store command.
    ///
    /// ```
    /// use tower_pipeline_state::{LazyPipelineState, PipelineState};
    ///
    /// assert!(LazyPipelineState::from(PipelineState::detached()).is_loaded());
    /// ```
    pub fn is_loaded(&self) -> bool {
        self.0.id.is_none() || self.0.main.initialized()
    }

    /// Puts the handle in the request's extensions, and in eager mode the
    /// state too (loaded, or fresh when no id came): the one place the layer
    /// touches the extensions.
    pub(crate) fn insert_into(&self, extensions: &mut Extensions, mode: LoadMode) {
        if mode == LoadMode::Eager && self.0.id.is_none() {
            // Nothing to load: the fresh state is made now, so that a
            // request without a cookie finds one to start its flow in.
            let _ = self.0.main.set(new_state(self.0.had_cookie));
        }
        if let (LoadMode::Eager, Some(state)) = (mode, self.0.main.get()) {
            extensions.insert(state.clone());
        }
        extensions.insert(self.clone());
    }

    /// Starts a new flow with its own cookie: a fresh, empty state, written
    /// (and its cookie set) when the request ends if the flow wrote to it.
    /// No other flow of the browser is touched, but when the browser holds
    /// the layer's limit of flow cookies, the oldest are expired with it.
    /// `cross_site`: the cookie is `SameSite=None; Secure`. The cookie
    /// carries `ticket` besides the id. A flow it is `replacing` (whose
    /// cookie the request expires) leaves room for it.
    ///
    /// A handle made from a detached state has no cookies: its one state
    /// stands for the flow (for unit tests of pipelines).
    pub(crate) fn start_flow(
        &self,
        headers: &HeaderMap,
        cross_site: bool,
        ticket: Ticket,
        replacing: Option<&Reference>,
    ) -> PipelineState {
        if self.0.layer.is_none()
            && let Some(state) = self.0.main.get()
        {
            return state.clone();
        }
        let evict = self.0.layer.as_ref().map_or_else(Vec::new, |layer| {
            // Never the flow this request continues: its write would set
            // the cookie the eviction expires.
            let continued: Vec<Reference> = self
                .flows()
                .states
                .iter()
                .filter_map(PipelineState::flow_reference)
                .collect();
            let mut evict = layer.config().cookie.to_evict(headers, replacing);
            evict.retain(|reference| !continued.contains(reference));
            evict
        });
        let slot = CookieSlot::Flow(FlowCookie {
            reference: Reference::generate(),
            cross_site,
            evict,
            ticket: Some(ticket),
            renew: false,
        });
        self.register(new_state(false).in_cookie(slot))
    }

    /// The flow this request continues: the one whose cookie `reference`
    /// names, or without a reference the newest flow cookie the request
    /// carries. Loaded (one round trip, its TTL refreshed as the
    /// `lifetime` its pipeline makes of the cookie's ticket says) the first
    /// time a request asks; `Ok(None)` when the request carries no such
    /// cookie, or only values that are not ours. The state's flow cookie
    /// holds the ticket the cookie carried. A detached handle's one state
    /// stands for every flow.
    pub(crate) async fn flow(
        &self,
        headers: &HeaderMap,
        reference: Option<&Reference>,
        cross_site: bool,
        lifetime: impl FnOnce(Option<&Ticket>) -> Lifetime,
    ) -> Result<Option<PipelineState>, LoadError> {
        let Some(layer) = &self.0.layer else {
            return self.load().await.map(Some);
        };
        let cookie = &layer.config().cookie;
        let Some(reference) = reference.cloned().or_else(|| cookie.newest_flow(headers)) else {
            return Ok(None);
        };
        if let Some(state) = self.selected(&reference) {
            return Ok(Some(state));
        }
        let Some((id, ticket)) = cookie.flow_id(headers, &reference) else {
            return Ok(None);
        };
        let state = PipelineState::load(layer, id, Some(lifetime(ticket.as_ref()))).await?;
        let slot = CookieSlot::Flow(FlowCookie {
            reference: reference.clone(),
            cross_site,
            evict: Vec::new(),
            ticket,
            renew: false,
        });
        // A concurrent call of this request may have loaded it meanwhile.
        Ok(Some(
            self.selected(&reference)
                .unwrap_or_else(|| self.register(state.in_cookie(slot))),
        ))
    }

    fn selected(&self, reference: &Reference) -> Option<PipelineState> {
        let flows = self.flows();
        flows
            .states
            .iter()
            .find(|state| state.flow_reference().as_ref() == Some(reference))
            .cloned()
    }

    fn register(&self, state: PipelineState) -> PipelineState {
        let mut flows = self.flows();
        if flows.closed {
            // Past the request: never written, so refuse changes.
            state.end_request(false);
        } else {
            flows.states.push(state.clone());
        }
        state
    }

    fn flows(&self) -> MutexGuard<'_, Flows> {
        lock(&self.0.flows)
    }

    /// Closes the handle as the request ends: the states to write. A handle
    /// kept past its request and used later gets finished states, which
    /// refuse changes that would never be written.
    pub(crate) fn close(&self) -> Closed {
        let main = self.0.main.get().cloned();
        // A fresh state made later is finished as it is made (see `load`);
        // one still to load is replaced by a finished one now.
        if main.is_none() && self.0.id.is_some() {
            let closed = new_state(false);
            closed.end_request(false);
            // Fails only when a load is in flight right now (a task the
            // handler spawned); that state is never written: handles must
            // not outlive their request.
            let _ = self.0.main.set(closed);
        }
        let mut flows = self.flows();
        flows.closed = true;
        Closed {
            main,
            flows: std::mem::take(&mut flows.states),
        }
    }
}

/// A fresh, empty state (`had_cookie`: a cookie of ours came but was not
/// usable, so clearing it expires the cookie).
fn new_state(had_cookie: bool) -> PipelineState {
    PipelineState::from_origin(Origin::New { had_cookie }, Default::default())
}

impl From<PipelineState> for LazyPipelineState {
    /// A handle around a state that is already there: for unit tests of
    /// handler logic that take a `LazyPipelineState`.
    fn from(state: PipelineState) -> Self {
        Self::with(Some(state), None, false, None)
    }
}

impl fmt::Debug for LazyPipelineState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyPipelineState")
            .field("id", &self.0.id)
            .field("state", &self.0.main.get())
            .field("flows", &self.flows().states)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::{
        StateError,
        backend::{BoxFuture, Claimed, Committed, Found},
        config::Config,
        record::Data,
        store::StoreError,
    };

    /// Counts loads; every load finds a live record with `{"a": 1}`.
    #[derive(Default)]
    struct Counted(AtomicUsize);

    impl Backend for Counted {
        fn load(
            self: Arc<Self>,
            _: PipelineId,
            _: Option<Lifetime>,
        ) -> BoxFuture<Result<Found, LoadError>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            let mut data = Data::new();
            data.insert("a".into(), crate::record::field(&1).unwrap());
            Box::pin(async move { Ok(Found::Live { version: 1, data }) })
        }

        fn claim(self: Arc<Self>, _: PipelineId, _: u64) -> BoxFuture<Result<Claimed, StoreError>> {
            unreachable!("these tests never finish a flow")
        }

        fn commit(
            self: Arc<Self>,
            _: PipelineId,
            _: u64,
            _: Arc<Data>,
            _: Option<Lifetime>,
        ) -> BoxFuture<Result<Committed, StoreError>> {
            unreachable!("these tests never end a nested run")
        }

        fn config(&self) -> &Config {
            unreachable!("these tests use no cookies")
        }
    }

    #[tokio::test]
    async fn the_store_is_read_once_however_often_the_state_is_asked_for() {
        let loads = Arc::new(Counted::default());
        let lazy = LazyPipelineState::pending(PipelineId::generate(), loads.clone());
        assert!(!lazy.is_loaded());
        let other = lazy.clone();
        let (first, second) = tokio::join!(lazy.load(), other.load());
        first.unwrap().set("a", &2).unwrap();
        assert_eq!(
            second.unwrap().get::<u32>("a").unwrap(),
            Some(2),
            "one state"
        );
        assert!(lazy.is_loaded());
        assert_eq!(loads.0.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_handle_loaded_after_its_request_refuses_changes() {
        let loads = Arc::new(Counted::default());
        let lazy = LazyPipelineState::pending(PipelineId::generate(), loads.clone());
        assert!(
            lazy.close().main.is_none(),
            "never asked for: nothing to write"
        );
        let late = lazy.load().await.unwrap();
        assert!(matches!(late.set("a", &2), Err(StateError::Finished)));
        assert_eq!(
            loads.0.load(Ordering::SeqCst),
            0,
            "no store command after the request"
        );
    }

    #[tokio::test]
    async fn a_fresh_state_asked_for_after_its_request_refuses_changes() {
        let lazy = LazyPipelineState::fresh(false, Arc::new(Counted::default()));
        assert!(lazy.close().main.is_none(), "never asked for");
        let late = lazy.load().await.unwrap();
        assert!(matches!(late.set("a", &2), Err(StateError::Finished)));
    }
}
