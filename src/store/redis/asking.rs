//! Following an `ASK` redirect, as the Redis Cluster specification says.
//!
//! While a slot migrates, its old node runs a command whose key it still
//! holds, and answers `ASK <slot> <host:port>` (running nothing) for a key
//! it no longer holds: the key is on, or will be created on, the node that
//! imports the slot. That node serves the slot only to a client that sends
//! `ASKING` just before the command, so both go to it in one pipeline,
//! which nothing else on a multiplexed connection can come between. The
//! redirect holds for that one command: the next is sent to the old node
//! again, since the slot is not the new node's until the migration ends
//! (then the old node answers `MOVED`, and the cluster connection relearns
//! the slots). Sent back to the old node instead, the command would be
//! refused again for as long as the migration lasts. Where the redirected
//! command goes over is `redirects.rs`'s choice.
//!
//! Only a store whose connection is a cluster's follows redirects (feature
//! `cluster`); no other connection meets one.

#[cfg(not(feature = "cluster"))]
use super::{
    RedisConnection, RedisStore,
    request::{Node, Reply, Request},
};

#[cfg(feature = "cluster")]
pub(super) use self::cluster::target;

#[cfg(feature = "cluster")]
mod cluster {
    use redis::{ErrorKind, RedisError, RedisResult, ServerErrorKind, pipe};

    use crate::store::redis::{
        RedisConnection, RedisStore,
        redirects::Via,
        request::{Node, Reply, Request, no_script, replies_of},
    };

    /// The node `error` redirects to, when it is an `ASK` and `store` can
    /// follow it.
    pub(in crate::store::redis) fn target<C>(
        store: &RedisStore<C>,
        error: &RedisError,
    ) -> Option<Node> {
        store.redirects.as_ref()?;
        if error.kind() != ErrorKind::Server(ServerErrorKind::Ask) {
            return None;
        }
        let (address, _slot) = error.redirect_node()?;
        let (host, port) = address.rsplit_once(':')?;
        Some(Node {
            host: host.to_owned(),
            port: port.parse().ok()?,
        })
    }

    impl<C: RedisConnection> RedisStore<C> {
        /// Sends `ASKING` and the request's command (and `WAIT`, for a
        /// write with durability) to `node` in one pipeline. After a
        /// `NOSCRIPT` (a node that has not run the script yet, one just
        /// added), loads the script on that node and sends them once more.
        pub(in crate::store::redis) async fn send_asking(
            &self,
            node: &Node,
            request: &Request<'_>,
        ) -> RedisResult<Reply> {
            let Some(redirects) = &self.redirects else {
                return Err(RedisError::from((
                    ErrorKind::Client,
                    "an ASK redirect on a connection that is not a cluster's",
                )));
            };
            let mut via = redirects.via(node).await?;
            let result = match self.asking_once(&mut via, request).await {
                Err(error) if no_script(&error) => match request.script {
                    Some(lua) => match via
                        .command(lua.load())
                        .await
                        .and_then(|v| v.extract_error())
                    {
                        Ok(_) => self.asking_once(&mut via, request).await,
                        Err(error) => Err(error),
                    },
                    None => Err(error),
                },
                result => result,
            };
            if let Err(error) = &result
                && (error.is_io_error() || error.is_unrecoverable_error())
            {
                redirects.forget(node);
            }
            result
        }

        async fn asking_once(&self, via: &mut Via, request: &Request<'_>) -> RedisResult<Reply> {
            let waited = request.write && self.durability.is_some();
            let mut pipeline = pipe();
            pipeline.cmd("ASKING").add_command(request.command.clone());
            if let Some(durability) = self.durability.filter(|_| waited) {
                pipeline
                    .cmd("WAIT")
                    .arg(durability.replicas)
                    .arg(durability.millis());
            }
            let count = 1 + usize::from(waited);
            // `ASKING`'s own reply is skipped; were it refused, the command
            // would be redirected again and say so.
            let replies = via.pipeline(pipeline, 1, count).await?;
            replies_of(replies, waited)
        }
    }
}

/// Without the `cluster` feature no connection meets a redirect to follow.
#[cfg(not(feature = "cluster"))]
pub(super) fn target<C>(_store: &RedisStore<C>, _error: &redis::RedisError) -> Option<Node> {
    None
}

#[cfg(not(feature = "cluster"))]
impl<C: RedisConnection> RedisStore<C> {
    pub(super) async fn send_asking(
        &self,
        _node: &Node,
        _request: &Request<'_>,
    ) -> redis::RedisResult<Reply> {
        unreachable!("no redirect is followed without the cluster feature")
    }
}
