//! How a flow ends, and how an ended flow answers its own replays. Within
//! the pipeline's replay window an ended flow's record is not deleted but
//! replaced by a small one ([`Stored::ended`]: who and what the flow was,
//! how it ended, where a finished one sent the person, a hash of its last
//! nonce), and its cookie lives as long, so a refresh, a Back or a callback
//! delivered again from the same browser is answered by how it ended, never
//! as a flow of another browser.

use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{
    FlowError, HowEnded,
    fields::{Ended, Stored},
};
use crate::{
    PipelineState,
    backend::{Lifetime, unix_now},
    cookies::{CookieSlot, Ticket},
};

/// Ends the flow in `state` as `how`: its record becomes the ended record
/// for `window` (its cookie along), or, with no window, is deleted. Kept
/// even if the answer is a server error: an ended flow stays ended.
pub(crate) fn end_flow(
    state: &PipelineState,
    how: HowEnded,
    location: Option<String>,
    window: Duration,
) -> Result<(), FlowError> {
    let stored = match state.read::<Stored>() {
        Ok(stored) if !window.is_zero() => stored,
        // No window, or not a flow that can say what it was: gone.
        _ => return Ok(state.clear_secured()?),
    };
    let location = location.or_else(|| stored.ended.as_ref().and_then(|e| e.location.clone()));
    let ended = stored.ended(Ended { how, location });
    state.replace_secured(&ended)?;
    let deadline = unix_now().saturating_add(window.as_secs());
    state.set_lifetime(Lifetime {
        idle: Some(window),
        deadline: Some(deadline),
    });
    if let CookieSlot::Flow(mut cookie) = state.cookie_slot() {
        let ticket = cookie.ticket.get_or_insert_with(|| Ticket {
            pipeline: ended.pipeline.clone(),
            kind: ended.kind.clone(),
            deadline: None,
            return_to: ended.return_to.clone(),
        });
        ticket.deadline = Some(deadline);
        cookie.renew = true;
        state.set_cookie_slot(CookieSlot::Flow(cookie));
    }
    Ok(())
}

/// What the ended record keeps of a consumed nonce: its hash, enough to
/// tell a replay of the flow's own callback from a forged `state`, and of
/// no use to anyone who reads the record.
pub(crate) fn spent(nonce: &str) -> String {
    let digest = Sha256::digest(nonce.as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Whether `presented` is the nonce the flow last consumed.
pub(crate) fn is_spent(stored: &Stored, presented: &str) -> bool {
    stored
        .spent
        .as_deref()
        .is_some_and(|hash| hash == spent(presented))
}
