//! The plain limit: no version, no compare-and-set, no middleware. A
//! handler that `GETEX`es the flow's fields, changes them and `SET EX`es
//! them back: the least any Redis-backed flow can cost, and what loses an
//! update when two requests race.

use axum::{
    Router,
    extract::{Request, State},
    http::{HeaderMap, StatusCode, header},
    response::IntoResponse,
    routing::{get, post},
};
use redis::aio::ConnectionManager;
use serde_json::{Map, Value as Json};

use crate::{
    TTL_SECONDS,
    flow::first_answers,
    limit::{limit_key, step_data},
};

/// The stored value: the fields alone, `{"answers":{...},"count":n}`.
type Fields = Map<String, Json>;

async fn load(
    redis: &ConnectionManager,
    headers: &HeaderMap,
) -> Result<(String, Fields), StatusCode> {
    let key = limit_key(headers).ok_or(StatusCode::BAD_REQUEST)?;
    let raw: Option<Vec<u8>> = redis::cmd("GETEX")
        .arg(&key)
        .arg("EX")
        .arg(TTL_SECONDS)
        .query_async(&mut redis.clone())
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    let raw = raw.ok_or(StatusCode::NOT_FOUND)?;
    let fields = serde_json::from_slice(&raw).map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok((key, fields))
}

async fn save(redis: &ConnectionManager, key: &str, fields: &Fields) -> Result<(), StatusCode> {
    let () = redis::cmd("SET")
        .arg(key)
        .arg(serde_json::to_vec(fields).unwrap())
        .arg("EX")
        .arg(TTL_SECONDS)
        .query_async(&mut redis.clone())
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    Ok(())
}

fn count(fields: &Fields) -> Result<u64, StatusCode> {
    fields
        .get("count")
        .and_then(Json::as_u64)
        .ok_or(StatusCode::INTERNAL_SERVER_ERROR)
}

async fn start(State(redis): State<ConnectionManager>) -> Result<impl IntoResponse, StatusCode> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut fields = Fields::new();
    fields.insert(
        "answers".to_owned(),
        serde_json::to_value(first_answers()).unwrap(),
    );
    fields.insert("count".to_owned(), 0.into());
    save(&redis, &format!("pipeline:{id}"), &fields).await?;
    let cookie = format!("pipeline_id={id}; HttpOnly; SameSite=Lax; Path=/");
    Ok(([(header::SET_COOKIE, cookie)], "0"))
}

async fn read(
    State(redis): State<ConnectionManager>,
    request: Request,
) -> Result<String, StatusCode> {
    let (_, fields) = load(&redis, request.headers()).await?;
    Ok(count(&fields)?.to_string())
}

async fn change(
    State(redis): State<ConnectionManager>,
    request: Request,
) -> Result<String, StatusCode> {
    let (key, mut fields) = load(&redis, request.headers()).await?;
    let n = count(&fields)? + 1;
    fields.insert("count".to_owned(), n.into());
    save(&redis, &key, &fields).await?;
    Ok(n.to_string())
}

async fn step(
    State(redis): State<ConnectionManager>,
    request: Request,
) -> Result<String, StatusCode> {
    let (key, mut fields) = load(&redis, request.headers()).await?;
    let n = step_data(&mut fields)?;
    save(&redis, &key, &fields).await?;
    Ok(n.to_string())
}

pub(crate) fn plain_app(redis: ConnectionManager) -> Router {
    Router::new()
        .route("/start", post(start))
        .route("/read", get(read))
        .route("/change", post(change))
        .route("/step", post(step))
        .route("/untouched", get(|| async { "ok" }))
        .with_state(redis)
}
