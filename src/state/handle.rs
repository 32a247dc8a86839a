//! [`PipelineState`]: the handle a handler uses to read and change its flow's
//! state in memory. The layer writes the result back after the handler.

use std::{
    borrow::Cow,
    sync::{Arc, Mutex, MutexGuard},
};

use serde::{Serialize, de::DeserializeOwned, de::value::MapDeserializer};
use serde_json::Value;

use super::edits::Edits;
use crate::{
    LoadError, StateError,
    backend::{Backend, Found, Lifetime},
    cookies::{CookieSlot, Reference},
    id::PipelineId,
    lock::lock,
    record::{self, Data, Field},
};

/// How the state arrived with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// No usable id came with the request (none, malformed, or forged): the
    /// state is fresh and empty, and no Redis command was sent.
    New,
    /// The id named a live record, and its state was loaded.
    Loaded,
    /// An id came but its record is gone (it expired or was cleared) or does
    /// not decode (logged as a warning). The state is empty; writing to it
    /// starts a new flow under a new id.
    Expired,
}

/// Where the request's state came from; decides which Redis command ends it.
#[derive(Debug, Clone)]
pub(crate) enum Origin {
    New {
        had_cookie: bool,
    },
    Loaded {
        id: PipelineId,
        version: u64,
    },
    /// `leftover`: a record is there but could not be read (it does not
    /// decode, is too large, or is not a string); the next write deletes it.
    Expired {
        id: PipelineId,
        leftover: bool,
    },
}

impl Origin {
    /// The id that came with the request and was looked up.
    pub(crate) fn came_id(&self) -> Option<PipelineId> {
        match self {
            Origin::New { .. } => None,
            Origin::Loaded { id, .. } | Origin::Expired { id, .. } => Some(*id),
        }
    }
}

/// What must be written even if the response is a server error: the
/// engine's security writes (a nonce consumed, a flow ended; see
/// `secured.rs`).
#[derive(Debug, Clone)]
pub(super) enum Secured {
    /// The state as loaded, with only the security changes applied.
    Fields(Data),
    /// The flow ended.
    Cleared,
}

/// Which record the request's changes go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    /// Nothing to write (yet): a new or expired state no one wrote to, or a
    /// cleared one.
    Nothing,
    /// The loaded record, updated in place by compare-and-set.
    Loaded,
    /// A new record under a new id (first write to a new or expired state, a
    /// write after `clear`, or `regenerate`).
    Fresh(PipelineId),
}

/// The state behind a handle. Only the handle touches it; the layer gets an
/// [`Outcome`] from it once the handler is done.
pub(super) struct Inner {
    pub(super) origin: Origin,
    /// Shared with the outcome the writer gets at the end of the request
    /// (a handle still reads it then), so ending a request copies nothing.
    pub(super) data: Arc<Data>,
    /// The loaded value of each field `set` or `remove` changed: what the
    /// flush diffs and what `revert` puts back, so neither a read nor a
    /// change of one field copies the whole state.
    pub(super) edits: Edits,
    /// The state as loaded, set aside when it is replaced wholesale
    /// (`replace`, `regenerate`, `clear`): what the flush diffs against and
    /// what `revert` puts back then.
    pub(super) base: Option<Data>,
    pub(super) target: Target,
    /// `regenerate` was called: create the record even if it is empty.
    pub(super) regenerated: bool,
    pub(super) cleared: bool,
    /// `replace` set the whole state since it was loaded.
    pub(super) replaced: bool,
    /// The engine's security writes (nonce consumed, flow ended), kept even
    /// when the response is a server error.
    pub(super) secured: Option<Secured>,
    /// Claims or commits the loaded record before the response (the
    /// engine's finish, and a nested run's); `None` for a state that was
    /// not loaded from a store.
    pub(super) backend: Option<Arc<dyn Backend>>,
    /// The loaded record was deleted by a claim: nothing of it is left to
    /// remove at the end of the request.
    pub(super) claimed: bool,
    pub(super) finished: bool,
    /// The cookie that carries the id: the browser's, or a flow's own.
    pub(super) cookie: CookieSlot,
    /// How long the record lives after this request's writes, when not the
    /// layer's TTL: a flow's own lifetime (set by the engine).
    pub(super) lifetime: Option<Lifetime>,
}

