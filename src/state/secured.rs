//! The engine's security writes. A consumed nonce and an ended flow are
//! kept even when the response is a server error (which otherwise discards
//! the request's changes), and a flow is claimed, deleted at its loaded
//! version before its finish hook runs, so that it finishes at most once.
//! A nested run is finished the same way with a commit: the state written
//! now at its loaded version, before its data is handed over.

use std::sync::Arc;

use serde::Serialize;

use super::handle::{Origin, PipelineState, Secured, Target};
use crate::{
    StateError,
    backend::{Claimed, Committed},
    record::{self, Data, Field, next_version},
    store::StoreError,
};

impl PipelineState {
    /// [`remove`](Self::remove), kept even if the response is a server
    /// error: the engine consumes a nonce with it.
    pub(crate) fn remove_secured(&self, field: &str) -> Result<bool, StateError> {
        let removed = self.remove(field)?;
        self.secure(field, None);
        Ok(removed)
    }

    /// [`set`](Self::set), kept even if the response is a server error: the
    /// engine consumes a nested run's nonce with it (the run's field is what
    /// changes).
    pub(crate) fn set_secured<T: Serialize + ?Sized>(
        &self,
        field: &str,
        value: &T,
    ) -> Result<(), StateError> {
        let value = record::field(value).map_err(StateError::Serialize)?;
        self.set_field(field, value.clone())?;
        self.secure(field, Some(value));
        Ok(())
    }

    /// Records `field`'s new value (`None`: removed) among the writes kept
    /// on a server error.
    fn secure(&self, field: &str, value: Option<Field>) {
        let mut inner = self.lock();
        let mut fields = match inner.secured.take() {
            Some(Secured::Cleared) => {
                inner.secured = Some(Secured::Cleared);
                return;
            }
            Some(Secured::Fields(fields)) => fields,
            // The fields as loaded (none for a state nothing was loaded
            // into).
            None => inner.loaded_view().into_owned(),
        };
        match value {
            Some(value) => fields.insert(field.to_owned(), value),
            None => fields.remove(field),
        };
        inner.secured = Some(Secured::Fields(fields));
    }

    /// [`replace`](Self::replace), kept even if the response is a server
    /// error: the engine replaces an ended flow's record with what answers
    /// its replays.
    pub(crate) fn replace_secured<T: Serialize + ?Sized>(
        &self,
        value: &T,
    ) -> Result<(), StateError> {
        self.replace(value)?;
        let mut inner = self.lock();
        inner.secured = Some(Secured::Fields(Data::clone(&inner.data)));
        Ok(())
    }

    /// [`clear`](Self::clear), kept even if the response is a server error:
    /// the engine ends a flow with it.
    pub(crate) fn clear_secured(&self) -> Result<(), StateError> {
        self.clear()?;
        self.lock().secured = Some(Secured::Cleared);
        Ok(())
    }

    /// Deletes the loaded record now, at the loaded version, so that of two
    /// requests finishing one flow only one goes on. A state with no stored
    /// record (new, or not from a store) has nothing to race for: claimed.
    pub(crate) async fn claim(&self) -> Result<Claimed, StoreError> {
        let (backend, id, version) = {
            let inner = self.lock();
            match (&inner.origin, &inner.backend) {
                _ if inner.claimed => return Ok(Claimed::Yes),
                (Origin::Loaded { id, version }, Some(backend)) => (backend.clone(), *id, *version),
                _ => return Ok(Claimed::Yes),
            }
        };
        let claimed = backend.claim(id, version).await?;
        if claimed == Claimed::Yes {
            self.lock().claimed = true;
        }
        Ok(claimed)
    }

