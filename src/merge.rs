//! Field-level changes, and re-applying them on top of a newer record when a
//! concurrent request wrote first.

use crate::record::{Data, Field};

/// One top-level field this request changed: its value when loaded
/// (`None`: absent). Its value now is in the request's state, which the
/// writer holds beside the changes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Change {
    pub(crate) field: String,
    pub(crate) before: Option<Field>,
}

/// The fields whose values differ between the loaded state and the current one.
pub(crate) fn diff(loaded: &Data, current: &Data) -> Vec<Change> {
    let changed = current
        .iter()
        .filter(|(field, value)| loaded.get(*field) != Some(*value))
        .map(|(field, _)| Change {
            field: field.clone(),
            before: loaded.get(field).cloned(),
        });
    let removed = loaded
        .iter()
        .filter(|(field, _)| !current.contains_key(*field))
        .map(|(field, value)| Change {
            field: field.clone(),
            before: Some(value.clone()),
        });
    changed.chain(removed).collect()
}

/// Applies `changes` (with their values in `ours`, the request's state) to a
/// newer record's data, unless a concurrent writer changed one of the same
/// fields: then that field is returned and `newer` is left as it was.
pub(crate) fn rebase<'a>(
    changes: &'a [Change],
    ours: &Data,
    newer: &mut Data,
) -> Result<(), &'a str> {
    if let Some(clash) = changes
        .iter()
        .find(|change| newer.get(&change.field) != change.before.as_ref())
    {
        return Err(&clash.field);
    }
    for change in changes {
        match ours.get(&change.field) {
            Some(value) => newer.insert(change.field.clone(), value.clone()),
            None => newer.remove(&change.field),
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{object as data, to_json};
    use serde_json::json;

    #[test]
    fn diff_finds_set_changed_and_removed_fields_only() {
        let loaded = data(json!({"same": 1, "changed": 1, "removed": 1}));
        let current = data(json!({"same": 1, "changed": 2, "added": 3}));
        let mut changes = diff(&loaded, &current);
        changes.sort_by(|a, b| a.field.cmp(&b.field));
        let fields: Vec<_> = changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["added", "changed", "removed"]);
        let before: Vec<_> = changes
            .iter()
            .map(|c| c.before.as_ref().map(|b| b.get()))
            .collect();
        assert_eq!(before, [None, Some("1"), Some("1")]);
    }

    #[test]
    fn rebase_keeps_the_other_writers_fields() {
        let loaded = data(json!({"a": 1, "b": 1, "d": 1}));
        let ours = data(json!({"a": 2, "b": 1}));
        let changes = diff(&loaded, &ours);
        let mut newer = data(json!({"a": 1, "b": 5, "c": 9, "d": 1}));
        rebase(&changes, &ours, &mut newer).unwrap();
        assert_eq!(to_json(&newer), json!({"a": 2, "b": 5, "c": 9}));
    }

    #[test]
    fn rebase_refuses_a_field_the_other_writer_changed() {
        let loaded = data(json!({"a": 1}));
        let ours = data(json!({"a": 2}));
        let changes = diff(&loaded, &ours);
        let mut newer = data(json!({"a": 3}));
        assert_eq!(rebase(&changes, &ours, &mut newer), Err("a"));
        assert_eq!(to_json(&newer), json!({"a": 3}));
    }

    #[test]
    fn rebase_refuses_a_field_the_other_writer_removed() {
        let loaded = data(json!({"a": 1}));
        let ours = data(json!({"a": 2}));
        let changes = diff(&loaded, &ours);
        let mut newer = Data::new();
        assert_eq!(rebase(&changes, &ours, &mut newer), Err("a"));
    }
}
