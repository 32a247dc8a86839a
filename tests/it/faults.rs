//! A failing Redis: slow, refusing connections, connections killed and the
//! server restarted under load. Every test runs a real axum server over the
//! layer on loopback against its own private redis-server.
//!
//! Timing is never asserted beyond generous sanity bounds; statuses and
//! counts (handler calls, acknowledged writes, what Redis holds) are.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use crate::common::*;
use axum::{
    Router,
    extract::State,
    routing::{get, post},
};
use reqwest::StatusCode;
use tower_pipeline_state::{PipelineState, PipelineStateLayer, Status};

/// Counts how often the handlers run.
#[derive(Clone, Default)]
struct Calls(Arc<AtomicUsize>);

impl Calls {
    fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// `/incr` (adds one to `count`, answers the new value), `/read`
/// (`count=<n|none>`) and `/status` (`new`, `loaded` or `expired`), each
/// counting its calls.
fn counting_routes(calls: Calls) -> Router {
    async fn incr(State(calls): State<Calls>, state: PipelineState) -> String {
        calls.0.fetch_add(1, Ordering::SeqCst);
        let count: u64 = state.get("count").unwrap().unwrap_or(0) + 1;
        state.set("count", &count).unwrap();
        count.to_string()
    }
    async fn read(State(calls): State<Calls>, state: PipelineState) -> String {
        calls.0.fetch_add(1, Ordering::SeqCst);
        let count: Option<u64> = state.get("count").unwrap();
        format!("count={}", count.map_or("none".into(), |n| n.to_string()))
    }
    async fn status(State(calls): State<Calls>, state: PipelineState) -> &'static str {
        calls.0.fetch_add(1, Ordering::SeqCst);
        match state.status() {
            Status::New => "new",
            Status::Loaded => "loaded",
            Status::Expired => "expired",
            _ => "other",
        }
    }
    Router::new()
        .route("/incr", post(incr))
        .route("/read", get(read))
        .route("/status", get(status))
        .with_state(calls)
}

async fn serve_counting(
    layer: PipelineStateLayer<tower_pipeline_state::RedisStore>,
) -> (Server, Calls) {
    let calls = Calls::default();
    let app = serve(counting_routes(calls.clone()).layer(layer.cookie_secure(false))).await;
    (app, calls)
}

/// One answer: status, the new `pipeline_id` cookie value if one was set
/// (empty when the cookie was expired), and the body.
struct Answer {
    status: StatusCode,
    cookie: Option<String>,
    body: String,
}

/// Sends a request carrying `cookie` as the flow id, without a cookie jar,
/// so the test decides which flow each request belongs to.
async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    cookie: Option<&str>,
) -> reqwest::Result<Answer> {
    let mut request = client.request(method, url);
    if let Some(cookie) = cookie {
        request = request.header("cookie", format!("pipeline_id={cookie}"));
    }
    let response = request.send().await?;
    let status = response.status();
    let cookie = set_cookie(&response).map(|cookie| cookie.value().to_owned());
    let body = response.text().await?;
    Ok(Answer {
        status,
        cookie,
        body,
    })
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Sends an admin command to the private server from a blocking thread.
async fn admin_command(redis: &RedisServer, args: &[&str]) -> redis::Value {
    let mut admin = redis.admin();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let mut command = redis::cmd(&args[0]);
        for arg in &args[1..] {
            command.arg(arg);
        }
        command.query::<redis::Value>(&mut admin).unwrap()
    })
    .await
    .unwrap()
}

/// The `count` field of the record under `key`, read behind the layer.
fn stored_count(redis: &RedisServer, key: &str) -> Option<u64> {
    let raw = redis.get(key)?;
    let record: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    record["data"]["count"].as_u64()
}

