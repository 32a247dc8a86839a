//! After the handler: deciding what to write, and writing it (at most one
//! round trip unless a concurrent writer forces a merge).

use std::{future::Future, sync::Arc, time::Duration};

use http::{HeaderValue, StatusCode};

use crate::{
    config::Shared,
    id::PipelineId,
    merge::{Change, diff, rebase},
    record::{decode, encode},
    state::{Origin, PipelineState, Target},
    store::{Store, StoreError, UpdateOutcome},
};

/// How many times a write is re-applied on top of newer records before the
/// request gives up with a conflict. Each attempt is one round trip, and only
/// requests that race on other fields of the same flow get here. Every lost
/// attempt means another writer succeeded, so a burst of up to this many
/// writers on different fields always completes; the bound only stops a
/// request from starving under endless contention.
const MAX_REBASES: usize = 32;

/// What the request's changes need from the store.
#[derive(Debug)]
pub(crate) enum Plan {
    /// A new record under a new id (`SET NX`), replacing the request's old
    /// key if it had one.
    Create {
        id: PipelineId,
        record: Vec<u8>,
        replacing: Option<PipelineId>,
    },
    /// A compare-and-set of the loaded record.
    Update {
        id: PipelineId,
        version: u64,
        record: Vec<u8>,
        changes: Vec<Change>,
    },
    /// The flow was cleared: delete it and expire the cookie. A loaded flow
    /// is deleted only if it still has the loaded `version`.
    Delete {
        id: PipelineId,
        version: Option<u64>,
    },
    /// Cleared with no flow behind it (the cookie was malformed or forged):
    /// only expire the cookie.
    ExpireCookie,
}

/// How the write went; the response future turns it into the response.
#[derive(Debug)]
pub(crate) enum Flushed {
    /// Written (or nothing needed); a `Set-Cookie` to send, if the id changed.
    Saved(Option<HeaderValue>),
    /// A concurrent request changed the same fields, or cleared the flow.
    Conflict,
    /// The record is over the size limit; nothing was written.
    TooLarge,
    /// The store failed; nothing is known to be written.
    Failed,
}

/// Ends the request's hold on `state` and says what to write, if anything.
pub(crate) fn plan(state: &PipelineState, discard: bool) -> Option<Plan> {
    let inner = state.finish();
    if discard {
        return None;
    }
    let came = inner.origin.came_id();
    match inner.target {
        Target::Fresh(id) if inner.regenerated || !inner.data.is_empty() => Some(Plan::Create {
            id,
            record: encode(1, &inner.data),
            replacing: came,
        }),
        Target::Fresh(_) | Target::Nothing if inner.cleared => match (came, &inner.origin) {
            (Some(id), Origin::Loaded { version, .. }) => Some(Plan::Delete {
                id,
                version: Some(*version),
            }),
            (Some(id), _) => Some(Plan::Delete { id, version: None }),
            (None, Origin::New { had_cookie: true }) => Some(Plan::ExpireCookie),
            (None, _) => None,
        },
        Target::Fresh(_) | Target::Nothing => None,
        Target::Loaded => {
            let Origin::Loaded { id, version } = inner.origin else {
                unreachable!("only a loaded state targets its loaded record")
            };
            let changes = diff(inner.base.as_ref()?, &inner.data);
            (!changes.is_empty()).then(|| Plan::Update {
                id,
                version,
                record: encode(next_version(version), &inner.data),
                changes,
            })
        }
    }
}

/// The version a write gives a record. The stored version is read from
/// Redis, where anything can be planted: at `u64::MAX` it wraps to 0 rather
/// than panic (the compare-and-set only needs it to differ from the last).
fn next_version(version: u64) -> u64 {
    version.wrapping_add(1)
}

/// Whether the response status discards the request's changes.
pub(crate) fn discards(status: StatusCode, discard_on_server_error: bool) -> bool {
    discard_on_server_error && status.is_server_error()
}

/// Runs a store operation under the layer's timeout.
pub(crate) async fn timed<T>(
    limit: Duration,
    operation: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(limit, operation)
        .await
        .unwrap_or(Err(StoreError::Timeout(limit)))
}

/// Carries out a plan.
pub(crate) async fn flush<St: Store>(shared: Arc<Shared<St>>, plan: Plan) -> Flushed {
    let result = match plan {
        Plan::Create {
            id,
            record,
            replacing,
        } => create(&shared, id, record, replacing).await,
        Plan::Update {
            id,
            version,
            record,
            changes,
        } => update(&shared, id, version, record, changes).await,
        Plan::Delete { id, version } => delete(&shared, id, version).await,
        Plan::ExpireCookie => Ok(Flushed::Saved(Some(shared.config.cookie.removal()))),
    };
    result.unwrap_or_else(|error| {
        tracing::error!(%error, "pipeline state write not confirmed (it may still have been applied): the store failed; answering 503");
        Flushed::Failed
    })
}

