//! The store's Lua scripts, sent by `EVALSHA`, and loading them into a
//! server's script cache.

use std::sync::LazyLock;

use redis::{Cmd, RedisResult, Script, Value, aio::ConnectionLike};

/// A Lua script the store runs by `EVALSHA`: its text, for `SCRIPT LOAD`
/// after a `NOSCRIPT`, and its SHA1.
pub(super) struct Lua {
    code: &'static str,
    pub(super) script: Script,
}

impl Lua {
    pub(super) fn new(code: &'static str) -> Self {
        Self {
            code,
            script: Script::new(code),
        }
    }

    /// `SCRIPT LOAD` of its text.
    pub(super) fn load(&self) -> Cmd {
        redis::cmd("SCRIPT").arg("LOAD").arg(self.code).take()
    }
}

/// The versioned compare-and-set (and compare-and-delete); what it takes
/// and answers is described at its top. It reads the stored version from the
/// record's fixed header (see `record.rs`) without decoding the record.
/// Sent by `EVALSHA`, its text loaded after a `NOSCRIPT` (Redis restarted
/// or flushed its script cache, a replica took over, a node joined).
pub(super) static COMPARE_AND_SET: LazyLock<Lua> =
    LazyLock::new(|| Lua::new(include_str!("compare_and_set.lua")));

/// The load that refreshes the TTL: `GET`, then `EXPIRE` only for a record
/// of this release's format, in one atomic step (a later release's record
/// keeps its own expiry).
pub(super) static LOAD: LazyLock<Lua> = LazyLock::new(|| Lua::new(include_str!("load.lua")));

/// Loads the store's scripts into the server's script cache, so the first
/// requests do not pay a `NOSCRIPT` and a `SCRIPT LOAD` each (on a cluster,
/// `connect_cluster` loads them on every master). Later losses of the cache
/// (a restart, a failover) are still met by loading after a `NOSCRIPT`.
pub(super) async fn load_scripts(connection: &mut impl ConnectionLike) -> RedisResult<()> {
    for lua in [&*LOAD, &*COMPARE_AND_SET] {
        lua.load()
            .query_async::<Value>(connection)
            .await?
            .extract_error()?;
    }
    Ok(())
}

/// The `SCRIPT LOAD` commands of [`load_scripts`], for a caller that routes
/// them itself.
#[cfg(feature = "cluster")]
pub(super) fn script_loads() -> [Cmd; 2] {
    [LOAD.load(), COMPARE_AND_SET.load()]
}
