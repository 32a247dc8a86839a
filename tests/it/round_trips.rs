//! Redis round trips per request, exactly as the table in the README's
//! "What it sends to Redis": counted on the client side (a connection
//! wrapper that counts every request sent to Redis) and confirmed on the
//! server side (`INFO commandstats` of a private redis-server).

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use crate::common::{counting::Counting, *};
use redis::aio::ConnectionManager;
use tower_pipeline_state::{LoadMode, PipelineStateLayer, RedisStore};

struct Setup {
    redis: RedisServer,
    app: Server,
    trips: Arc<AtomicUsize>,
}

impl Setup {
    async fn new() -> Self {
        Self::with_mode(LoadMode::Lazy).await
    }

    async fn with_mode(mode: LoadMode) -> Self {
        let redis = RedisServer::start();
        let client = redis::Client::open(redis.url()).unwrap();
        let inner = ConnectionManager::new(client).await.unwrap();
        let trips = Arc::new(AtomicUsize::new(0));
        let store = RedisStore::new(Counting {
            inner,
            trips: trips.clone(),
        });
        let app = serve_with(PipelineStateLayer::new(store).load_mode(mode)).await;
        Self { redis, app, trips }
    }

    /// Sends one request and returns (round trips, commands the server ran).
    async fn measure(&self, request: reqwest::RequestBuilder) -> (usize, BTreeMap<String, u64>) {
        self.redis.reset_stats();
        self.trips.store(0, Ordering::SeqCst);
        let response = request.send().await.unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        (
            self.trips.load(Ordering::SeqCst),
            self.redis.command_calls(),
        )
    }
}

/// What a load of a live record runs: the load script, its `GET`, and the
/// `EXPIRE` that slides the record's TTL.
static LOAD: std::sync::LazyLock<BTreeMap<String, u64>> =
    std::sync::LazyLock::new(|| calls(&[("evalsha", 1), ("expire", 1), ("get", 1)]));

fn calls(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs
        .iter()
        .map(|(name, n)| (name.to_string(), *n))
        .collect()
}

#[tokio::test]
async fn every_row_of_the_round_trip_table_in_both_load_modes() {
    for mode in [LoadMode::Lazy, LoadMode::Eager] {
        every_row_of_the_round_trip_table(mode).await;
    }
}

async fn every_row_of_the_round_trip_table(mode: LoadMode) {
    let setup = Setup::with_mode(mode).await;
    let app = &setup.app;
    let browser = browser();

    // No id, state untouched: nothing at all.
    let (trips, commands) = setup.measure(browser.get(app.url("/noop"))).await;
    assert_eq!((trips, commands), (0, calls(&[])));

    // No id, state read: still nothing (the state is new and empty).
    let (trips, commands) = setup.measure(browser.get(app.url("/read"))).await;
    assert_eq!((trips, commands), (0, calls(&[])));

    // No id, state created: one SET NX EX.
    let (trips, commands) = setup.measure(browser.post(app.url("/incr"))).await;
    assert_eq!((trips, commands), (1, calls(&[("set", 1)])));

    // Warm the script cache so the rows below measure the steady state (the
    // first EVALSHA on a fresh server costs a NOSCRIPT and a SCRIPT LOAD).
    browser.post(app.url("/incr")).send().await.unwrap();

    // Id, state read only: one EVALSHA of the load script (whose GET and
    // EXPIRE run inside Redis, counted by commandstats but not round trips).
    let (trips, commands) = setup.measure(browser.get(app.url("/read"))).await;
    assert_eq!((trips, commands), (1, LOAD.clone()));

    // Id, state changed: the load and one EVALSHA of the compare-and-set
    // (GET and SET inside Redis).
    let (trips, commands) = setup.measure(browser.post(app.url("/incr"))).await;
    assert_eq!(
        (trips, commands),
        (
            2,
            calls(&[("evalsha", 2), ("expire", 1), ("get", 2), ("set", 1)])
        )
    );

    // Id, state set to the value it already has: no write.
    let (trips, _) = setup.measure(browser.post(app.url("/set/same/1"))).await;
    assert_eq!(trips, 2);
    let (trips, commands) = setup.measure(browser.post(app.url("/set/same/1"))).await;
    assert_eq!((trips, commands), (1, LOAD.clone()));

    // Regenerated: the load, the compare-and-delete of the old record at the
    // loaded version (EVALSHA: GET, DEL), then SET NX of the new one; every
    // command on one key.
    let (trips, commands) = setup.measure(browser.post(app.url("/regenerate"))).await;
    assert_eq!(
        (trips, commands),
        (
            3,
            calls(&[
                ("del", 1),
                ("evalsha", 2),
                ("expire", 1),
                ("get", 2),
                ("set", 1)
            ])
        )
    );

    // Cleared: the load and one EVALSHA of the compare-and-set without a
    // record (GET, then DEL if no concurrent request wrote since the load).
    let (trips, commands) = setup.measure(browser.post(app.url("/clear"))).await;
    assert_eq!(
        (trips, commands),
        (
            2,
            calls(&[("del", 1), ("evalsha", 2), ("expire", 1), ("get", 2)])
        )
    );

    // Cleared with an id whose record is gone: the load (a GET, nothing to
    // slide), and nothing to delete (ids are never reused, so nothing can
    // be under that key).
    let stale = reqwest::Client::new();
    let request = stale
        .post(app.url("/clear"))
        .header("cookie", "pipeline_id=0123456789abcdef0123456789abcdef");
    let (trips, commands) = setup.measure(request).await;
    assert_eq!((trips, commands), (1, calls(&[("evalsha", 1), ("get", 1)])));
}

#[tokio::test]
async fn a_request_with_an_id_that_never_asks_for_the_state_is_free_unless_eager() {
    for (mode, expected) in [
        (LoadMode::Lazy, (0, calls(&[]))),
        (LoadMode::Eager, (1, LOAD.clone())),
    ] {
        let setup = Setup::with_mode(mode).await;
        let browser = browser();
        browser.post(setup.app.url("/incr")).send().await.unwrap();
        // Warm the load script's cache (`RedisStore::new` loads nothing).
        browser.get(setup.app.url("/read")).send().await.unwrap();
        let untouched = setup.measure(browser.get(setup.app.url("/noop"))).await;
        assert_eq!(untouched, expected, "{mode:?}");
        // The flow is still there, and read as usual.
        let read = browser.get(setup.app.url("/read")).send().await.unwrap();
        assert_eq!(read.text().await.unwrap(), "count=1", "{mode:?}");
    }
}

#[tokio::test]
async fn the_compare_and_set_script_survives_a_flushed_script_cache() {
    let setup = Setup::new().await;
    let browser = browser();
    browser.post(setup.app.url("/incr")).send().await.unwrap();
    browser.post(setup.app.url("/incr")).send().await.unwrap();
    // What a Redis restart does to the script cache.
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query(&mut setup.redis.admin())
        .unwrap();

    let (trips, commands) = setup.measure(browser.post(setup.app.url("/incr"))).await;
    assert_eq!(
        trips, 6,
        "for each script, the load's and the compare-and-set's: EVALSHA (NOSCRIPT), SCRIPT LOAD, EVALSHA"
    );
    assert_eq!(commands.get("script|load"), Some(&2), "{commands:?}");
    let read = browser.get(setup.app.url("/read")).send().await.unwrap();
    assert_eq!(read.text().await.unwrap(), "count=3");
}
