//! After the handler: encoding the [`Outcome`] the handle gave and writing
//! it (at most one round trip unless a concurrent writer forces a merge).

use std::{sync::Arc, time::Duration};

use http::HeaderValue;

use crate::{
    backend::{Claimed, Committed, Lifetime, timed},
    config::Config,
    cookies::CookieSlot,
    id::PipelineId,
    log_id::log_id,
    merge::{Change, rebase},
    metrics::{self, Operation, Wrote},
    record::{Data, decode, encode, next_version},
    state::{Outcome, PipelineState, Removal},
    store::{CasOutcome, Store, StoreError},
};

/// How many times a write is re-applied on top of newer records before the
/// request gives up with a conflict. Each attempt is one round trip, and only
/// requests that race on other fields of the same flow get here. Every lost
/// attempt means another writer succeeded, so a burst of up to this many
/// writers on different fields always completes; the bound only stops a
/// request from starving under endless contention.
const MAX_REBASES: usize = 32;

/// How one state's write went.
#[derive(Debug)]
enum Written {
    /// Written (or nothing needed); the `Set-Cookie`s to send, if the id
    /// changed.
    Saved(Vec<HeaderValue>),
    /// Not written: why.
    Refused(Refusal),
}

/// Why a write did not happen; the response future answers with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A concurrent request changed the same fields, or cleared the flow.
    Conflict,
    /// The record is over the size limit; nothing was written.
    TooLarge,
    /// The store could not be reached: the write was never sent, nothing
    /// was written.
    Unavailable,
    /// The write was sent and its outcome is unknown: it may still have
    /// been applied.
    NotConfirmed,
}

/// How the request's writes went: the `Set-Cookie`s of the writes that
/// landed, and the first refusal, if any, which answers the request.
#[derive(Debug, Default)]
pub(crate) struct Flushed {
    pub(crate) cookies: Vec<HeaderValue>,
    pub(crate) refused: Option<Refusal>,
}

/// Writes what the request changed in each of its states (usually one: the
/// browser's, or the flow a pipeline step ran), in turn. Once one write is
/// refused, the request's answer is that refusal and the later states send
/// only the engine's security writes (a nonce spent, a flow ended), which
/// hold whatever else fails; the cookies of every write that landed go out
/// with the answer, so no record is left without its cookie.
pub(crate) async fn write_all<St: Store>(
    store: &St,
    config: &Config,
    outcomes: Vec<(Outcome, PipelineState)>,
) -> Flushed {
    let mut flushed = Flushed::default();
    for (outcome, state) in outcomes {
        let outcome = match flushed.refused {
            None => outcome,
            Some(_) => state.secured_outcome(),
        };
        let ttl = state
            .lifetime()
            .map_or(config.ttl, |lifetime| lifetime.ttl(config.ttl));
        let slot = state.cookie_slot();
        // A flow cookie whose ticket changed is set again with the write
        // that keeps its record (a create sets it anyway; a delete expires
        // it).
        let renew = matches!(&slot, CookieSlot::Flow(cookie) if cookie.renew)
            && matches!(outcome, Outcome::Update { .. } | Outcome::Unchanged);
        match write(store, config, outcome, &slot, ttl).await {
            Written::Saved(set) => {
                flushed.cookies.extend(set);
                if let (true, Some(id)) = (renew, state.id()) {
                    flushed.cookies.push(config.cookie.set_in(&slot, id));
                }
            }
            Written::Refused(refusal) => {
                flushed.refused.get_or_insert(refusal);
            }
        }
    }
    flushed
}

/// Encodes and writes what the request changed in a state whose id travels
/// in `slot`'s cookie.
async fn write<St: Store>(
    store: &St,
    config: &Config,
    outcome: Outcome,
    slot: &CookieSlot,
    ttl: Duration,
) -> Written {
    let cookie = &config.cookie;
    let result = match outcome {
        Outcome::Unchanged => Ok(Written::Saved(Vec::new())),
        Outcome::Create {
            id,
            data,
            replacing,
            regenerated,
        } => {
            let wrote = if regenerated {
                Wrote::Regenerated
            } else {
                Wrote::Created
            };
            let created = create(store, config, id, encode(1, &data), replacing, wrote, ttl).await;
            created.map(|created| match created {
                Created::Yes(id) => Written::Saved(cookies_for(config, slot, id)),
                Created::Refused(refusal) => Written::Refused(refusal),
            })
        }
        Outcome::Update {
            id,
            version,
            data,
            changes,
            whole,
        } => update(store, config, id, version, data, changes, whole, ttl).await,
        Outcome::Delete(removal) => delete(store, config, removal, slot).await,
        Outcome::ExpireCookie => Ok(Written::Saved(vec![cookie.removal_in(slot)])),
    };
    if matches!(result, Ok(Written::Refused(Refusal::Conflict))) {
        metrics::conflict();
    }
    result.unwrap_or_else(|error| {
        if error.nothing_written() {
            // Known: nothing changed in the store. An operator should look
            // at the store; no data is at risk.
            tracing::warn!(%error, kind = error.kind(), "pipeline state not saved: the store is unreachable, nothing was written; answering 503");
            Written::Refused(Refusal::Unavailable)
        } else {
            tracing::error!(%error, kind = error.kind(), "pipeline state write not confirmed (it may still have been applied): the store failed; answering 503");
            Written::Refused(Refusal::NotConfirmed)
        }
    })
}

