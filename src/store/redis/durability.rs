//! `durability`: each write followed by `WAIT` in the same pipeline, so an
//! acknowledged write is on the replicas when the answer leaves; the
//! layer's builder method for it lives here, beside what it sets.

use std::{sync::Arc, time::Duration};

use super::{RedisConnection, RedisStore, wait::Durability};
use crate::PipelineStateLayer;

impl<C> RedisStore<C> {
    /// The same store, its writes confirmed by `WAIT` (see
    /// [`PipelineStateLayer::durability`](crate::PipelineStateLayer::durability)).
    pub(crate) fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = Some(durability);
        self
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
impl<C: RedisConnection + Clone> PipelineStateLayer<RedisStore<C>> {
    /// Makes every write wait until `replicas` replicas have it (default:
    /// off, a write is confirmed once the primary has it). After each write
    /// that changed something (create, update, clear, regenerate), the store
    /// sends `WAIT replicas timeout` in the same pipeline, on the same
    /// connection (one round trip, and only the primary that wrote is
    /// asked). Fewer acknowledgements within `timeout` answer `503` ("not
    /// confirmed"), never a `2xx`: the write is on the primary, but a
    /// failover before a replica has it would lose it.
    ///
    /// Without it, Redis replicates asynchronously: a write acknowledged by
    /// the primary and not yet copied when the primary dies is lost when a
    /// replica takes over. With `durability(1, ...)`, every `2xx` write is
    /// on at least one replica. `WAIT` is not consensus: see Redis's
    /// documentation of `WAIT` for the rare failovers it does not cover.
    ///
    /// `timeout` must be shorter than
    /// [`store_timeout`](Self::store_timeout) (which bounds the write and
    /// its `WAIT` together), or the layer's timeout answers first.
    ///
    /// # Panics
    /// If `replicas` is zero, or `timeout` is zero (`WAIT` with 0 blocks
    /// for ever). [`Layer::layer`](tower_layer::Layer::layer) panics if
    /// `timeout` is not shorter than [`store_timeout`](Self::store_timeout).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), tower_pipeline_state::StoreError> {
    /// use std::time::Duration;
    /// use tower_pipeline_state::{PipelineStateLayer, RedisStore};
    ///
    /// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// let layer = PipelineStateLayer::new(store).durability(1, Duration::from_millis(200));
    /// # Ok(()) }
    /// ```
    pub fn durability(mut self, replicas: u32, timeout: Duration) -> Self {
        assert!(
            replicas > 0,
            "durability needs at least one replica to wait for, got 0"
        );
        assert!(
            !timeout.is_zero(),
            "the durability timeout must be longer than zero (WAIT 0 blocks for ever)"
        );
        let store = (*self.store)
            .clone()
            .with_durability(Durability { replicas, timeout });
        self.store = Arc::new(store);
        self.config.durability = Some((replicas, timeout));
        self
    }
}
