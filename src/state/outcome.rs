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
    /// A new record under a new id (`SET NX`), replacing the request's old
    /// key if it had one.
    Create {
        id: PipelineId,
        data: Data,
        replacing: Option<PipelineId>,
        /// Made by `regenerate` (rather than by a first write).
        regenerated: bool,
    },
    /// A compare-and-set of the loaded record at the loaded `version`.
    Update {
        id: PipelineId,
        version: u64,
        data: Data,
        changes: Vec<Change>,
    },
    /// The flow was cleared: delete it and expire the cookie. A loaded flow
    /// is deleted only if it still has the loaded `version`.
    Delete {
        id: PipelineId,
        version: Option<u64>,
    },
    /// Cleared with no flow behind it (the cookie was malformed or forged):
    /// only expire the cookie.
    ExpireCookie,
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

impl Inner {
    fn outcome(&self) -> Outcome {
        let came = self.origin.came_id();
        match (self.target, &self.origin) {
            (Target::Fresh(id), _) if self.regenerated || !self.data.is_empty() => {
                Outcome::Create {
                    id,
                    data: self.data.clone(),
                    replacing: came,
                    regenerated: self.regenerated,
                }
            }
            (Target::Fresh(_) | Target::Nothing, origin) if self.cleared => match origin {
                Origin::Loaded { id, version } => Outcome::Delete {
                    id: *id,
                    version: Some(*version),
                },
                Origin::Expired { id } => Outcome::Delete {
                    id: *id,
                    version: None,
                },
                Origin::New { had_cookie: true } => Outcome::ExpireCookie,
                Origin::New { had_cookie: false } => Outcome::Unchanged,
            },
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
            Outcome::Delete {
                id,
                version: Some(5)
            }
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
        assert_eq!((replacing, regenerated, data.len()), (Some(id), true, 0));
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