/// The flow's state for the current request: a cheap, cloneable handle that
/// [`PipelineStateLayer`](crate::PipelineStateLayer) puts in the request's
/// extensions.
///
/// All methods work in memory and return at once; the layer loads the state
/// before the handler and writes what changed after it. The state is a set
/// of named top-level fields, each any serde value. Concurrency is handled
/// per field: when two requests of one flow race, changes to different fields
/// both survive, and changes to the same field make the later request answer
/// `409 Conflict` instead of silently winning.
///
/// ```
/// use tower_pipeline_state::{PipelineState, Status};
///
/// let state = PipelineState::detached();
/// assert_eq!(state.status(), Status::New);
/// state.set("provider", "github").unwrap();
/// let provider: Option<String> = state.get("provider").unwrap();
/// assert_eq!(provider.as_deref(), Some("github"));
/// ```
#[derive(Clone, Debug)]
pub struct PipelineState(Arc<Mutex<Inner>>);

impl PipelineState {
    pub(crate) fn from_origin(origin: Origin, data: Data) -> Self {
        Self(Arc::new(Mutex::new(Inner {
            target: match origin {
                Origin::Loaded { .. } => Target::Loaded,
                _ => Target::Nothing,
            },
            origin,
            data: Arc::new(data),
            edits: Edits::default(),
            base: None,
            regenerated: false,
            cleared: false,
            replaced: false,
            secured: None,
            backend: None,
            claimed: false,
            finished: false,
            cookie: CookieSlot::Main,
            lifetime: None,
        })))
    }

    /// The same state, carried by `slot`'s cookie.
    pub(crate) fn in_cookie(self, slot: CookieSlot) -> Self {
        self.lock().cookie = slot;
        self
    }

    /// The cookie that carries the id.
    pub(crate) fn cookie_slot(&self) -> CookieSlot {
        self.lock().cookie.clone()
    }

    /// Changes the cookie that carries the id: a flow's own cookie, once
    /// what it carries besides the id (its deadline) changes.
    pub(crate) fn set_cookie_slot(&self, slot: CookieSlot) {
        self.lock().cookie = slot;
    }

    /// How long the record lives after this request's writes, instead of
    /// the layer's TTL (the engine gives a flow its pipeline's lifetime).
    pub(crate) fn set_lifetime(&self, lifetime: Lifetime) {
        self.lock().lifetime = Some(lifetime);
    }

    /// This state's lifetime, when not the layer's TTL.
    pub(crate) fn lifetime(&self) -> Option<Lifetime> {
        self.lock().lifetime
    }

    /// The reference of the flow whose own cookie carries this state, if
    /// one does.
    pub(crate) fn flow_reference(&self) -> Option<Reference> {
        match &self.lock().cookie {
            CookieSlot::Flow(flow) => Some(flow.reference.clone()),
            CookieSlot::Main => None,
        }
    }

    /// Flow `id`'s state, read from the store through `backend` (one
    /// round trip, its TTL refreshed as `lifetime` says or to the layer's),
    /// which it then claims and commits its record through, and writes with
    /// the same lifetime.
    pub(crate) async fn load(
        backend: &Arc<dyn Backend>,
        id: PipelineId,
        lifetime: Option<Lifetime>,
    ) -> Result<Self, LoadError> {
        let found = backend.clone().load(id, lifetime).await?;
        let state = Self::found(id, found, backend.clone());
        if let Some(lifetime) = lifetime {
            state.set_lifetime(lifetime);
        }
        Ok(state)
    }

    /// The state for what a load of flow `id` found; it claims and commits
    /// its record through `backend`.
    pub(crate) fn found(id: PipelineId, found: Found, backend: Arc<dyn Backend>) -> Self {
        let state = match found {
            Found::Live { version, data } => {
                Self::from_origin(Origin::Loaded { id, version }, data)
            }
            Found::Missing => Self::expired(id, false),
            Found::Unreadable => Self::expired(id, true),
        };
        state.lock().backend = Some(backend);
        state
    }

