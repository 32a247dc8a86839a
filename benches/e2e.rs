//! End to end over loopback HTTP, against a private redis-server this bench
//! starts (and kills when it ends): throughput and p50/p99 latency of three
//! operations at 1 and 16 concurrent clients, for four ways of keeping a
//! flow's state in Redis behind axum.
//!
//! ```text
//! cargo bench --bench e2e --features bb8,cluster
//! ```
//!
//! | stack | what it is |
//! | --- | --- |
//! | `pipeline-state (ConnectionManager)` | this crate, `RedisStore::connect` (one multiplexed connection) |
//! | `pipeline-state (bb8 pool)` | this crate, `RedisStore::from_pool` (bb8, 16 connections, no `PING` on checkout) |
//! | `pipeline-state (cluster)` | this crate, `RedisStore::connect_cluster` on a private 3-master Redis Cluster (one connection per master) |
//! | `limit (hand-written)` | no middleware: handlers send the same commands themselves |
//! | `tower-sessions` | tower-sessions 0.14 + tower-sessions-redis-store 0.16 (fred pool of 6, as its docs show) |
//!
//! | operation | this crate | limit | tower-sessions |
//! | --- | --- | --- | --- |
//! | `read`: read a field | `GETEX` | `GETEX` | `GET` (its reads do not slide the TTL) |
//! | `change`: read a field, set it | `GETEX` + `EVALSHA` (compare-and-set) | the same two | `GET` + `SET XX` (no concurrency control) |
//! | `untouched`: the handler ignores the state | nothing (it loads lazily, when a handler asks) | nothing | nothing (it loads lazily) |
//!
//! Every client owns one flow (its cookie comes from a first request) and
//! sends its requests one after another over a keep-alive connection; all
//! stacks use the same client (hyper-util's legacy client). Client, servers
//! and redis-server share the machine, so compare rows, not absolutes.
//!
//! Each cell (stack × operation × clients) is measured in `E2E_ROUNDS`
//! short rounds (default 5); within one operation and client count the
//! rounds go stack after stack, in a rotating order, so that each stack's
//! round sits next to the others' in time. On a machine shared with other
//! work, throughput drifts by tens of percent from one minute to the next;
//! ratios between neighbouring rounds drift much less. The table shows the
//! median round's throughput, the percentiles of all rounds' latencies
//! together, and "× limit": the median over rounds of this stack's
//! throughput divided by the limit's in the same round.
//!
//! Wall-clock figures on a shared machine move with everyone else's load,
//! so each round also takes the CPU time spent per request, from Linux's
//! per-thread scheduler statistics (`/proc/<pid>/task/*/schedstat`): this
//! process (servers and client together; the client's share is the same
//! for every stack) and the redis-server. When the machine is saturated
//! (16 clients), throughput follows the sum of the two.
//!
//! Settings (environment): `E2E_ROUNDS` (default 5), `E2E_SECONDS`
//! (measured seconds per round, default 1), `E2E_WARMUP` (seconds of
//! warm-up per round, default 0.25), `E2E_OPS` (default
//! `read,change,untouched`), `E2E_CLIENTS` (default `1,16`), `E2E_STACKS`
//! (default `connection-manager,bb8,cluster,limit,tower-sessions`). The
//! goals summary is printed when every operation and the four single-node
//! stacks were measured; the cluster's ratio to the single-node
//! `ConnectionManager` when both were.
//!
//! The cluster row runs the same workload against 3 redis-servers (the
//! single-node rows against 1) on the same cores; its "CPU (redis)" is the
//! three servers' together.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::IntoResponse,
    routing::{get, post},
    serve::{Listener, ListenerExt},
};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::Method;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use redis::{Script, Value, aio::ConnectionManager};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use test_kit::{RedisCluster, RedisServer};
use tower_pipeline_state::{PipelineState, PipelineStateLayer, RedisStore, Store};
use tower_sessions::{Expiry, Session, SessionManagerLayer};

const TTL_SECONDS: u64 = 600;
const CONCURRENCY: [usize; 2] = [1, 16];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stack {
    ConnectionManager,
    Bb8,
    Cluster,
    Limit,
    TowerSessions,
}

const STACKS: [Stack; 5] = [
    Stack::ConnectionManager,
    Stack::Bb8,
    Stack::Cluster,
    Stack::Limit,
    Stack::TowerSessions,
];

