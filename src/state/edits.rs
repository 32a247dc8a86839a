//! The fields a request changed one by one (`set`, `remove`), each with the
//! value it had when loaded: what the flush diffs and what `revert` puts
//! back, without copying the loaded state at the first change. A request
//! that changes one field of a large state copies that field only.

use crate::{
    merge::Change,
    record::{Data, Field},
};

/// The loaded value of every field changed since the load, in the order of
/// their first change.
#[derive(Debug, Default, Clone)]
pub(crate) struct Edits(Vec<(String, Option<Field>)>);

impl Edits {
    /// Notes `field`'s loaded value at its first change; later changes of
    /// the same field keep the first (the loaded) value.
    pub(crate) fn record(&mut self, field: &str, before: Option<Field>) {
        if !self.0.iter().any(|(name, _)| name == field) {
            self.0.push((field.to_owned(), before));
        }
    }

    /// Puts the loaded values back into `data`, leaving no edit.
    pub(crate) fn undo(&mut self, data: &mut Data) {
        for (field, before) in self.0.drain(..).rev() {
            match before {
                Some(value) => data.insert(field, value),
                None => data.remove(&field),
            };
        }
    }

    /// `data` as loaded: a copy with the loaded values put back.
    pub(crate) fn loaded(&self, data: &Data) -> Data {
        let mut loaded = data.clone();
        self.clone().undo(&mut loaded);
        loaded
    }

    /// The changed fields whose value differs from the loaded one (a field
    /// set back to its loaded value is no change).
    pub(crate) fn changes(&self, data: &Data) -> Vec<Change> {
        self.0
            .iter()
            .filter(|(field, before)| data.get(field) != before.as_ref())
            .map(|(field, before)| Change {
                field: field.clone(),
                before: before.clone(),
            })
            .collect()
    }

    /// [`changes`](Self::changes), with the loaded values moved out rather
    /// than copied: the edits are left empty.
    pub(crate) fn take_changes(&mut self, data: &Data) -> Vec<Change> {
        self.0
            .drain(..)
            .filter(|(field, before)| data.get(field) != before.as_ref())
            .map(|(field, before)| Change { field, before })
            .collect()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::record::{field, object, to_json};

    #[test]
    fn the_first_value_is_the_loaded_one_and_undo_restores_it() {
        let mut data = object(json!({"a": 1, "b": 2}));
        let mut edits = Edits::default();
        edits.record("a", data.insert("a".into(), field(&10).unwrap()));
        edits.record("a", data.insert("a".into(), field(&11).unwrap()));
        edits.record("c", data.insert("c".into(), field(&3).unwrap()));
        edits.record("b", data.remove("b"));
        let changes = edits.changes(&data);
        let fields: Vec<_> = changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["a", "c", "b"]);
        assert_eq!(edits.clone().take_changes(&data), changes);
        assert_eq!(changes[0].before.as_ref().map(|b| b.get()), Some("1"));
        assert!(changes[1].before.is_none());
        assert_eq!(to_json(&edits.loaded(&data)), json!({"a": 1, "b": 2}));
        edits.undo(&mut data);
        assert_eq!(to_json(&data), json!({"a": 1, "b": 2}));
        assert!(edits.is_empty());
    }

    #[test]
    fn a_field_set_back_to_its_loaded_value_is_no_change() {
        let mut data = object(json!({"a": 1}));
        let mut edits = Edits::default();
        edits.record("a", data.insert("a".into(), field(&2).unwrap()));
        data.insert("a".into(), field(&1).unwrap());
        assert!(edits.changes(&data).is_empty());
    }
}