/// The `Set-Cookie`s for a record created under `id`: its cookie, and for a
/// new flow the removal of the oldest flows' cookies past the limit.
fn cookies_for(config: &Config, slot: &CookieSlot, id: PipelineId) -> Vec<HeaderValue> {
    let cookie = &config.cookie;
    let mut set = vec![cookie.set_in(slot, id)];
    if let CookieSlot::Flow(flow) = slot {
        set.extend(flow.evict.iter().map(|tag| cookie.flow_removal(tag)));
    }
    set
}

/// What a create did.
enum Created {
    /// Written under this id.
    Yes(PipelineId),
    /// Not written: why.
    Refused(Refusal),
}

fn too_large(id: PipelineId, record: &[u8], limit: usize) -> bool {
    let large = record.len() > limit;
    if large {
        tracing::error!(
            pipeline.log_id = %log_id(id),
            size = record.len(),
            limit,
            "pipeline state not saved: the record is over the size limit; answering 500"
        );
    }
    large
}

/// Creates a new record under a new id. The record the request came with
/// goes first (delete, then create: a failure between the two loses the
/// flow, never leaves two live copies of it); a loaded one only if it still
/// has the loaded version, so a regenerate never undoes a concurrent change
/// or brings back a flow another request cleared.
async fn create<St: Store>(
    store: &St,
    config: &Config,
    mut id: PipelineId,
    record: Vec<u8>,
    replacing: Option<Removal>,
    wrote: Wrote,
    ttl: Duration,
) -> Result<Created, StoreError> {
    if too_large(id, &record, config.max_record_size) {
        return Ok(Created::Refused(Refusal::TooLarge));
    }
    let removed = replacing.is_some();
    if let Some(removal) = replacing {
        match remove(store, config, removal).await? {
            Removed::Yes => {}
            Removed::AlreadyGone => {
                tracing::info!(pipeline.log_id = %log_id(removal.id), "pipeline state not replaced: another request cleared it first, or it expired");
                return Ok(Created::Refused(Refusal::Conflict));
            }
            Removed::Changed => return Ok(Created::Refused(Refusal::Conflict)),
        }
    }
    // A fresh id is 122 random bits, so `NX` refusing it means a collision
    // that should never happen; try another id rather than overwrite.
    for _ in 0..3 {
        let key = config.key(id);
        let created = timed(
            Operation::Create,
            config.store_timeout,
            store.create(&key, &record, ttl),
        )
        .await;
        let created = match created {
            Ok(created) => created,
            // The old record is already deleted: the flow is lost, which
            // is not "nothing written".
            Err(error) if removed && error.nothing_written() => {
                tracing::error!(%error, pipeline.log_id = %log_id(id), "pipeline state not saved: the record it replaces was deleted and the new one never sent; answering 503");
                return Ok(Created::Refused(Refusal::NotConfirmed));
            }
            Err(error) => return Err(error),
        };
        if created {
            metrics::write(wrote);
            return Ok(Created::Yes(id));
        }
        tracing::warn!(pipeline.log_id = %log_id(id), "a new pipeline id was already taken; trying another");
        id = PipelineId::generate();
    }
    Err(StoreError::Protocol(
        "SET NX refused three fresh random ids".to_owned(),
    ))
}

/// Deletes a cleared flow and expires the cookie. A loaded one is deleted
/// only at the version this request loaded: if a concurrent request changed
/// it meanwhile, this request gets the conflict answer. One that is already
/// gone (another request cleared it first, or it expired) is cleared as
/// asked: the answer is the handler's, with the cookie expired.
async fn delete<St: Store>(
    store: &St,
    config: &Config,
    removal: Removal,
    slot: &CookieSlot,
) -> Result<Written, StoreError> {
    match remove(store, config, removal).await? {
        Removed::Yes | Removed::AlreadyGone => {
            metrics::write(Wrote::Cleared);
            Ok(Written::Saved(vec![config.cookie.removal_in(slot)]))
        }
        Removed::Changed => Ok(Written::Refused(Refusal::Conflict)),
    }
}

