//! The stacks under test, each an axum app that answers `POST /start`
//! (create a flow: 8 answers and count 0, see `flow.rs`), `GET /read`,
//! `POST /change` (count + 1), `POST /step` (a realistic step) and
//! `GET /untouched`, served on loopback.

use std::{collections::BTreeMap, net::SocketAddr};

use axum::{
    Router,
    http::StatusCode,
    routing::{get, post},
    serve::{Listener, ListenerExt},
};
use redis::aio::ConnectionManager;
use tower_pipeline_state::{PipelineState, PipelineStateLayer, RedisStore, Store};

use crate::{
    flow::{first_answers, step},
    limit::limit_app,
    plain::plain_app,
    sessions::tower_sessions_app,
};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stack {
    ConnectionManager,
    Bb8,
    Cluster,
    Limit,
    Plain,
    TowerSessions,
}

pub(crate) const STACKS: [Stack; 6] = [
    Stack::ConnectionManager,
    Stack::Bb8,
    Stack::Cluster,
    Stack::Limit,
    Stack::Plain,
    Stack::TowerSessions,
];

impl Stack {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Stack::ConnectionManager => "pipeline-state (ConnectionManager)",
            Stack::Bb8 => "pipeline-state (bb8 pool)",
            Stack::Cluster => "pipeline-state (cluster)",
            Stack::Limit => "limit (hand-written)",
            Stack::Plain => "plain GETEX + SET EX",
            Stack::TowerSessions => "tower-sessions",
        }
    }

    /// Its name in `E2E_STACKS`.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Stack::ConnectionManager => "connection-manager",
            Stack::Bb8 => "bb8",
            Stack::Cluster => "cluster",
            Stack::Limit => "limit",
            Stack::Plain => "plain",
            Stack::TowerSessions => "tower-sessions",
        }
    }

    pub(crate) fn parse(key: &str) -> Option<Self> {
        STACKS.into_iter().find(|stack| stack.key() == key)
    }
}

pub(crate) fn pipeline_state_app<St: Store>(store: St) -> Router {
    pub(crate) fn count(state: &PipelineState) -> Result<u64, StatusCode> {
        state
            .get("count")
            .ok()
            .flatten()
            .ok_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
    Router::new()
        .route(
            "/start",
            post(|state: PipelineState| async move {
                state.set("answers", &first_answers()).unwrap();
                state.set("count", &0u64).unwrap();
                "0"
            }),
        )
        .route(
            "/read",
            get(|state: PipelineState| async move { count(&state).map(|n| n.to_string()) }),
        )
        .route(
            "/change",
            post(|state: PipelineState| async move {
                let n = count(&state)? + 1;
                state.set("count", &n).unwrap();
                Ok::<_, StatusCode>(n.to_string())
            }),
        )
        .route(
            "/step",
            post(|state: PipelineState| async move {
                let mut answers: BTreeMap<String, String> = state
                    .get("answers")
                    .ok()
                    .flatten()
                    .ok_or(StatusCode::INTERNAL_SERVER_ERROR)?;
                let mut n = count(&state)?;
                step(&mut answers, &mut n);
                state.set("answers", &answers).unwrap();
                state.set("count", &n).unwrap();
                Ok::<_, StatusCode>(n.to_string())
            }),
        )
        .route("/untouched", get(|| async { "ok" }))
        .layer(PipelineStateLayer::new(store).cookie_secure(false))
}

pub(crate) async fn app(stack: Stack, redis_url: &str, cluster_urls: &[String]) -> Router {
    match stack {
        Stack::Cluster => pipeline_state_app(
            RedisStore::connect_cluster(cluster_urls.to_vec())
                .await
                .unwrap(),
        ),
        Stack::ConnectionManager => {
            pipeline_state_app(RedisStore::connect(redis_url).await.unwrap())
        }
        Stack::Bb8 => {
            let manager = bb8_redis::RedisConnectionManager::new(redis_url).unwrap();
            // bb8 tests each connection it hands out with a PING by
            // default: a second round trip per operation that measures the
            // pool, not this crate.
            let pool = bb8::Pool::builder()
                .max_size(16)
                .test_on_check_out(false)
                .build(manager)
                .await
                .unwrap();
            pipeline_state_app(RedisStore::from_pool(pool).await.unwrap())
        }
        Stack::Limit => {
            let client = redis::Client::open(redis_url).unwrap();
            limit_app(ConnectionManager::new(client).await.unwrap())
        }
        Stack::Plain => {
            let client = redis::Client::open(redis_url).unwrap();
            plain_app(ConnectionManager::new(client).await.unwrap())
        }
        Stack::TowerSessions => {
            use tower_sessions_redis_store::fred::prelude::*;
            let pool =
                Pool::new(Config::from_url(redis_url).unwrap(), None, None, None, 6).unwrap();
            pool.init().await.unwrap();
            tower_sessions_app(pool)
        }
    }
}

pub(crate) async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}
