//! [`Shared`]: what a layer's services, their response futures and the
//! request's states share (the store and the settings), and the one
//! implementation of [`Backend`], through which the states reach the store
//! without being generic over it.

use std::sync::Arc;

use crate::{
    backend::{Backend, BoxFuture, Claimed, Committed, Found, Lifetime},
    config::Config,
    error::LoadError,
    flush,
    id::PipelineId,
    load,
    record::Data,
    store::{Store, StoreError},
};

/// What a layer's services and their response futures share.
#[derive(Debug)]
pub(crate) struct Shared<St> {
    pub(crate) store: Arc<St>,
    pub(crate) config: Config,
}

impl<St: Store> Backend for Shared<St> {
    fn load(
        self: Arc<Self>,
        id: PipelineId,
        lifetime: Option<Lifetime>,
    ) -> BoxFuture<Result<Found, LoadError>> {
        Box::pin(async move { load::load(&*self.store, &self.config, id, lifetime).await })
    }

    fn claim(
        self: Arc<Self>,
        id: PipelineId,
        version: u64,
    ) -> BoxFuture<Result<Claimed, StoreError>> {
        Box::pin(async move { flush::claim(&*self.store, &self.config, id, version).await })
    }

    fn commit(
        self: Arc<Self>,
        id: PipelineId,
        version: u64,
        data: Arc<Data>,
        lifetime: Option<Lifetime>,
    ) -> BoxFuture<Result<Committed, StoreError>> {
        Box::pin(async move {
            flush::commit(&*self.store, &self.config, id, version, data, lifetime).await
        })
    }

    fn config(&self) -> &Config {
        &self.config
    }
}

#[cfg(test)]
impl<St: Store> Shared<St> {
    /// Flow `id`'s state as a request of this layer loads it.
    pub(crate) async fn state(self: &Arc<Self>, id: PipelineId) -> crate::PipelineState {
        let backend: Arc<dyn Backend> = self.clone();
        crate::PipelineState::load(&backend, id, None)
            .await
            .expect("the test's store answers")
    }
}
