//! Keys planted under the prefix behind the layer's back, each with and
//! without a TTL: a hash and an oversized record read as an expired flow
//! (with a warning) and are replaced by the next write; a record of a newer
//! format (a rolling deploy), however spelled, is left exactly as it is,
//! its TTL included, and answered 503, on every request, rather than
//! replaced.

use std::collections::BTreeMap;

use crate::common::*;
use reqwest::StatusCode;
use tower_pipeline_state::{PipelineStateLayer, RedisStore};

/// An id no flow was ever created under, `n` apart from the others.
fn made_up_id(n: u128) -> String {
    format!("{:032x}", 0x5eed_0000_0000_0000_0000_0000_0000_0000 + n)
}

/// The TTLs a key is planted with: none, and one longer than the layer's
/// (so a refresh to the layer's 600 s would show).
const TTLS: [Option<u64>; 2] = [None, Some(1000)];

fn plant_ttl(redis: &RedisServer, key: &str, ttl: Option<u64>) {
    if let Some(seconds) = ttl {
        redis.expire(key, seconds);
    }
    let expected = ttl.map_or(-1, |seconds| seconds as i64);
    assert_eq!(redis.ttl(key), expected, "planted as asked");
}

fn key_type(redis: &RedisServer, key: &str) -> String {
    redis::cmd("TYPE")
        .arg(key)
        .query(&mut redis.admin())
        .expect("TYPE")
}

fn calls(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// One answer: status, body and the `pipeline_id` cookie it set, if any.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    body: String,
    cookie: Option<String>,
}

async fn send(app: &Server, method: reqwest::Method, path: &str, id: &str) -> Answer {
    let response = reqwest::Client::new()
        .request(method, app.url(path))
        .header("cookie", format!("pipeline_id={id}"))
        .send()
        .await
        .unwrap();
    Answer {
        status: response.status(),
        cookie: set_cookie(&response).map(|cookie| cookie.value().to_owned()),
        body: response.text().await.unwrap(),
    }
}

/// A read of the planted id sees an expired flow and leaves the key alone;
/// a write starts a new flow, deletes the planted key and creates the new
/// one (one command each, on one key each). `slid`: the planted value
/// starts with this release's header, so the load slides its TTL.
async fn expired_then_replaced(
    app: &Server,
    redis: &RedisServer,
    id: &str,
    what: &str,
    slid: bool,
) {
    let key = format!("pipeline:{id}");
    let read = send(app, reqwest::Method::GET, "/status", id).await;
    assert_eq!(
        (read.status, read.body.as_str()),
        (StatusCode::OK, "expired none"),
        "{what}"
    );
    assert_eq!(read.cookie, None, "{what}: a read sets no cookie");
    assert!(
        redis.keys().contains(&key),
        "{what}: a read writes nothing, the key is still there"
    );

    redis.reset_stats();
    let written = send(app, reqwest::Method::POST, "/incr", id).await;
    assert_eq!(
        (written.status, written.body.as_str()),
        (StatusCode::OK, "1"),
        "{what}"
    );
    let mut expected = calls(&[("evalsha", 1), ("get", 1), ("del", 1), ("set", 1)]);
    if slid {
        expected.insert("expire".to_owned(), 1);
    }
    assert_eq!(redis.command_calls(), expected, "{what}");
    let new = written.cookie.expect("a new flow's cookie");
    assert_ne!(new, id, "{what}: the planted id is not adopted");
    let new_key = format!("pipeline:{new}");
    assert_eq!(
        redis.keys(),
        std::slice::from_ref(&new_key),
        "{what}: the planted key is gone"
    );
    let ttl = redis.ttl(&new_key);
    assert!((1..=600).contains(&ttl), "{what}: the new flow's TTL {ttl}");
    let read = send(app, reqwest::Method::GET, "/read", &new).await;
    assert_eq!(read.body, "count=1", "{what}: the new flow is stored");
}

fn flush(redis: &RedisServer) {
    let _: () = redis::cmd("FLUSHALL").query(&mut redis.admin()).unwrap();
}

#[tokio::test]
async fn a_planted_hash_reads_as_expired_and_the_next_write_replaces_it() {
    let (logs, _guard) = Logs::capture();
    let redis = RedisServer::start();
    let app = serve_with(PipelineStateLayer::new(redis_store(&redis.url()).await)).await;
    for (n, ttl) in TTLS.into_iter().enumerate() {
        flush(&redis);
        let id = made_up_id(n as u128);
        let key = format!("pipeline:{id}");
        let _: () = redis::cmd("HSET")
            .arg(&key)
            .arg("step")
            .arg("2")
            .query(&mut redis.admin())
            .unwrap();
        plant_ttl(&redis, &key, ttl);

        let what = format!("a hash with TTL {ttl:?}");
        let before = logs.text().len();
        let read = send(&app, reqwest::Method::GET, "/status", &id).await;
        assert_eq!(read.body, "expired none", "{what}");
        assert_eq!(
            key_type(&redis, &key),
            "hash",
            "{what}: untouched by a read"
        );
        // One warning for the read, naming its flow by the keyed hash of
        // its id, never the id.
        let warnings = lines_since(
            &logs,
            before,
            &["WARN", "pipeline.log_id=", "does not decode"],
        );
        assert_eq!(warnings, 1, "{what}: {}", logs.text());

        expired_then_replaced(&app, &redis, &id, &what, false).await;
    }
}

