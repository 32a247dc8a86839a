//! The engine's security writes. A consumed nonce and an ended flow are
//! kept even when the response is a server error (which otherwise discards
//! the request's changes), and a flow is claimed, deleted at its loaded
//! version before its finish hook runs, so that it finishes at most once.

use std::sync::Arc;

use super::{Origin, PipelineState};
use crate::{StateError, id::PipelineId, load::BoxFuture, record::Data, store::StoreError};

/// What must be written even if the response is a server error.
#[derive(Debug, Clone)]
pub(super) enum Secured {
    /// The state as loaded, with only the security changes applied.
    Fields(Data),
    /// The flow ended.
    Cleared,
}

/// Deletes a loaded record at its version now, before the response: what
/// the layer gives a loaded handle so the engine can claim a flow without
/// ever talking to a store itself.
pub(crate) trait Claim: Send + Sync + 'static {
    /// Deletes flow `id`'s record if it still has `version`.
    fn claim(
        self: Arc<Self>,
        id: PipelineId,
        version: u64,
    ) -> BoxFuture<Result<Claimed, StoreError>>;
}

/// What a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claimed {
    /// The record was deleted by this request: the flow is this request's
    /// to finish.
    Yes,
    /// Another request deleted it first (or it expired).
    AlreadyGone,
    /// A concurrent request changed it: nothing was deleted.
    Changed,
}

impl PipelineState {
    /// [`remove`](Self::remove), kept even if the response is a server
    /// error: the engine consumes a nonce with it.
    pub(crate) fn remove_secured(&self, field: &str) -> Result<bool, StateError> {
        let removed = self.remove(field)?;
        let mut inner = self.lock();
        let mut fields = match inner.secured.take() {
            Some(Secured::Cleared) => {
                inner.secured = Some(Secured::Cleared);
                return Ok(removed);
            }
            Some(Secured::Fields(fields)) => fields,
            // `remove` set the loaded fields aside (a loaded state), or
            // there were none.
            None => inner.base.clone().unwrap_or_default(),
        };
        fields.remove(field);
        inner.secured = Some(Secured::Fields(fields));
        Ok(removed)
    }

    /// [`clear`](Self::clear), kept even if the response is a server error:
    /// the engine ends a flow with it.
    pub(crate) fn clear_secured(&self) -> Result<(), StateError> {
        self.clear()?;
        self.lock().secured = Some(Secured::Cleared);
        Ok(())
    }

    /// Deletes the loaded record now, at the loaded version, so that of two
    /// requests finishing one flow only one goes on. A state with no stored
    /// record (new, or not from a store) has nothing to race for: claimed.
    pub(crate) async fn claim(&self) -> Result<Claimed, StoreError> {
        let (claimer, id, version) = {
            let inner = self.lock();
            match (&inner.origin, &inner.claimer) {
                _ if inner.claimed => return Ok(Claimed::Yes),
                (Origin::Loaded { id, version }, Some(claimer)) => (claimer.clone(), *id, *version),
                _ => return Ok(Claimed::Yes),
            }
        };
        let claimed = claimer.claim(id, version).await?;
        if claimed == Claimed::Yes {
            self.lock().claimed = true;
        }
        Ok(claimed)
    }
}