impl Stack {
    fn name(self) -> &'static str {
        match self {
            Stack::ConnectionManager => "pipeline-state (ConnectionManager)",
            Stack::Bb8 => "pipeline-state (bb8 pool)",
            Stack::Cluster => "pipeline-state (cluster)",
            Stack::Limit => "limit (hand-written)",
            Stack::TowerSessions => "tower-sessions",
        }
    }

    /// Its name in `E2E_STACKS`.
    fn key(self) -> &'static str {
        match self {
            Stack::ConnectionManager => "connection-manager",
            Stack::Bb8 => "bb8",
            Stack::Cluster => "cluster",
            Stack::Limit => "limit",
            Stack::TowerSessions => "tower-sessions",
        }
    }

    fn parse(key: &str) -> Option<Self> {
        STACKS.into_iter().find(|stack| stack.key() == key)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Read,
    Change,
    Untouched,
}

const OPS: [Op; 3] = [Op::Read, Op::Change, Op::Untouched];

impl Op {
    fn parse(name: &str) -> Option<Self> {
        OPS.into_iter().find(|op| op.name() == name)
    }

    fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Change => "change",
            Op::Untouched => "untouched",
        }
    }

    fn request(self) -> (Method, &'static str) {
        match self {
            Op::Read => (Method::GET, "/read"),
            Op::Change => (Method::POST, "/change"),
            Op::Untouched => (Method::GET, "/untouched"),
        }
    }
}

// ---------------------------------------------------------------------------
// The servers. Each answers `POST /start` (create a flow with count 0),
// `GET /read`, `POST /change` (count + 1) and `GET /untouched`.

fn pipeline_state_app<St: Store>(store: St) -> Router {
    fn count(state: &PipelineState) -> Result<u64, StatusCode> {
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
        .route("/untouched", get(|| async { "ok" }))
        .layer(PipelineStateLayer::new(store).cookie_secure(false))
}

/// The limit: what a handler costs that sends the crate's Redis commands
/// itself, with the same record format, and nothing else (no middleware, no
/// timeouts, no merge on conflict, a bare cookie).
#[derive(Clone)]
struct Limit {
    redis: ConnectionManager,
    script: Script,
}

/// The crate's stored form (`{"format":1,"version":n,"data":{...}}`).
#[derive(Serialize, Deserialize)]
struct Record {
    format: u32,
    version: u64,
    data: Map<String, Json>,
}

/// The same compare-and-set script the crate sends.
const COMPARE_AND_SET: &str = include_str!("../src/store/compare_and_set.lua");

fn limit_key(headers: &HeaderMap) -> Option<String> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    let id = cookies
        .split(';')
        .find_map(|pair| pair.trim().strip_prefix("pipeline_id="))?;
    let well_formed = id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    well_formed.then(|| format!("pipeline:{id}"))
}

async fn limit_load(limit: &Limit, headers: &HeaderMap) -> Result<(String, Record), StatusCode> {
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

fn limit_count(record: &Record) -> Result<u64, StatusCode> {
    record
        .data
        .get("count")
        .and_then(Json::as_u64)
        .ok_or(StatusCode::INTERNAL_SERVER_ERROR)
}

async fn limit_start(State(limit): State<Limit>) -> Result<impl IntoResponse, StatusCode> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut data = Map::new();
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
async fn limit_read(State(limit): State<Limit>, request: Request) -> Result<String, StatusCode> {
    let (_, record) = limit_load(&limit, request.headers()).await?;
    Ok(limit_count(&record)?.to_string())
}

async fn limit_change(State(limit): State<Limit>, request: Request) -> Result<String, StatusCode> {
    let (key, mut record) = limit_load(&limit, request.headers()).await?;
    let n = limit_count(&record)? + 1;
    record.data.insert("count".to_owned(), n.into());
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
        Value::Int(1) => Ok(n.to_string()),
        _ => Err(StatusCode::CONFLICT),
    }
}

fn limit_app(redis: ConnectionManager) -> Router {
    let limit = Limit {
        redis,
        script: Script::new(COMPARE_AND_SET),
    };
    Router::new()
        .route("/start", post(limit_start))
        .route("/read", get(limit_read))
        .route("/change", post(limit_change))
        .route("/untouched", get(|| async { "ok" }))
        .with_state(limit)
}

fn tower_sessions_app(pool: tower_sessions_redis_store::fred::prelude::Pool) -> Router {
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
        .route("/untouched", get(|| async { "ok" }))
        .layer(layer)
}

async fn app(stack: Stack, redis_url: &str, cluster_urls: &[String]) -> Router {
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
        Stack::TowerSessions => {
            use tower_sessions_redis_store::fred::prelude::*;
            let pool =
                Pool::new(Config::from_url(redis_url).unwrap(), None, None, None, 6).unwrap();
            pool.init().await.unwrap();
            tower_sessions_app(pool)
        }
    }
}

