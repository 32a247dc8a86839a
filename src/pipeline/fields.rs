//! How a flow is laid out in its [`PipelineState`](crate::PipelineState):
//! one top-level field per concern, so that concurrent requests conflict
//! exactly when they move the same thing (two submissions of one step both
//! move `step_index`; the second is refused). A flow and a run nested in it
//! start the same way ([`Run::start`]), and the nested runs and the bound
//! data are read and changed here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

use super::{Corruption, FlowError, HowEnded, Nonce, Signature};
use crate::{PipelineState, StateError};

/// The pipeline's name, so one pipeline never runs another's flow.
pub(crate) const PIPELINE: &str = "pipeline";
/// The index of the step the next request enters.
pub(crate) const STEP_INDEX: &str = "step_index";
/// The flow's nonce; absent once consumed.
pub(crate) const NONCE: &str = "nonce";
/// What the steps bound.
pub(crate) const DATA: &str = "data";
/// A hash of the last nonce the flow consumed: tells a replay of its
/// callback from a forged one once the nonce is gone.
pub(crate) const SPENT: &str = "spent";
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
    /// The run's flow kind, one of the inner pipeline's (stored as `flow`,
    /// Sentry's name for it).
    #[serde(rename = "flow")]
    pub(crate) kind: String,
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
    /// The flow kind (stored as `flow`, Sentry's name for it).
    #[serde(rename = "flow")]
    pub(crate) kind: String,
    pub(crate) uid: Option<String>,
    pub(crate) signature: String,
    pub(crate) step_index: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) nonce: Option<String>,
    pub(crate) data: Map<String, Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) nested: Runs,
    /// When the flow ends whatever happens (its pipeline's maximum
    /// lifetime), in seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) deadline: Option<u64>,
    /// Where the application sends the person once the flow is done,
    /// chosen at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) return_to: Option<String>,
    /// See [`SPENT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) spent: Option<String>,
    /// How the flow ended, once it has: its record then stays, emptied, for
    /// the pipeline's replay window, to answer its own replays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ended: Option<Ended>,
}

/// How a flow ended, as its record keeps it for the replay window: no data,
/// no nonce, no identity or token, only what a replay is answered with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Ended {
    pub(crate) how: HowEnded,
    /// Where a finished flow sent the person, for its replays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) location: Option<String>,
}

impl Run {
    /// A run of flow `kind` starting now: at step 0, with `signature`, a
    /// fresh nonce and no data.
    pub(crate) fn start(kind: &str, signature: &Signature) -> Self {
        Self {
            kind: kind.to_owned(),
            signature: signature.as_str().to_owned(),
            step_index: 0,
            nonce: Some(Nonce::generate().as_str().to_owned()),
            data: Map::new(),
        }
    }
}

impl Stored {
    /// A flow of pipeline `pipeline` started by `uid`, as `run` starts.
    pub(crate) fn start(pipeline: &str, uid: Option<String>, run: Run) -> Self {
        Self {
            pipeline: pipeline.to_owned(),
            kind: run.kind,
            uid,
            signature: run.signature,
            step_index: run.step_index,
            nonce: run.nonce,
            data: run.data,
            nested: Runs::new(),
            deadline: None,
            return_to: None,
            spent: None,
            ended: None,
        }
    }

    /// What the record keeps once the flow ended: who and what the flow
    /// was (so the checks still apply to a replay), how it ended, and
    /// nothing the steps bound.
    pub(crate) fn ended(&self, ended: Ended) -> Self {
        Self {
            pipeline: self.pipeline.clone(),
            kind: self.kind.clone(),
            uid: self.uid.clone(),
            signature: self.signature.clone(),
            step_index: self.step_index,
            nonce: None,
            data: Map::new(),
            nested: Runs::new(),
            deadline: None,
            return_to: self.return_to.clone(),
            spent: self.spent.clone(),
            ended: Some(ended),
        }
    }
}

/// The nested runs as the state holds them now.
pub(crate) fn runs(state: &PipelineState) -> Result<Runs, FlowError> {
    Ok(state.get::<Runs>(NESTED)?.unwrap_or_default())
}

/// The run named `name` as the state holds it now.
pub(crate) fn run(state: &PipelineState, name: &str) -> Result<Run, FlowError> {
    runs(state)?.remove(name).ok_or_else(|| missing(name))
}

/// Changes the run named `name`.
pub(crate) fn change_run(
    state: &PipelineState,
    name: &str,
    change: impl FnOnce(&mut Run),
) -> Result<(), FlowError> {
    let mut runs = runs(state)?;
    change(runs.get_mut(name).ok_or_else(|| missing(name))?);
    state.set(NESTED, &runs)?;
    Ok(())
}

/// A run a context refers to is not in the state (it ended, or the state
/// was changed under the step).
pub(crate) fn missing(name: &str) -> FlowError {
    FlowError::Corrupt(Corruption::Fields(format!(
        "the nested run of pipeline `{name}` is missing"
    )))
}

/// Reads `key` from a flow's bound data as `T`.
pub(crate) fn decode_bound<T: DeserializeOwned>(
    data: &Map<String, Value>,
    key: &str,
) -> Result<Option<T>, FlowError> {
    data.get(key)
        .map(|value| {
            T::deserialize(value).map_err(|source| {
                FlowError::State(StateError::Field {
                    field: format!("{DATA}.{key}"),
                    source,
                })
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_match_the_struct() {
        let stored = Stored {
            pipeline: "p".into(),
            kind: "login".into(),
            uid: None,
            signature: "s".into(),
            step_index: 0,
            nonce: Some("n".into()),
            data: Map::new(),
            nested: Runs::from([(
                "idp".to_owned(),
                Run {
                    kind: "login".into(),
                    signature: "s".into(),
                    step_index: 1,
                    nonce: Some("m".into()),
                    data: Map::new(),
                },
            )]),
            deadline: None,
            return_to: None,
            spent: None,
            ended: None,
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
