//! [`LazyPipelineState`]: the handle the layer puts in every request's
//! extensions, which reads the flow's record from the store the first time
//! the request asks for it.

use std::{fmt, sync::Arc};

use bytes::Bytes;
use http::{Extensions, Response};
use tokio::sync::OnceCell;

use crate::{
    LayerError, LayerErrorKind,
    config::LoadMode,
    error::LoadError,
    id::PipelineId,
    load::Load,
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
/// once. hyper, warp and plain tower code take it from the extensions:
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
pub struct LazyPipelineState(Kind);

#[derive(Clone)]
enum Kind {
    /// There from the start (no id, or loaded eagerly): nothing to load,
    /// and no allocation beyond the state's own.
    Ready(PipelineState),
    /// To load on first use.
    Pending(Arc<Slot>),
}

struct Slot {
    state: OnceCell<PipelineState>,
    id: PipelineId,
    load: Arc<dyn Load>,
}

impl LazyPipelineState {
    /// A state that is already there (no id, or loaded eagerly).
    pub(crate) fn ready(state: PipelineState) -> Self {
        Self(Kind::Ready(state))
    }

    /// A state to load from the store on first use.
    pub(crate) fn pending(id: PipelineId, load: Arc<dyn Load>) -> Self {
        Self(Kind::Pending(Arc::new(Slot {
            state: OnceCell::new(),
            id,
            load,
        })))
    }

    /// The state, if it is there.
    fn get(&self) -> Option<&PipelineState> {
        match &self.0 {
            Kind::Ready(state) => Some(state),
            Kind::Pending(slot) => slot.state.get(),
        }
    }

    /// The flow's state, read from the store the first time it is asked for
    /// in this request (one `GETEX`); later calls return the same handle at
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
        let slot = match &self.0 {
            Kind::Ready(state) => return Ok(state.clone()),
            Kind::Pending(slot) => slot,
        };
        slot.state
            .get_or_try_init(|| slot.load.clone().load(slot.id))
            .await
            .cloned()
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
        match &self.0 {
            Kind::Pending(slot) => slot.load.answer(LayerErrorKind::Unavailable),
            // A state that was there from the start never fails to load.
            Kind::Ready(_) => LayerError::unavailable().plain_response(),
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
        self.get().is_some()
    }

    /// Puts the handle in the request's extensions, and in eager mode the
    /// loaded state too: the one place the layer touches the extensions.
    pub(crate) fn insert_into(&self, extensions: &mut Extensions, mode: LoadMode) {
        if let (LoadMode::Eager, Some(state)) = (mode, self.get()) {
            extensions.insert(state.clone());
        }
        extensions.insert(self.clone());
    }

    /// Closes the handle as the request ends: the state to write, if it was
    /// loaded. A handle kept past its request and loaded later gets a
    /// finished state, which refuses changes that would never be written.
    pub(crate) fn close(&self) -> Option<PipelineState> {
        let slot = match &self.0 {
            Kind::Ready(state) => return Some(state.clone()),
            Kind::Pending(slot) => slot,
        };
        if let Some(state) = slot.state.get() {
            return Some(state.clone());
        }
        let closed =
            PipelineState::from_origin(Origin::New { had_cookie: false }, Default::default());
        closed.end_request(false);
        // Fails only when a load is in flight right now (a task the handler
        // spawned); that state is never written: handles must not outlive
        // their request.
        let _ = slot.state.set(closed);
        None
    }
}

impl From<PipelineState> for LazyPipelineState {
    /// A handle around a state that is already there: for unit tests of
    /// handler logic that take a `LazyPipelineState`.
    fn from(state: PipelineState) -> Self {
        Self::ready(state)
    }
}

impl fmt::Debug for LazyPipelineState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyPipelineState")
            .field(
                "id",
                &match &self.0 {
                    Kind::Ready(_) => None,
                    Kind::Pending(slot) => Some(slot.id),
                },
            )
            .field("state", &self.get())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::{StateError, load::BoxFuture};

    /// Counts loads; every load finds a live record with `{"a": 1}`.
    #[derive(Default)]
    struct Counted(AtomicUsize);

    impl Load for Counted {
        fn load(self: Arc<Self>, id: PipelineId) -> BoxFuture<Result<PipelineState, LoadError>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            let mut data = crate::record::Data::new();
            data.insert("a".into(), 1.into());
            let origin = Origin::Loaded { id, version: 1 };
            Box::pin(async move { Ok(PipelineState::from_origin(origin, data)) })
        }

        fn answer(&self, _: LayerErrorKind) -> Response<Bytes> {
            unreachable!("these loads never fail")
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
        assert!(lazy.close().is_none(), "never asked for: nothing to write");
        let late = lazy.load().await.unwrap();
        assert!(matches!(late.set("a", &2), Err(StateError::Finished)));
        assert_eq!(
            loads.0.load(Ordering::SeqCst),
            0,
            "no store command after the request"
        );
    }
}
