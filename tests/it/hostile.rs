//! Hostile clients and hostile records: forged, tampered, over-long and
//! replayed cookies, planted ids, oversized state, records planted in Redis
//! behind the layer's back, panicking handlers, and what the layer leaves in
//! Redis afterwards. Through a real axum server on loopback, a real HTTP
//! client and a private redis-server per test; "no Redis command" is counted
//! with `INFO commandstats`.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::*;
use axum::{Router, extract::Path, routing::post};
use cookie::{Cookie, CookieJar};
use reqwest::{Method, StatusCode};
use tower_pipeline_state::{Key, PipelineState, PipelineStateLayer, RedisStore};

/// The common test routes plus a few that only hostile tests need.
fn hostile_routes() -> Router {
    /// Stores a string of `n` bytes.
    async fn big(state: PipelineState, Path(n): Path<usize>) -> &'static str {
        state.set("blob", &"x".repeat(n)).unwrap();
        "big"
    }
    /// Changes the state, then panics.
    async fn panics(state: PipelineState) -> &'static str {
        state.set("count", &999_u64).unwrap();
        panic!("this handler panics on purpose");
    }
    async fn clear_then_set(state: PipelineState) -> &'static str {
        state.clear().unwrap();
        state.set("after", "clear").unwrap();
        "restarted"
    }
    async fn regenerate_then_clear(state: PipelineState) -> &'static str {
        state.regenerate(&serde_json::json!({"step": 1})).unwrap();
        state.clear().unwrap();
        "gone"
    }
    async fn regenerate_twice(state: PipelineState) -> &'static str {
        state.regenerate(&serde_json::json!({"step": 1})).unwrap();
        state.regenerate(&serde_json::json!({"step": 2})).unwrap();
        "twice"
    }
    routes()
        .route("/big/{n}", post(big))
        .route("/panic", post(panics))
        .route("/clear-then-set", post(clear_then_set))
        .route("/regenerate-then-clear", post(regenerate_then_clear))
        .route("/regenerate-twice", post(regenerate_twice))
}

async fn serve_hostile(layer: PipelineStateLayer<RedisStore>) -> Server {
    serve(hostile_routes().layer(layer.cookie_secure(false))).await
}

/// One answer: status, the `pipeline_id` value a `Set-Cookie` carried (empty
/// when it expires the cookie), and the body.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    cookie: Option<String>,
    body: String,
}

/// Sends `pipeline_id=<cookie>` by hand: the test, not a cookie jar, decides
/// what the client presents.
async fn send(app: &Server, method: Method, path: &str, cookie: Option<&str>) -> Answer {
    let mut request = reqwest::Client::new().request(method, app.url(path));
    if let Some(cookie) = cookie {
        request = request.header("cookie", format!("pipeline_id={cookie}"));
    }
    let response = request.send().await.unwrap();
    Answer {
        status: response.status(),
        cookie: set_cookie(&response).map(|cookie| cookie.value().to_owned()),
        body: response.text().await.unwrap(),
    }
}

/// The one `pipeline:` key on the server, as its id.
fn only_id(redis: &RedisServer) -> String {
    let keys = redis.keys();
    assert_eq!(keys.len(), 1, "{keys:?}");
    keys[0].strip_prefix("pipeline:").unwrap().to_owned()
}

/// Asserts that the requests `run` sends cost no Redis command at all.
async fn without_redis<F: Future<Output = ()>>(redis: &RedisServer, run: F) {
    redis.reset_stats();
    run.await;
    assert_eq!(redis.command_calls(), BTreeMap::new(), "no Redis command");
}

