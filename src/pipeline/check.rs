//! The checks a stored run passes before any of its steps runs, the same
//! for a flow and for a run nested in one: the pipeline's signature, a kind
//! the pipeline runs, a step index in bounds.

use super::{Corruption, FlowError, definition::Definition};

/// Refuses a run (a flow, or a nested run) that `pipeline` must not
/// continue.
pub(crate) fn check_run<B, R>(
    pipeline: &Definition<B, R>,
    signature: &str,
    kind: &str,
    step_index: u64,
) -> Result<(), FlowError> {
    if signature != pipeline.signature.as_str() {
        return Err(FlowError::SignatureChanged);
    }
    if !pipeline.kinds.iter().any(|known| known == kind) {
        return Err(FlowError::UnknownFlowKind(kind.to_owned()));
    }
    let steps = pipeline.steps.len();
    if usize::try_from(step_index).map_or(true, |index| index > steps) {
        return Err(FlowError::Corrupt(Corruption::StepOutOfBounds {
            index: step_index,
            steps,
        }));
    }
    Ok(())
}
