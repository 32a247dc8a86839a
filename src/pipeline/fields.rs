//! How a flow is laid out in its [`PipelineState`](crate::PipelineState):
//! one top-level field per concern, so that concurrent requests conflict
//! exactly when they move the same thing (two submissions of one step both
//! move `step_index`; the second is refused).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The pipeline's name, so one pipeline never runs another's flow.
pub(crate) const PIPELINE: &str = "pipeline";
/// The index of the step the next request enters.
pub(crate) const STEP_INDEX: &str = "step_index";
/// The flow's nonce; absent once consumed.
pub(crate) const NONCE: &str = "nonce";
/// What the steps bound.
pub(crate) const DATA: &str = "data";
/// The pipeline runs nested in the flow's current step (see
/// [`Flow::nest`](super::Flow::nest)), by inner pipeline name; absent when
/// there are none. One field for all of them: two submissions of one inner
/// step both change it, so the second is refused as for outer steps.
pub(crate) const NESTED: &str = "nested";

/// The runs nested in a flow, by inner pipeline name.
pub(crate) type Runs = BTreeMap<String, Run>;

/// One nested run, as stored under [`NESTED`]: what a flow keeps, less what
/// the outer flow already holds (the pipeline is the key, the user the
/// outer flow's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Run {
    /// The run's flow kind, one of the inner pipeline's.
    pub(crate) flow: String,
    /// The signature of the inner pipeline that started the run.
    pub(crate) signature: String,
    pub(crate) step_index: u64,
    /// Absent once consumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) nonce: Option<String>,
    pub(crate) data: Map<String, Value>,
}

/// The whole flow as stored. Besides the fields named above: `flow`, the
/// flow kind; `uid`, the starting user's id (`null` when anonymous);
/// `signature`, that of the step list that started the flow. Records
/// written before nested runs existed have no `nested` and still decode.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Stored {
    pub(crate) pipeline: String,
    pub(crate) flow: String,
    pub(crate) uid: Option<String>,
    pub(crate) signature: String,
    pub(crate) step_index: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) nonce: Option<String>,
    pub(crate) data: Map<String, Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) nested: Runs,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_match_the_struct() {
        let stored = Stored {
            pipeline: "p".into(),
            flow: "login".into(),
            uid: None,
            signature: "s".into(),
            step_index: 0,
            nonce: Some("n".into()),
            data: Map::new(),
            nested: Runs::from([(
                "idp".to_owned(),
                Run {
                    flow: "login".into(),
                    signature: "s".into(),
                    step_index: 1,
                    nonce: Some("m".into()),
                    data: Map::new(),
                },
            )]),
        };
        let Value::Object(map) = serde_json::to_value(&stored).unwrap() else {
            unreachable!()
        };
        let mut keys: Vec<&str> = map.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut expected = [
            PIPELINE,
            "flow",
            "uid",
            "signature",
            STEP_INDEX,
            NONCE,
            DATA,
            NESTED,
        ];
        expected.sort_unstable();
        assert_eq!(keys, expected);
        let Value::Object(run) = map[NESTED]["idp"].clone() else {
            unreachable!()
        };
        let mut keys: Vec<&str> = run.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["data", "flow", NONCE, "signature", STEP_INDEX]);
    }

    #[test]
    fn a_flow_without_nested_runs_is_stored_as_before_and_old_records_decode() {
        let old = serde_json::json!({
            "pipeline": "p", "flow": "login", "uid": null, "signature": "s",
            "step_index": 0, "nonce": "n", "data": {}
        });
        let stored: Stored = serde_json::from_value(old.clone()).unwrap();
        assert!(stored.nested.is_empty());
        assert_eq!(
            serde_json::to_value(&stored).unwrap(),
            old,
            "no `nested` field"
        );
    }
}
