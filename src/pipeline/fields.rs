//! How a flow is laid out in its [`PipelineState`](crate::PipelineState):
//! one top-level field per concern, so that concurrent requests conflict
//! exactly when they move the same thing (two submissions of one step both
//! move `step_index`; the second is refused).

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

/// The whole flow as stored. Besides the fields named above: `flow`, the
/// flow kind; `uid`, the starting user's id (`null` when anonymous);
/// `signature`, that of the step list that started the flow.
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
        ];
        expected.sort_unstable();
        assert_eq!(keys, expected);
    }
}
