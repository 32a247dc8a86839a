//! Every write is versioned: regenerate, clear and replace racing other
//! writes of the same flow. Each race is made deterministic with a gate in
//! the handler: the gated request loads the flow and waits, the other one
//! loads the same version and writes first, then the gated one writes. Each
//! race runs 20 times on one redis-server and one app, flushed in between.

use std::sync::Arc;

use axum::{Router, extract::Path, routing::post};
use cookie::Cookie;
use reqwest::StatusCode;
use serde_json::{Map, Value, json};
use tokio::sync::{Barrier, Notify};
use tower_pipeline_state::{PipelineState, PipelineStateLayer};

use crate::common::*;

const REPETITIONS: usize = 20;

/// Lets a test hold a handler after its state is loaded.
#[derive(Default)]
struct Gate {
    loaded: Notify,
    release: Notify,
}

impl Gate {
    /// Says "loaded", then waits until the test lets the handler go on.
    async fn wait(&self) {
        self.loaded.notify_one();
        self.release.notified().await;
    }
}

/// What a racing request does to the flow it loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// `clear()`.
    Clear,
    /// `regenerate` with the loaded fields plus `regenerated: true`.
    Regenerate,
    /// `set("update", "acknowledged")`: a field nobody else writes.
    Update,
    /// `replace` with `{"replaced": true}` (leaves every loaded field out).
    Replace,
}

impl Op {
    fn path(self) -> &'static str {
        match self {
            Op::Clear => "clear",
            Op::Regenerate => "regenerate",
            Op::Update => "update",
            Op::Replace => "replace",
        }
    }

    fn parse(path: &str) -> Self {
        match path {
            "clear" => Op::Clear,
            "regenerate" => Op::Regenerate,
            "update" => Op::Update,
            "replace" => Op::Replace,
            other => panic!("no operation {other}"),
        }
    }

    fn apply(self, state: &PipelineState) -> &'static str {
        match self {
            Op::Clear => state.clear().unwrap(),
            Op::Regenerate => {
                let mut fields = state.read::<Map<String, Value>>().unwrap();
                fields.insert("regenerated".into(), true.into());
                state.regenerate(&fields).unwrap();
            }
            Op::Update => state.set("update", "acknowledged").unwrap(),
            Op::Replace => state.replace(&json!({"replaced": true})).unwrap(),
        }
        self.path()
    }
}

/// `/now/{op}` applies `op` at once; `/gated/{op}` waits at the gate after
/// the load; `/together/{op}` waits at the barrier (both requests load, then
/// both go on).
fn racing_routes(gate: Arc<Gate>, barrier: Arc<Barrier>) -> Router {
    routes()
        .route(
            "/now/{op}",
            post(|state: PipelineState, Path(op): Path<String>| async move {
                Op::parse(&op).apply(&state)
            }),
        )
        .route(
            "/gated/{op}",
            post(move |state: PipelineState, Path(op): Path<String>| {
                let gate = gate.clone();
                async move {
                    gate.wait().await;
                    Op::parse(&op).apply(&state)
                }
            }),
        )
        .route(
            "/together/{op}",
            post(move |state: PipelineState, Path(op): Path<String>| {
                let barrier = barrier.clone();
                async move {
                    barrier.wait().await;
                    Op::parse(&op).apply(&state)
                }
            }),
        )
}

/// One answer: its status and the `pipeline_id` cookie it set, if any.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    cookie: Option<Cookie<'static>>,
}

impl Answer {
    async fn of(response: reqwest::Response) -> Self {
        let cookie = set_cookie(&response);
        // Read the body so the connection is done with.
        let status = response.status();
        response.bytes().await.unwrap();
        Self { status, cookie }
    }

    /// The id a `Set-Cookie` handed out (not one that expires the cookie).
    fn new_id(&self) -> Option<&str> {
        self.cookie
            .as_ref()
            .filter(|cookie| !removes(cookie))
            .map(Cookie::value)
    }

    fn expires_the_cookie(&self) -> bool {
        self.cookie.as_ref().is_some_and(removes)
    }
}

/// One redis-server and one app for all repetitions of a race.
struct Arena {
    redis: RedisServer,
    app: Server,
    gate: Arc<Gate>,
    client: reqwest::Client,
}

impl Arena {
    async fn new() -> Self {
        let redis = RedisServer::start();
        let gate = Arc::new(Gate::default());
        let barrier = Arc::new(Barrier::new(2));
        let layer = PipelineStateLayer::new(redis_store(&redis.url()).await).cookie_secure(false);
        let app = serve(racing_routes(gate.clone(), barrier).layer(layer)).await;
        Self {
            redis,
            app,
            gate,
            // No cookie store: every request carries the cookie the test
            // gives it.
            client: reqwest::Client::new(),
        }
    }