async fn serve(router: Router) -> SocketAddr {
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

// ---------------------------------------------------------------------------
// The client and the measurement loop.

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Sends one request and reads the whole response; answers its status and
/// the `name=value` part of its first Set-Cookie.
async fn send(
    client: &HttpClient,
    method: Method,
    uri: &str,
    cookie: Option<&HeaderValue>,
) -> (StatusCode, Option<HeaderValue>) {
    let mut request = hyper::Request::builder().method(method).uri(uri);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let response = client
        .request(request.body(Empty::new()).unwrap())
        .await
        .expect("the bench server answers");
    let status = response.status();
    let cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| cookie::Cookie::parse(v).ok())
        .map(|c| HeaderValue::from_str(&format!("{}={}", c.name(), c.value())).unwrap());
    response.into_body().collect().await.unwrap();
    (status, cookie)
}

/// One measurement of one cell.
struct Round {
    latencies: Histogram<u64>,
    errors: u64,
    per_second: f64,
    /// CPU time over the measured window: this process, redis-server.
    cpu: (Duration, Duration),
}

/// All rounds of one cell.
struct Cell {
    stack: Stack,
    op: Op,
    clients: usize,
    requests: u64,
    errors: u64,
    /// Each round's, in round order.
    rates: Vec<f64>,
    /// The median round's.
    per_second: f64,
    /// Over all rounds' requests.
    p50: Duration,
    p99: Duration,
    /// CPU time per request: this process (servers and client), redis-server.
    cpu: (Duration, Duration),
}

impl Cell {
    fn new(stack: Stack, op: Op, clients: usize, rounds: &[Round]) -> Self {
        let mut latencies = Histogram::<u64>::new(3).unwrap();
        for round in rounds {
            latencies.add(&round.latencies).unwrap();
        }
        let rates: Vec<f64> = rounds.iter().map(|r| r.per_second).collect();
        Cell {
            stack,
            op,
            clients,
            requests: latencies.len(),
            errors: rounds.iter().map(|r| r.errors).sum(),
            per_second: median(rates.clone()),
            rates,
            cpu: {
                let requests = latencies.len().max(1) as u32;
                let (process, redis) = rounds.iter().fold(Default::default(), |sum, r| {
                    let (process, redis): (Duration, Duration) = sum;
                    (process + r.cpu.0, redis + r.cpu.1)
                });
                (process / requests, redis / requests)
            },
            p50: Duration::from_nanos(latencies.value_at_quantile(0.50)),
            p99: Duration::from_nanos(latencies.value_at_quantile(0.99)),
        }
    }
}

/// Times for one round: the warm-up and the measurement.
#[derive(Clone, Copy)]
struct Timing {
    warmup: Duration,
    seconds: Duration,
}

/// The CPU time all threads of process `pid` have run (`self` for this
/// one). Zero where `/proc` has no scheduler statistics.
fn cpu_time(pid: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    let nanos = tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}

fn cpu_times(redis_pids: &[String]) -> (Duration, Duration) {
    (
        cpu_time("self"),
        redis_pids.iter().map(|pid| cpu_time(pid)).sum(),
    )
}

/// The process id of the redis-server at `admin`.
fn process_id(admin: &mut redis::Connection) -> String {
    let info: String = redis::cmd("INFO").arg("server").query(admin).unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .expect("INFO server names the process id")
        .trim()
        .to_owned()
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    client: &HttpClient,
    redis_pids: &[String],
    addr: SocketAddr,
    stack: Stack,
    op: Op,
    clients: usize,
    Timing { warmup, seconds }: Timing,
) -> Round {
    let start_uri = format!("http://{addr}/start");
    let (method, path) = op.request();
    let uri = format!("http://{addr}{path}");
    let mut cookies = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (status, cookie) = send(client, Method::POST, &start_uri, None).await;
        assert_eq!(status, StatusCode::OK, "{} /start", stack.name());
        cookies.push(cookie.expect("starting a flow sets a cookie"));
    }

    let from = Instant::now() + warmup;
    let until = from + seconds;
    let tasks: Vec<_> = cookies
        .into_iter()
        .map(|cookie| {
            let (client, method, uri) = (client.clone(), method.clone(), uri.clone());
            tokio::spawn(async move {
                let mut latencies = Histogram::<u64>::new(3).unwrap();
                let (mut errors, mut last) = (0, from);
                loop {
                    let sent = Instant::now();
                    if sent >= until {
                        break;
                    }
                    let (status, _) = send(&client, method.clone(), &uri, Some(&cookie)).await;
                    let done = Instant::now();
                    if sent >= from {
                        latencies.record((done - sent).as_nanos() as u64).unwrap();
                        errors += u64::from(status != StatusCode::OK);
                        last = last.max(done);
                    }
                }
                (latencies, errors, last)
            })
        })
        .collect();

    tokio::time::sleep_until(from.into()).await;
    let cpu_before = cpu_times(redis_pids);
    let mut latencies = Histogram::<u64>::new(3).unwrap();
    let (mut errors, mut last) = (0, from);
    for task in tasks {
        let (histogram, task_errors, task_last) = task.await.unwrap();
        latencies.add(histogram).unwrap();
        errors += task_errors;
        last = last.max(task_last);
    }
    let cpu_after = cpu_times(redis_pids);
    Round {
        per_second: latencies.len() as f64 / (last - from).as_secs_f64(),
        latencies,
        errors,
        cpu: (cpu_after.0 - cpu_before.0, cpu_after.1 - cpu_before.1),
    }
}

