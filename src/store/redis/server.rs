//! Checking a server when connecting: `GETEX` must be there (Redis 6.2 or
//! later), and a server without it is refused with the version it runs.

use redis::{ErrorKind, RedisError, RedisResult, ServerErrorKind, Value, aio::ConnectionLike, cmd};

use crate::store::StoreError;

/// The oldest Redis this crate runs on: the first with `GETEX`.
pub(crate) const MINIMUM_VERSION: &str = "6.2";

/// Refuses a server without `GETEX` (Redis older than 6.2, or the command
/// renamed away). `GETEX` without a key is answered with an arity error by
/// a server that has it and "unknown command" by one that has not; neither
/// touches a key, so an ACL limited to the layer's prefix allows it.
pub(crate) async fn check_server(connection: &mut impl ConnectionLike) -> Result<(), StoreError> {
    if has_getex(probe().query_async(connection).await)? {
        return Ok(());
    }
    let info = cmd("INFO").arg("server").query_async(connection).await;
    Err(StoreError::ServerTooOld {
        found: version_in(info),
        needed: MINIMUM_VERSION,
    })
}

/// The command that tells whether a server has `GETEX`.
pub(crate) fn probe() -> redis::Cmd {
    cmd("GETEX")
}

/// Whether the answer to [`probe`] says the server has `GETEX`.
pub(crate) fn has_getex(answer: RedisResult<Value>) -> Result<bool, StoreError> {
    // A command routed to one cluster node answers its error as a value.
    match answer.and_then(Value::extract_error) {
        Err(error) if unknown_command(&error) => Ok(false),
        Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::ResponseError) => Ok(true),
        Err(error) => Err(error.into()),
        Ok(other) => Err(StoreError::Protocol(format!(
            "GETEX without a key answered {other:?}"
        ))),
    }
}

fn unknown_command(error: &RedisError) -> bool {
    error
        .detail()
        .is_some_and(|detail| detail.starts_with("unknown command"))
        || error.to_string().contains("unknown command")
}

/// The `redis_version` in an answer to `INFO server`, or why it is not
/// known.
pub(crate) fn version_in(info: RedisResult<Value>) -> String {
    let text = match info {
        Ok(Value::BulkString(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        Ok(Value::VerbatimString { text, .. }) => text,
        // A cluster connection answers a map of node to reply.
        Ok(Value::Map(nodes)) => nodes
            .into_iter()
            .filter_map(|(_, reply)| match reply {
                Value::BulkString(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
                Value::VerbatimString { text, .. } => Some(text),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Ok(other) => return format!("unknown (INFO answered {other:?})"),
        Err(error) => return format!("unknown (INFO failed: {error})"),
    };
    let mut versions: Vec<&str> = text
        .lines()
        .filter_map(|line| line.trim().strip_prefix("redis_version:"))
        .collect();
    versions.sort_unstable();
    versions.dedup();
    if versions.is_empty() {
        "unknown".to_owned()
    } else {
        versions.join(", ")
    }
}
