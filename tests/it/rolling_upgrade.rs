//! A rolling upgrade: two app servers on one Redis, one running this
//! release, the other a later release that writes a (test-only) format 2.
//! The later release reads this release's records and rewrites them in its
//! own format; this release answers 503 for every flow in format 2 and
//! never deletes, overwrites or prolongs one, whatever the timing.
//!
//! The later release is this crate's layer over [`Format2`], a store that
//! keeps records in Redis in format 2 (spelled unlike this release's
//! header: another member order, spaces, `fields` for `data`) and hands the
//! layer format 1. Its compare-and-set is a script of its own that reads
//! either format's version, as a later release's would.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{Router, extract::State, routing::post};
use redis::{Script, Value, aio::ConnectionManager};
use reqwest::StatusCode;
use tokio::{sync::Notify, task::JoinSet};
use tower_pipeline_state::{
    PipelineState, PipelineStateLayer, Store, StoreError, store::CasOutcome,
};

use crate::common::{race::Tally, *};

/// The later release's compare-and-set: the version from either format's
/// header, then the same rules as this release's script.
const FORMAT_2_CAS: &str = r#"
local current = redis.call('GET', KEYS[1])
if not current then
  return 0
end
local version = string.match(current, '^{"format":1,"version":(%d+),')
  or string.match(current, '^{ "version": (%d+), "format": 2,')
if version ~= ARGV[1] then
  return current
end
if ARGV[2] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
else
  redis.call('DEL', KEYS[1])
end
return 1
"#;

/// A later release's store: format 2 in Redis, format 1 for the layer.
#[derive(Clone)]
struct Format2 {
    redis: ConnectionManager,
    cas: Arc<Script>,
}

impl Format2 {
    async fn connect(redis: &RedisServer) -> Self {
        let client = redis::Client::open(redis.url()).unwrap();
        Self {
            redis: client.get_connection_manager().await.unwrap(),
            cas: Arc::new(Script::new(FORMAT_2_CAS)),
        }
    }

    /// A record as the layer writes it (format 1), in format 2.
    fn to_2(record: &[u8]) -> Vec<u8> {
        let record: serde_json::Value = serde_json::from_slice(record).unwrap();
        assert_eq!(record["format"], 1, "the layer writes format 1");
        format!(
            r#"{{ "version": {}, "format": 2, "fields": {} }}"#,
            record["version"], record["data"]
        )
        .into_bytes()
    }

    /// A stored record in either format, as format 1 for the layer.
    fn to_1(record: Vec<u8>) -> Vec<u8> {
        let value: serde_json::Value = match serde_json::from_slice(&record) {
            Ok(value) => value,
            Err(_) => return record,
        };
        if value["format"] != 2 {
            return record;
        }
        format!(
            r#"{{"format":1,"version":{},"data":{}}}"#,
            value["version"], value["fields"]
        )
        .into_bytes()
    }

    async fn cas(
        &self,
        key: &str,
        version: u64,
        replacement: Option<(&[u8], Duration)>,
    ) -> Result<CasOutcome, StoreError> {
        let mut invocation = self.cas.key(key);
        invocation.arg(version);
        if let Some((record, ttl)) = replacement {
            invocation.arg(Self::to_2(record)).arg(ttl.as_secs());
        }
        let reply: Value = invocation
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(StoreError::backend)?;
        Ok(match reply {
            Value::Int(1) => CasOutcome::Done,
            Value::Int(0) => CasOutcome::Missing,
            Value::BulkString(current) => CasOutcome::Newer(Self::to_1(current)),
            other => panic!("the script answered {other:?}"),
        })
    }
}

impl Store for Format2 {
    async fn load(
        &self,
        key: &str,
        refresh: Option<Duration>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let mut command = redis::cmd("GETEX");
        command.arg(key);
        if let Some(ttl) = refresh {
            command.arg("EX").arg(ttl.as_secs());
        }
        let raw: Option<Vec<u8>> = command
            .query_async(&mut self.redis.clone())
            .await
            .map_err(StoreError::backend)?;
        Ok(raw.map(Self::to_1))
    }

    async fn create(&self, key: &str, record: &[u8], ttl: Duration) -> Result<bool, StoreError> {
        let reply: Value = redis::cmd("SET")
            .arg(key)
            .arg(Self::to_2(record))
            .arg("NX")
            .arg("EX")
            .arg(ttl.as_secs())
            .query_async(&mut self.redis.clone())
            .await
            .map_err(StoreError::backend)?;
        Ok(reply != Value::Nil)
    }