    fn expired(id: PipelineId, leftover: bool) -> Self {
        Self::from_origin(Origin::Expired { id, leftover }, Data::new())
    }

    /// A new, empty state that belongs to no request: for unit tests of
    /// handler logic. Nothing it does reaches a store.
    ///
    /// ```
    /// use tower_pipeline_state::{PipelineState, Status};
    ///
    /// let state = PipelineState::detached();
    /// assert_eq!(state.status(), Status::New);
    /// assert!(state.is_empty());
    /// ```
    pub fn detached() -> Self {
        Self::from_origin(Origin::New { had_cookie: false }, Data::new())
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.0)
    }

    /// How the state arrived with this request: [`Status::New`] (no usable
    /// id), [`Status::Loaded`] or [`Status::Expired`]. It does not change
    /// when the request writes, clears or regenerates.
    ///
    /// ```
    /// use tower_pipeline_state::{PipelineState, Status};
    ///
    /// let state = PipelineState::detached();
    /// state.set("step", &1).unwrap();
    /// assert_eq!(state.status(), Status::New, "how it arrived, not what it became");
    /// ```
    pub fn status(&self) -> Status {
        match self.lock().origin {
            Origin::New { .. } => Status::New,
            Origin::Loaded { .. } => Status::Loaded,
            Origin::Expired { .. } => Status::Expired,
        }
    }

    /// The id the flow is stored under once this request ends: the loaded
    /// id, or the new one after the first write to a new or expired state or
    /// after [`regenerate`](Self::regenerate). `None` while there is nothing
    /// to store.
    ///
    /// ```
    /// use tower_pipeline_state::PipelineState;
    ///
    /// let state = PipelineState::detached();
    /// assert_eq!(state.id(), None);
    /// state.set("step", &1).unwrap();
    /// assert!(state.id().is_some(), "the first write starts a flow");
    /// ```
    pub fn id(&self) -> Option<PipelineId> {
        let inner = self.lock();
        match inner.target {
            Target::Nothing => None,
            Target::Loaded => inner.origin.came_id(),
            Target::Fresh(id) => Some(id),
        }
    }

    /// Reads one field as `T`; `Ok(None)` when the field is absent.
    ///
    /// # Errors
    /// [`StateError::Field`] when the stored value does not decode as `T`.
    ///
    /// ```
    /// use tower_pipeline_state::{PipelineState, StateError};
    ///
    /// let state = PipelineState::detached();
    /// state.set("step", &2u32).unwrap();
    /// assert_eq!(state.get::<u32>("step").unwrap(), Some(2));
    /// assert_eq!(state.get::<u32>("absent").unwrap(), None);
    /// assert!(matches!(state.get::<String>("step"), Err(StateError::Field { .. })));
    /// ```
    pub fn get<T: DeserializeOwned>(&self, field: &str) -> Result<Option<T>, StateError> {
        let inner = self.lock();
        inner
            .data
            .get(field)
            .map(|value| {
                serde_json::from_str(value.get()).map_err(|source| StateError::Field {
                    field: field.to_owned(),
                    source,
                })
            })
            .transpose()
    }

    /// Whether a field is present.
    ///
    /// ```
    /// use tower_pipeline_state::PipelineState;
    ///
    /// let state = PipelineState::detached();
    /// state.set("provider", "github").unwrap();
    /// assert!(state.contains("provider"));
    /// assert!(!state.contains("step"));
    /// ```
    pub fn contains(&self, field: &str) -> bool {
        self.lock().data.contains_key(field)
    }

    /// Whether the state has no fields.
    ///
    /// ```
    /// use tower_pipeline_state::PipelineState;
    ///
    /// let state = PipelineState::detached();
    /// assert!(state.is_empty());
    /// state.set("step", &1).unwrap();
    /// assert!(!state.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.lock().data.is_empty()
    }

    /// Sets one field. Setting a field to the value it already has is not a
    /// change and writes nothing: the field is kept as JSON text and
    /// compared as such, so a value whose serialization has no fixed order
    /// (a `HashMap`) may count as changed. The first write to a new or
    /// expired state starts a flow under a new id.
    ///
    /// # Errors
    /// [`StateError::Serialize`] when `value` does not serialize to JSON;
    /// [`StateError::Finished`] when the request has ended.
    ///
    /// ```
    /// use tower_pipeline_state::PipelineState;
    ///
    /// let state = PipelineState::detached();
    /// state.set("provider", "github").unwrap();
    /// assert_eq!(state.get::<String>("provider").unwrap().as_deref(), Some("github"));
    /// ```
    pub fn set<T: Serialize + ?Sized>(&self, field: &str, value: &T) -> Result<(), StateError> {
        let value = record::field(value).map_err(StateError::Serialize)?;
        self.set_field(field, value)
    }

    /// [`set`](Self::set) with the value already serialized.
    pub(super) fn set_field(&self, field: &str, value: Field) -> Result<(), StateError> {
        self.change_field(field, |data| data.insert(field.to_owned(), value))
    }

    /// Removes one field, returning whether it was present.
    ///
    /// # Errors
    /// [`StateError::Finished`] when the request has ended.
    ///
    /// ```
    /// use tower_pipeline_state::PipelineState;
    ///
    /// let state = PipelineState::detached();
    /// state.set("step", &1).unwrap();
    /// assert!(state.remove("step").unwrap());
    /// assert!(!state.remove("step").unwrap());
    /// ```
    pub fn remove(&self, field: &str) -> Result<bool, StateError> {
        let mut removed = false;
        self.change_field(field, |data| {
            let before = data.remove(field);
            removed = before.is_some();
            before
        })?;
        Ok(removed)
    }

    /// Reads the whole state as `T`: a struct whose fields are the state's
    /// fields, or a map.
    ///
    /// # Errors
    /// [`StateError::Read`] when the state does not decode as `T`.
    ///
    /// ```
    /// use serde::Deserialize;
    /// use tower_pipeline_state::PipelineState;
    ///
    /// #[derive(Deserialize)]
    /// struct Login { provider: String, step: u32 }
    ///
    /// let state = PipelineState::detached();
    /// state.set("provider", "github").unwrap();
    /// state.set("step", &1).unwrap();
    /// let login: Login = state.read().unwrap();
    /// assert_eq!((login.provider.as_str(), login.step), ("github", 1));
    /// ```
    pub fn read<T: DeserializeOwned>(&self) -> Result<T, StateError> {
        let inner = self.lock();
        let fields = inner
            .data
            .iter()
            .map(|(name, value)| (name.as_str(), value.raw()));
        T::deserialize(MapDeserializer::new(fields)).map_err(StateError::Read)
    }

    /// Replaces the whole state with `value`, which must serialize to a JSON
    /// object (a struct or a map). It is written as a whole: when a
    /// concurrent request changed any field of the flow meanwhile, this
    /// request answers the conflict status instead of merging (a field it
    /// left out must not come back). Replacing with the same fields is not a
    /// change and writes nothing.
    ///
    /// # Errors
    /// [`StateError::NotAnObject`] when `value` is not an object,
    /// [`StateError::Serialize`] when it does not serialize,
    /// [`StateError::Finished`] when the request has ended.
    ///
    /// ```
    /// use serde_json::json;
    /// use tower_pipeline_state::PipelineState;
    ///
    /// let state = PipelineState::detached();
    /// state.set("old", &1).unwrap();
    /// state.replace(&json!({"step": 2})).unwrap();
    /// assert!(!state.contains("old"));
    /// assert!(state.replace(&[1, 2]).is_err(), "an array is not a state");
    /// ```
    pub fn replace<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), StateError> {
        let fields = to_object(value)?;
        let mut inner = self.lock();
        inner.writable()?;
        inner.start_target();
        inner.set_aside_loaded();
        inner.data = Arc::new(fields);
        inner.replaced = true;
        Ok(())
    }

    /// Starts the flow over under a new id with `initial` as its whole state
    /// (a struct or a map). When the request ends, the old record is deleted
    /// and the new one created, and the client gets the new id: an id known
    /// before (for instance one planted by an attacker) leads nowhere after.
    ///
    /// # Errors
    /// [`StateError::NotAnObject`] when `initial` is not an object,
    /// [`StateError::Serialize`] when it does not serialize,
    /// [`StateError::Finished`] when the request has ended.
    ///
    /// ```
    /// use serde_json::json;
    /// use tower_pipeline_state::PipelineState;
    ///
    /// let state = PipelineState::detached();
    /// state.set("step", &3).unwrap();
    /// let before = state.id();
    /// state.regenerate(&json!({"step": 0})).unwrap();
    /// assert_ne!(state.id(), before, "a new id");
    /// assert_eq!(state.get::<u32>("step").unwrap(), Some(0));
    /// ```
    pub fn regenerate<T: Serialize + ?Sized>(&self, initial: &T) -> Result<(), StateError> {
        let fields = to_object(initial)?;
        let mut inner = self.lock();
        inner.writable()?;
        inner.set_aside_loaded();
        inner.data = Arc::new(fields);
        inner.target = Target::Fresh(PipelineId::generate());
        inner.regenerated = true;
        inner.cleared = false;
        Ok(())
    }

    /// Ends the flow: the state is emptied now; when the request ends its
    /// record is deleted and the client's cookie expired. A later write in
    /// the same request starts a new flow under a new id.
    ///
    /// # Errors
    /// [`StateError::Finished`] when the request has ended.
    ///
    /// ```
    /// use tower_pipeline_state::PipelineState;
    ///
    /// let state = PipelineState::detached();
    /// state.set("step", &1).unwrap();
    /// state.clear().unwrap();
    /// assert!(state.is_empty() && state.is_cleared());
    /// assert_eq!(state.id(), None);
    /// ```
    pub fn clear(&self) -> Result<(), StateError> {
        let mut inner = self.lock();
        inner.writable()?;
        inner.set_aside_loaded();
        inner.data = Arc::default();
        inner.target = Target::Nothing;
        inner.regenerated = false;
        inner.cleared = true;
        Ok(())
    }

    /// Undoes every change this request made (`set`, `remove`, `replace`,
    /// `regenerate`, `clear`): the state is again what the request brought,
    /// and nothing is written for it. (A request that finished a nested
    /// pipeline run, see [`Flow::nest`](crate::pipeline::Flow::nest), wrote
    /// its state before handing the run's data over; it goes back to the
    /// state as written then.)
    ///
    /// # Errors
    /// [`StateError::Finished`] when the request has ended.
    ///
    /// ```
    /// use tower_pipeline_state::PipelineState;
    ///
    /// let state = PipelineState::detached();
    /// state.set("step", &1).unwrap();
    /// state.revert().unwrap();
    /// assert!(state.is_empty());
    /// assert_eq!(state.id(), None, "nothing to write");
    /// ```
    pub fn revert(&self) -> Result<(), StateError> {
        let mut inner = self.lock();
        inner.writable()?;
        let loaded = matches!(inner.origin, Origin::Loaded { .. });
        let inner = &mut *inner;
        match inner.base.take() {
            Some(base) => inner.data = Arc::new(base),
            // A loaded state changed field by field gets its fields back.
            None if loaded => {
                if !inner.edits.is_empty() {
                    inner.edits.undo(Arc::make_mut(&mut inner.data));
                }
            }
            None => inner.data = Arc::default(),
        }
        inner.edits.clear();
        inner.target = if loaded {
            Target::Loaded
        } else {
            Target::Nothing
        };
        inner.regenerated = false;
        inner.cleared = false;
        inner.replaced = false;
        inner.secured = None;
        Ok(())
    }

    /// Whether [`clear`](Self::clear) was called in this request and nothing
    /// was written since.
    ///
    /// ```
    /// use tower_pipeline_state::PipelineState;
    ///
    /// let state = PipelineState::detached();
    /// state.clear().unwrap();
    /// assert!(state.is_cleared());
    /// state.set("again", &1).unwrap();
    /// assert!(!state.is_cleared());
    /// ```
    pub fn is_cleared(&self) -> bool {
        let inner = self.lock();
        inner.cleared && inner.target == Target::Nothing
    }

    /// Changes one field with `apply`, which answers the field's value
    /// before; a loaded state notes it among its edits.
    fn change_field(
        &self,
        field: &str,
        apply: impl FnOnce(&mut Data) -> Option<Field>,
    ) -> Result<(), StateError> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        inner.writable()?;
        inner.start_target();
        let before = apply(Arc::make_mut(&mut inner.data));
        if inner.target == Target::Loaded && inner.base.is_none() {
            inner.edits.record(field, before);
        }
        Ok(())
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("origin", &self.origin)
            .field("data", &self.data)
            .field("target", &self.target)
            .field("cleared", &self.cleared)
            .field("claimed", &self.claimed)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// The first write to a state with no live record starts a new flow; a
    /// client-chosen id is never adopted.
    fn start_target(&mut self) {
        if self.target == Target::Nothing {
            self.target = Target::Fresh(PipelineId::generate());
        }
    }

    /// Before the loaded state is replaced wholesale: keep it aside for
    /// `revert` and the flush (moved, not copied, as it is about to be
    /// dropped), with the fields changed one by one put back.
    fn set_aside_loaded(&mut self) {
        if self.target == Target::Loaded && self.base.is_none() {
            let mut loaded = Arc::unwrap_or_clone(std::mem::take(&mut self.data));
            self.edits.undo(&mut loaded);
            self.base = Some(loaded);
        }
    }

    /// The state as loaded (empty for a state no record was loaded into):
    /// copied only when fields were changed one by one.
    pub(super) fn loaded_view(&self) -> Cow<'_, Data> {
        match &self.base {
            Some(base) => Cow::Borrowed(base),
            None if self.target != Target::Loaded => Cow::Owned(Data::new()),
            None if self.edits.is_empty() => Cow::Borrowed(&*self.data),
            None => Cow::Owned(self.edits.loaded(&self.data)),
        }
    }

    fn writable(&self) -> Result<(), StateError> {
        if self.finished {
            Err(StateError::Finished)
        } else {
            Ok(())
        }
    }
}

