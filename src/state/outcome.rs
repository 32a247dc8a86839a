//! [`Outcome`]: what a request's changes need from the store, the one value
//! the handle hands the writer when the request ends.

use std::sync::Arc;

use super::handle::{Inner, Origin, PipelineState, Secured, Target};
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
        data: Arc<Data>,
        replacing: Option<Removal>,
        /// Made by `regenerate` (rather than by a first write).
        regenerated: bool,
    },
    /// A compare-and-set of the loaded record at the loaded `version`.
    Update {
        id: PipelineId,
        version: u64,
        data: Arc<Data>,
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
    /// changes are refused (reads still work, so the outcome shares the
    /// data rather than taking it). When the response `discard`s the
    /// request's changes, only the engine's security writes remain.
    pub(crate) fn end_request(&self, discard: bool) -> Outcome {
        let mut inner = self.lock();
        inner.finished = true;
        if discard {
            inner.secured_outcome()
        } else {
            inner.outcome()
        }
    }

    /// Once the request has ended: only the engine's security writes, as
    /// for a discarded response. What the writer sends for this state when
    /// another state's write of the same request failed, so that a nonce
    /// spent or a flow ended stays so whatever else happens.
    pub(crate) fn secured_outcome(&self) -> Outcome {
        self.lock().secured_outcome()
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
    /// The record the request came with, unless a claim already deleted it.
    fn removal(&self) -> Option<Removal> {
        if self.claimed {
            None
        } else {
            self.origin.removal()
        }
    }

    /// Ending the flow: remove its record, or only expire the cookie.
    fn ended(&self) -> Outcome {
        match (self.removal(), &self.origin) {
            (Some(removal), _) => Outcome::Delete(removal),
            (None, Origin::New { had_cookie: false }) => Outcome::Unchanged,
            (None, _) => Outcome::ExpireCookie,
        }
    }

    /// Called once, when the request ends: the edits' loaded values move
    /// into the outcome unless the security writes may still need them (a
    /// state with none never asks for its loaded fields again).
    fn outcome(&mut self) -> Outcome {
        match (self.target, &self.origin) {
            (Target::Fresh(id), _) if self.regenerated || !self.data.is_empty() => {
                Outcome::Create {
                    id,
                    data: self.data.clone(),
                    replacing: self.removal(),
                    regenerated: self.regenerated,
                }
            }
            (Target::Fresh(_) | Target::Nothing, _) if self.cleared => self.ended(),
            // Claimed and then put back (`revert`): the record is gone.
            (Target::Loaded, _) if self.claimed => Outcome::ExpireCookie,
            // A loaded target always has a loaded origin (`from_origin` and
            // `revert` set them together). Replaced wholesale, it diffs
            // against the state set aside; otherwise its edits say what
            // changed.
            (Target::Loaded, Origin::Loaded { id, version }) => {
                let changes = match &self.base {
                    Some(base) => diff(base, &self.data),
                    None if self.secured.is_none() => self.edits.take_changes(&self.data),
                    None => self.edits.changes(&self.data),
                };
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

    /// What a discarded request still writes: the engine's security changes
    /// over the state as loaded, and nothing else.
    fn secured_outcome(&self) -> Outcome {
        match (&self.secured, &self.origin) {
            (Some(Secured::Cleared), _) => self.ended(),
            (_, _) if self.claimed => Outcome::ExpireCookie,
            (Some(Secured::Fields(fields)), Origin::Loaded { id, version }) => {
                let changes = diff(&self.loaded_view(), fields);
                if changes.is_empty() {
                    return Outcome::Unchanged;
                }
                Outcome::Update {
                    id: *id,
                    version: *version,
                    data: Arc::new(fields.clone()),
                    changes,
                    whole: false,
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
    use crate::record::{object, to_json};

    fn loaded(version: u64) -> (PipelineState, PipelineId) {
        let id = PipelineId::generate();
        let data = object(json!({"a": 1}));
        let state = PipelineState::from_origin(Origin::Loaded { id, version }, data);
        (state, id)
    }

    #[test]
    fn reads_and_same_value_writes_are_unchanged() {
        let (state, _) = loaded(3);
        state.get::<u32>("a").unwrap();
        state.set("a", &1).unwrap();
        assert_eq!(state.end_request(false), Outcome::Unchanged);
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
        } = state.end_request(false)
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
            state.end_request(false),
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
        } = state.end_request(false)
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
            state.end_request(false),
            Outcome::Update { whole: true, .. }
        ));
        let (state, _) = loaded(3);
        state.set("a", &2).unwrap();
        assert!(matches!(
            state.end_request(false),
            Outcome::Update { whole: false, .. }
        ));
    }

    #[test]
    fn an_unreadable_record_is_removed_by_the_next_write_and_a_gone_one_is_not() {
        let id = PipelineId::generate();
        for (leftover, removal) in [(true, Some(Removal { id, version: None })), (false, None)] {
            let state = PipelineState::from_origin(Origin::Expired { id, leftover }, Data::new());
            state.set("a", &1).unwrap();
            let Outcome::Create { replacing, .. } = state.end_request(false) else {
                panic!("a create")
            };
            assert_eq!(replacing, removal);
            let cleared = PipelineState::from_origin(Origin::Expired { id, leftover }, Data::new());
            cleared.clear().unwrap();
            let expected = match removal {
                Some(removal) => Outcome::Delete(removal),
                None => Outcome::ExpireCookie,
            };
            assert_eq!(cleared.end_request(false), expected);
        }
    }

    #[test]
    fn a_discarded_request_keeps_only_the_security_writes() {
        let id = PipelineId::generate();
        let fields = object(json!({"a": 1, "nonce": "n"}));
        let state = PipelineState::from_origin(Origin::Loaded { id, version: 4 }, fields);
        state.set("a", &2).unwrap();
        state.remove_secured("nonce").unwrap();
        state.set("b", &1).unwrap();
        let Outcome::Update {
            id: updated,
            version,
            data,
            ..
        } = state.end_request(true)
        else {
            panic!("the nonce's consumption is written")
        };
        assert_eq!((updated, version), (id, 4));
        assert_eq!(to_json(&data), json!({"a": 1}), "only the nonce is gone");

        let (state, id) = loaded(4);
        state.set("a", &2).unwrap();
        state.clear_secured().unwrap();
        assert_eq!(
            state.end_request(true),
            Outcome::Delete(Removal {
                id,
                version: Some(4)
            })
        );

        let (state, _) = loaded(4);
        state.set("a", &2).unwrap();
        assert_eq!(state.end_request(true), Outcome::Unchanged);
    }

    #[test]
    fn a_forged_cookie_cleared_only_expires_the_cookie() {
        let state = PipelineState::from_origin(Origin::New { had_cookie: true }, Data::new());
        state.clear().unwrap();
        assert_eq!(state.end_request(false), Outcome::ExpireCookie);
        let fresh = PipelineState::detached();
        fresh.clear().unwrap();
        assert_eq!(fresh.end_request(false), Outcome::Unchanged);
    }
}
