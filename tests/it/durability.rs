//! `durability(replicas, timeout)`: every write waits until that many
//! replicas have it (`WAIT`, pipelined with the write on its connection).
//! With a live replica every acknowledged write is already on the replica;
//! with the replica stopped, writes answer 503 "not confirmed" and never
//! 2xx. Reads are not held up. What a failover without it, and a lagging
//! replica with it, do to the engine's "finishes at most once".

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use tower_pipeline_state::{PipelineStateLayer, RedisStore};

use crate::common::{engine, *};

/// A primary and one replica of it, in sync.
fn primary_and_replica() -> (RedisServer, RedisServer) {
    let primary = RedisServer::start();
    let replica =
        RedisServer::start_configured(&[&format!("replicaof 127.0.0.1 {}", primary.port())]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut replica.admin())
            .unwrap();
        if info.contains("master_link_status:up") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replica did not sync: {info}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (primary, replica)
}

/// Cuts `replica` off from its primary, as a network partition would: it
/// is pointed at a port this test holds and where nothing answers (the
/// listener is never accepted from; the port stays taken, so no other
/// server can turn up there while it is held). Keep the listener while the
/// replica must stay cut off.
fn cut_off(replica: &RedisServer) -> std::net::TcpListener {
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(nowhere.local_addr().unwrap().port())
        .query(&mut replica.admin())
        .unwrap();
    nowhere
}

