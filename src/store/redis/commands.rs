//! The commands: one per operation, each on one key, with `WAIT` pipelined
//! after writes when durability is on.

use std::time::Duration;

use redis::{Value, cmd};

use super::{
    RedisConnection, RedisStore,
    request::Request,
    scripts::{COMPARE_AND_SET, LOAD},
};
use crate::store::{CasOutcome, Store, StoreError};

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
        let (command, script) = match refresh {
            Some(ttl) => {
                let mut command = cmd("EVALSHA");
                command
                    .arg(LOAD.script.get_hash())
                    .arg(1)
                    .arg(key)
                    .arg(seconds(ttl));
                (command, Some(&*LOAD))
            }
            None => (cmd("GET").arg(key).take(), None),
        };
        let request = Request {
            command: &command,
            idempotent: true,
            write: false,
            script,
        };
        match self.run_for_reply(&request).await? {
            Ok((reply, _)) => redis::from_redis_value(reply)
                .map_err(|error| StoreError::Protocol(format!("a load answered {error}"))),
            // Something other than a string under the key (planted, or
            // another application's): an unreadable record, not an outage.
            Err(error) if error.code() == Some("WRONGTYPE") => Ok(Some(Vec::new())),
            Err(error) => Err(error.into()),
        }
    }

    async fn create(&self, key: &str, record: &[u8], ttl: Duration) -> Result<bool, StoreError> {
        let command = cmd("SET")
            .arg(key)
            .arg(record)
            .arg("NX")
            .arg("EX")
            .arg(seconds(ttl))
            .take();
        let request = Request {
            command: &command,
            idempotent: false,
            write: true,
            script: None,
        };
        let (reply, acknowledged) = self.run(&request).await?;
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
        let request = Request {
            command: &command,
            // A second `DEL` after a first that landed deletes nothing, but
            // with durability its `WAIT` would then run on a connection
            // that wrote nothing and confirm at once: sent once only.
            idempotent: self.durability.is_none(),
            write: true,
            script: None,
        };
        let (reply, acknowledged) = self.run(&request).await?;
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
        // `WAIT` can ride in the same pipeline when durability is on.
        let mut command = cmd("EVALSHA");
        command
            .arg(COMPARE_AND_SET.script.get_hash())
            .arg(1)
            .arg(key)
            .arg(version);
        if let Some((record, ttl)) = replacement {
            command.arg(record).arg(seconds(ttl));
        }
        let request = Request {
            command: &command,
            idempotent: false,
            write: true,
            script: Some(&COMPARE_AND_SET),
        };
        let (reply, acknowledged) = self.run(&request).await?;
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