/// The engine's claim of a flow before its finish hook: a compare-and-delete
/// at the loaded version, now rather than at the flush.
pub(crate) async fn claim<St: Store>(
    store: &St,
    config: &Config,
    id: PipelineId,
    version: u64,
) -> Result<Claimed, StoreError> {
    let removal = Removal {
        id,
        version: Some(version),
    };
    match remove(store, config, removal).await {
        Ok(Removed::Yes) => {
            metrics::write(Wrote::Cleared);
            Ok(Claimed::Yes)
        }
        Ok(Removed::AlreadyGone) => Ok(Claimed::AlreadyGone),
        Ok(Removed::Changed) => Ok(Claimed::Changed),
        Err(error) => {
            store_failed(id, &error, "pipeline flow not claimed: the store failed");
            Err(error)
        }
    }
}

/// The end of a nested run, written now: one compare-and-set at the loaded
/// version, never re-applied on a newer record (a concurrent writer means
/// another request may be ending the same run).
pub(crate) async fn commit<St: Store>(
    store: &St,
    config: &Config,
    id: PipelineId,
    version: u64,
    data: Arc<Data>,
    lifetime: Option<Lifetime>,
) -> Result<Committed, StoreError> {
    let ttl = lifetime.map_or(config.ttl, |lifetime| lifetime.ttl(config.ttl));
    let record = encode(next_version(version), &data);
    match compare_and_set(store, config, id, version, &record, ttl).await {
        Ok(None) => Ok(Committed::TooLarge),
        Ok(Some(CasOutcome::Done)) => {
            metrics::write(Wrote::Updated);
            Ok(Committed::Yes)
        }
        Ok(Some(CasOutcome::Missing)) => {
            tracing::info!(pipeline.log_id = %log_id(id), "pipeline state not committed: the flow was cleared or expired by another request");
            Ok(Committed::AlreadyGone)
        }
        Ok(Some(CasOutcome::Newer(_))) => {
            tracing::info!(pipeline.log_id = %log_id(id), "pipeline state not committed: a concurrent request changed it");
            Ok(Committed::Changed)
        }
        Err(error) => {
            store_failed(id, &error, "pipeline state not committed: the store failed");
            Err(error)
        }
    }
}

/// Logs a mid-request store failure of flow `id` at the level it calls
/// for: `warn` when nothing was written (the store needs looking at),
/// `error` when a write's outcome is unknown (data may be lost).
fn store_failed(id: PipelineId, error: &StoreError, message: &'static str) {
    let (key, kind) = (log_id(id), error.kind());
    if error.nothing_written() {
        tracing::warn!(pipeline.log_id = %key, %error, kind, written = false, "{message}");
    } else {
        tracing::error!(pipeline.log_id = %key, %error, kind, written = "unknown", "{message}");
    }
}

/// What removing a record found.
enum Removed {
    Yes,
    AlreadyGone,
    /// A concurrent request changed it: nothing was removed.
    Changed,
}

/// Removes a record: at its loaded version (compare-and-delete), or
/// whatever it holds when it could not be read.
async fn remove<St: Store>(
    store: &St,
    config: &Config,
    removal: Removal,
) -> Result<Removed, StoreError> {
    let key = config.key(removal.id);
    let Some(version) = removal.version else {
        timed(Operation::Delete, config.store_timeout, store.delete(&key)).await?;
        return Ok(Removed::Yes);
    };
    let outcome = timed(
        Operation::DeleteIfVersion,
        config.store_timeout,
        store.delete_if_version(&key, version),
    )
    .await?;
    Ok(match outcome {
        CasOutcome::Done => Removed::Yes,
        CasOutcome::Missing => Removed::AlreadyGone,
        CasOutcome::Newer(_) => {
            tracing::info!(pipeline.log_id = %log_id(removal.id), "pipeline state not removed: a concurrent request changed it");
            Removed::Changed
        }
    })
}

/// One compare-and-set of flow `id`'s record at `version` (one round
/// trip), shared by the flush's update and the engine's commit; `None` when
/// `record` is over the size limit and nothing was sent.
async fn compare_and_set<St: Store>(
    store: &St,
    config: &Config,
    id: PipelineId,
    version: u64,
    record: &[u8],
    ttl: Duration,
) -> Result<Option<CasOutcome>, StoreError> {
    if too_large(id, record, config.max_record_size) {
        return Ok(None);
    }
    let key = config.key(id);
    let update = store.update(&key, version, record, ttl);
    timed(Operation::Update, config.store_timeout, update)
        .await
        .map(Some)
}

