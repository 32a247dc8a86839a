//! Whether a failed command was ever sent: a redis-rs error raised before
//! the command reached the connection means nothing was written
//! ([`StoreError::Unreachable`]), any other failure of a write leaves its
//! outcome unknown ([`StoreError::Backend`]).

use redis::{ErrorKind, RedisError, ServerErrorKind};

use crate::store::StoreError;

/// Whether `error` was raised before the command was sent, or by a server
/// that refused it without running it: nothing was written.
///
/// - The connection could not be made: refused (the server is down; a
///   `ConnectionManager` reconnecting answers the command with the
///   reconnect's error).
/// - A reconnect that failed its handshake (authentication), or a client
///   that refused the command itself.
/// - A cluster that did not run it (a redirect, a failover, a node not
///   found, a replica refusing a write), or a script the server did not know (`NOSCRIPT`).
///
/// A connection that broke (reset, broken pipe, end of file) is not
/// among them: the command may have left before it broke.
pub(crate) fn never_sent(error: &RedisError) -> bool {
    // Refused (or, for a unix socket, no such file): only connecting
    // fails so; a `ConnectionManager` reconnecting answers the command
    // with its reconnect's error.
    if error.is_connection_refusal() {
        return true;
    }
    not_run_by_cluster(error)
        || matches!(
            error.kind(),
            ErrorKind::AuthenticationFailed
                | ErrorKind::InvalidClientConfig
                | ErrorKind::Client
                | ErrorKind::Server(ServerErrorKind::NoScript)
        )
}

/// Whether a cluster answered `error` without running the command: a
/// redirect, a failover or a load in progress, a replica refusing a write,
/// or no connection to the node that serves the slot. Such a command is
/// safe to send again, whatever it is (`retry.rs`).
pub(super) fn not_run_by_cluster(error: &RedisError) -> bool {
    matches!(
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
    )
}

impl From<RedisError> for StoreError {
    /// [`StoreError::Unreachable`] for an error raised before the command
    /// was sent (a refused connection, a failed reconnect handshake, a
    /// client-side refusal, a cluster redirect, `NOSCRIPT`),
    /// [`StoreError::Backend`] for any other.
    fn from(error: RedisError) -> Self {
        if never_sent(&error) {
            Self::unreachable(error)
        } else {
            Self::backend(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn only_errors_raised_before_sending_say_nothing_was_sent() {
        let io = |kind: io::ErrorKind| RedisError::from(io::Error::from(kind));
        assert!(never_sent(&io(io::ErrorKind::ConnectionRefused)));
        let moved = RedisError::from((ErrorKind::Server(ServerErrorKind::Moved), "MOVED"));
        assert!(never_sent(&moved));
        // A connection that broke may have carried the command first.
        for kind in [
            io::ErrorKind::BrokenPipe,
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::UnexpectedEof,
            io::ErrorKind::TimedOut,
        ] {
            assert!(!never_sent(&io(kind)), "{kind:?}");
        }
        let script = RedisError::from((ErrorKind::Server(ServerErrorKind::ResponseError), "ERR"));
        assert!(!never_sent(&script));
        assert!(matches!(
            StoreError::from(io(io::ErrorKind::ConnectionRefused)),
            StoreError::Unreachable(_)
        ));
        assert!(matches!(
            StoreError::from(io(io::ErrorKind::ConnectionReset)),
            StoreError::Backend(_)
        ));
    }
}