#[tokio::test]
async fn a_slow_redis_answers_503_at_the_timeout_and_the_handler_is_not_called() {
    let _serial = SERIAL.lock().await;
    let redis = RedisServer::start();
    let layer = PipelineStateLayer::new(redis_store(&redis.url()).await)
        .store_timeout(Duration::from_millis(300));
    let (app, calls) = serve_counting(layer).await;
    let client = client();

    let created = send(&client, reqwest::Method::POST, &app.url("/incr"), None)
        .await
        .unwrap();
    assert_eq!(created.status, StatusCode::OK);
    let id = created.cookie.expect("a new flow sets its cookie");
    assert_eq!(calls.get(), 1);

    // Every command from every client waits for 3 s: the load cannot finish.
    admin_command(&redis, &["CLIENT", "PAUSE", "3000", "ALL"]).await;
    let paused = Instant::now();
    let requests = [
        (reqwest::Method::GET, "/read"),
        (reqwest::Method::POST, "/incr"),
        (reqwest::Method::GET, "/status"),
        (reqwest::Method::POST, "/incr"),
    ]
    .map(|(method, path)| {
        let (client, url, id) = (client.clone(), app.url(path), id.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let answer = send(&client, method, &url, Some(&id)).await.unwrap();
            (answer, started.elapsed())
        })
    });
    for request in requests {
        let (answer, elapsed) = request.await.unwrap();
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            answer.body,
            "pipeline state store unavailable; nothing was saved, send the request again\n"
        );
        assert_eq!(answer.cookie, None);
        // Sanity only: it did not wait for Redis to come back.
        assert!(elapsed < Duration::from_millis(2500), "{elapsed:?}");
    }
    assert_eq!(
        calls.get(),
        1,
        "no handler ran while the state could not load"
    );

    // A request without an id needs no Redis at all: served during the pause.
    let fresh = send(&client, reqwest::Method::GET, &app.url("/status"), None)
        .await
        .unwrap();
    assert_eq!((fresh.status, fresh.body.as_str()), (StatusCode::OK, "new"));
    assert_eq!(calls.get(), 2);

    // Once Redis answers again the same app serves the flow, which the
    // refused requests did not change.
    tokio::time::sleep(Duration::from_millis(3100).saturating_sub(paused.elapsed())).await;
    let after = send(&client, reqwest::Method::POST, &app.url("/incr"), Some(&id))
        .await
        .unwrap();
    assert_eq!((after.status, after.body.as_str()), (StatusCode::OK, "2"));
    assert_eq!(calls.get(), 3);
}

#[tokio::test]
async fn a_slow_redis_within_the_timeout_is_waited_for() {
    let _serial = SERIAL.lock().await;
    let redis = RedisServer::start();
    let layer = PipelineStateLayer::new(redis_store(&redis.url()).await)
        .store_timeout(Duration::from_secs(5));
    let (app, calls) = serve_counting(layer).await;
    let client = client();

    let created = send(&client, reqwest::Method::POST, &app.url("/incr"), None)
        .await
        .unwrap();
    let id = created.cookie.unwrap();

    // Slower than the Redis client's own default response timeout (500 ms),
    // well within the layer's 5 s: the layer's timeout is the one that holds.
    admin_command(&redis, &["CLIENT", "PAUSE", "1200", "ALL"]).await;
    let read = send(&client, reqwest::Method::GET, &app.url("/read"), Some(&id))
        .await
        .unwrap();
    assert_eq!(
        (read.status, read.body.as_str()),
        (StatusCode::OK, "count=1")
    );
    let written = send(&client, reqwest::Method::POST, &app.url("/incr"), Some(&id))
        .await
        .unwrap();
    assert_eq!(
        (written.status, written.body.as_str()),
        (StatusCode::OK, "2")
    );
    assert_eq!(calls.get(), 3);
}