    async fn update(
        &self,
        key: &str,
        version: u64,
        record: &[u8],
        ttl: Duration,
    ) -> Result<CasOutcome, StoreError> {
        self.cas(key, version, Some((record, ttl))).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let _: Value = redis::cmd("DEL")
            .arg(key)
            .query_async(&mut self.redis.clone())
            .await
            .map_err(StoreError::backend)?;
        Ok(())
    }

    async fn delete_if_version(&self, key: &str, version: u64) -> Result<CasOutcome, StoreError> {
        self.cas(key, version, None).await
    }
}

async fn send(app: &Server, method: reqwest::Method, path: &str, id: &str) -> (StatusCode, String) {
    let response = reqwest::Client::new()
        .request(method, app.url(path))
        .header("cookie", format!("pipeline_id={id}"))
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

fn format_of(raw: &[u8]) -> serde_json::Value {
    serde_json::from_slice::<serde_json::Value>(raw).unwrap()["format"].clone()
}

/// The stored count, in either format.
fn count_of(raw: &[u8]) -> u64 {
    let value: serde_json::Value = serde_json::from_slice(raw).unwrap();
    let fields = if value["format"] == 2 {
        &value["fields"]
    } else {
        &value["data"]
    };
    fields["count"].as_u64().unwrap()
}

/// A flow the older release started moves to the later one, which
/// rewrites it in format 2; from then on the older release answers 503 to
/// everything on it and leaves it exactly as it is, TTL included, while the
/// later release carries on.
#[tokio::test]
async fn the_older_release_leaves_a_flow_the_later_one_rewrote_alone() {
    let redis = RedisServer::start();
    let old = serve_with(PipelineStateLayer::new(redis_store(&redis.url()).await)).await;
    let new = serve_with(PipelineStateLayer::new(Format2::connect(&redis).await)).await;
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;

    let created = browser().post(old.url("/incr")).send().await.unwrap();
    let id = set_cookie(&created).unwrap().value().to_owned();
    let key = format!("pipeline:{id}");
    assert_eq!(send(&old, post.clone(), "/incr", &id).await.1, "2");
    assert_eq!(format_of(&redis.get(&key).unwrap()), 1);

    // The later release reads format 1 and writes format 2.
    assert_eq!(send(&new, get.clone(), "/read", &id).await.1, "count=2");
    assert_eq!(send(&new, post.clone(), "/incr", &id).await.1, "3");
    let rewritten = redis.get(&key).unwrap();
    assert_eq!(format_of(&rewritten), 2);
    assert!(
        !rewritten.starts_with(br#"{"format":"#),
        "spelled unlike this release's header"
    );

    // The older release: 503 on every request, the record untouched.
    redis.expire(&key, 1000);
    for (method, path) in [
        (get.clone(), "/read"),
        (post.clone(), "/incr"),
        (post.clone(), "/set/step/2"),
        (post.clone(), "/clear"),
        (post.clone(), "/regenerate"),
        (get.clone(), "/status"),
    ] {
        let (status, _) = send(&old, method, path, &id).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(redis.get(&key).as_deref(), Some(&rewritten[..]), "{path}");
        let ttl = redis.ttl(&key);
        assert!(ttl > 600 && ttl <= 1000, "{path}: its TTL not slid: {ttl}");
        assert_eq!(redis.keys(), std::slice::from_ref(&key), "{path}");
    }

    // The later release carries on, and ends the flow.
    assert_eq!(send(&new, post.clone(), "/incr", &id).await.1, "4");
    assert_eq!(send(&new, post, "/clear", &id).await.0, StatusCode::OK);
    assert_eq!(redis.keys(), Vec::<String>::new());
}

/// Where a request of the older release waits between its load and its
/// write.
#[derive(Clone, Default)]
struct Gate {
    loaded: Arc<Notify>,
    go: Arc<Notify>,
}

/// Reads `count`, waits at the gate, then sets it one higher.
async fn gated_incr(State(gate): State<Gate>, state: PipelineState) -> String {
    let count: u64 = state.get("count").unwrap().unwrap_or(0);
    gate.loaded.notify_one();
    gate.go.notified().await;
    state.set("count", &(count + 1)).unwrap();
    (count + 1).to_string()
}

/// The later release rewrites a flow between the older release's load
/// and its write: the older release's compare-and-set finds a record it
/// cannot match, writes nothing, and answers the conflict status.
#[tokio::test]
async fn a_write_of_the_older_release_that_meets_a_newer_record_writes_nothing_and_answers_409() {
    let redis = RedisServer::start();
    let store = redis_store(&redis.url()).await;
    let old = serve_with(PipelineStateLayer::new(store.clone())).await;
    let gate = Gate::default();
    let gated = serve(
        Router::new()
            .route("/gated", post(gated_incr))
            .with_state(gate.clone())
            .layer(PipelineStateLayer::new(store).cookie_secure(false)),
    )
    .await;
    let new = serve_with(PipelineStateLayer::new(Format2::connect(&redis).await)).await;

    let created = browser().post(old.url("/incr")).send().await.unwrap();
    let id = set_cookie(&created).unwrap().value().to_owned();
    let key = format!("pipeline:{id}");
    let waiting = tokio::spawn({
        let url = gated.url("/gated");
        let cookie = format!("pipeline_id={id}");
        async move {
            let response = reqwest::Client::new()
                .post(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            (response.status(), response.text().await.unwrap())
        }
    });
    gate.loaded.notified().await;
    assert_eq!(send(&new, reqwest::Method::POST, "/incr", &id).await.1, "2");
    let rewritten = redis.get(&key).unwrap();
    assert_eq!(format_of(&rewritten), 2);
    gate.go.notify_one();

    let (status, _) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(redis.get(&key), Some(rewritten), "written over nothing");
    assert_eq!(redis.keys(), [key]);
}

/// Both releases race increments of flows the older one started, 16
/// clients split over the two app servers: the later release rewrites each
/// flow in format 2 at its first write, and the older one, from then on,
/// answers 409 (its write met the newer record) or 503 (its load did), and
/// writes nothing. Every increment either release acknowledged is in the
/// final record, none more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_releases_racing_lose_no_acknowledged_increment_and_the_older_writes_over_nothing() {
    let _serial = SERIAL.lock().await;
    let redis = RedisServer::start();
    let old = serve_with(PipelineStateLayer::new(redis_store(&redis.url()).await)).await;
    let new = serve_with(PipelineStateLayer::new(Format2::connect(&redis).await)).await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        let created = browser().post(old.url("/incr")).send().await.unwrap();
        ids.push(set_cookie(&created).unwrap().value().to_owned());
    }

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = JoinSet::new();
    for n in 0..16 {
        let (app, release) = if n % 2 == 0 {
            (old.url("/incr"), "older")
        } else {
            (new.url("/incr"), "later")
        };
        // Each flow: two clients on each release.
        let flow = (n / 2) % ids.len();
        let cookie = format!("pipeline_id={}", ids[flow]);
        let stop = stop.clone();
        clients.spawn(async move {
            let client = reqwest::Client::new();
            let mut statuses = BTreeMap::<u16, u64>::new();
            while !stop.load(Ordering::SeqCst) {
                let status = client
                    .post(&app)
                    .header("cookie", &cookie)
                    .send()
                    .await
                    .unwrap()
                    .status();
                *statuses.entry(status.as_u16()).or_default() += 1;
            }
            (flow, release, statuses)
        });
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);

    let mut tallies: BTreeMap<(usize, &str), Tally> = BTreeMap::new();
    while let Some(result) = clients.join_next().await {
        let (flow, release, statuses) = result.unwrap();
        let tally = tallies.entry((flow, release)).or_default();
        for (status, count) in statuses {
            *tally.statuses.entry(status).or_default() += count;
        }
    }
    let mut keys = Vec::new();
    for (flow, id) in ids.iter().enumerate() {
        let older = &tallies[&(flow, "older")];
        let later = &tallies[&(flow, "later")];
        println!(
            "flow {flow}: the older release {:?}, the later {:?}",
            older.statuses, later.statuses
        );
        assert!(
            older.statuses.keys().all(|s| [200, 409, 503].contains(s)),
            "{:?}",
            older.statuses
        );
        assert!(
            later.statuses.keys().all(|s| [200, 409].contains(s)),
            "{:?}",
            later.statuses
        );
        let acknowledged = older.count(StatusCode::OK) + later.count(StatusCode::OK);
        let key = format!("pipeline:{id}");
        let stored = redis.get(&key).expect("the flow is still there");
        assert_eq!(format_of(&stored), 2, "the later release rewrote it");
        assert_eq!(
            count_of(&stored),
            1 + acknowledged,
            "flow {flow}: every acknowledged increment stored, none more"
        );
        keys.push(key);
    }
    keys.sort();
    assert_eq!(redis.keys(), keys, "nothing deleted, nothing else written");
}
