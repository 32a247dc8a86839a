//! Instructions per request, counted by callgrind: deterministic where
//! wall-clock figures on a shared machine are not, and what tells where a
//! request's time goes (`callgrind_annotate` on the files it leaves).
//!
//! ```text
//! cargo bench -p e2e --bench instructions
//! ```
//!
//! For each stack (this crate over `ConnectionManager`, the hand-written
//! limit, plain `GETEX` + `SET EX`) and operation, this bench runs itself
//! under `valgrind --tool=callgrind` twice, sending `N` then `2N` requests
//! in process (`oneshot` on the stack's router: no HTTP, no client) to a
//! private redis-server outside valgrind; the difference over `N` is the
//! cost of one request in the application (router, layer, handler, Redis
//! client), the setup counted in both runs cancelling out. Settings:
//! `E2E_REQUESTS` (`N`, default 200), `E2E_OPS`, `E2E_STACKS` (of
//! `connection-manager`, `limit`, `plain`). Callgrind's files stay in
//! `target/tmp/callgrind/` for `callgrind_annotate`.

use std::{path::Path, process::Command};

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header},
};
use test_kit::RedisServer;
use tower::ServiceExt;

use crate::{
    load::{OPS, Op},
    stack::{Stack, app},
};

/// Set in the child that valgrind runs: `<stack>,<op>,<requests>,<redis url>`.
const CHILD: &str = "E2E_INSTRUCTIONS_CHILD";

const STACKS: [Stack; 3] = [Stack::ConnectionManager, Stack::Limit, Stack::Plain];

/// The bench's entry: the parent counts, the child (under valgrind) sends.
/// Callgrind's files go under `scratch` (the bench's `CARGO_TARGET_TMPDIR`).
pub fn run(scratch: &Path) {
    match std::env::var(CHILD) {
        Ok(job) => child(&job),
        Err(_) => parent(&scratch.join("callgrind")),
    }
}

fn parent(out: &Path) {
    let requests: u64 = std::env::var("E2E_REQUESTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let ops = crate::settings::env_list("E2E_OPS", &OPS, Op::parse);
    let stacks = crate::settings::env_list("E2E_STACKS", &STACKS, Stack::parse);
    let redis = RedisServer::start();
    std::fs::create_dir_all(out).unwrap();
    println!();
    println!("| operation | stack | instructions per request |");
    println!("| --- | --- | ---: |");
    for &op in &ops {
        for &stack in &stacks {
            let count = |n: u64| {
                let file = out.join(format!("{}-{}-{n}.out", stack.key(), op.name()));
                callgrind(
                    &file,
                    &format!("{},{},{n},{}", stack.key(), op.name(), redis.url()),
                )
            };
            let per_request = (count(2 * requests) - count(requests)) / requests;
            println!("| {} | {} | {per_request} |", op.name(), stack.name());
        }
    }
    println!();
    println!("callgrind's files: {}", out.display());
}

/// Runs this bench's child under callgrind, answers its total instruction
/// count.
fn callgrind(file: &Path, job: &str) -> u64 {
    let status = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", file.display()))
        .arg(std::env::current_exe().unwrap())
        .env(CHILD, job)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("valgrind runs: install it with apt-get install -y valgrind");
    assert!(status.success(), "the child under callgrind failed: {job}");
    let text = std::fs::read_to_string(file).unwrap();
    text.lines()
        .find_map(|line| {
            line.strip_prefix("summary: ")
                .or(line.strip_prefix("totals: "))
        })
        .and_then(|n| n.trim().parse().ok())
        .expect("callgrind's file has its total")
}

fn child(job: &str) {
    let mut parts = job.splitn(4, ',');
    let mut next = || parts.next().expect("a job names stack, op, requests, url");
    let stack = Stack::parse(next()).expect("a known stack");
    let op = Op::parse(next()).expect("a known operation");
    let requests: u64 = next().parse().expect("a request count");
    let url = next().to_owned();
    // One thread: the count is the same every run.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        // As `axum::serve` does: handlers become services once, not per
        // request.
        let router: Router = app(stack, &url, &[]).await.with_state(());
        let started = send(&router, "POST", "/start", None).await;
        let cookie = started.expect("starting a flow sets a cookie");
        let (method, path) = op.request();
        for _ in 0..requests {
            send(&router, method.as_str(), path, Some(&cookie)).await;
        }
    });
}

/// One request through the router; answers the `name=value` of its
/// Set-Cookie. Anything but 200 stops the count.
async fn send(router: &Router, method: &str, path: &str, cookie: Option<&str>) -> Option<String> {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{method} {path}");
    response
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| cookie::Cookie::parse(v).ok())
        .map(|c| format!("{}={}", c.name(), c.value()))
}