fn calls(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// `value` with the character at `at` replaced by another one of the same
/// alphabet (hex or base64).
fn tamper(value: &str, at: usize) -> String {
    let mut chars: Vec<char> = value.chars().collect();
    chars[at] = match chars[at] {
        'a' => 'b',
        '0' => '1',
        _ => 'a',
    };
    chars.into_iter().collect()
}

/// A cookie value for `id` signed with `key` by the cookie crate itself.
fn signed_with(key: &Key, id: &str) -> String {
    let mut jar = CookieJar::new();
    jar.signed_mut(key)
        .add(Cookie::new("pipeline_id", id.to_owned()));
    jar.get("pipeline_id").unwrap().value().to_owned()
}

#[tokio::test]
async fn signed_ids_load_and_forged_or_tampered_ones_cost_no_redis_command() {
    let redis = RedisServer::start();
    let key = Key::generate();
    let app = serve_hostile(
        PipelineStateLayer::new(redis_store(&redis.url()).await).signed(key.clone(), []),
    )
    .await;

    let created = send(&app, Method::POST, "/incr", None).await;
    let cookie = created.cookie.unwrap();
    let id = only_id(&redis);
    assert_ne!(cookie, id, "the cookie is signed, not the bare id");
    assert!(
        cookie.ends_with(&id),
        "a signed cookie carries the id after its MAC"
    );
    let mac_len = cookie.len() - id.len();
    let loaded = send(&app, Method::GET, "/status", Some(&cookie)).await;
    assert_eq!(loaded.body, format!("loaded {id}"));

    let other = send(&app, Method::POST, "/incr", None)
        .await
        .cookie
        .unwrap();
    let other_id = &other[mac_len..];
    let forgeries = [
        id.clone(),                                    // the real id, unsigned
        tamper(&cookie, 0),                            // MAC changed
        tamper(&cookie, cookie.len() - 1),             // id changed
        format!("{}{}", &cookie[..mac_len], other_id), // MAC of one flow, id of another
        signed_with(&Key::generate(), &id),            // signed with another key
        String::new(),
        "garbage".to_owned(),
        format!("{}{id}", "A".repeat(mac_len)),
    ];
    without_redis(&redis, async {
        for forged in &forgeries {
            let answer = send(&app, Method::GET, "/status", Some(forged)).await;
            assert_eq!(answer.body, "new none", "{forged:?} was accepted");
        }
    })
    .await;

    // A write under a forged cookie starts a new flow: one SET, the forged
    // id is not adopted and the real flow is untouched.
    let before = redis.get(&format!("pipeline:{id}"));
    redis.reset_stats();
    let written = send(&app, Method::POST, "/incr", Some(&forgeries[1])).await;
    assert_eq!(
        (written.status, written.body.as_str()),
        (StatusCode::OK, "1")
    );
    assert_eq!(redis.command_calls(), calls(&[("set", 1)]));
    let new_cookie = written.cookie.unwrap();
    assert!(!new_cookie.ends_with(&id) && !new_cookie.ends_with(other_id));
    assert_eq!(redis.get(&format!("pipeline:{id}")), before);
    assert_eq!(redis.keys().len(), 3);
}

#[tokio::test]
async fn private_ids_are_hidden_and_forged_or_tampered_ones_cost_no_redis_command() {
    let redis = RedisServer::start();
    let app = serve_hostile(
        PipelineStateLayer::new(redis_store(&redis.url()).await).private(Key::generate(), []),
    )
    .await;

    let created = send(&app, Method::POST, "/incr", None).await;
    let cookie = created.cookie.unwrap();
    let id = only_id(&redis);
    assert!(!cookie.contains(&id), "the id is encrypted: {cookie}");
    let loaded = send(&app, Method::GET, "/status", Some(&cookie)).await;
    assert_eq!(loaded.body, format!("loaded {id}"));

    let forgeries = [
        id.clone(),
        tamper(&cookie, 0),
        tamper(&cookie, cookie.len() / 2),
        tamper(&cookie, cookie.len() - 2),
        cookie[..cookie.len() - 4].to_owned(),
        signed_with(&Key::generate(), &id),
        String::new(),
    ];
    without_redis(&redis, async {
        for forged in &forgeries {
            let answer = send(&app, Method::GET, "/status", Some(forged)).await;
            assert_eq!(answer.body, "new none", "{forged:?} was accepted");
        }
    })
    .await;
}

#[tokio::test]
async fn key_rotation_keeps_old_cookies_working_and_signs_new_ones_with_the_new_key() {
    let redis = RedisServer::start();
    let store = redis_store(&redis.url()).await;
    for private in [false, true] {
        let (old, new) = (Key::generate(), Key::generate());
        let protect = |layer: PipelineStateLayer<RedisStore>, key: &Key, previous: &[Key]| {
            if private {
                layer.private(key.clone(), previous.to_vec())
            } else {
                layer.signed(key.clone(), previous.to_vec())
            }
        };
        let layer = || PipelineStateLayer::new(store.clone());
        // Before the rotation, during it (new key first, old one still
        // accepted), and after the old key is retired.
        let before = serve_hostile(protect(layer(), &old, &[])).await;
        let during = serve_hostile(protect(layer(), &new, std::slice::from_ref(&old))).await;
        let after = serve_hostile(protect(layer(), &new, &[])).await;

        let old_cookie = send(&before, Method::POST, "/incr", None)
            .await
            .cookie
            .unwrap();
        let updated = send(&during, Method::POST, "/incr", Some(&old_cookie)).await;
        assert_eq!(
            (updated.status, updated.body.as_str()),
            (StatusCode::OK, "2"),
            "private: {private}"
        );
        assert_eq!(updated.cookie, None, "same id, no new cookie");

        let new_cookie = send(&during, Method::POST, "/incr", None)
            .await
            .cookie
            .unwrap();
        let id = |answer: Answer| answer.body.strip_prefix("loaded ").map(str::to_owned);
        let new_id = id(send(&during, Method::GET, "/status", Some(&new_cookie)).await)
            .expect("the rotating app reads its own cookie");
        assert_eq!(
            id(send(&after, Method::GET, "/status", Some(&new_cookie)).await),
            Some(new_id),
            "new cookies are made with the new key"
        );
        without_redis(&redis, async {
            let answer = send(&before, Method::GET, "/status", Some(&new_cookie)).await;
            assert_eq!(
                answer.body, "new none",
                "the old key cannot read new cookies"
            );
            let answer = send(&after, Method::GET, "/status", Some(&old_cookie)).await;
            assert_eq!(
                answer.body, "new none",
                "a retired key's cookies are refused"
            );
        })
        .await;
    }
}

#[tokio::test]
async fn an_overlong_cookie_is_refused_without_any_redis_command() {
    let redis = RedisServer::start();
    let store = redis_store(&redis.url()).await;
    let key = Key::generate();
    let app = serve_hostile(
        PipelineStateLayer::new(store)
            .signed(key, [])
            .max_cookie_len(100),
    )
    .await;

    let cookie = send(&app, Method::POST, "/incr", None)
        .await
        .cookie
        .unwrap();
    let id = only_id(&redis);
    let loaded = send(&app, Method::GET, "/status", Some(&cookie)).await;
    assert_eq!(loaded.body, format!("loaded {id}"), "the cookie is valid");
    without_redis(&redis, async {
        // The valid cookie with junk after it: over the limit, refused
        // before its signature is looked at (`cookies::verify` checks the
        // length first), as is a huge one.
        for long in [format!("{cookie}{}", "A".repeat(30)), "A".repeat(6000)] {
            let answer = send(&app, Method::GET, "/status", Some(&long)).await;
            assert_eq!(answer.body, "new none", "{} bytes", long.len());
        }
    })
    .await;
}

#[tokio::test]
async fn a_record_over_the_size_limit_answers_500_writes_nothing_and_logs_why() {
    let (logs, _guard) = Logs::capture();
    let redis = RedisServer::start();
    let app = serve_hostile(
        PipelineStateLayer::new(redis_store(&redis.url()).await).max_record_size(1024),
    )
    .await;

    // A new flow too large to store is never created.
    redis.reset_stats();
    let refused = send(&app, Method::POST, "/big/2000", None).await;
    assert_eq!(refused.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        refused.body,
        "pipeline state too large; nothing was saved\n"
    );
    assert_eq!(refused.cookie, None);
    assert_eq!(redis.command_calls(), BTreeMap::new(), "no SET");
    assert_eq!(redis.keys(), Vec::<String>::new());

    // An existing flow grown too large keeps its stored record.
    let cookie = send(&app, Method::POST, "/big/100", None)
        .await
        .cookie
        .unwrap();
    let key = format!("pipeline:{}", only_id(&redis));
    let stored = redis.get(&key).unwrap();
    assert!(stored.len() < 1024 && stored.len() > 100);
    redis.reset_stats();
    let refused = send(&app, Method::POST, "/big/1000", Some(&cookie)).await;
    assert_eq!(refused.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        redis.command_calls(),
        calls(&[("evalsha", 1), ("expire", 1), ("get", 1)]),
        "the load only"
    );
    assert_eq!(redis.get(&key), Some(stored));

    let lines = logs.matching(&["ERROR", "over the size limit", "limit=1024"]);
    assert_eq!(lines.len(), 2, "one clear line per refusal: {lines:?}");
    assert!(lines[0].contains("size=20"), "{}", lines[0]);
}

#[tokio::test]
async fn records_planted_behind_the_layers_back_read_as_expired_and_are_replaced() {
    let (logs, _guard) = Logs::capture();
    let redis = RedisServer::start();
    let app = serve_hostile(PipelineStateLayer::new(redis_store(&redis.url()).await)).await;
    let deep = |depth: usize| {
        format!(
            r#"{{"format":1,"version":1,"data":{{"x":{}{}}}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )
    };
    let planted: Vec<(&str, Vec<u8>)> = vec![
        ("absurdly deep", deep(200_000).into_bytes()),
        ("just past the limit", deep(127).into_bytes()),
        (
            "a format no release wrote",
            br#"{"format":0,"version":1,"data":{}}"#.to_vec(),
        ),
        (
            "data not a map",
            br#"{"format":1,"version":1,"data":[1]}"#.to_vec(),
        ),
        (
            "version out of range",
            br#"{"format":1,"version":184467440737095516150,"data":{}}"#.to_vec(),
        ),
        (
            "duplicate version",
            br#"{"format":1,"version":1,"version":2,"data":{}}"#.to_vec(),
        ),
        (
            "not canonical",
            br#"{"format":1, "version":1, "data":{"count":5}}"#.to_vec(),
        ),
        (
            "reordered",
            br#"{"version":1,"format":1,"data":{"count":5}}"#.to_vec(),
        ),
        (
            "not UTF-8",
            b"{\"format\":1,\"version\":1,\"data\":{\"x\":\"\xff\"}}".to_vec(),
        ),
        (
            "truncated",
            br#"{"format":1,"version":1,"data":{"count""#.to_vec(),
        ),
        ("empty", Vec::new()),
    ];
    for (what, record) in planted {
        let cookie = send(&app, Method::POST, "/incr", None)
            .await
            .cookie
            .unwrap();
        let key = format!("pipeline:{cookie}");
        redis.set(&key, &record);

        let status = send(&app, Method::GET, "/status", Some(&cookie)).await;
        assert_eq!(
            (status.status, status.body.as_str()),
            (StatusCode::OK, "expired none"),
            "{what}"
        );
        // A write starts a new flow and deletes the planted record: one
        // command each, every command on one key.
        redis.reset_stats();
        let written = send(&app, Method::POST, "/incr", Some(&cookie)).await;
        assert_eq!(
            (written.status, written.body.as_str()),
            (StatusCode::OK, "1"),
            "{what}"
        );
        // The load slides the TTL of a record with this release's header
        // only (`EXPIRE` inside the load script).
        let slid = u64::from(record.starts_with(br#"{"format":1,"version":"#));
        let mut expected = calls(&[("evalsha", 1), ("get", 1), ("del", 1), ("set", 1)]);
        if slid > 0 {
            expected.insert("expire".to_owned(), slid);
        }
        assert_eq!(redis.command_calls(), expected, "{what}");
        let new = written.cookie.unwrap();
        assert_ne!(new, cookie);
        assert_eq!(redis.keys(), [format!("pipeline:{new}")], "{what}");
        let _: () = redis::cmd("FLUSHALL").query(&mut redis.admin()).unwrap();
    }
    let warnings = logs.matching(&["WARN", "does not decode"]);
    assert_eq!(
        warnings.len(),
        20,
        "a warning per corrupt load: {warnings:#?}"
    );
    assert_eq!(
        logs.matching(&["WARN", "recursion limit"]).len(),
        2,
        "{warnings:#?}"
    );
    // The absurdly deep one is over `max_record_size` (64 KiB): refused on
    // its size, before any JSON is parsed.
    let oversized = logs.matching(&["WARN", "over the size limit", "limit=65536"]);
    assert_eq!(oversized.len(), 2, "{oversized:#?}");
}

#[tokio::test]
async fn a_record_at_the_last_version_keeps_working() {
    let redis = RedisServer::start();
    let app = serve_hostile(PipelineStateLayer::new(redis_store(&redis.url()).await)).await;
    let cookie = send(&app, Method::POST, "/incr", None)
        .await
        .cookie
        .unwrap();
    let key = format!("pipeline:{cookie}");
    redis.set(
        &key,
        format!(
            r#"{{"format":1,"version":{},"data":{{"count":5}}}}"#,
            u64::MAX
        )
        .as_bytes(),
    );

    for expected in ["6", "7"] {
        let answer = send(&app, Method::POST, "/incr", Some(&cookie)).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (StatusCode::OK, expected)
        );
    }
    let read = send(&app, Method::GET, "/read", Some(&cookie)).await;
    assert_eq!(read.body, "count=7");
}

#[tokio::test]
async fn a_panicking_handler_writes_nothing_and_the_flow_keeps_its_state() {
    let redis = RedisServer::start();
    let app = serve_hostile(PipelineStateLayer::new(redis_store(&redis.url()).await)).await;
    let cookie = send(&app, Method::POST, "/incr", None)
        .await
        .cookie
        .unwrap();
    let key = format!("pipeline:{cookie}");
    let stored = redis.get(&key);

    // axum catches nothing: the panic ends the connection without an answer.
    redis.reset_stats();
    for flow in [Some(cookie.as_str()), None] {
        let mut request = reqwest::Client::new().post(app.url("/panic"));
        if let Some(cookie) = flow {
            request = request.header("cookie", format!("pipeline_id={cookie}"));
        }
        assert!(request.send().await.is_err(), "the connection dropped");
    }
    assert_eq!(
        redis.command_calls(),
        calls(&[("evalsha", 1), ("expire", 1), ("get", 1)]),
        "the load only, no write"
    );
    assert_eq!(redis.get(&key), stored);
    assert_eq!(
        redis.keys(),
        [key],
        "the panicking new flow was not created"
    );

    // The server lives on, and the flow is as it was before the panic.
    let read = send(&app, Method::GET, "/read", Some(&cookie)).await;
    assert_eq!(read.body, "count=1");
    let incr = send(&app, Method::POST, "/incr", Some(&cookie)).await;
    assert_eq!((incr.status, incr.body.as_str()), (StatusCode::OK, "2"));
}

#[tokio::test]
async fn after_mixed_workloads_every_key_has_a_ttl_and_none_is_orphaned() {
    let redis = RedisServer::start();
    let app = serve_hostile(PipelineStateLayer::new(redis_store(&redis.url()).await)).await;
    // Another application's keys on the same server.
    let _: () = redis::cmd("SET")
        .arg("otherapp:config")
        .arg("keep")
        .query(&mut redis.admin())
        .unwrap();
    redis.set("otherapp:session:1", b"keep too");

    let mut flows = Vec::new();
    for client in 0..8 {
        let mut flow: Option<String> = None;
        let mut steps = vec![
            "/incr",
            "/incr",
            "/regenerate",
            "/set/a/b",
            "/clear",
            "/incr",
            "/clear-then-set",
            "/regenerate-then-clear",
            "/incr",
            "/regenerate-twice",
            "/set/c/d",
            "/regenerate",
        ];
        if client % 2 == 1 {
            steps.push("/clear");
        }
        if client % 4 == 2 {
            steps.push("/clear-then-set");
        }
        for (n, path) in steps.into_iter().enumerate() {
            if client % 3 == 0 && n == 5 {
                // A forged cookie: the next write must not adopt it.
                flow = Some("f".repeat(32));
            }
            if client % 3 == 1 && n == 9 {
                // A corrupt record: the next write replaces it.
                redis.set(&format!("pipeline:{}", flow.as_ref().unwrap()), b"{");
            }
            let answer = send(&app, Method::POST, path, flow.as_deref()).await;
            assert_eq!(answer.status, StatusCode::OK, "client {client} step {path}");
            if let Some(cookie) = answer.cookie {
                flow = (!cookie.is_empty()).then_some(cookie);
            }
        }
        // Reads in between change nothing.
        send(&app, Method::GET, "/read", flow.as_deref()).await;
        flows.push(flow);
    }

    let live: BTreeSet<String> = flows
        .iter()
        .flatten()
        .map(|id| format!("pipeline:{id}"))
        .collect();
    assert_eq!(
        live.len(),
        4,
        "the clients that did not end with a clear hold a flow"
    );
    let ours: BTreeSet<String> = redis
        .keys()
        .into_iter()
        .filter(|k| !k.starts_with("otherapp:"))
        .collect();
    assert_eq!(ours, live, "every key belongs to a flow a client holds");
    for key in &ours {
        let ttl = redis.ttl(key);
        // Slid by the last request; a busy 2-core run takes seconds.
        assert!((500..=600).contains(&ttl), "{key}: TTL {ttl}");
    }
    assert_eq!(redis.get("otherapp:config").as_deref(), Some(&b"keep"[..]));
    assert_eq!(
        redis.ttl("otherapp:config"),
        -1,
        "the other app's key is untouched"
    );
    assert_eq!(
        redis.get("otherapp:session:1").as_deref(),
        Some(&b"keep too"[..])
    );
}

#[tokio::test]
async fn a_planted_id_is_never_adopted_and_regenerate_cuts_the_planter_off() {
    let redis = RedisServer::start();
    let app = serve_hostile(PipelineStateLayer::new(redis_store(&redis.url()).await)).await;

    // A made-up id: the victim's first write gets a fresh one instead.
    let made_up = "0123456789abcdef0123456789abcdef";
    let victim = send(&app, Method::POST, "/incr", Some(made_up))
        .await
        .cookie
        .unwrap();
    assert_ne!(victim, made_up);
    assert!(redis.get(&format!("pipeline:{made_up}")).is_none());

    // A real flow of the attacker's, planted in the victim's browser (plain
    // ids): the victim shares it until the app regenerates at login...
    let attacker = send(&app, Method::POST, "/set/owner/attacker", None)
        .await
        .cookie
        .unwrap();
    send(&app, Method::POST, "/set/victim/was-here", Some(&attacker)).await;
    let regenerated = send(&app, Method::POST, "/regenerate", Some(&attacker)).await;
    let victim = regenerated.cookie.unwrap();
    assert_ne!(victim, attacker);
    // ...after which the attacker's id leads nowhere.
    let seen = send(&app, Method::GET, "/status", Some(&attacker)).await;
    assert_eq!(seen.body, "expired none");
    assert!(redis.get(&format!("pipeline:{attacker}")).is_none());
    assert_eq!(
        send(&app, Method::GET, "/status", Some(&victim)).await.body,
        format!("loaded {victim}")
    );
}

#[tokio::test]
async fn a_replayed_cookie_of_a_cleared_flow_finds_nothing_and_revives_nothing() {
    let redis = RedisServer::start();
    let app = serve_hostile(PipelineStateLayer::new(redis_store(&redis.url()).await)).await;
    let cookie = send(&app, Method::POST, "/incr", None)
        .await
        .cookie
        .unwrap();
    send(&app, Method::POST, "/incr", Some(&cookie)).await;
    let cleared = send(&app, Method::POST, "/clear", Some(&cookie)).await;
    assert_eq!(cleared.cookie.as_deref(), Some(""), "the cookie is expired");
    assert_eq!(redis.keys(), Vec::<String>::new());

    // The captured cookie, replayed.
    assert_eq!(
        send(&app, Method::GET, "/read", Some(&cookie)).await.body,
        "count=none"
    );
    let write = send(&app, Method::POST, "/incr", Some(&cookie)).await;
    assert_eq!(write.body, "1", "a new flow, not the old one");
    let new = write.cookie.unwrap();
    assert_ne!(new, cookie);
    assert_eq!(redis.keys(), [format!("pipeline:{new}")]);
}

#[tokio::test]
async fn cookies_that_are_not_text_do_not_hide_the_flow_on_the_wire() {
    let redis = RedisServer::start();
    let key = Key::generate();
    let plain = serve_hostile(PipelineStateLayer::new(redis_store(&redis.url()).await)).await;
    let signed =
        serve_hostile(PipelineStateLayer::new(redis_store(&redis.url()).await).signed(key, []))
            .await;
    for app in [&plain, &signed] {
        let cookie = send(app, Method::POST, "/incr", None).await.cookie.unwrap();
        // `pref=café` in Latin-1 before the id and raw high bytes after it,
        // in the header that carries the id and in another `Cookie` header,
        // sent as bytes over HTTP/1.1.
        let mut carrying = b"pref=caf\xe9; pipeline_id=".to_vec();
        carrying.extend_from_slice(cookie.as_bytes());
        carrying.extend_from_slice(b"; junk=\xff\xfe\x80");
        let response = reqwest::Client::new()
            .get(app.url("/read"))
            .header(
                "cookie",
                http::HeaderValue::from_bytes(b"lang=\xc3\xa9\xa0").unwrap(),
            )
            .header("cookie", http::HeaderValue::from_bytes(&carrying).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.text().await.unwrap(),
            "count=1",
            "the flow is found next to cookies that are not text"
        );
    }
}

#[tokio::test]
async fn guessed_ids_find_nothing_and_signed_probes_never_reach_redis() {
    let redis = RedisServer::start();
    let store = redis_store(&redis.url()).await;
    let plain = serve_hostile(PipelineStateLayer::new(store.clone())).await;
    let signed = serve_hostile(PipelineStateLayer::new(store).signed(Key::generate(), [])).await;

    // Issued ids: distinct UUID v4s, 122 random bits each.
    let mut issued = BTreeSet::new();
    for _ in 0..64 {
        let id = send(&plain, Method::POST, "/incr", None)
            .await
            .cookie
            .unwrap();
        assert_eq!(id.len(), 32);
        assert_eq!(&id[12..13], "4", "version nibble: {id}");
        assert!("89ab".contains(&id[16..17]), "variant nibble: {id}");
        issued.insert(id);
    }
    assert_eq!(issued.len(), 64);

    // Guesses: random well-formed ids find nothing (one load each)...
    for _ in 0..64 {
        let guess = uuid::Uuid::new_v4().simple().to_string();
        assert_eq!(
            send(&plain, Method::GET, "/status", Some(&guess))
                .await
                .body,
            "expired none"
        );
    }
    // ...and with signed ids they are refused before Redis.
    without_redis(&redis, async {
        for _ in 0..64 {
            let guess = uuid::Uuid::new_v4().simple().to_string();
            assert_eq!(
                send(&signed, Method::GET, "/status", Some(&guess))
                    .await
                    .body,
                "new none"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn the_layer_runs_under_an_acl_user_limited_to_its_prefix() {
    let redis = RedisServer::start();
    let _: () = redis::cmd("ACL")
        .arg(
            &[
                "SETUSER",
                "flows",
                "on",
                ">flows-secret",
                "resetkeys",
                "~pipeline:*",
                "resetchannels",
                "-@all",
                "+getex",
                "+get",
                "+expire",
                "+set",
                "+del",
                "+evalsha",
                "+script|load",
            ][..],
        )
        .query(&mut redis.admin())
        .unwrap();
    let url = format!("redis://flows:flows-secret@127.0.0.1:{}", redis.port());
    let store = RedisStore::connect(&url).await.unwrap();
    let app = serve_hostile(PipelineStateLayer::new(store)).await;

    let cookie = send(&app, Method::POST, "/incr", None)
        .await
        .cookie
        .unwrap();
    for (path, expected) in [("/incr", "2"), ("/incr", "3")] {
        let answer = send(&app, Method::POST, path, Some(&cookie)).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (StatusCode::OK, expected)
        );
    }
    let regenerated = send(&app, Method::POST, "/regenerate", Some(&cookie)).await;
    let new = regenerated.cookie.unwrap();
    assert_eq!(
        send(&app, Method::GET, "/read", Some(&new)).await.body,
        "count=3"
    );
    assert_eq!(
        send(&app, Method::POST, "/clear", Some(&new)).await.status,
        StatusCode::OK
    );
    assert_eq!(redis.keys(), Vec::<String>::new());

    // The same user cannot read another application's keys.
    let _: () = redis::cmd("SET")
        .arg("otherapp:secret")
        .arg("x")
        .query(&mut redis.admin())
        .unwrap();
    let mut limited = redis::Client::open(url).unwrap().get_connection().unwrap();
    let denied: redis::RedisResult<Option<String>> =
        redis::cmd("GET").arg("otherapp:secret").query(&mut limited);
    let denied = denied.unwrap_err();
    assert!(
        matches!(
            denied.kind(),
            redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm)
        ),
        "{denied}"
    );
}
