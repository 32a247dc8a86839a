//! What one store operation sends (its command, whether running it twice
//! does no harm, the script it runs), where a redirect sends it next, and
//! what it gets back.

use redis::{Cmd, ErrorKind, RedisError, RedisResult, ServerErrorKind, Value};

use super::scripts::Lua;

/// One operation's command and how it may be sent.
pub(super) struct Request<'a> {
    pub(super) command: &'a Cmd,
    /// Running it twice does no harm (a load; a plain delete without
    /// durability), so it may be sent again after its connection dropped
    /// while it was in flight.
    pub(super) idempotent: bool,
    /// A write: with durability, `WAIT` rides behind it in the same
    /// pipeline.
    pub(super) write: bool,
    /// The script it runs by `EVALSHA`, loaded after a `NOSCRIPT` (nothing
    /// ran: Redis restarted or flushed its scripts, a replica took over, a
    /// node joined) before the command is sent again.
    pub(super) script: Option<&'a Lua>,
}

/// A node an `ASK` redirect names: where the next send of a command goes.
#[derive(Debug, Clone, PartialEq, Eq)]
// Without the cluster feature nothing makes one (no redirect is followed).
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
pub(super) struct Node {
    pub(super) host: String,
    pub(super) port: u16,
}

/// A reply, and with durability how many replicas acknowledged the write.
pub(super) type Reply = (Value, Option<i64>);

/// The command's reply and, when `waited`, `WAIT`'s count, from a
/// pipeline's replies (the command's first, then `WAIT`'s).
pub(super) fn replies_of(replies: Vec<Value>, waited: bool) -> RedisResult<Reply> {
    let mut replies = replies.into_iter();
    let Some(reply) = replies.next() else {
        return Err(RedisError::from((
            ErrorKind::UnexpectedReturnType,
            "a pipeline answered no reply",
        )));
    };
    let reply = reply.extract_error()?;
    if !waited {
        return Ok((reply, None));
    }
    let Some(waited) = replies.next() else {
        return Err(RedisError::from((
            ErrorKind::UnexpectedReturnType,
            "a write and WAIT answered fewer than two replies",
        )));
    };
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

/// Whether the server did not know the script (`EVALSHA` ran nothing).
pub(super) fn no_script(error: &RedisError) -> bool {
    error.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}