    /// Empties the server (through the admin connection) and starts a flow
    /// holding `secret: "s<n>"`; returns its id.
    async fn fresh_flow(&self, n: usize) -> String {
        let _: () = redis::cmd("FLUSHALL")
            .query(&mut self.redis.admin())
            .unwrap();
        let created = self
            .client
            .post(self.app.url(&format!("/set/secret/s{n}")))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), StatusCode::OK);
        let id = set_cookie(&created).unwrap().value().to_owned();
        assert_eq!(self.flow_keys(), [format!("pipeline:{id}")]);
        id
    }

    fn post(&self, path: &str, id: &str) -> reqwest::RequestBuilder {
        self.client
            .post(self.app.url(path))
            .header("cookie", format!("pipeline_id={id}"))
    }

    /// `gated` loads flow `id` and waits; `first` loads the same version
    /// and writes; then `gated` writes. Returns (gated's, first's) answers.
    async fn race(&self, id: &str, gated: Op, first: Op) -> (Answer, Answer) {
        let slow = tokio::spawn(self.post(&format!("/gated/{}", gated.path()), id).send());
        self.gate.loaded.notified().await;
        let fast = self
            .post(&format!("/now/{}", first.path()), id)
            .send()
            .await
            .unwrap();
        let fast = Answer::of(fast).await;
        self.gate.release.notify_one();
        let slow = Answer::of(slow.await.unwrap().unwrap()).await;
        (slow, fast)
    }

    /// The keys under the layer's prefix.
    fn flow_keys(&self) -> Vec<String> {
        self.redis
            .keys()
            .into_iter()
            .filter(|key| key.starts_with("pipeline:"))
            .collect()
    }

    /// The data of the record under `key`.
    fn data(&self, key: &str) -> Option<Map<String, Value>> {
        let raw = self.redis.get(key)?;
        let record: Value = serde_json::from_slice(&raw).unwrap();
        Some(record["data"].as_object().unwrap().clone())
    }

    /// The data of every live flow.
    fn live_data(&self) -> Vec<Map<String, Value>> {
        self.flow_keys()
            .iter()
            .filter_map(|key| self.data(key))
            .collect()
    }
}

#[tokio::test]
async fn a_regenerate_never_brings_back_a_flow_that_a_clear_removed() {
    let arena = Arena::new().await;
    for n in 0..REPETITIONS {
        let id = arena.fresh_flow(n).await;
        let secret = Value::from(format!("s{n}"));
        // Both orders: the clear writes first, then the regenerate; and the
        // other way round.
        let clear_first = n % 2 == 0;
        let (clear, regenerate) = if clear_first {
            let (regenerate, clear) = arena.race(&id, Op::Regenerate, Op::Clear).await;
            (clear, regenerate)
        } else {
            arena.race(&id, Op::Clear, Op::Regenerate).await
        };
        assert_eq!(clear.status, StatusCode::OK, "repetition {n}");
        assert!(clear.expires_the_cookie(), "repetition {n}: {clear:?}");
        assert!(
            !arena.redis.keys().contains(&format!("pipeline:{id}")),
            "repetition {n}: the old key is gone either way"
        );
        if clear_first {
            // The clear's 2xx came first: nothing may bring the data back.
            assert_eq!(
                regenerate.status,
                StatusCode::CONFLICT,
                "repetition {n}: the regenerate must not succeed"
            );
            assert_eq!(regenerate.cookie, None, "repetition {n}");
            assert_eq!(
                arena.flow_keys(),
                Vec::<String>::new(),
                "repetition {n}: no live copy of the cleared flow"
            );
        } else {
            // The regenerate moved the flow first; the clear then found the
            // id it loaded gone, which counts as cleared (a 2xx that expires
            // the cookie). The acknowledged regenerate stands: one live copy,
            // under the new id only.
            assert_eq!(regenerate.status, StatusCode::OK, "repetition {n}");
            let new = regenerate.new_id().expect("the regenerate's new id");
            assert_ne!(new, id);
            assert_eq!(arena.flow_keys(), [format!("pipeline:{new}")]);
            let data = arena.data(&format!("pipeline:{new}")).unwrap();
            assert_eq!(data["secret"], secret);
            assert_eq!(data["regenerated"], true);
        }
    }
}

