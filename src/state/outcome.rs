//! [`Outcome`]: what a request's changes need from the store, the one value
//! the handle hands the writer when the request ends.

use super::{Inner, Origin, PipelineState, Target};
use crate::{
    id::PipelineId,
    merge::{Change, diff},
    record::Data,
};

/// What the request's changes need from the store.
#[derive(Debug, PartialEq)]
pub(crate) enum Outcome {
    /// Nothing to write.
    Unchanged,
    /// A new record under a new id (`SET NX`), after removing the record the
    /// request came with, if any.
    Create {
        id: PipelineId,
        data: Data,
        replacing: Option<Removal>,
        /// Made by `regenerate` (rather than by a first write).
        regenerated: bool,
    },
    /// A compare-and-set of the loaded record at the loaded `version`.
    Update {
        id: PipelineId,
        version: u64,
        data: Data,
        changes: Vec<Change>,
        /// `replace` set the whole state: a concurrent change of any field
        /// conflicts, rather than being merged field by field.
        whole: bool,
    },
    /// The flow was cleared: remove its record and expire the cookie.
    Delete(Removal),
    /// Cleared with no record behind the cookie (none came, a forged one, or
    /// the record was already gone): only expire the cookie.
    ExpireCookie,
}

/// A record to remove before the request's own write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Removal {
    pub(crate) id: PipelineId,
    /// `Some`: the loaded version; removed only if it still has it (a
    /// compare-and-delete), so a concurrent change or clear is never undone.
    /// `None`: a record that could not be read, removed whatever it holds.
    pub(crate) version: Option<u64>,
}

impl PipelineState {
    /// Ends the request's hold on the state and says what to write: later
    /// changes are refused (reads still work, so the data is copied into the
    /// outcome rather than moved).
    pub(crate) fn end_request(&self) -> Outcome {
        let mut inner = self.lock();
        inner.finished = true;
        inner.outcome()
    }
}

impl Origin {
    /// What must go before a new record replaces the one the request came
    /// with: nothing when none was there.
    fn removal(&self) -> Option<Removal> {
        match *self {
            Origin::Loaded { id, version } => Some(Removal {
                id,
                version: Some(version),
            }),
            Origin::Expired { id, leftover: true } => Some(Removal { id, version: None }),
            Origin::Expired {
                leftover: false, ..
            }
            | Origin::New { .. } => None,
        }
    }
}

impl Inner {
    fn outcome(&self) -> Outcome {
        match (self.target, &self.origin) {
            (Target::Fresh(id), origin) if self.regenerated || !self.data.is_empty() => {
                Outcome::Create {
                    id,
                    data: self.data.clone(),
                    replacing: origin.removal(),
                    regenerated: self.regenerated,
                }
            }
            (Target::Fresh(_) | Target::Nothing, origin) if self.cleared => {
                match (origin.removal(), origin) {
                    (Some(removal), _) => Outcome::Delete(removal),
                    (None, Origin::New { had_cookie: false }) => Outcome::Unchanged,
                    (None, _) => Outcome::ExpireCookie,
                }
            }
            // A loaded target always has a loaded origin (`from_origin` and
            // `revert` set them together); `base` is `Some` once changed.
            (Target::Loaded, Origin::Loaded { id, version }) => {
                let changes = self
                    .base
                    .as_ref()
                    .map(|base| diff(base, &self.data))
                    .unwrap_or_default();
                if changes.is_empty() {
                    return Outcome::Unchanged;
                }
                Outcome::Update {
                    id: *id,
                    version: *version,
                    data: self.data.clone(),
                    changes,
                    whole: self.replaced,
                }
            }
            _ => Outcome::Unchanged,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn loaded(version: u64) -> (PipelineState, PipelineId) {
        let id = PipelineId::generate();
        let data = match json!({"a": 1}) {
            serde_json::Value::Object(map) => map,
            _ => unreachable!("an object"),
        };
        let state = PipelineState::from_origin(Origin::Loaded { id, version }, data);
        (state, id)
    }

    #[test]
    fn reads_and_same_value_writes_are_unchanged() {
        let (state, _) = loaded(3);
        state.get::<u32>("a").unwrap();
        state.set("a", &1).unwrap();
        assert_eq!(state.end_request(), Outcome::Unchanged);
    }

    #[test]
    fn a_change_updates_at_the_loaded_version() {
        let (state, id) = loaded(3);
        state.set("a", &2).unwrap();
        let Outcome::Update {
            id: updated,
            version,
            changes,
            ..
        } = state.end_request()
        else {
            panic!("an update")
        };
        assert_eq!((updated, version, changes.len()), (id, 3, 1));
    }

    #[test]
    fn clear_deletes_at_the_loaded_version_and_regenerate_replaces() {
        let (state, id) = loaded(5);
        state.clear().unwrap();
        assert_eq!(
            state.end_request(),
            Outcome::Delete(Removal {
                id,
                version: Some(5)
            })
        );

        let (state, id) = loaded(5);
        state.regenerate(&json!({})).unwrap();
        let Outcome::Create {
            replacing,
            regenerated,
            data,
            ..
        } = state.end_request()
        else {
            panic!("a create")
        };
        let removal = Removal {
            id,
            version: Some(5),
        };
        assert_eq!(
            (replacing, regenerated, data.len()),
            (Some(removal), true, 0)
        );
    }

    #[test]
    fn a_replace_is_a_whole_state_update() {
        let (state, _) = loaded(3);
        state.replace(&json!({"a": 2})).unwrap();
        assert!(matches!(
            state.end_request(),
            Outcome::Update { whole: true, .. }
        ));
        let (state, _) = loaded(3);
        state.set("a", &2).unwrap();
        assert!(matches!(
            state.end_request(),
            Outcome::Update { whole: false, .. }
        ));
    }

    #[test]
    fn an_unreadable_record_is_removed_by_the_next_write_and_a_gone_one_is_not() {
        let id = PipelineId::generate();
        for (leftover, removal) in [(true, Some(Removal { id, version: None })), (false, None)] {
            let state = PipelineState::from_origin(Origin::Expired { id, leftover }, Data::new());
            state.set("a", &1).unwrap();
            let Outcome::Create { replacing, .. } = state.end_request() else {
                panic!("a create")
            };
            assert_eq!(replacing, removal);
            let cleared = PipelineState::from_origin(Origin::Expired { id, leftover }, Data::new());
            cleared.clear().unwrap();
            let expected = match removal {
                Some(removal) => Outcome::Delete(removal),
                None => Outcome::ExpireCookie,
            };
            assert_eq!(cleared.end_request(), expected);
        }
    }

    #[test]
    fn a_forged_cookie_cleared_only_expires_the_cookie() {
        let state = PipelineState::from_origin(Origin::New { had_cookie: true }, Data::new());
        state.clear().unwrap();
        assert_eq!(state.end_request(), Outcome::ExpireCookie);
        let fresh = PipelineState::detached();
        fresh.clear().unwrap();
        assert_eq!(fresh.end_request(), Outcome::Unchanged);
    }
}
