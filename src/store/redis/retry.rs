//! Which failed commands are sent again, and when: a command the server
//! refused without running it always (a few times, for a cluster that is
//! moving slots or failing over), one that may have run only when running it
//! twice does no harm, a write whose outcome is unknown never. An `ASK`
//! redirect is followed, not sent again where it came from: `ASKING`, then
//! the command, on the node it names (see `asking.rs`).

use std::time::Duration;

use redis::{RedisError, RedisResult, Value, pipe};

use super::{
    RedisConnection, RedisStore, asking,
    request::{Node, Reply, Request, no_script, replies_of},
    sent::not_run_by_cluster,
};
use crate::store::StoreError;

/// How often a command a cluster refused without running it is sent again
/// (a redirect, a failover in progress), with a pause that grows from 0 to
/// 200 ms: about 0.9 s in all, and the layer's `store_timeout` bounds it
/// too. An `ASK` followed counts as a send, without a pause.
pub(super) const REDIRECT_RETRIES: u32 = 8;

/// Whether a failed command is sent again, and after what pause:
/// `attempt` counts the sends so far, less one.
pub(super) fn retry_after(error: &RedisError, idempotent: bool, attempt: u32) -> Option<Duration> {
    if not_run_by_cluster(error) {
        // Not run (a cluster moving slots or failing over): safe to send
        // again, whatever the command, once the cluster has settled.
        let pause = (10u64 << attempt.min(5)).min(200) * u64::from(attempt > 0);
        return (attempt < REDIRECT_RETRIES).then(|| Duration::from_millis(pause));
    }
    if error.is_connection_refusal() {
        // Not run either: the connection could not be opened. A connection
        // that heals has started a new attempt; one more send waits for it.
        // Redis still down answers at once (no pause, no second retry).
        return (attempt == 0).then_some(Duration::ZERO);
    }
    let maybe_run = error.is_unrecoverable_error() || error.is_io_error();
    // Once, at once: the connection kinds that heal have a fresh connection
    // by now (or are making one, which the next command waits for).
    (maybe_run && idempotent && attempt == 0).then_some(Duration::ZERO)
}

impl<C: RedisConnection> RedisStore<C> {
    /// Sends `request` until it succeeds or [`retry_after`] says to stop. A
    /// command a migrating slot's old node answered `ASK` is sent at once
    /// to the node the redirect names, after `ASKING`, for that one send:
    /// the old node did not run it, so this is its first run.
    pub(super) async fn run(&self, request: &Request<'_>) -> Result<Reply, StoreError> {
        Ok(self.run_for_reply(request).await??)
    }

    /// As [`run`](Self::run), the command's own failure apart from the
    /// connection source's (a pool that gave no connection).
    pub(super) async fn run_for_reply(
        &self,
        request: &Request<'_>,
    ) -> Result<RedisResult<Reply>, StoreError> {
        let mut connection = self.connection.connection().await?;
        let mut attempt = 0u32;
        let mut asked = None;
        loop {
            let result = match asked.take() {
                None => self.send(&mut connection, request).await,
                Some(node) => self.send_asking(&node, request).await,
            };
            let error = match result {
                Ok(reply) => return Ok(Ok(reply)),
                Err(error) => error,
            };
            if attempt < REDIRECT_RETRIES
                && let Some(node) = self.ask_target(&error)
            {
                tracing::debug!(%error, attempt, "redis command redirected by ASK; following it");
                asked = Some(node);
                attempt += 1;
                continue;
            }
            match retry_after(&error, request.idempotent, attempt) {
                Some(pause) => {
                    tracing::debug!(%error, attempt, "redis command not run or lost; sending it again");
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                    attempt += 1;
                }
                None => return Ok(Err(error)),
            }
        }
    }

    /// Sends `request` where its key's slot is served; after a `NOSCRIPT`,
    /// loads the script there and sends it once more.
    async fn send(
        &self,
        connection: &mut C::Connection,
        request: &Request<'_>,
    ) -> RedisResult<Reply> {
        match self.send_once(connection, request).await {
            Err(error) if no_script(&error) => {
                let Some(lua) = request.script else {
                    return Err(error);
                };
                // On a cluster, to every master.
                lua.load().query_async::<Value>(connection).await?;
                self.send_once(connection, request).await
            }
            result => result,
        }
    }

    /// Sends a command, a write followed in the same pipeline by `WAIT`
    /// when durability is on.
    async fn send_once(
        &self,
        connection: &mut C::Connection,
        request: &Request<'_>,
    ) -> RedisResult<Reply> {
        let durability = self.durability.filter(|_| request.write);
        let Some(durability) = durability else {
            return request
                .command
                .query_async::<Value>(connection)
                .await
                .map(|reply| (reply, None));
        };
        let mut pipeline = pipe();
        pipeline
            .add_command(request.command.clone())
            .cmd("WAIT")
            .arg(durability.replicas)
            .arg(durability.millis())
            .ignore_errors();
        let replies: Vec<Value> = pipeline.query_async(connection).await?;
        replies_of(replies, true)
    }

    /// The node an `ASK` redirect names, when this store can follow it (its
    /// connection is a cluster's).
    fn ask_target(&self, error: &RedisError) -> Option<Node> {
        asking::target(self, error)
    }
}

#[cfg(test)]
mod tests {
    use redis::{ErrorKind, ServerErrorKind};

    use super::*;

    #[test]
    fn only_commands_that_did_not_run_or_can_run_twice_are_sent_again() {
        let moved = RedisError::from((ErrorKind::Server(ServerErrorKind::Moved), "MOVED"));
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let dropped = RedisError::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        let script = RedisError::from((ErrorKind::Server(ServerErrorKind::ResponseError), "ERR"));

        assert_eq!(retry_after(&moved, false, 0), Some(Duration::ZERO));
        assert_eq!(
            retry_after(&moved, false, 1),
            Some(Duration::from_millis(20))
        );
        assert_eq!(
            retry_after(&moved, false, 7),
            Some(Duration::from_millis(200))
        );
        assert_eq!(retry_after(&moved, false, REDIRECT_RETRIES), None);
        assert_eq!(
            retry_after(&refused, false, 0),
            Some(Duration::ZERO),
            "even a write"
        );
        assert_eq!(retry_after(&refused, false, 1), None);
        assert_eq!(retry_after(&dropped, true, 0), Some(Duration::ZERO));
        assert_eq!(
            retry_after(&dropped, true, 1),
            None,
            "a load is sent again once"
        );
        assert_eq!(
            retry_after(&dropped, false, 0),
            None,
            "a write that may have run is not"
        );
        assert_eq!(retry_after(&script, true, 0), None);
    }
}
