//! Which of a flow's nonces a request brought back: the outer flow's, or a
//! nested run's. Finding the presented value in the request is the
//! lifecycle's business; comparing and consuming it is this file's.

use super::{
    FlowError, Nonce,
    ended::spent,
    fields::{NESTED, NONCE, SPENT, Stored},
    scope::Scope,
};
use crate::PipelineState;

/// Compares `presented` in constant time with the flow's live nonce and the
/// live nonce of every nested run, and consumes the one it matches (kept
/// even if the answer is a server error): that scope's callback steps
/// may run in this request.
///
/// Every live nonce is compared, whichever matches. No match is
/// [`FlowError::NonceReplayed`] when no scope has a live nonce left (a
/// replay is all it can be), [`FlowError::NonceMismatch`] otherwise (which
/// scope a stale value was meant for cannot be known); so is a value
/// that matches two (only a planted record can hold two equal nonces).
/// Refusals change nothing.
pub(crate) fn verify_nonce(
    state: &PipelineState,
    stored: &Stored,
    presented: &str,
) -> Result<Scope, FlowError> {
    let live = std::iter::once((Scope::Outer, stored.nonce.as_deref())).chain(
        stored
            .nested
            .iter()
            .map(|(name, run)| (Scope::Nested(name.clone()), run.nonce.as_deref())),
    );
    let mut any_live = false;
    let mut matched = Vec::new();
    for (scope, nonce) in live {
        let Some(nonce) = nonce else { continue };
        any_live = true;
        if Nonce::from_stored(nonce.to_owned()).matches(presented) {
            matched.push(scope);
        }
    }
    let scope = match (matched.pop(), matched.is_empty()) {
        (Some(scope), true) => scope,
        (None, _) if !any_live => return Err(FlowError::NonceReplayed),
        _ => return Err(FlowError::NonceMismatch),
    };
    match &scope {
        Scope::Outer => {
            state.remove_secured(NONCE)?;
            // Once the flow ends, its replay is told from a forged one by
            // this.
            state.set_secured(SPENT, &spent(presented))?;
        }
        Scope::Nested(name) => {
            let mut runs = stored.nested.clone();
            if let Some(run) = runs.get_mut(name) {
                run.nonce = None;
            }
            state.set_secured(NESTED, &runs)?;
        }
    }
    Ok(scope)
}
