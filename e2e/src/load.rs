//! The load: the four operations, the client that sends them (one flow
//! per client, requests one after another over a keep-alive connection),
//! and one round's measurement of one stack.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use axum::http::{HeaderValue, StatusCode, header};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::Method;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

use crate::{cpu::cpu_times, stack::Stack};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Read,
    Change,
    Untouched,
    /// A realistic step: read a map of 8 entries and a counter, replace one
    /// entry, increment the counter, write both back.
    Step,
}

pub(crate) const OPS: [Op; 4] = [Op::Read, Op::Change, Op::Untouched, Op::Step];

impl Op {
    pub(crate) fn parse(name: &str) -> Option<Self> {
        OPS.into_iter().find(|op| op.name() == name)
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Change => "change",
            Op::Untouched => "untouched",
            Op::Step => "step",
        }
    }

    pub(crate) fn request(self) -> (Method, &'static str) {
        match self {
            Op::Read => (Method::GET, "/read"),
            Op::Change => (Method::POST, "/change"),
            Op::Untouched => (Method::GET, "/untouched"),
            Op::Step => (Method::POST, "/step"),
        }
    }
}

pub(crate) type HttpClient = Client<HttpConnector, Empty<Bytes>>;

pub(crate) fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Sends one request and reads the whole response; answers its status and
/// the `name=value` part of its first Set-Cookie.
pub(crate) async fn send(
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
pub(crate) struct Round {
    pub(crate) latencies: Histogram<u64>,
    pub(crate) errors: u64,
    pub(crate) per_second: f64,
    /// CPU time over the measured window: this process, redis-server.
    pub(crate) cpu: (Duration, Duration),
}

/// Times for one round: the warm-up and the measurement.
#[derive(Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) warmup: Duration,
    pub(crate) seconds: Duration,
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn measure(
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