fn env_seconds(name: &str, default: f64) -> Duration {
    let seconds = std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Duration::from_secs_f64(seconds)
}

fn micros(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e6)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

/// The median over rounds of `stack`'s throughput over `other`'s in the
/// same round.
fn ratio(cells: &[Cell], stack: Stack, other: Stack, op: Op, clients: usize) -> f64 {
    let ours = &find(cells, stack, op, clients).rates;
    let theirs = &find(cells, other, op, clients).rates;
    median(ours.iter().zip(theirs).map(|(a, b)| a / b).collect())
}

fn find(cells: &[Cell], stack: Stack, op: Op, clients: usize) -> &Cell {
    cells
        .iter()
        .find(|c| c.stack == stack && c.op == op && c.clients == clients)
        .expect("every cell was measured")
}

fn report(cells: &[Cell], ops: &[Op], concurrency: &[usize], stacks: &[Stack]) {
    println!();
    println!(
        "| operation | clients | stack | req/s | p50 µs | p99 µs | × limit | CPU µs/req (process) | CPU µs/req (redis) |"
    );
    println!("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for &op in ops {
        for &clients in concurrency {
            for &stack in stacks {
                let cell = find(cells, stack, op, clients);
                println!(
                    "| {} | {} | {} | {:.0} | {} | {} | {:.2} | {:.1} | {:.1} |",
                    op.name(),
                    clients,
                    stack.name(),
                    cell.per_second,
                    micros(cell.p50),
                    micros(cell.p99),
                    if stacks.contains(&Stack::Limit) {
                        ratio(cells, stack, Stack::Limit, op, clients)
                    } else {
                        f64::NAN
                    },
                    cell.cpu.0.as_secs_f64() * 1e6,
                    cell.cpu.1.as_secs_f64() * 1e6,
                );
            }
        }
    }

    let single_node = [
        Stack::ConnectionManager,
        Stack::Bb8,
        Stack::Limit,
        Stack::TowerSessions,
    ];
    if ops.len() == OPS.len() && single_node.iter().all(|stack| stacks.contains(stack)) {
        goals(cells, concurrency);
    }
    if stacks.contains(&Stack::Cluster) && stacks.contains(&Stack::ConnectionManager) {
        println!();
        println!("Cluster (3 masters) × single-node ConnectionManager, median over rounds:");
        for &op in ops {
            for &clients in concurrency {
                println!(
                    "  {:<9} {clients:>2} clients: {:.2}",
                    op.name(),
                    ratio(cells, Stack::Cluster, Stack::ConnectionManager, op, clients)
                );
            }
        }
    }

    let errors: u64 = cells.iter().map(|c| c.errors).sum();
    let requests: u64 = cells.iter().map(|c| c.requests).sum();
    println!();
    println!("{requests} measured requests, {errors} answered other than 200 OK");
}