#[tokio::test]
async fn a_regenerate_racing_an_update_never_loses_the_acknowledged_update() {
    let arena = Arena::new().await;
    for n in 0..REPETITIONS {
        let id = arena.fresh_flow(n).await;
        let update_first = n % 2 == 0;
        let (update, regenerate) = if update_first {
            let (regenerate, update) = arena.race(&id, Op::Regenerate, Op::Update).await;
            (update, regenerate)
        } else {
            arena.race(&id, Op::Update, Op::Regenerate).await
        };
        // Whoever wrote second loaded a version that no longer is.
        let (won, lost) = if update_first {
            (&update, &regenerate)
        } else {
            (&regenerate, &update)
        };
        assert_eq!(won.status, StatusCode::OK, "repetition {n}");
        assert_eq!(lost.status, StatusCode::CONFLICT, "repetition {n}");
        assert_eq!(lost.cookie, None, "repetition {n}");

        let live = arena.live_data();
        assert_eq!(live.len(), 1, "repetition {n}: one live copy: {live:?}");
        let data = &live[0];
        if update.status == StatusCode::OK {
            assert_eq!(
                data.get("update"),
                Some(&Value::from("acknowledged")),
                "repetition {n}: the acknowledged update is stored"
            );
            assert_eq!(arena.flow_keys(), [format!("pipeline:{id}")]);
            assert_eq!(data.get("regenerated"), None, "repetition {n}");
        } else {
            let new = regenerate.new_id().expect("the regenerate's new id");
            assert_eq!(arena.flow_keys(), [format!("pipeline:{new}")]);
            assert_eq!(data["regenerated"], true, "repetition {n}");
            assert_eq!(data.get("update"), None, "repetition {n}");
        }
    }
}

#[tokio::test]
async fn two_racing_regenerates_leave_at_most_one_live_copy() {
    let arena = Arena::new().await;
    for n in 0..REPETITIONS {
        let id = arena.fresh_flow(n).await;
        let (second, first) = arena.race(&id, Op::Regenerate, Op::Regenerate).await;
        assert_eq!(first.status, StatusCode::OK, "repetition {n}");
        assert_eq!(second.status, StatusCode::CONFLICT, "repetition {n}");
        assert_eq!(second.cookie, None, "repetition {n}");
        let new = first.new_id().expect("the first regenerate's new id");
        assert_ne!(new, id);
        assert_eq!(
            arena.flow_keys(),
            [format!("pipeline:{new}")],
            "repetition {n}: one live copy, under the winner's id"
        );
    }
}

#[tokio::test]
async fn a_replace_racing_a_change_of_another_field_conflicts_instead_of_merging() {
    let arena = Arena::new().await;
    for n in 0..REPETITIONS {
        let id = arena.fresh_flow(n).await;
        let (replace, update) = arena.race(&id, Op::Replace, Op::Update).await;
        assert_eq!(update.status, StatusCode::OK, "repetition {n}");
        assert_eq!(
            replace.status,
            StatusCode::CONFLICT,
            "repetition {n}: a whole-state write conflicts with any concurrent change"
        );
        let data = arena.data(&format!("pipeline:{id}")).unwrap();
        assert_eq!(
            Value::Object(data),
            json!({"secret": format!("s{n}"), "update": "acknowledged"}),
            "repetition {n}: the update stands, nothing of the replace was written"
        );
    }
}

#[tokio::test]
async fn two_concurrent_clears_of_one_flow_both_answer_2xx_and_expire_the_cookie() {
    let arena = Arena::new().await;
    for n in 0..REPETITIONS {
        let id = arena.fresh_flow(n).await;
        // Both load the flow, meet at the barrier, then both clear: one
        // deletes the record, the other finds it gone.
        let (first, second) = tokio::join!(
            arena.post("/together/clear", &id).send(),
            arena.post("/together/clear", &id).send(),
        );
        for answer in [first.unwrap(), second.unwrap()] {
            let cookies = set_cookies(answer.headers());
            assert_eq!(answer.status(), StatusCode::OK, "repetition {n}");
            assert_eq!(cookies.len(), 1, "repetition {n}: {cookies:?}");
            let cookie = &cookies[0];
            assert_eq!(cookie.name(), "pipeline_id");
            assert!(removes(cookie), "repetition {n}: {cookie}");
            assert_eq!(
                cookie.path(),
                Some("/"),
                "the same path as the cookie it expires"
            );
            assert_eq!(answer.text().await.unwrap(), "clear");
        }
        assert_eq!(arena.flow_keys(), Vec::<String>::new(), "repetition {n}");
    }
}

#[tokio::test]
async fn a_clear_of_a_flow_that_expired_after_its_load_answers_2xx_and_expires_the_cookie() {
    let arena = Arena::new().await;
    let id = arena.fresh_flow(0).await;
    let key = format!("pipeline:{id}");
    let gated = tokio::spawn(arena.post("/gated/clear", &id).send());
    arena.gate.loaded.notified().await;
    // The flow expires between the clear's load and its write.
    arena.redis.del(&key);
    arena.gate.release.notify_one();
    let cleared = Answer::of(gated.await.unwrap().unwrap()).await;
    assert_eq!(cleared.status, StatusCode::OK);
    assert!(cleared.expires_the_cookie(), "{cleared:?}");
    assert_eq!(arena.flow_keys(), Vec::<String>::new());
}