/// A whole state from `value`, which must serialize to a JSON object. Its
/// fields' texts come from a value tree, whose maps are sorted: the same
/// state gives the same texts whatever the order of `value`'s maps.
fn to_object<T: Serialize + ?Sized>(value: &T) -> Result<Data, StateError> {
    match serde_json::to_value(value).map_err(StateError::Serialize)? {
        Value::Object(map) => map
            .into_iter()
            .map(|(name, value)| Ok((name, record::field(&value).map_err(StateError::Serialize)?)))
            .collect(),
        Value::Null => Err(StateError::NotAnObject("null")),
        Value::Bool(_) => Err(StateError::NotAnObject("a boolean")),
        Value::Number(_) => Err(StateError::NotAnObject("a number")),
        Value::String(_) => Err(StateError::NotAnObject("a string")),
        Value::Array(_) => Err(StateError::NotAnObject("an array")),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;
    use crate::record::{object, to_json};

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Login {
        provider: String,
        step: u32,
    }

    fn loaded(fields: Value) -> PipelineState {
        let data = object(fields);
        let origin = Origin::Loaded {
            id: PipelineId::generate(),
            version: 3,
        };
        PipelineState::from_origin(origin, data)
    }

    #[test]
    fn typed_fields_read_back_and_mismatches_are_errors() {
        let state = PipelineState::detached();
        state.set("step", &2u32).unwrap();
        assert_eq!(state.get::<u32>("step").unwrap(), Some(2));
        assert_eq!(state.get::<u32>("absent").unwrap(), None);
        let error = state.get::<String>("step").unwrap_err();
        assert!(
            matches!(error, StateError::Field { ref field, .. } if field == "step"),
            "{error}"
        );
        assert!(state.remove("step").unwrap());
        assert!(!state.remove("step").unwrap());
        assert!(state.is_empty());
    }

    #[test]
    fn the_whole_state_reads_and_replaces_as_a_struct() {
        let state = loaded(json!({"provider": "github", "step": 1}));
        let login: Login = state.read().unwrap();
        assert_eq!(login.provider, "github");
        state
            .replace(&Login {
                provider: "gitlab".into(),
                step: 1,
            })
            .unwrap();
        assert_eq!(
            state.get::<String>("provider").unwrap().as_deref(),
            Some("gitlab")
        );
        assert!(matches!(
            state.replace(&[1, 2]),
            Err(StateError::NotAnObject("an array"))
        ));
        assert!(matches!(state.read::<Vec<u8>>(), Err(StateError::Read(_))));
    }

    #[test]
    fn a_new_state_gets_an_id_at_its_first_write() {
        let state = PipelineState::detached();
        assert_eq!(state.id(), None);
        state.set("a", &1).unwrap();
        let id = state.id().expect("a write creates the flow");
        state.set("b", &2).unwrap();
        assert_eq!(state.id(), Some(id), "one id per flow");
    }

    #[test]
    fn regenerate_and_clear_change_the_id_and_the_fields() {
        let state = loaded(json!({"a": 1}));
        let loaded_id = state.id().unwrap();
        state.regenerate(&json!({"fresh": true})).unwrap();
        let new_id = state.id().unwrap();
        assert_ne!(new_id, loaded_id);
        assert_eq!(state.status(), Status::Loaded, "status says how it arrived");
        assert!(!state.contains("a"));
        assert_eq!(state.get::<bool>("fresh").unwrap(), Some(true));

        state.clear().unwrap();
        assert!(state.is_cleared());
        assert_eq!(state.id(), None);
        assert!(state.is_empty());
        state.set("again", &1).unwrap();
        assert!(!state.is_cleared());
        assert!(state.id().is_some_and(|id| id != new_id && id != loaded_id));
    }

    #[test]
    fn revert_puts_back_what_the_request_brought() {
        let state = loaded(json!({"a": 1}));
        let id = state.id();
        state.set("a", &2).unwrap();
        state.regenerate(&json!({"b": 1})).unwrap();
        state.clear().unwrap();
        state.revert().unwrap();
        assert_eq!(state.read::<Value>().unwrap(), json!({"a": 1}));
        assert_eq!(state.id(), id);
        assert!(!state.is_cleared());
        assert!(state.lock().base.is_none(), "nothing left to write");

        let cleared = loaded(json!({"a": 1}));
        cleared.clear().unwrap();
        cleared.revert().unwrap();
        assert_eq!(cleared.get::<u32>("a").unwrap(), Some(1));

        let fresh = PipelineState::detached();
        fresh.set("a", &1).unwrap();
        fresh.revert().unwrap();
        assert!(fresh.is_empty());
        assert_eq!(fresh.id(), None);
    }

    #[test]
    fn a_finished_state_refuses_changes_but_still_reads() {
        let state = loaded(json!({"a": 1}));
        state.end_request(false);
        assert!(matches!(state.set("a", &2), Err(StateError::Finished)));
        assert!(matches!(state.clear(), Err(StateError::Finished)));
        assert!(matches!(
            state.regenerate(&json!({})),
            Err(StateError::Finished)
        ));
        assert_eq!(state.get::<u32>("a").unwrap(), Some(1));
    }

    #[test]
    fn reads_copy_nothing_and_a_change_keeps_only_the_fields_loaded_value() {
        let state = loaded(json!({"a": 1, "big": [1, 2, 3]}));
        state.get::<u32>("a").unwrap();
        assert!(state.lock().base.is_none() && state.lock().edits.is_empty());
        state.set("a", &2).unwrap();
        state.set("a", &3).unwrap();
        let inner = state.lock();
        assert!(inner.base.is_none(), "the state was not copied");
        let changes = inner.edits.changes(&inner.data);
        assert_eq!(changes.len(), 1);
        let before = changes[0].before.as_ref().map(|b| b.get());
        assert_eq!((changes[0].field.as_str(), before), ("a", Some("1")));
        assert_eq!(
            to_json(&inner.loaded_view()),
            json!({"a": 1, "big": [1, 2, 3]})
        );
    }

    #[test]
    fn a_replace_after_field_changes_sets_aside_the_state_as_loaded() {
        let state = loaded(json!({"a": 1, "b": 1}));
        state.set("a", &2).unwrap();
        state.remove("b").unwrap();
        state.replace(&json!({"c": 3})).unwrap();
        assert_eq!(
            state.lock().base.as_ref().map(to_json),
            Some(json!({"a": 1, "b": 1}))
        );
        state.revert().unwrap();
        assert_eq!(state.read::<Value>().unwrap(), json!({"a": 1, "b": 1}));
    }
}
