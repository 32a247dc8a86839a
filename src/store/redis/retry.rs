//! Which failed commands are sent again, and when: a command the server
//! refused without running it always (a few times, for a cluster that is
//! moving slots or failing over), one that may have run only when running it
//! twice does no harm, a write whose outcome is unknown never.

use std::time::Duration;

use redis::{ErrorKind, RedisError, ServerErrorKind};

/// How often a command a cluster refused without running it is sent again
/// (a redirect, a failover in progress), with a pause that grows from 0 to
/// 200 ms: about 0.9 s in all, and the layer's `store_timeout` bounds it
/// too.
const REDIRECT_RETRIES: u32 = 8;

/// Whether a failed command is sent again, and after what pause:
/// `attempt` counts the sends so far, less one.
pub(super) fn retry_after(error: &RedisError, idempotent: bool, attempt: u32) -> Option<Duration> {
    let redirected = matches!(
        error.kind(),
        ErrorKind::Server(
            ServerErrorKind::Moved
                | ServerErrorKind::Ask
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::MasterDown
                | ServerErrorKind::BusyLoading
                | ServerErrorKind::ReadOnly
        ) | ErrorKind::ClusterConnectionNotFound
    );
    if redirected {
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

/// Sends `$body` (an expression over `$connection`, a connection from
/// `$store`) until it succeeds or [`retry_after`] says to stop.
macro_rules! with_retries {
    ($store:expr, idempotent = $idempotent:expr, |$connection:ident| $body:expr) => {{
        let mut $connection = $store.connection.connection().await?;
        let mut attempt = 0u32;
        loop {
            let result: RedisResult<_> = $body;
            match result {
                Ok(value) => break Ok::<_, StoreError>(value),
                Err(error) => match retry_after(&error, $idempotent, attempt) {
                    Some(pause) => {
                        tracing::debug!(%error, attempt, "redis command not run or lost; sending it again");
                        if !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                        attempt += 1;
                    }
                    None => break Err(StoreError::from(error)),
                },
            }
        }
    }};
}

pub(super) use with_retries;

#[cfg(test)]
mod tests {
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
