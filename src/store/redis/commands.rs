//! The commands: one per operation, each on one key, with `WAIT` pipelined
//! after writes when durability is on.

use std::{sync::LazyLock, time::Duration};

use redis::{ErrorKind, RedisError, RedisResult, Script, ServerErrorKind, Value, cmd, pipe};

use super::{
    RedisConnection, RedisStore,
    retry::{retry_after, with_retries},
};
use crate::store::{CasOutcome, Store, StoreError};

/// The versioned compare-and-set (and compare-and-delete); what it takes
/// and answers is described at its top. It reads the stored version from the
/// record's fixed header (see `record.rs`) without decoding the record.
const COMPARE_AND_SET: &str = include_str!("compare_and_set.lua");

/// The script's SHA1 for `EVALSHA`, and its text for `SCRIPT LOAD` after a
/// `NOSCRIPT` (Redis restarted or flushed its script cache, or a replica
/// took over).
static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(COMPARE_AND_SET));

/// Redis expiries are whole seconds; a partial second is rounded up so a
/// record never lives shorter than asked.
fn seconds(ttl: Duration) -> u64 {
    ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0)
}

impl<C: RedisConnection> Store for RedisStore<C> {
    async fn load(
        &self,
        key: &str,
        refresh: Option<Duration>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let command = match refresh {
            Some(ttl) => cmd("GETEX").arg(key).arg("EX").arg(seconds(ttl)).take(),
            None => cmd("GET").arg(key).take(),
        };
        with_retries!(self, idempotent = true, |connection| {
            match command.query_async(&mut connection).await {
                // Something other than a string under the key (planted, or
                // another application's): an unreadable record, not an
                // outage.
                Err(error) if error.code() == Some("WRONGTYPE") => Ok(Some(Vec::new())),
                result => result,
            }
        })
    }

    async fn create(&self, key: &str, record: &[u8], ttl: Duration) -> Result<bool, StoreError> {
        let command = cmd("SET")
            .arg(key)
            .arg(record)
            .arg("NX")
            .arg("EX")
            .arg(seconds(ttl))
            .take();
        let (reply, acknowledged) = with_retries!(self, idempotent = false, |connection| {
            self.send(&mut connection, &command).await
        })?;
        let created = !matches!(reply, Value::Nil);
        self.confirm(created, acknowledged)?;
        Ok(created)
    }

    async fn update(
        &self,
        key: &str,
        version: u64,
        record: &[u8],
        ttl: Duration,
    ) -> Result<CasOutcome, StoreError> {
        self.compare_and_set(key, version, Some((record, ttl)))
            .await
    }

    async fn delete_if_version(&self, key: &str, version: u64) -> Result<CasOutcome, StoreError> {
        self.compare_and_set(key, version, None).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let command = cmd("DEL").arg(key).take();
        // A second `DEL` after a first that landed deletes nothing, but with
        // durability its `WAIT` would then run on a connection that wrote
        // nothing and confirm at once: sent once only.
        let idempotent = self.durability.is_none();
        let (reply, acknowledged) = with_retries!(self, idempotent = idempotent, |connection| {
            self.send(&mut connection, &command).await
        })?;
        self.confirm(matches!(reply, Value::Int(n) if n > 0), acknowledged)
    }
}

impl<C: RedisConnection> RedisStore<C> {
    /// One run of the compare-and-set script: write `replacement` (record
    /// and TTL), or delete the key when there is none, if the stored version
    /// is `version`.
    async fn compare_and_set(
        &self,
        key: &str,
        version: u64,
        replacement: Option<(&[u8], Duration)>,
    ) -> Result<CasOutcome, StoreError> {
        // `EVALSHA` by hand rather than `Script::invoke_async`, so that
        // `WAIT` can ride in the same pipeline when durability is on; a
        // `NOSCRIPT` (nothing ran: Redis restarted or flushed its scripts)
        // loads the script and sends the command again.
        let mut command = cmd("EVALSHA");
        command.arg(SCRIPT.get_hash()).arg(1).arg(key).arg(version);
        if let Some((record, ttl)) = replacement {
            command.arg(record).arg(seconds(ttl));
        }
        let (reply, acknowledged) = with_retries!(self, idempotent = false, |connection| {
            match self.send(&mut connection, &command).await {
                Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                    match SCRIPT.load_async(&mut connection).await {
                        Ok(_) => self.send(&mut connection, &command).await,
                        Err(error) => Err(error),
                    }
                }
                result => result,
            }
        })?;
        let outcome = match reply {
            Value::Int(1) => CasOutcome::Done,
            Value::Int(0) => CasOutcome::Missing,
            Value::BulkString(current) => CasOutcome::Newer(current),
            other => {
                return Err(StoreError::Protocol(format!(
                    "compare-and-set script answered {other:?}"
                )));
            }
        };
        self.confirm(outcome == CasOutcome::Done, acknowledged)?;
        Ok(outcome)
    }

    /// Sends a write, followed in the same pipeline by `WAIT` when
    /// durability is on. Answers the write's reply and, with `WAIT`, how
    /// many replicas acknowledged.
    async fn send(
        &self,
        connection: &mut C::Connection,
        command: &redis::Cmd,
    ) -> RedisResult<(Value, Option<i64>)> {
        let Some(durability) = self.durability else {
            return command
                .query_async::<Value>(connection)
                .await
                .map(|reply| (reply, None));
        };
        let mut pipeline = pipe();
        pipeline
            .add_command(command.clone())
            .cmd("WAIT")
            .arg(durability.replicas)
            .arg(durability.millis())
            .ignore_errors();
        let replies: Vec<Value> = pipeline.query_async(connection).await?;
        let mut replies = replies.into_iter();
        let (Some(reply), Some(waited)) = (replies.next(), replies.next()) else {
            return Err(RedisError::from((
                ErrorKind::UnexpectedReturnType,
                "a write and WAIT answered fewer than two replies",
            )));
        };
        let reply = reply.extract_error()?;
        let acknowledged = match waited.extract_error()? {
            Value::Int(n) => n,
            other => {
                return Err(RedisError::from((
                    ErrorKind::UnexpectedReturnType,
                    "WAIT answered something other than a number",
                    format!("{other:?}"),
                )));
            }
        };
        Ok((reply, Some(acknowledged)))
    }

    /// A write that changed something, with fewer acknowledgements than
    /// asked for, is not confirmed.
    fn confirm(&self, wrote: bool, acknowledged: Option<i64>) -> Result<(), StoreError> {
        match (self.durability, acknowledged) {
            (Some(durability), Some(acknowledged))
                if wrote && acknowledged < i64::from(durability.replicas) =>
            {
                Err(StoreError::NotReplicated {
                    acknowledged: u32::try_from(acknowledged.max(0)).unwrap_or(0),
                    required: durability.replicas,
                    timeout: durability.timeout,
                })
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_round_up_to_whole_seconds() {
        assert_eq!(seconds(Duration::from_secs(600)), 600);
        assert_eq!(seconds(Duration::from_millis(1500)), 2);
        assert_eq!(seconds(Duration::from_millis(1)), 1);
    }
}
