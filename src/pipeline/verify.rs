//! Which of a flow's nonces a request brought back: the outer flow's, or a
//! nested run's. Finding the presented value in the request is the
//! lifecycle's business; comparing and consuming it is this file's.

use super::{
    FlowError, Nonce,
    fields::{NESTED, NONCE, Stored},
};
use crate::PipelineState;

/// A part of a flow with a nonce and a step index of its own: the outer flow,
/// or the run of the inner pipeline named so (see
/// [`Flow::nest`](super::Flow::nest)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Namespace {
    Outer,
    Nested(String),
}

/// Compares `presented` in constant time with the flow's live nonce and the
/// live nonce of every nested run, and consumes the one it matches (kept
/// even if the answer is a server error): that namespace's callback steps
/// may run in this request.
///
/// Every live nonce is compared, whichever matches. No match is
/// [`FlowError::NonceReplayed`] when no namespace has a live nonce left (a
/// replay is all it can be), [`FlowError::NonceMismatch`] otherwise (which
/// namespace a stale value was meant for cannot be known); so is a value
/// that matches two (only a planted record can hold two equal nonces).
/// Refusals change nothing.
pub(crate) fn verify_nonce(
    state: &PipelineState,
    stored: &Stored,
    presented: &str,
) -> Result<Namespace, FlowError> {
    let live = std::iter::once((Namespace::Outer, stored.nonce.as_deref())).chain(
        stored
            .nested
            .iter()
            .map(|(name, run)| (Namespace::Nested(name.clone()), run.nonce.as_deref())),
    );
    let mut any_live = false;
    let mut matched = Vec::new();
    for (namespace, nonce) in live {
        let Some(nonce) = nonce else { continue };
        any_live = true;
        if Nonce::from_stored(nonce.to_owned()).matches(presented) {
            matched.push(namespace);
        }
    }
    let namespace = match (matched.pop(), matched.is_empty()) {
        (Some(namespace), true) => namespace,
        (None, _) if !any_live => return Err(FlowError::NonceReplayed),
        _ => return Err(FlowError::NonceMismatch),
    };
    match &namespace {
        Namespace::Outer => {
            state.remove_secured(NONCE)?;
        }
        Namespace::Nested(name) => {
            let mut runs = stored.nested.clone();
            if let Some(run) = runs.get_mut(name) {
                run.nonce = None;
            }
            state.set_secured(NESTED, &runs)?;
        }
    }
    Ok(namespace)
}
