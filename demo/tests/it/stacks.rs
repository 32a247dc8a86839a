//! The layer in each stack its users run, exercised as they run it: the
//! hyper and warp examples' own services and server loops (`demo`'s
//! `hyper_app`, `warp_app` and `http1`), a private redis-server, and a
//! cookie-keeping HTTP client.

use std::collections::BTreeMap;

use crate::common::*;
use cookie::{Cookie, SameSite};
use demo::{http1, hyper_app, listen, warp_app};
use reqwest::StatusCode;

async fn hyper_server(redis: &RedisServer) -> Server {
    let listener = listener().await;
    let addr = listener.local_addr().unwrap();
    let service = hyper_app::service(redis_store(&redis.url()).await);
    Server::spawn(addr, http1::serve(listener, service))
}

async fn warp_server(redis: &RedisServer) -> Server {
    let listener = listener().await;
    let addr = listener.local_addr().unwrap();
    let service = warp_app::service(redis_store(&redis.url()).await);
    Server::spawn(addr, http1::serve(listener, service))
}

/// Sends one request; answers its status, its `pipeline_id` Set-Cookie and
/// its body.
async fn send(
    browser: &reqwest::Client,
    method: reqwest::Method,
    url: String,
) -> (StatusCode, Option<Cookie<'static>>, String) {
    let response = browser.request(method, url).send().await.unwrap();
    let status = response.status();
    let cookie = set_cookie(&response);
    (status, cookie, response.text().await.unwrap())
}

fn calls(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

/// Create, read, change, expire, clear: the wizard flow both examples serve,
/// checked on the wire and in Redis.
async fn wizard_flow(server: &Server, redis: &RedisServer) {
    use reqwest::Method;
    let browser = browser();
    let url = |path: &str| server.url(path);

    // No cookie: a fresh state, and not one Redis command.
    redis.reset_stats();
    let (status, cookie, body) = send(&browser, Method::GET, url("/wizard")).await;
    assert_eq!(
        (status, cookie, body.as_str()),
        (StatusCode::OK, None, "no flow")
    );
    assert_eq!(redis.command_calls(), calls(&[]));

    // Create: one SET NX, and the id cookie, not Secure (plain HTTP).
    redis.reset_stats();
    let (status, cookie, body) = send(&browser, Method::POST, url("/wizard/start")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "step 1"));
    let cookie = cookie.expect("creating the flow sets the cookie");
    assert_eq!(cookie.http_only(), Some(true), "{cookie}");
    assert_eq!(cookie.same_site(), Some(SameSite::Lax), "{cookie}");
    assert_eq!(cookie.secure(), None, "{cookie}");
    assert_eq!(redis.command_calls(), calls(&[("set", 1)]));
    let key = format!("pipeline:{}", cookie.value());
    assert_eq!(redis.keys(), std::slice::from_ref(&key));

    // Read: the client sent the cookie back; one load (EVALSHA of the load
    // script: GET, then EXPIRE), no write, no cookie.
    redis.reset_stats();
    let (status, cookie, body) = send(&browser, Method::GET, url("/wizard")).await;
    assert_eq!(
        (status, cookie, body.as_str()),
        (StatusCode::OK, None, "step 1")
    );
    assert_eq!(
        redis.command_calls(),
        calls(&[("evalsha", 1), ("expire", 1), ("get", 1)])
    );

    // Change: the load, then the compare-and-set; the id stays.
    let (status, cookie, body) = send(&browser, Method::POST, url("/wizard/next")).await;
    assert_eq!(
        (status, cookie, body.as_str()),
        (StatusCode::OK, None, "step 2")
    );
    let stored = String::from_utf8(redis.get(&key).unwrap()).unwrap();
    assert_eq!(stored, r#"{"format":1,"version":2,"data":{"step":2}}"#);
    let (_, _, body) = send(&browser, Method::GET, url("/wizard")).await;
    assert_eq!(body, "step 2");

    // Clear: the key is deleted and the cookie expired.
    let (status, cookie, body) = send(&browser, Method::POST, url("/wizard/finish")).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "finished at step 2")
    );
    let removal = cookie.expect("clearing expires the cookie");
    assert!(removes(&removal), "{removal}");
    assert_eq!(redis.keys(), Vec::<String>::new());
    let (_, cookie, body) = send(&browser, Method::GET, url("/wizard")).await;
    assert_eq!((cookie, body.as_str()), (None, "no flow"));

    // A flow whose record vanished (expired) is seen as such by the handler.
    let (_, cookie, _) = send(&browser, Method::POST, url("/wizard/start")).await;
    let key = format!("pipeline:{}", cookie.unwrap().value());
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query(&mut redis.admin())
        .unwrap();
    let (_, _, body) = send(&browser, Method::GET, url("/wizard")).await;
    assert_eq!(body, "expired");
    let (status, _, _) = send(&browser, Method::POST, url("/wizard/next")).await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn hyper_runs_a_flow() {
    let redis = RedisServer::start();
    let server = hyper_server(&redis).await;
    wizard_flow(&server, &redis).await;
}

#[tokio::test]
async fn warp_runs_a_flow() {
    let redis = RedisServer::start();
    let server = warp_server(&redis).await;
    wizard_flow(&server, &redis).await;
}

#[tokio::test]
async fn unknown_routes_answer_404_and_write_nothing() {
    let redis = RedisServer::start();
    for server in [hyper_server(&redis).await, warp_server(&redis).await] {
        let (status, cookie, _) = send(&browser(), reqwest::Method::GET, server.url("/nope")).await;
        assert_eq!((status, cookie), (StatusCode::NOT_FOUND, None));
    }
    assert_eq!(redis.keys(), Vec::<String>::new());
}

/// The URL an example prints answers: an index page with the wizard's
/// requests. It needs no flow: the hyper example (lazy) sends no Redis
/// command for it even with a live flow's cookie; the warp example (eager)
/// loads the flow before its filters run.
#[tokio::test]
async fn the_printed_url_serves_an_index_and_only_eager_mode_loads_for_it() {
    let redis = RedisServer::start();
    let cases = [
        (hyper_server(&redis).await, calls(&[])),
        (
            warp_server(&redis).await,
            calls(&[("evalsha", 1), ("expire", 1), ("get", 1)]),
        ),
    ];
    for (server, commands) in cases {
        let browser = browser();
        send(&browser, reqwest::Method::POST, server.url("/wizard/start")).await;
        redis.reset_stats();
        let response = browser.get(server.url("/")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let kind = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(kind.starts_with("text/html"), "{kind}");
        let page = response.text().await.unwrap();
        for action in ["/wizard/start", "/wizard/next", "/wizard/finish"] {
            assert!(page.contains(&format!("action=\"{action}\"")), "{page}");
        }
        assert_eq!(redis.command_calls(), commands, "{}", server.url("/"));
    }
}

/// An example whose port is taken listens on another one instead of failing.
#[tokio::test]
async fn an_example_whose_port_is_taken_listens_on_another() {
    let taken = listener().await;
    let port = taken.local_addr().unwrap().port();
    let other = listen::listener_on(port).await.unwrap();
    assert_ne!(other.local_addr().unwrap().port(), port);
    let free = other.local_addr().unwrap().port();
    drop(other);
    let same = listen::listener_on(free).await.unwrap();
    assert_eq!(
        same.local_addr().unwrap().port(),
        free,
        "a free port is kept"
    );
}