    /// Writes the state as it is now over the loaded record, now, at the
    /// loaded version (one round trip), so that of two requests ending one
    /// nested run only one goes on. On success the state as written becomes
    /// what the request loaded: the flush writes only what changes after
    /// this, at the new version (nothing if nothing does), `revert` goes
    /// back to it, and the security writes so far are in it. A state with
    /// no stored record to race for (new, regenerated, or not from a store)
    /// writes nothing here: the flush creates it.
    pub(crate) async fn commit(&self) -> Result<Committed, StoreError> {
        let (backend, id, version, data, lifetime) = {
            let inner = self.lock();
            if inner.claimed {
                return Ok(Committed::AlreadyGone);
            }
            match (&inner.origin, &inner.backend, inner.target) {
                (Origin::Loaded { id, version }, backend, Target::Loaded) => (
                    backend.clone(),
                    *id,
                    *version,
                    inner.data.clone(),
                    inner.lifetime,
                ),
                _ => return Ok(Committed::Yes),
            }
        };
        // A loaded state with no store behind it (a unit test's) commits in
        // memory, as a store that always accepts would.
        let committed = match backend {
            Some(backend) => backend.commit(id, version, data.clone(), lifetime).await?,
            None => Committed::Yes,
        };
        if committed == Committed::Yes {
            let mut inner = self.lock();
            if let Origin::Loaded {
                version: loaded, ..
            } = &mut inner.origin
            {
                *loaded = next_version(version);
            }
            // What was written is now the state as loaded; a change made
            // while the write was under way (by a clone of the handle)
            // stays a change, against what was written.
            let changed_meanwhile = inner.data != data;
            inner.edits.clear();
            inner.base = changed_meanwhile.then(|| Arc::unwrap_or_clone(data));
            inner.replaced = false;
            if matches!(inner.secured, Some(Secured::Fields(_))) {
                inner.secured = None;
            }
        }
        Ok(committed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{Value, json};

    use super::*;
    use crate::{
        config::Config,
        id::PipelineId,
        record::{decode, encode, object, to_json},
        shared::Shared,
        state::Outcome,
        store::{MemoryStore, Store},
    };

    /// A store holding one record of `fields` at version 1, and its id.
    async fn stored(fields: Value, config: Config) -> (Arc<Shared<MemoryStore>>, PipelineId) {
        let shared = Arc::new(Shared {
            store: Arc::new(MemoryStore::new()),
            config,
        });
        let id = PipelineId::generate();
        let key = shared.config.key(id);
        let record = encode(1, &object(fields));
        assert!(
            shared
                .store
                .create(&key, &record, shared.config.ttl)
                .await
                .unwrap()
        );
        (shared, id)
    }

    async fn record(shared: &Shared<MemoryStore>, id: PipelineId) -> Option<crate::record::Record> {
        let raw = shared
            .store
            .load(&shared.config.key(id), None)
            .await
            .unwrap();
        raw.map(|raw| decode(&raw).unwrap())
    }

    #[tokio::test]
    async fn a_commit_writes_now_and_the_flush_writes_only_what_changes_after_it() {
        let (shared, id) = stored(json!({"a": 1, "b": 1}), Config::default()).await;
        let state = shared.state(id).await;
        state.set("a", &2).unwrap();
        assert_eq!(state.commit().await.unwrap(), Committed::Yes);
        let written = record(&shared, id).await.unwrap();
        assert_eq!(
            (written.version, to_json(&written.data)),
            (2, json!({"a": 2, "b": 1})),
            "written at once, at the next version"
        );

        state.set("b", &2).unwrap();
        let Outcome::Update {
            version, changes, ..
        } = state.end_request(false)
        else {
            panic!("the change after the commit is written")
        };
        let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            (version, fields),
            (2, vec!["b"]),
            "at the new version, only `b`"
        );

        let (shared, id) = stored(json!({"a": 1}), Config::default()).await;
        let state = shared.state(id).await;
        state.set("a", &2).unwrap();
        state.commit().await.unwrap();
        state.set("a", &3).unwrap();
        state.revert().unwrap();
        assert_eq!(
            state.get::<u32>("a").unwrap(),
            Some(2),
            "revert goes back to the state as committed"
        );
        assert_eq!(
            state.end_request(false),
            Outcome::Unchanged,
            "nothing changed after the commit"
        );
    }

    #[tokio::test]
    async fn of_two_commits_at_one_version_only_the_first_writes() {
        let (shared, id) = stored(json!({"run": 1}), Config::default()).await;
        let first = shared.state(id).await;
        let second = shared.state(id).await;
        first.remove("run").unwrap();
        second.remove("run").unwrap();
        second.set("other", &1).unwrap();
        assert_eq!(first.commit().await.unwrap(), Committed::Yes);
        assert_eq!(second.commit().await.unwrap(), Committed::Changed);
        let written = record(&shared, id).await.unwrap();
        assert_eq!(
            (written.version, to_json(&written.data)),
            (2, json!({})),
            "the second wrote nothing"
        );

        shared.store.delete(&shared.config.key(id)).await.unwrap();
        let gone = shared.state(id).await;
        assert_eq!(
            gone.commit().await.unwrap(),
            Committed::Yes,
            "expired: nothing stored to race for"
        );
        let (shared, id) = stored(json!({"a": 1}), Config::default()).await;
        let state = shared.state(id).await;
        shared.store.delete(&shared.config.key(id)).await.unwrap();
        assert_eq!(state.commit().await.unwrap(), Committed::AlreadyGone);
    }

    #[tokio::test]
    async fn a_commit_over_the_size_limit_writes_nothing() {
        let config = Config {
            max_record_size: 100,
            ..Config::default()
        };
        let (shared, id) = stored(json!({"a": 1}), config).await;
        let state = shared.state(id).await;
        state.set("a", &"x".repeat(200)).unwrap();
        assert_eq!(state.commit().await.unwrap(), Committed::TooLarge);
        assert_eq!(record(&shared, id).await.unwrap().version, 1);
    }

    #[tokio::test]
    async fn security_writes_before_a_commit_are_in_it_and_those_after_survive_a_discard() {
        let (shared, id) = stored(
            json!({"nonce": "n", "run": {"nonce": "m"}}),
            Config::default(),
        )
        .await;
        let state = shared.state(id).await;
        state.remove_secured("nonce").unwrap();
        state.set("step", &1).unwrap();
        state.commit().await.unwrap();
        state.set_secured("run", &json!({})).unwrap();
        state.set("step", &2).unwrap();
        let Outcome::Update { version, data, .. } = state.end_request(true) else {
            panic!("the secured write after the commit is kept")
        };
        assert_eq!(
            (version, to_json(&data)),
            (2, json!({"step": 1, "run": {}})),
            "what the commit wrote, with the later security write, without the later change"
        );

        let (shared, id) = stored(json!({"nonce": "n"}), Config::default()).await;
        let state = shared.state(id).await;
        state.remove_secured("nonce").unwrap();
        state.commit().await.unwrap();
        state.set("step", &1).unwrap();
        assert_eq!(
            state.end_request(true),
            Outcome::Unchanged,
            "a discard after the commit writes nothing more: the commit is kept"
        );
        assert!(
            !record(&shared, id)
                .await
                .unwrap()
                .data
                .contains_key("nonce")
        );
    }

    #[tokio::test]
    async fn a_commit_without_a_stored_record_writes_nothing_now() {
        let detached = PipelineState::detached();
        detached.set("a", &1).unwrap();
        assert_eq!(detached.commit().await.unwrap(), Committed::Yes);
        let (shared, id) = stored(json!({"a": 1}), Config::default()).await;
        let state = shared.state(id).await;
        state.regenerate(&json!({"b": 1})).unwrap();
        assert_eq!(state.commit().await.unwrap(), Committed::Yes);
        assert_eq!(
            record(&shared, id).await.unwrap().version,
            1,
            "the flush replaces it"
        );
    }
}