fn too_large(id: PipelineId, record: &[u8], limit: usize) -> bool {
    let large = record.len() > limit;
    if large {
        tracing::error!(
            pipeline.id = %id,
            size = record.len(),
            limit,
            "pipeline state not saved: the record is over the size limit; answering 500"
        );
    }
    large
}

async fn create<St: Store>(
    shared: &Shared<St>,
    mut id: PipelineId,
    record: Vec<u8>,
    mut replacing: Option<PipelineId>,
) -> Result<Flushed, StoreError> {
    let config = &shared.config;
    if too_large(id, &record, config.max_record_size) {
        return Ok(Flushed::TooLarge);
    }
    // A fresh id is 122 random bits, so `NX` refusing it means a collision
    // that should never happen; try another id rather than overwrite.
    for _ in 0..3 {
        let old_key = replacing.take().map(|old| config.key(old));
        let key = config.key(id);
        let created = timed(
            config.timeout,
            shared
                .store
                .create(&key, &record, config.ttl, old_key.as_deref()),
        )
        .await?;
        if created {
            return Ok(Flushed::Saved(Some(config.cookie.set(id))));
        }
        tracing::warn!(pipeline.id = %id, "a new pipeline id was already taken; trying another");
        id = PipelineId::generate();
    }
    Err(StoreError::Protocol(
        "SET NX refused three fresh random ids".to_owned(),
    ))
}

/// Deletes a cleared flow. A loaded one is deleted only at the version this
/// request loaded: if a concurrent request changed it meanwhile, or cleared
/// it first, this request gets the conflict answer (so of two requests that
/// finish one flow, only the first does).
async fn delete<St: Store>(
    shared: &Shared<St>,
    id: PipelineId,
    version: Option<u64>,
) -> Result<Flushed, StoreError> {
    let config = &shared.config;
    let key = config.key(id);
    let Some(version) = version else {
        timed(config.timeout, shared.store.delete(&key)).await?;
        return Ok(Flushed::Saved(Some(config.cookie.removal())));
    };
    match timed(
        config.timeout,
        shared.store.delete_if_version(&key, version),
    )
    .await?
    {
        UpdateOutcome::Written => Ok(Flushed::Saved(Some(config.cookie.removal()))),
        UpdateOutcome::Missing => {
            tracing::info!(
                pipeline.id = %id,
                "pipeline state not cleared: another request cleared it first, or it expired"
            );
            Ok(Flushed::Conflict)
        }
        UpdateOutcome::Newer(_) => {
            tracing::info!(
                pipeline.id = %id,
                "pipeline state not cleared: a concurrent request changed it"
            );
            Ok(Flushed::Conflict)
        }
    }
}

async fn update<St: Store>(
    shared: &Shared<St>,
    id: PipelineId,
    mut version: u64,
    mut record: Vec<u8>,
    changes: Vec<Change>,
) -> Result<Flushed, StoreError> {
    let config = &shared.config;
    let key = config.key(id);
    for _ in 0..=MAX_REBASES {
        if too_large(id, &record, config.max_record_size) {
            return Ok(Flushed::TooLarge);
        }
        let outcome = timed(
            config.timeout,
            shared.store.update(&key, version, &record, config.ttl),
        )
        .await?;
        let newer = match outcome {
            UpdateOutcome::Written => return Ok(Flushed::Saved(None)),
            UpdateOutcome::Missing => {
                tracing::info!(
                    pipeline.id = %id,
                    "pipeline state not saved: the flow was cleared or expired by another request"
                );
                return Ok(Flushed::Conflict);
            }
            UpdateOutcome::Newer(raw) => raw,
        };
        let newer = match decode(&newer) {
            Ok(newer) => newer,
            Err(error) => {
                tracing::warn!(pipeline.id = %id, %error, "pipeline state not saved: the stored record no longer decodes");
                return Ok(Flushed::Conflict);
            }
        };
        let mut data = newer.data;
        if let Err(field) = rebase(&changes, &mut data) {
            tracing::info!(
                pipeline.id = %id,
                field,
                "pipeline state not saved: a concurrent request changed the same field"
            );
            return Ok(Flushed::Conflict);
        }
        version = newer.version;
        record = encode(next_version(version), &data);
    }
    tracing::info!(pipeline.id = %id, "pipeline state not saved: too many concurrent writers");
    Ok(Flushed::Conflict)
}