#[tokio::test]
async fn a_planted_oversized_record_reads_as_expired_and_the_next_write_replaces_it() {
    let (logs, _guard) = Logs::capture();
    let redis = RedisServer::start();
    let app =
        serve_with(PipelineStateLayer::new(redis_store(&redis.url()).await).max_record_size(1024))
            .await;
    for (n, ttl) in TTLS.into_iter().enumerate() {
        flush(&redis);
        let id = made_up_id(n as u128);
        let key = format!("pipeline:{id}");
        // A record this release could decode, were it not over the limit.
        let record = format!(
            r#"{{"format":1,"version":3,"data":{{"count":7,"blob":"{}"}}}}"#,
            "x".repeat(2000)
        );
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(&record)
            .query(&mut redis.admin())
            .unwrap();
        plant_ttl(&redis, &key, ttl);

        let what = format!("an oversized record with TTL {ttl:?}");
        let before = logs.text().len();
        let read = send(&app, reqwest::Method::GET, "/read", &id).await;
        assert_eq!(read.body, "count=none", "{what}: its data is not read");
        let warnings = lines_since(
            &logs,
            before,
            &[
                "WARN",
                "pipeline.log_id=",
                "over the size limit",
                "limit=1024",
            ],
        );
        assert_eq!(warnings, 1, "{what}: {}", logs.text());

        expired_then_replaced(&app, &redis, &id, &what, true).await;
    }
}

/// Records as a later release might write them: format 2 with another
/// shape, spelled as this release writes its header and spelled otherwise
/// (spaces, another member order, an escaped name, a format past any
/// fixed-width integer).
const NEWER: [&[u8]; 5] = [
    br#"{"format":2,"version":5,"fields":{"step":"confirm"},"extra":[1,2]}"#,
    br#"{ "format": 2, "version": 5, "fields": {"step": "confirm"} }"#,
    br#"{"version":5,"fields":{"step":"confirm"},"format":2}"#,
    br#"{"form\u0061t":3,"version":5}"#,
    br#"{"format":99999999999999999999999,"version":5}"#,
];

/// Plants `record` under a made-up id and sends a read, a write, a clear,
/// a regenerate and a read through `app`: every answer is 503 with no
/// cookie, and the record stays byte for byte. Returns the TTL left on it.
async fn newer_format_refused(
    app: &Server,
    redis: &RedisServer,
    record: &[u8],
    ttl: Option<u64>,
) -> i64 {
    flush(redis);
    let id = made_up_id(9);
    let key = format!("pipeline:{id}");
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(record)
        .query(&mut redis.admin())
        .unwrap();
    plant_ttl(redis, &key, ttl);
    let what = String::from_utf8_lossy(record);
    for (method, path) in [
        (reqwest::Method::GET, "/status"),
        (reqwest::Method::POST, "/incr"),
        (reqwest::Method::POST, "/clear"),
        (reqwest::Method::POST, "/regenerate"),
        (reqwest::Method::GET, "/status"),
    ] {
        let answer = send(app, method, path, &id).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "pipeline state store unavailable; nothing was saved, send the request again\n"
            ),
            "{path} of {what} with TTL {ttl:?}"
        );
        assert_eq!(
            answer.cookie, None,
            "{path} of {what}: no new flow, no expired cookie"
        );
        assert_eq!(
            redis.get(&key).as_deref(),
            Some(record),
            "{path} of {what}: left byte for byte"
        );
        assert_eq!(
            redis.keys(),
            std::slice::from_ref(&key),
            "{path} of {what}: nothing else written"
        );
    }
    redis.ttl(&key)
}

/// Whatever its spelling, a later release's record is left alone: not
/// deleted, not overwritten, and its TTL not slid by a load, with the
/// refreshing load (the default: the load script, which slides only this
/// release's records), with a plain `GET` (refresh on load off), and when
/// it is larger than this release's `max_record_size`.
#[tokio::test]
async fn a_record_of_a_newer_format_is_left_alone() {
    let (logs, _guard) = Logs::capture();
    let redis = RedisServer::start();
    let store: RedisStore = redis_store(&redis.url()).await;
    let apps = [
        serve_with(PipelineStateLayer::new(store.clone())).await,
        serve_with(PipelineStateLayer::new(store.clone()).refresh_on_load(false)).await,
        // Larger than this release allows: still a later release's record.
        serve_with(PipelineStateLayer::new(store).max_record_size(32)).await,
    ];
    for app in &apps {
        for record in NEWER {
            for ttl in TTLS {
                let left = newer_format_refused(app, &redis, record, ttl).await;
                match ttl {
                    None => assert_eq!(left, -1, "still no TTL"),
                    Some(planted) => assert!(
                        left > 600 && left <= planted as i64,
                        "the planted TTL runs on: {left}"
                    ),
                }
            }
        }
    }

    // An operator's matter, not data lost: the record is kept.
    let errors = logs.matching(&["WARN", "newer format", "supported=1"]);
    assert_eq!(
        errors.len(),
        3 * 5 * 2 * 5,
        "one per request: {}",
        logs.text()
    );
    for format in ["format=2", "format=3", "format=1e+23"] {
        assert!(
            !logs.matching(&["WARN", "newer format", format]).is_empty(),
            "the log names {format}: {}",
            logs.text()
        );
    }
}

/// How many lines captured after the first `from` bytes contain every one
/// of `parts`.
fn lines_since(logs: &Logs, from: usize, parts: &[&str]) -> usize {
    logs.text()[from..]
        .lines()
        .filter(|line| parts.iter().all(|part| line.contains(part)))
        .count()
}