fn goals(cells: &[Cell], concurrency: &[usize]) {
    println!();
    println!("Goals (this crate with ConnectionManager; bb8 in brackets):");
    for &clients in concurrency {
        let ratio = |op, other| {
            format!(
                "{:.2} [{:.2}]",
                ratio(cells, Stack::ConnectionManager, other, op, clients),
                ratio(cells, Stack::Bb8, other, op, clients),
            )
        };
        println!(
            "  {clients:>2} clients: untouched {} × limit (goal ≥ 0.9); read {} × limit (goal ≥ 0.95); change {} × limit (goal ≥ 0.9), {} × tower-sessions",
            ratio(Op::Untouched, Stack::Limit),
            ratio(Op::Read, Stack::Limit),
            ratio(Op::Change, Stack::Limit),
            ratio(Op::Change, Stack::TowerSessions),
        );
        let cpu = |stack, op| {
            let (process, redis) = find(cells, stack, op, clients).cpu;
            (process + redis).as_secs_f64() * 1e6
        };
        for op in [Op::Read, Op::Change] {
            println!(
                "     CPU per {:<6} (process + redis): {:.1} [{:.1}] µs vs limit {:.1} µs, tower-sessions {:.1} µs",
                op.name(),
                cpu(Stack::ConnectionManager, op),
                cpu(Stack::Bb8, op),
                cpu(Stack::Limit, op),
                cpu(Stack::TowerSessions, op),
            );
        }
        for op in OPS {
            let p99 = |stack| micros(find(cells, stack, op, clients).p99);
            println!(
                "     p99 {:<9} {} [{}] µs vs limit {} µs (goal ≤ 1.1 × limit), tower-sessions {} µs",
                op.name(),
                p99(Stack::ConnectionManager),
                p99(Stack::Bb8),
                p99(Stack::Limit),
                p99(Stack::TowerSessions),
            );
        }
    }
}

/// A comma-separated list from the environment, or `default`.
fn env_list<T>(name: &str, default: &[T], parse: impl Fn(&str) -> Option<T>) -> Vec<T>
where
    T: Copy,
{
    match std::env::var(name) {
        Ok(list) => list
            .split(',')
            .map(|item| {
                parse(item.trim()).unwrap_or_else(|| panic!("{name}: unknown item {item:?}"))
            })
            .collect(),
        Err(_) => default.to_vec(),
    }
}

async fn run() {
    let timing = Timing {
        warmup: env_seconds("E2E_WARMUP", 0.25),
        seconds: env_seconds("E2E_SECONDS", 1.0),
    };
    let rounds: usize = std::env::var("E2E_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let ops = env_list("E2E_OPS", &OPS, Op::parse);
    let concurrency = env_list("E2E_CLIENTS", &CONCURRENCY, |n| n.parse().ok());
    let stacks = env_list("E2E_STACKS", &STACKS, Stack::parse);
    let redis = RedisServer::start();
    let redis_pids = vec![process_id(&mut redis.admin())];
    let cluster = stacks.contains(&Stack::Cluster).then(RedisCluster::start);
    let (cluster_urls, cluster_pids) = match &cluster {
        Some(cluster) => (
            cluster.urls(),
            cluster
                .nodes
                .iter()
                .map(|node| process_id(&mut node.admin()))
                .collect(),
        ),
        None => (Vec::new(), Vec::new()),
    };
    eprintln!(
        "private redis-server on port {}; {} cells × {rounds} rounds of {:?} warm-up + {:?}",
        redis.port(),
        stacks.len() * ops.len() * concurrency.len(),
        timing.warmup,
        timing.seconds
    );
    let mut servers = Vec::new();
    for &stack in &stacks {
        let router = app(stack, &redis.url(), &cluster_urls).await;
        servers.push((stack, serve(router).await));
    }
    let client = client();
    let mut measured: Vec<((Stack, Op, usize), Vec<Round>)> = Vec::new();
    for &op in &ops {
        for &clients in &concurrency {
            for round in 1..=rounds {
                // A rotating order, so no stack always follows the same one.
                for i in 0..servers.len() {
                    let (stack, addr) = servers[(i + round) % servers.len()];
                    let pids = if stack == Stack::Cluster {
                        &cluster_pids
                    } else {
                        &redis_pids
                    };
                    let result = measure(&client, pids, addr, stack, op, clients, timing).await;
                    eprintln!(
                        "round {round}  {:<9} {:>2} clients  {:<34} {:>8.0} req/s  p50 {:>5} µs  p99 {:>5} µs",
                        op.name(),
                        clients,
                        stack.name(),
                        result.per_second,
                        micros(Duration::from_nanos(
                            result.latencies.value_at_quantile(0.5)
                        )),
                        micros(Duration::from_nanos(
                            result.latencies.value_at_quantile(0.99)
                        )),
                    );
                    let key = (stack, op, clients);
                    match measured.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, rounds)) => rounds.push(result),
                        None => measured.push((key, vec![result])),
                    }
                }
            }
        }
    }
    let cells: Vec<Cell> = measured
        .iter()
        .map(|&((stack, op, clients), ref rounds)| Cell::new(stack, op, clients, rounds))
        .collect();
    report(&cells, &ops, &concurrency, &stacks);
    drop(redis);
    drop(cluster);
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::select! {
            () = run() => {}
            // The redis-server is killed by its guard either way.
            _ = tokio::signal::ctrl_c() => eprintln!("interrupted"),
        }
    });
}
