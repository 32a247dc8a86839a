//! The limit: the same Redis commands as the crate, sent by the handlers
//! themselves.

use std::collections::BTreeMap;

use axum::{
    Router,
    extract::{Request, State},
    http::{HeaderMap, StatusCode, header},
    response::IntoResponse,
    routing::{get, post},
};
use redis::{Script, Value, aio::ConnectionManager};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::{
    TTL_SECONDS,
    flow::{first_answers, step},
};

/// The limit: what a handler costs that sends the crate's Redis commands
/// itself, with the same record format, and nothing else (no middleware, no
/// timeouts, no merge on conflict, a bare cookie).
#[derive(Clone)]
pub(crate) struct Limit {
    redis: ConnectionManager,
    script: Script,
}

/// The crate's stored form (`{"format":1,"version":n,"data":{...}}`).
#[derive(Serialize, Deserialize)]
pub(crate) struct Record {
    format: u32,
    version: u64,
    data: Map<String, Json>,
}

/// The same compare-and-set script the crate sends: `build.rs` names where
/// it is.
const COMPARE_AND_SET: &str = include_str!(env!("COMPARE_AND_SET_LUA"));

pub(crate) fn limit_key(headers: &HeaderMap) -> Option<String> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    let id = cookies
        .split(';')
        .find_map(|pair| pair.trim().strip_prefix("pipeline_id="))?;
    let well_formed = id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    well_formed.then(|| format!("pipeline:{id}"))
}

pub(crate) async fn limit_load(
    limit: &Limit,
    headers: &HeaderMap,
) -> Result<(String, Record), StatusCode> {
    let key = limit_key(headers).ok_or(StatusCode::BAD_REQUEST)?;
    let raw: Option<Vec<u8>> = redis::cmd("GETEX")
        .arg(&key)
        .arg("EX")
        .arg(TTL_SECONDS)
        .query_async(&mut limit.redis.clone())
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    let raw = raw.ok_or(StatusCode::NOT_FOUND)?;
    let record = serde_json::from_slice(&raw).map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok((key, record))
}

pub(crate) fn limit_count(record: &Record) -> Result<u64, StatusCode> {
    record
        .data
        .get("count")
        .and_then(Json::as_u64)
        .ok_or(StatusCode::INTERNAL_SERVER_ERROR)
}

pub(crate) async fn limit_start(
    State(limit): State<Limit>,
) -> Result<impl IntoResponse, StatusCode> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut data = Map::new();
    data.insert(
        "answers".to_owned(),
        serde_json::to_value(first_answers()).unwrap(),
    );
    data.insert("count".to_owned(), 0.into());
    let record = serde_json::to_vec(&Record {
        format: 1,
        version: 1,
        data,
    })
    .unwrap();
    let created: Option<String> = redis::cmd("SET")
        .arg(format!("pipeline:{id}"))
        .arg(record)
        .arg("NX")
        .arg("EX")
        .arg(TTL_SECONDS)
        .query_async(&mut limit.redis.clone())
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    created.ok_or(StatusCode::CONFLICT)?;
    let cookie = format!("pipeline_id={id}; HttpOnly; SameSite=Lax; Path=/");
    Ok(([(header::SET_COOKIE, cookie)], "0"))
}

// The handlers take the whole request rather than a `HeaderMap`, which
// axum would clone.
pub(crate) async fn limit_read(
    State(limit): State<Limit>,
    request: Request,
) -> Result<String, StatusCode> {
    let (_, record) = limit_load(&limit, request.headers()).await?;
    Ok(limit_count(&record)?.to_string())
}

pub(crate) async fn limit_change(
    State(limit): State<Limit>,
    request: Request,
) -> Result<String, StatusCode> {
    let (key, mut record) = limit_load(&limit, request.headers()).await?;
    let n = limit_count(&record)? + 1;
    record.data.insert("count".to_owned(), n.into());
    limit_write(&limit, key, record).await?;
    Ok(n.to_string())
}

pub(crate) async fn limit_step(
    State(limit): State<Limit>,
    request: Request,
) -> Result<String, StatusCode> {
    let (key, mut record) = limit_load(&limit, request.headers()).await?;
    let n = step_data(&mut record.data)?;
    limit_write(&limit, key, record).await?;
    Ok(n.to_string())
}

/// The realistic step on a decoded record's fields, as a handler writes it
/// by hand: the answers taken out typed, changed, put back with the count.
pub(crate) fn step_data(data: &mut Map<String, Json>) -> Result<u64, StatusCode> {
    let answers = data
        .remove("answers")
        .ok_or(StatusCode::INTERNAL_SERVER_ERROR)?;
    let mut answers: BTreeMap<String, String> =
        serde_json::from_value(answers).map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let mut n = data
        .get("count")
        .and_then(Json::as_u64)
        .ok_or(StatusCode::INTERNAL_SERVER_ERROR)?;
    step(&mut answers, &mut n);
    data.insert("answers".to_owned(), serde_json::to_value(answers).unwrap());
    data.insert("count".to_owned(), n.into());
    Ok(n)
}

/// The compare-and-set at the loaded version, one `EVALSHA`.
async fn limit_write(limit: &Limit, key: String, mut record: Record) -> Result<(), StatusCode> {
    let version = record.version;
    record.version += 1;
    let raw = serde_json::to_vec(&record).unwrap();
    let reply: Value = limit
        .script
        .key(&key)
        .arg(version)
        .arg(raw)
        .arg(TTL_SECONDS)
        .invoke_async(&mut limit.redis.clone())
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    match reply {
        Value::Int(1) => Ok(()),
        _ => Err(StatusCode::CONFLICT),
    }
}

pub(crate) fn limit_app(redis: ConnectionManager) -> Router {
    let limit = Limit {
        redis,
        script: Script::new(COMPARE_AND_SET),
    };
    Router::new()
        .route("/start", post(limit_start))
        .route("/read", get(limit_read))
        .route("/change", post(limit_change))
        .route("/step", post(limit_step))
        .route("/untouched", get(|| async { "ok" }))
        .with_state(limit)
}
