//! tower-sessions with its Redis store, the same routes over a session.

use std::collections::BTreeMap;

use axum::{
    Router,
    http::StatusCode,
    routing::{get, post},
};
use tower_sessions::{Expiry, Session, SessionManagerLayer};

use crate::{
    TTL_SECONDS,
    flow::{first_answers, step},
};

pub(crate) fn tower_sessions_app(pool: tower_sessions_redis_store::fred::prelude::Pool) -> Router {
    async fn count(session: &Session) -> Result<u64, StatusCode> {
        session
            .get("count")
            .await
            .ok()
            .flatten()
            .ok_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
    let layer = SessionManagerLayer::new(tower_sessions_redis_store::RedisStore::new(pool))
        .with_secure(false)
        .with_expiry(Expiry::OnInactivity(
            tower_sessions::cookie::time::Duration::seconds(TTL_SECONDS as i64),
        ));
    Router::new()
        .route(
            "/start",
            post(|session: Session| async move {
                session
                    .insert("answers", first_answers())
                    .await
                    .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
                session
                    .insert("count", 0u64)
                    .await
                    .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
                Ok::<_, StatusCode>("0")
            }),
        )
        .route(
            "/read",
            get(|session: Session| async move { count(&session).await.map(|n| n.to_string()) }),
        )
        .route(
            "/change",
            post(|session: Session| async move {
                let n = count(&session).await? + 1;
                session
                    .insert("count", n)
                    .await
                    .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
                Ok::<_, StatusCode>(n.to_string())
            }),
        )
        .route(
            "/step",
            post(|session: Session| async move {
                let mut answers: BTreeMap<String, String> = session
                    .get("answers")
                    .await
                    .ok()
                    .flatten()
                    .ok_or(StatusCode::INTERNAL_SERVER_ERROR)?;
                let mut n = count(&session).await?;
                step(&mut answers, &mut n);
                let saved = session.insert("answers", answers).await.is_ok()
                    && session.insert("count", n).await.is_ok();
                if !saved {
                    return Err(StatusCode::INTERNAL_SERVER_ERROR);
                }
                Ok::<_, StatusCode>(n.to_string())
            }),
        )
        .route("/untouched", get(|| async { "ok" }))
        .layer(layer)
}