/// Waits until `replica` has applied everything `primary` wrote so far (its
/// replication offset reaches the primary's). A readiness wait, bounded so
/// that a replica that never catches up fails the test with its state.
fn caught_up(primary: &RedisServer, replica: &RedisServer) {
    let offset = |server: &RedisServer, field: &str| -> i64 {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut server.admin())
            .unwrap();
        info.lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {info}"))
    };
    let written = offset(primary, "master_repl_offset");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let applied = offset(replica, "slave_repl_offset");
        if applied >= written {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the replica is at offset {applied}, the primary at {written}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

const WAIT: Duration = Duration::from_millis(300);

#[tokio::test]
async fn with_a_live_replica_every_acknowledged_write_is_on_the_replica() {
    let _serial = SERIAL.lock().await;
    let (primary, replica) = primary_and_replica();
    let layer = PipelineStateLayer::new(redis_store(&primary.url()).await).durability(1, WAIT);
    let app = serve_with(layer).await;
    let browser = browser();

    // Each write is on the replica the moment it is acknowledged.
    let created = browser.post(app.url("/incr")).send().await.unwrap();
    assert_eq!(created.status(), StatusCode::OK);
    let key = created_key(&created);
    assert_eq!(replica.get(&key), primary.get(&key), "created");
    assert!(replica.get(&key).is_some());

    assert_eq!(text_of(browser.post(app.url("/incr"))).await, "2");
    assert_eq!(replica.get(&key), primary.get(&key), "updated");

    let regenerated = browser.post(app.url("/regenerate")).send().await.unwrap();
    assert_eq!(regenerated.status(), StatusCode::OK);
    let new_key = created_key(&regenerated);
    assert_eq!(
        replica.get(&key),
        None,
        "the old key's delete is replicated"
    );
    assert_eq!(replica.get(&new_key), primary.get(&new_key), "regenerated");

    let cleared = browser.post(app.url("/clear")).send().await.unwrap();
    assert_eq!(cleared.status(), StatusCode::OK);
    assert_eq!(
        replica.keys(),
        Vec::<String>::new(),
        "cleared on the replica too"
    );
}

#[tokio::test]
async fn with_the_replica_stopped_writes_answer_503_and_reads_still_work() {
    let _serial = SERIAL.lock().await;
    let (logs, _guard) = Logs::capture();
    let (primary, mut replica) = primary_and_replica();
    let layer = PipelineStateLayer::new(redis_store(&primary.url()).await).durability(1, WAIT);
    let app = serve_with(layer).await;
    let browser = browser();
    let created = browser.post(app.url("/incr")).send().await.unwrap();
    assert_eq!(created.status(), StatusCode::OK);

    replica.stop();
    let update = browser.post(app.url("/incr")).send().await.unwrap();
    assert_eq!(
        update.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "never 2xx"
    );
    assert_eq!(
        update.text().await.unwrap(),
        "pipeline state store unavailable; the changes may not have been saved\n"
    );
    // The update is on the primary all the same ("not confirmed" is not
    // "not written"): reads, which wait for nothing, show it.
    assert_eq!(text_of(browser.get(app.url("/read"))).await, "count=2");

    let fresh = crate::common::browser();
    let create = fresh.post(app.url("/incr")).send().await.unwrap();
    assert_eq!(create.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        set_cookie(&create),
        None,
        "no cookie for an unconfirmed flow"
    );
    let clear = browser.post(app.url("/clear")).send().await.unwrap();
    assert_eq!(clear.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        !logs
            .matching(&[
                "write not confirmed",
                "0 of 1 replicas acknowledged it within 300ms"
            ])
            .is_empty(),
        "the log says why: {}",
        logs.text()
    );
}

#[tokio::test]
async fn asking_for_more_replicas_than_there_are_is_never_confirmed() {
    let _serial = SERIAL.lock().await;
    let (primary, _replica) = primary_and_replica();
    let layer = PipelineStateLayer::new(redis_store(&primary.url()).await).durability(2, WAIT);
    let app = serve_with(layer).await;
    let created = browser().post(app.url("/incr")).send().await.unwrap();
    assert_eq!(created.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
#[should_panic(expected = "durability needs at least one replica to wait for, got 0")]
async fn zero_replicas_are_refused() {
    let redis = RedisServer::start();
    let _ = PipelineStateLayer::new(redis_store(&redis.url()).await).durability(0, WAIT);
}

#[tokio::test]
#[should_panic(expected = "the durability timeout must be longer than zero")]
async fn a_zero_wait_is_refused() {
    let redis = RedisServer::start();
    let _ = PipelineStateLayer::new(redis_store(&redis.url()).await).durability(1, Duration::ZERO);
}

#[tokio::test]
#[should_panic(expected = "must be shorter than store_timeout")]
async fn a_wait_as_long_as_the_store_timeout_is_refused() {
    let redis = RedisServer::start();
    let layer = PipelineStateLayer::new(redis_store(&redis.url()).await)
        .durability(1, Duration::from_secs(1))
        .store_timeout(Duration::from_secs(1));
    let _ = serve_with(layer).await;
}

#[tokio::test]
async fn durability_works_over_a_bb8_pool_too() {
    let _serial = SERIAL.lock().await;
    let (primary, replica) = primary_and_replica();
    let manager = bb8_redis::RedisConnectionManager::new(primary.url()).unwrap();
    let pool = bb8::Pool::builder()
        .max_size(4)
        .test_on_check_out(false)
        .build(manager)
        .await
        .unwrap();
    let store = RedisStore::from_pool(pool).await.unwrap();
    let app = serve_with(PipelineStateLayer::new(store).durability(1, WAIT)).await;
    let created = browser().post(app.url("/incr")).send().await.unwrap();
    assert_eq!(created.status(), StatusCode::OK);
    let key = created_key(&created);
    assert_eq!(replica.get(&key), primary.get(&key));
}

/// What an asynchronous replica loses at a failover, and what `durability`
/// does about it. The replica is cut off from the primary (pointed at a
/// port where nothing listens, as a network partition would), so it misses
/// the next writes; the primary dies; the replica is promoted (`REPLICAOF
/// NO ONE`, what Sentinel or a cluster failover does). The write the primary
/// acknowledged with 2xx is gone. The same write under `durability(1, ...)`
/// answered 503.
#[tokio::test]
async fn without_durability_a_failover_loses_an_acknowledged_write_that_durability_refuses() {
    let _serial = SERIAL.lock().await;
    let (mut primary, replica) = primary_and_replica();
    let plain = serve_with(PipelineStateLayer::new(redis_store(&primary.url()).await)).await;
    let durable =
        serve_with(PipelineStateLayer::new(redis_store(&primary.url()).await).durability(1, WAIT))
            .await;
    let browser = browser();
    let created = browser.post(plain.url("/incr")).send().await.unwrap();
    let key = created_key(&created);
    // Both servers see count=1 on the replica (a durable write to sync).
    assert_eq!(text_of(browser.post(durable.url("/incr"))).await, "2");

    let _cut = cut_off(&replica);
    let durable_write = browser.post(durable.url("/incr")).send().await.unwrap();
    assert_eq!(
        durable_write.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "not confirmed: no replica has it"
    );
    let plain_write = browser.post(plain.url("/incr")).send().await.unwrap();
    assert_eq!(
        plain_write.status(),
        StatusCode::OK,
        "acknowledged by the primary alone"
    );
    assert_eq!(plain_write.text().await.unwrap(), "4");

    primary.stop();
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut replica.admin())
        .unwrap();
    let raw = replica.get(&key).expect("the flow survived the failover");
    let record: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        record["data"]["count"], 2,
        "the acknowledged 4 (and the unconfirmed 3) are lost; the durable 2 is not"
    );
}

/// The engine's test app over `redis` with the layer as `configure`
/// makes it, its finish hook counted in `finishes`.
async fn engine_app(
    redis: &RedisServer,
    finishes: &Arc<AtomicUsize>,
    configure: impl FnOnce(PipelineStateLayer<RedisStore>) -> PipelineStateLayer<RedisStore>,
) -> Server {
    let options = engine::Options {
        finishes: Some(finishes.clone()),
        ..engine::Options::default()
    };
    let layer = configure(PipelineStateLayer::new(redis_store(&redis.url()).await));
    serve(engine::router_with(engine::pipeline(options), layer)).await
}

/// Walks a flow of the engine's test pipeline to its last step, `four`;
/// returns the flow's Redis key.
async fn to_the_last_step(app: &Server, browser: &reqwest::Client) -> String {
    let user = Some("ada");
    let key = engine::to_step_three(app, browser, user).await;
    let left = engine::as_user(browser.post(app.url("/flow")), user)
        .body("three's answer")
        .send()
        .await
        .unwrap();
    assert_eq!(
        engine::text(left).await,
        (StatusCode::OK, "left three with three's answer".to_owned())
    );
    let at_four = engine::as_user(browser.get(app.url("/flow")), user)
        .send()
        .await
        .unwrap();
    assert_eq!(
        engine::text(at_four).await,
        (StatusCode::OK, "at four".to_owned())
    );
    key
}

/// Submits the last step as the flow's user; the status and the body.
async fn submit_the_last_step(app: &Server, browser: &reqwest::Client) -> (StatusCode, String) {
    engine::text(
        engine::as_user(browser.post(app.url("/flow")), Some("ada"))
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// "Finishes at most once" with `durability` and a replica that lags past
/// its timeout (frozen by `SIGSTOP`: connected, acknowledging nothing).
/// The claim before the finish hook (the compare-and-set that writes the
/// flow's ended record) lands on the primary, but `WAIT` times out: the
/// claim is not confirmed, so the request fails with
/// `FlowError::Unavailable` (the pipeline's `on_error` answers it; the
/// engine's test pipeline answers every failure `400 outcome=<kind>`), the
/// finish hook does not run, and the flow is over: its record is the ended
/// one, so submitting again, once the replica is back and has the claim
/// too, is told the flow ended and does not finish either. The person
/// starts over.
#[tokio::test]
async fn with_durability_a_lagging_replica_fails_the_finish_and_the_flow_is_gone() {
    let _serial = SERIAL.lock().await;
    let (primary, replica) = primary_and_replica();
    let finishes = Arc::new(AtomicUsize::new(0));
    // A `WAIT` long enough that a replica that is only slow (a loaded
    // machine) is not mistaken for a lagging one on the way to the last
    // step; the frozen replica makes the claim wait all of it.
    let app = engine_app(&primary, &finishes, |layer| {
        layer
            .durability(1, Duration::from_secs(2))
            .store_timeout(Duration::from_secs(10))
    })
    .await;
    let browser = browser();
    let key = to_the_last_step(&app, &browser).await;
    assert!(replica.get(&key).is_some(), "the flow is on the replica");

    replica.pause();
    assert_eq!(
        submit_the_last_step(&app, &browser).await,
        (StatusCode::BAD_REQUEST, "outcome=unavailable".to_owned()),
        "the claim is not confirmed: FlowError::Unavailable"
    );
    assert_eq!(finishes.load(Ordering::SeqCst), 0, "the hook did not run");
    let claimed = |redis: &RedisServer| {
        let raw = redis.get(&key).expect("the ended record");
        let record: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        record["data"]["ended"]["how"]["as"].clone()
    };
    assert_eq!(
        claimed(&primary),
        "finished",
        "the claim landed on the primary"
    );

    replica.resume();
    caught_up(&primary, &replica);
    assert_eq!(claimed(&replica), "finished", "and reached the replica");
    let (status, body) = submit_the_last_step(&app, &browser).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::BAD_REQUEST, "outcome=ended"),
        "the flow is over: the person starts over"
    );
    assert_eq!(finishes.load(Ordering::SeqCst), 0, "never finished");
}

/// "Finishes at most once" without `durability`, across a failover. The
/// claim before the finish hook is acknowledged by the primary alone (the
/// replica is cut off, as by a network partition), the hook runs; the
/// primary dies and the replica is promoted, with the flow still at its
/// last step. The same submission, sent again with the cookies it carried
/// (a retry, a second tab), reaches the new primary and finishes the flow
/// a second time.
#[tokio::test]
async fn without_durability_a_failover_can_bring_back_a_claimed_flow_that_finishes_twice() {
    let _serial = SERIAL.lock().await;
    let (mut primary, replica) = primary_and_replica();
    let finishes = Arc::new(AtomicUsize::new(0));
    let app = engine_app(&primary, &finishes, |layer| layer).await;
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let browser = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let key = to_the_last_step(&app, &browser).await;
    caught_up(&primary, &replica);

    let _cut = cut_off(&replica);
    let cookies = reqwest::cookie::CookieStore::cookies(&*jar, &app.url("/flow").parse().unwrap())
        .expect("the browser holds the flow's cookies");
    let (status, body) = submit_the_last_step(&app, &browser).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.starts_with("finished kind=login user=ada"), "{body}");
    assert_eq!(finishes.load(Ordering::SeqCst), 1);
    let on_primary: serde_json::Value =
        serde_json::from_slice(&primary.get(&key).expect("the ended record")).unwrap();
    assert_eq!(
        on_primary["data"]["ended"]["how"]["as"], "finished",
        "claimed on the primary"
    );

    primary.stop();
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut replica.admin())
        .unwrap();
    assert!(
        replica.get(&key).is_some(),
        "the promoted replica never saw the claim"
    );
    let failed_over = engine_app(&replica, &finishes, |layer| layer).await;
    let again = crate::common::browser()
        .post(failed_over.url("/flow"))
        .header("x-user", "ada")
        .header(reqwest::header::COOKIE, cookies)
        .send()
        .await
        .unwrap();
    let (status, body) = engine::text(again).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.starts_with("finished kind=login user=ada"), "{body}");
    assert_eq!(
        finishes.load(Ordering::SeqCst),
        2,
        "the flow finished twice"
    );
}
