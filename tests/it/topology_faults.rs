//! A Redis Cluster changing under load (feature `cluster`): a manual
//! failover, a master killed with SIGKILL (with `durability`), and a slot
//! holding a live flow moved to another master, each while 16 clients race
//! increments of that flow over two app servers. Every answer is 200, 409
//! or 503; every acknowledged increment is in the final record (and at most
//! the unconfirmed ones more); the same apps serve afterwards, unrestarted.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tower_pipeline_state::PipelineStateLayer;

use crate::{
    cluster::{cluster_store, stored_count},
    common::{race::*, *},
};

/// How long the clients race: the fault happens after a third of it.
const LOAD: Duration = Duration::from_secs(4);

/// Checks a race's answers against the stored counter (which started at
/// 1): only 200, 409 and 503; every 200 stored; at most the 503s more.
fn check(cluster: &RedisCluster, id: &str, tally: &Tally, what: &str) {
    println!("{what}: answers by status {:?}", tally.statuses);
    assert!(
        tally.statuses.keys().all(|s| [200, 409, 503].contains(s)),
        "{what}: {:?}",
        tally.statuses
    );
    let acknowledged = tally.count(StatusCode::OK);
    let unconfirmed = tally.count(StatusCode::SERVICE_UNAVAILABLE);
    assert!(acknowledged > 0, "{what}: the load ran");
    let stored = stored_count(cluster, id).expect("the flow survived");
    assert!(
        (1 + acknowledged..=1 + acknowledged + unconfirmed).contains(&stored),
        "{what}: {acknowledged} acknowledged and {unconfirmed} unconfirmed increments, {stored} stored"
    );
}