// The outcome's fields, the store and its settings, and the record's TTL:
// bundling them would only name the same eight things twice.
#[allow(clippy::too_many_arguments)]
async fn update<St: Store>(
    store: &St,
    config: &Config,
    id: PipelineId,
    mut version: u64,
    ours: Arc<Data>,
    changes: Vec<Change>,
    whole: bool,
    ttl: Duration,
) -> Result<Written, StoreError> {
    let mut record = encode(next_version(version), &ours);
    for attempt in 0..=MAX_REBASES {
        let Some(outcome) = compare_and_set(store, config, id, version, &record, ttl).await? else {
            return Ok(Written::Refused(Refusal::TooLarge));
        };
        let newer = match outcome {
            CasOutcome::Done => {
                metrics::write(if attempt == 0 {
                    Wrote::Updated
                } else {
                    Wrote::Merged
                });
                return Ok(Written::Saved(Vec::new()));
            }
            CasOutcome::Missing => {
                tracing::info!(
                    pipeline.log_id = %log_id(id),
                    "pipeline state not saved: the flow was cleared or expired by another request"
                );
                return Ok(Written::Refused(Refusal::Conflict));
            }
            CasOutcome::Newer(_) if whole => {
                tracing::info!(
                    pipeline.log_id = %log_id(id),
                    "pipeline state not saved: the whole state was replaced while a concurrent request changed it"
                );
                return Ok(Written::Refused(Refusal::Conflict));
            }
            CasOutcome::Newer(raw) => raw,
        };
        let newer = match decode(&newer) {
            Ok(newer) => newer,
            Err(error) => {
                tracing::warn!(pipeline.log_id = %log_id(id), %error, "pipeline state not saved: the stored record no longer decodes");
                return Ok(Written::Refused(Refusal::Conflict));
            }
        };
        let mut data = newer.data;
        if let Err(field) = rebase(&changes, &ours, &mut data) {
            tracing::info!(
                pipeline.log_id = %log_id(id),
                field,
                "pipeline state not saved: a concurrent request changed the same field"
            );
            return Ok(Written::Refused(Refusal::Conflict));
        }
        version = newer.version;
        record = encode(next_version(version), &data);
    }
    // Every attempt lost to another writer: a storm an operator should
    // look into (one lost race is `info`, above).
    tracing::warn!(pipeline.log_id = %log_id(id), attempts = MAX_REBASES + 1, "pipeline state not saved: too many concurrent writers");
    Ok(Written::Refused(Refusal::Conflict))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    const TTL: Duration = Duration::from_secs(60);

    /// A store whose creates never leave the process, as when Redis refuses
    /// the connection between a regenerate's delete and its create.
    struct CreatesUnsent(MemoryStore);

    impl Store for CreatesUnsent {
        async fn load(
            &self,
            key: &str,
            refresh: Option<Duration>,
        ) -> Result<Option<Vec<u8>>, StoreError> {
            self.0.load(key, refresh).await
        }

        async fn create(&self, _: &str, _: &[u8], _: Duration) -> Result<bool, StoreError> {
            let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
            Err(StoreError::unreachable(refused))
        }

        async fn update(
            &self,
            key: &str,
            version: u64,
            record: &[u8],
            ttl: Duration,
        ) -> Result<CasOutcome, StoreError> {
            self.0.update(key, version, record, ttl).await
        }

        async fn delete(&self, key: &str) -> Result<(), StoreError> {
            self.0.delete(key).await
        }

        async fn delete_if_version(
            &self,
            key: &str,
            version: u64,
        ) -> Result<CasOutcome, StoreError> {
            self.0.delete_if_version(key, version).await
        }
    }

    #[tokio::test]
    async fn a_create_never_sent_after_its_old_record_was_deleted_is_not_confirmed() {
        let (memory, config) = (MemoryStore::new(), Config::default());
        let old = PipelineId::generate();
        let record = encode(1, &Data::default());
        assert!(memory.create(&config.key(old), &record, TTL).await.unwrap());
        let store = CreatesUnsent(memory.clone());

        let removal = Removal {
            id: old,
            version: Some(1),
        };
        let new = PipelineId::generate();
        let regenerated = create(
            &store,
            &config,
            new,
            record.clone(),
            Some(removal),
            Wrote::Regenerated,
            TTL,
        )
        .await;
        assert!(
            matches!(regenerated, Ok(Created::Refused(Refusal::NotConfirmed))),
            "the flow is lost, not untouched"
        );
        assert_eq!(memory.load(&config.key(old), None).await.unwrap(), None);

        // With nothing to replace, the same failure wrote nothing.
        let fresh = create(&store, &config, new, record, None, Wrote::Created, TTL).await;
        assert!(fresh.is_err_and(|error| error.nothing_written()));
    }
}
