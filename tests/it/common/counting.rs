//! A Redis connection that counts round trips, for the tests that assert
//! how many a request costs (`round_trips.rs`, `nested.rs`).

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use redis::{
    Cmd, Pipeline, RedisFuture, Value,
    aio::{ConnectionLike, ConnectionManager},
};

/// A connection that counts round trips: one per command sent alone, one per
/// pipeline.
#[derive(Clone)]
pub(crate) struct Counting {
    pub(crate) inner: ConnectionManager,
    pub(crate) trips: Arc<AtomicUsize>,
}

impl ConnectionLike for Counting {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.trips.fetch_add(1, Ordering::SeqCst);
        self.inner.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.trips.fetch_add(1, Ordering::SeqCst);
        self.inner.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}