/// After the fault: the same apps, unrestarted, serve the flow again. A
/// try answered 503 is "not confirmed": it may still have landed, so the
/// answer counts at most one more per such try.
async fn serves_again(cluster: &RedisCluster, apps: [&Server; 2], id: &str) {
    for app in apps {
        let before = stored_count(cluster, id).unwrap();
        let mut answer = None;
        let mut unconfirmed = 0;
        // The first request may still meet the old topology; it must heal
        // within a few.
        for _ in 0..5 {
            let response = reqwest::Client::new()
                .post(app.url("/incr"))
                .header("cookie", format!("pipeline_id={id}"))
                .send()
                .await
                .unwrap();
            if response.status() == StatusCode::OK {
                answer = Some(response.text().await.unwrap());
                break;
            }
            if response.status() == StatusCode::SERVICE_UNAVAILABLE {
                unconfirmed += 1;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let answer: u64 = answer
            .expect("the app serves again")
            .parse()
            .expect("a count");
        assert!(
            (before + 1..=before + 1 + unconfirmed).contains(&answer),
            "served {answer} after {before} with {unconfirmed} unconfirmed tries"
        );
    }
}

struct Setup {
    cluster: RedisCluster,
    apps: [Server; 2],
    id: String,
    key: String,
}

async fn setup(replicas: usize, durability: Option<Duration>) -> Setup {
    let cluster = RedisCluster::start_with(replicas, &[]);
    let layer = |store| {
        let layer = PipelineStateLayer::new(store);
        match durability {
            Some(wait) => layer.durability(1, wait),
            None => layer,
        }
    };
    let apps = [
        serve_with(layer(cluster_store(&cluster).await)).await,
        serve_with(layer(cluster_store(&cluster).await)).await,
    ];
    let id = start_flow(&apps[0]).await;
    let key = format!("pipeline:{id}");
    Setup {
        cluster,
        apps,
        id,
        key,
    }
}

/// Runs the race over both apps for `LOAD`, calling `fault` (on a
/// blocking thread) after a third of it.
async fn race_through<F>(setup: &Setup, fault: F) -> Tally
where
    F: FnOnce() + Send + 'static,
{
    let until = Instant::now() + LOAD;
    let fault = tokio::task::spawn_blocking(move || {
        std::thread::sleep(LOAD / 3);
        fault();
    });
    let tally = hammer(&[&setup.apps[0], &setup.apps[1]], &setup.id, 16, until).await;
    fault.await.unwrap();
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_failover_under_load_loses_no_acknowledged_increment() {
    let _serial = SERIAL.lock().await;
    let setup = setup(1, None).await;
    let master = setup.cluster.master_of(&setup.key);
    let replica = setup.cluster.masters()[&master][0];
    let url = format!("redis://127.0.0.1:{replica}");
    let tally = race_through(&setup, move || {
        let mut admin = redis::Client::open(url).unwrap().get_connection().unwrap();
        let _: () = redis::cmd("CLUSTER")
            .arg("FAILOVER")
            .query(&mut admin)
            .unwrap();
    })
    .await;
    setup.cluster.wait_until_settled();
    assert_eq!(
        setup.cluster.master_of(&setup.key),
        replica,
        "the replica took over the flow's slot"
    );
    check(&setup.cluster, &setup.id, &tally, "manual failover");
    serves_again(&setup.cluster, [&setup.apps[0], &setup.apps[1]], &setup.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_with_durability_loses_no_acknowledged_increment() {
    let _serial = SERIAL.lock().await;
    let mut setup = setup(1, Some(Duration::from_millis(300))).await;
    let master = setup.cluster.master_of(&setup.key);
    let replica = setup.cluster.masters()[&master][0];
    let until = Instant::now() + LOAD;
    let Setup {
        cluster, apps, id, ..
    } = &mut setup;
    let servers = [&apps[0], &apps[1]];
    let (tally, ()) = tokio::join!(hammer(&servers, id, 16, until), async {
        tokio::time::sleep(LOAD / 3).await;
        cluster.kill(master);
    });
    setup.cluster.wait_until_settled();
    assert_eq!(
        setup.cluster.master_of(&setup.key),
        replica,
        "the replica took over"
    );
    check(
        &setup.cluster,
        &setup.id,
        &tally,
        "master killed, durability(1)",
    );

    // The flow's slot has no replica now: no write can be confirmed.
    let response = reqwest::Client::new()
        .post(setup.apps[0].url("/incr"))
        .header("cookie", format!("pipeline_id={}", setup.id))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "not confirmed"
    );
    // The old master comes back as the new master's replica: the same apps
    // confirm writes again.
    setup.cluster.restart(master);
    setup.cluster.wait_until_settled();
    assert_eq!(setup.cluster.masters()[&replica], [master]);
    serves_again(&setup.cluster, [&setup.apps[0], &setup.apps[1]], &setup.id).await;
}

/// Without durability a killed master may take acknowledged increments
/// with it (Redis replicates asynchronously; `durability.rs` shows it
/// deterministically), so only the answers and the recovery are checked:
/// the replica takes over and the same apps serve again, the old master
/// still dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_under_load_fails_over_and_the_same_apps_serve_again() {
    let _serial = SERIAL.lock().await;
    let mut setup = setup(1, None).await;
    let master = setup.cluster.master_of(&setup.key);
    let replica = setup.cluster.masters()[&master][0];
    let until = Instant::now() + LOAD;
    let Setup {
        cluster, apps, id, ..
    } = &mut setup;
    let servers = [&apps[0], &apps[1]];
    let (tally, ()) = tokio::join!(hammer(&servers, id, 16, until), async {
        tokio::time::sleep(LOAD / 3).await;
        cluster.kill(master);
    });
    setup.cluster.wait_until_settled();
    assert_eq!(
        setup.cluster.master_of(&setup.key),
        replica,
        "the replica took over"
    );
    println!("master killed: answers by status {:?}", tally.statuses);
    assert!(
        tally.statuses.keys().all(|s| [200, 409, 503].contains(s)),
        "{:?}",
        tally.statuses
    );
    let acknowledged = tally.count(StatusCode::OK);
    let stored = stored_count(&setup.cluster, &setup.id).expect("the flow survived");
    println!(
        "master killed: {acknowledged} increments acknowledged, {} stored after the failover",
        stored.saturating_sub(1)
    );
    serves_again(&setup.cluster, [&setup.apps[0], &setup.apps[1]], &setup.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_moved_to_another_master_under_load_loses_no_acknowledged_increment() {
    let _serial = SERIAL.lock().await;
    let setup = setup(0, None).await;
    let source = setup.cluster.master_of(&setup.key);
    let target = *setup
        .cluster
        .masters()
        .keys()
        .find(|port| **port != source)
        .unwrap();
    let until = Instant::now() + LOAD;
    let servers = [&setup.apps[0], &setup.apps[1]];
    // Moved as `redis-cli --cluster reshard` does, with pauses so requests
    // meet each state (`ASK` while the key is on the target, `MOVED` after).
    // `resharding.rs` holds a migration open far longer.
    let (tally, ()) = tokio::join!(hammer(&servers, &setup.id, 16, until), async {
        tokio::time::sleep(LOAD / 3).await;
        tokio::task::block_in_place(|| {
            let pause = || std::thread::sleep(Duration::from_millis(150));
            let migration = setup
                .cluster
                .begin_migration(setup.cluster.slot(&setup.key), target);
            pause();
            for key in migration.keys_left() {
                migration.move_key(&key);
            }
            pause();
            migration.finish();
        });
    });
    assert_eq!(
        setup.cluster.master_of(&setup.key),
        target,
        "the slot moved"
    );
    check(&setup.cluster, &setup.id, &tally, "slot migrated");
    serves_again(&setup.cluster, [&setup.apps[0], &setup.apps[1]], &setup.id).await;
}