#[tokio::test]
async fn a_write_that_times_out_answers_503_and_its_outcome_is_unknown() {
    let _serial = SERIAL.lock().await;
    let redis = RedisServer::start();
    // Loads are plain GETs (reads), so a write-only pause holds the write.
    let layer = PipelineStateLayer::new(redis_store(&redis.url()).await)
        .store_timeout(Duration::from_millis(300))
        .refresh_on_load(false);
    let (app, calls) = serve_counting(layer).await;
    let client = client();

    let created = send(&client, reqwest::Method::POST, &app.url("/incr"), None)
        .await
        .unwrap();
    let id = created.cookie.unwrap();
    // The second write loads the compare-and-set script into Redis.
    let second = send(&client, reqwest::Method::POST, &app.url("/incr"), Some(&id))
        .await
        .unwrap();
    assert_eq!(second.body, "2");

    admin_command(&redis, &["CLIENT", "PAUSE", "1500", "WRITE"]).await;
    let paused = Instant::now();
    let (logs, _guard) = Logs::capture();
    let held = send(&client, reqwest::Method::POST, &app.url("/incr"), Some(&id))
        .await
        .unwrap();
    assert_eq!(
        held.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "the handler's 200 is replaced: the write was not confirmed"
    );
    assert_eq!(
        held.body,
        "pipeline state store unavailable; the changes may not have been saved\n"
    );
    assert_eq!(calls.get(), 3, "the load worked, so the handler ran");
    assert_eq!(
        logs.matching(&["ERROR", "no answer from the store within 300ms"])
            .len(),
        1,
        "the log says why"
    );

    // The command was already in Redis's hands: it runs when the pause
    // ends. A 503 at flush means "not confirmed", not "not written"; the
    // next load shows the truth, and nothing acknowledged is ever lost.
    tokio::time::sleep(Duration::from_millis(1600).saturating_sub(paused.elapsed())).await;
    let read = send(&client, reqwest::Method::GET, &app.url("/read"), Some(&id))
        .await
        .unwrap();
    assert_eq!(
        (read.status, read.body.as_str()),
        (StatusCode::OK, "count=3")
    );
}

#[tokio::test]
async fn connection_refused_answers_503_promptly_and_service_resumes_after_a_restart() {
    let _serial = SERIAL.lock().await;
    let mut redis = RedisServer::start();
    let (app, calls) =
        serve_counting(PipelineStateLayer::new(redis_store(&redis.url()).await)).await;
    let client = client();

    let created = send(&client, reqwest::Method::POST, &app.url("/incr"), None)
        .await
        .unwrap();
    let id = created.cookie.unwrap();
    assert_eq!(calls.get(), 1);

    redis.stop();
    for (method, path) in [
        (reqwest::Method::GET, "/read"),
        (reqwest::Method::POST, "/incr"),
        (reqwest::Method::GET, "/read"),
    ] {
        let started = Instant::now();
        let answer = send(&client, method, &app.url(path), Some(&id))
            .await
            .unwrap();
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            answer.body,
            "pipeline state store unavailable; nothing was saved, send the request again\n"
        );
        // Sanity only: refused connections fail fast, far under the 1 s
        // timeout plus the reconnect attempt.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
    assert_eq!(calls.get(), 1, "no handler ran without its state");

    // Without an id no Redis is needed...
    let fresh = send(&client, reqwest::Method::GET, &app.url("/status"), None)
        .await
        .unwrap();
    assert_eq!((fresh.status, fresh.body.as_str()), (StatusCode::OK, "new"));
    // ...until the handler creates a flow: that write fails, visibly.
    let create = send(&client, reqwest::Method::POST, &app.url("/incr"), None)
        .await
        .unwrap();
    assert_eq!(create.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        create.cookie, None,
        "no cookie for a flow that was not created"
    );
    assert_eq!(calls.get(), 3);

    // The server comes back empty (no persistence): the same app, without a
    // restart, serves again and sees the flow as expired.
    redis.restart();
    let mut tries = 0;
    let answer = loop {
        tries += 1;
        let answer = send(
            &client,
            reqwest::Method::GET,
            &app.url("/status"),
            Some(&id),
        )
        .await
        .unwrap();
        if answer.status == StatusCode::OK || tries == 50 {
            break answer;
        }
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, "expired"),
        "after {tries} tries"
    );
    let restarted = send(&client, reqwest::Method::POST, &app.url("/incr"), Some(&id))
        .await
        .unwrap();
    assert_eq!(
        (restarted.status, restarted.body.as_str()),
        (StatusCode::OK, "1")
    );
    let new_id = restarted.cookie.expect("a new flow");
    assert_eq!(redis.keys(), [format!("pipeline:{new_id}")]);
}

/// What one client of a load test saw.
#[derive(Default, Debug)]
struct ClientLog {
    /// The flow the client holds now.
    flow: Option<String>,
    /// Per flow: the last acknowledged count, and how many writes failed
    /// (503) after it, whose outcome is unknown.
    acked: BTreeMap<String, (u64, u64)>,
    /// Answers by HTTP status.
    statuses: BTreeMap<u16, u64>,
    transport_errors: Vec<String>,
    reads_behind_an_ack: Vec<String>,
}

/// One client's loop: increments its own counter (and every fifth request
/// reads it back) until `deadline`. `phase` is sampled around each request.
async fn run_client(
    client: reqwest::Client,
    base: String,
    deadline: Instant,
    phase: Arc<AtomicU8>,
    phases_seen: Arc<Mutex<Vec<(u8, u8, u16)>>>,
) -> ClientLog {
    let mut log = ClientLog::default();
    let mut n = 0u64;
    while Instant::now() < deadline {
        n += 1;
        let read = n.is_multiple_of(5) && log.flow.is_some();
        let (method, path) = if read {
            (reqwest::Method::GET, "/read")
        } else {
            (reqwest::Method::POST, "/incr")
        };
        let before = phase.load(Ordering::SeqCst);
        let answer = send(
            &client,
            method,
            &format!("{base}{path}"),
            log.flow.as_deref(),
        )
        .await;
        let after = phase.load(Ordering::SeqCst);
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) => {
                log.transport_errors.push(error.to_string());
                continue;
            }
        };
        *log.statuses.entry(answer.status.as_u16()).or_default() += 1;
        phases_seen
            .lock()
            .unwrap()
            .push((before, after, answer.status.as_u16()));
        if let Some(cookie) = &answer.cookie {
            log.flow = Some(cookie.clone());
        }
        let Some(flow) = log.flow.clone() else {
            continue;
        };
        match (answer.status, read) {
            (StatusCode::OK, false) => {
                let count: u64 = answer.body.parse().unwrap();
                let entry = log.acked.entry(flow).or_insert((0, 0));
                assert!(
                    count > entry.0,
                    "acknowledged counts only grow: {count} after {}",
                    entry.0
                );
                *entry = (count, 0);
            }
            (StatusCode::OK, true) => {
                // Read-your-writes: a read after an acknowledged write sees it.
                let acked = log.acked.get(&flow).map_or(0, |a| a.0);
                let seen: u64 = answer
                    .body
                    .strip_prefix("count=")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                if seen < acked {
                    log.reads_behind_an_ack
                        .push(format!("{flow}: read {seen} after ack {acked}"));
                }
            }
            (_, false) if answer.cookie.is_none() => {
                if let Some(entry) = log.acked.get_mut(&flow) {
                    entry.1 += 1;
                }
            }
            _ => {}
        }
    }
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connections_under_load_lose_no_acknowledged_write() {
    let _serial = SERIAL.lock().await;
    let redis = RedisServer::start();
    let (app, _calls) =
        serve_counting(PipelineStateLayer::new(redis_store(&redis.url()).await)).await;
    let client = client();
    let deadline = Instant::now() + Duration::from_secs(10);
    let phase = Arc::new(AtomicU8::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));

    let clients: Vec<_> = (0..32)
        .map(|_| {
            tokio::spawn(run_client(
                client.clone(),
                app.url(""),
                deadline,
                phase.clone(),
                seen.clone(),
            ))
        })
        .collect();

    // Kill every normal connection (the app's) seven times during the run.
    let mut killed = Vec::new();
    for _ in 0..7 {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        match admin_command(
            &redis,
            &["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"],
        )
        .await
        {
            redis::Value::Int(n) => killed.push(n),
            other => panic!("CLIENT KILL answered {other:?}"),
        }
    }
    let mut logs = Vec::new();
    for client in clients {
        logs.push(client.await.expect("no client task panicked"));
    }

    let mut statuses = BTreeMap::<u16, u64>::new();
    for log in &logs {
        for (status, count) in &log.statuses {
            *statuses.entry(*status).or_default() += count;
        }
        assert!(
            log.transport_errors.is_empty(),
            "every request was answered (a panic drops the connection): {:?}",
            log.transport_errors
        );
        assert!(
            log.reads_behind_an_ack.is_empty(),
            "{:?}",
            log.reads_behind_an_ack
        );
    }
    println!("CLIENT KILL killed {killed:?} connections; answers by status: {statuses:?}");
    assert!(
        killed.iter().any(|&n| n > 0),
        "the faults hit the app's connection: {killed:?}"
    );
    assert!(
        statuses
            .keys()
            .all(|&status| status == 200 || status == 503),
        "every failure is a 503: {statuses:?}"
    );
    assert!(
        statuses.get(&503).copied().unwrap_or(0) > 0,
        "the kills failed some requests: {statuses:?}"
    );
    assert!(
        statuses.get(&200).copied().unwrap_or(0) > 1000,
        "the load ran: {statuses:?}"
    );

    // Every acknowledged count is in Redis; it may be higher by at most the
    // writes that failed after it (a 503 at flush is "not confirmed").
    let (mut flows, mut landed) = (0, 0);
    for log in &logs {
        for (flow, (acked, unknown)) in &log.acked {
            let stored = stored_count(&redis, &format!("pipeline:{flow}"))
                .unwrap_or_else(|| panic!("flow {flow} acknowledged {acked} but is gone"));
            assert!(
                (*acked..=acked + unknown).contains(&stored),
                "flow {flow}: acknowledged {acked}, {unknown} unconfirmed after, Redis holds {stored}"
            );
            flows += 1;
            landed += stored - acked;
        }
    }
    println!("{flows} flows checked; {landed} writes answered 503 were applied all the same");
    assert!(
        flows >= 32,
        "each client acknowledged writes: {flows} flows"
    );
    for key in redis.keys() {
        let ttl = redis.ttl(&key);
        assert!(ttl > 0, "{key} has TTL {ttl}");
    }

    // The same process serves normally now: every client's next write works
    // and continues from what Redis holds.
    for log in &logs {
        let flow = log.flow.as_deref().unwrap();
        let stored = stored_count(&redis, &format!("pipeline:{flow}")).unwrap();
        let answer = send(
            &client,
            reqwest::Method::POST,
            &app.url("/incr"),
            Some(flow),
        )
        .await
        .unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body, (stored + 1).to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_and_restarted_under_load_answers_503_then_serves_again() {
    let _serial = SERIAL.lock().await;
    let mut redis = RedisServer::start();
    let (app, _calls) =
        serve_counting(PipelineStateLayer::new(redis_store(&redis.url()).await)).await;
    let client = client();
    const UP: u8 = 0;
    const DOWN: u8 = 1;
    const BACK: u8 = 2;
    let phase = Arc::new(AtomicU8::new(UP));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let deadline = Instant::now() + Duration::from_millis(5500);

    let clients: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn(run_client(
                client.clone(),
                app.url(""),
                deadline,
                phase.clone(),
                seen.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tokio::task::block_in_place(|| redis.stop());
    phase.store(DOWN, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    phase.store(BACK, Ordering::SeqCst);
    tokio::task::block_in_place(|| redis.restart());
    let mut logs = Vec::new();
    for client in clients {
        logs.push(client.await.expect("no client task panicked"));
    }

    let seen = seen.lock().unwrap().clone();
    let count = |from: u8, to: u8, status: Option<u16>| {
        seen.iter()
            .filter(|(b, a, s)| *b == from && *a == to && status.is_none_or(|st| st == *s))
            .count()
    };
    println!(
        "up: {} ok of {}; down: {} answers, {} of them 503; back: {} ok of {}",
        count(UP, UP, Some(200)),
        count(UP, UP, None),
        count(DOWN, DOWN, None),
        count(DOWN, DOWN, Some(503)),
        count(BACK, BACK, Some(200)),
        count(BACK, BACK, None),
    );
    for log in &logs {
        assert!(
            log.transport_errors.is_empty(),
            "{:?}",
            log.transport_errors
        );
        assert!(
            log.statuses.keys().all(|&s| s == 200 || s == 503),
            "{:?}",
            log.statuses
        );
    }
    assert!(count(UP, UP, Some(200)) > 0, "served before the stop");
    assert!(
        count(DOWN, DOWN, None) > 0,
        "requests ran while Redis was down"
    );
    assert_eq!(
        count(DOWN, DOWN, Some(503)),
        count(DOWN, DOWN, None),
        "every request while Redis was down got 503"
    );
    assert!(
        count(BACK, BACK, Some(200)) > 0,
        "served again after the restart"
    );

    // The same process, never restarted, serves every client normally.
    for log in &logs {
        let answer = send(
            &client,
            reqwest::Method::POST,
            &app.url("/incr"),
            log.flow.as_deref(),
        )
        .await
        .unwrap();
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    }
}
