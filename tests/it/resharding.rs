//! Slots moving between masters while the layer works (feature `cluster`):
//! every store operation on a slot in migration, a migration held open for
//! 10 s under the cluster suite's racing increments, and a live `redis-cli
//! --cluster rebalance` onto a fourth master added during the race. While a
//! slot migrates its old node answers `ASK` for the keys it no longer holds;
//! the store follows each to the new node with `ASKING`, so requests keep
//! succeeding however long the migration lasts: no 503 at all, and every
//! acknowledged increment stored, none more. A master just added, with no
//! slot yet, is reached too.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use redis::cluster_routing::Slot;
use reqwest::StatusCode;
use tower_pipeline_state::{
    PipelineStateLayer, RedisStore, Store,
    store::{CasOutcome, record_version},
};

use crate::{
    cluster::{cluster_store, stored_count},
    common::{race::*, *},
};

/// A record of this release's format, as a flow that has counted to one.
const COUNT_ONE: &[u8] = br#"{"format":1,"version":1,"data":{"count":1}}"#;

/// `count` well-formed flow ids whose keys (`pipeline:<id>`) hash to
/// `slot`, so the test can hold flows in the slot it migrates.
fn ids_in_slot(slot: u16, count: usize) -> Vec<String> {
    let slot = Slot::new(slot).expect("a slot number");
    (0u128..)
        .map(|n| format!("{:032x}", 0x7e57_0000_0000_0000_0000_0000_0000_0000 + n))
        .filter(|id| Slot::for_key(format!("pipeline:{id}")) == slot)
        .take(count)
        .collect()
}

/// Flows planted at count 1 under `ids`, on the masters serving them.
fn plant_flows(cluster: &RedisCluster, ids: &[String]) {
    for id in ids {
        cluster.set(&format!("pipeline:{id}"), COUNT_ONE);
    }
}

/// Checks a race's answers per flow: only 200 and 409 (a 503 would be a
/// request the migration failed), some 200s, and each flow's stored count
/// exactly 1 + its 200s.
fn check(cluster: &RedisCluster, ids: &[String], tallies: &[Tally], what: &str) {
    for (id, tally) in ids.iter().zip(tallies) {
        println!("{what}: flow {id}: answers by status {:?}", tally.statuses);
        assert!(
            tally.statuses.keys().all(|s| [200, 409].contains(s)),
            "{what}: flow {id}: {:?}",
            tally.statuses
        );
        let acknowledged = tally.count(StatusCode::OK);
        assert!(acknowledged > 0, "{what}: flow {id}: the load ran");
        assert_eq!(
            stored_count(cluster, id),
            Some(1 + acknowledged),
            "{what}: flow {id}: every acknowledged increment stored, none more"
        );
    }
}

/// Every kind of store command, on a slot held in migration: a key still
/// on the old master is served there; a key already moved, and a key
/// created during the migration, are reached through `ASK` with `ASKING`
/// on the new master, one `ASKING` per command; after the migration the new
/// master serves them all directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_store_command_follows_ask_to_a_slot_in_migration() {
    let _serial = SERIAL.lock().await;
    let cluster = RedisCluster::start();
    let store = cluster_store(&cluster).await;
    let slot = cluster.slot("pipeline:any");
    let [stays, moved, created] = <[String; 3]>::try_from(ids_in_slot(slot, 3)).unwrap();
    let [stays, moved, created] = [stays, moved, created].map(|id| format!("pipeline:{id}"));
    let minute = Duration::from_secs(60);
    assert!(store.create(&stays, COUNT_ONE, minute).await.unwrap());
    assert!(store.create(&moved, COUNT_ONE, minute).await.unwrap());

    let source = cluster.master_of_slot(slot);
    let target = *cluster.masters().keys().find(|p| **p != source).unwrap();
    let migration = cluster.begin_migration(slot, target);
    migration.move_key(&moved);
    cluster.reset_stats();
    let v2 = br#"{"format":1,"version":2,"data":{"count":2}}"#;

    // Still on the old master: served there, no redirect.
    assert_eq!(
        store.load(&stays, Some(minute)).await.unwrap().as_deref(),
        Some(COUNT_ONE)
    );
    assert_eq!(
        store.update(&stays, 1, v2, minute).await.unwrap(),
        CasOutcome::Done
    );
    // Moved: load, compare-and-set, a stale compare-and-delete, a
    // compare-and-delete, each through ASK.
    assert_eq!(
        store.load(&moved, Some(minute)).await.unwrap().as_deref(),
        Some(COUNT_ONE)
    );
    assert_eq!(
        store.update(&moved, 1, v2, minute).await.unwrap(),
        CasOutcome::Done
    );
    assert_eq!(
        store.delete_if_version(&moved, 1).await.unwrap(),
        CasOutcome::Newer(v2.to_vec())
    );
    assert_eq!(
        store.delete_if_version(&moved, 2).await.unwrap(),
        CasOutcome::Done
    );
    // Created during the migration: on the new master, which serves the
    // rest of its life there; a plain delete at the end.
    assert!(store.create(&created, COUNT_ONE, minute).await.unwrap());
    assert!(!store.create(&created, v2, minute).await.unwrap());
    assert_eq!(
        store.load(&created, None).await.unwrap().as_deref(),
        Some(COUNT_ONE)
    );
    store.delete(&created).await.unwrap();
    assert_eq!(store.load(&created, None).await.unwrap(), None);

    let on_target = cluster.command_calls(target);
    let on_source = cluster.command_calls(source);
    println!("on the new master: {on_target:?}\non the old master: {on_source:?}");
    // One ASKING per command redirected: 4 on the moved key, 5 on the
    // created one, the last load of the deleted key included.
    assert_eq!(on_target.get("asking"), Some(&9), "{on_target:?}");
    assert_eq!(on_source.get("asking"), None, "{on_source:?}");
    // The old master ran the commands on the key it holds, and nothing on
    // the others: each redirected command ran once, on the new master.
    assert_eq!(on_source.get("evalsha"), Some(&2), "{on_source:?}");
    assert_eq!(on_target.get("evalsha"), Some(&4), "{on_target:?}");
    assert_eq!(cluster.get(&stays).as_deref(), Some(&v2[..]));

    // The migration ends: the new master serves the slot, no redirect.
    let v3 = br#"{"format":1,"version":3,"data":{"count":3}}"#;
    migration.finish();
    cluster.reset_stats();
    assert_eq!(
        store.update(&stays, 2, v3, minute).await.unwrap(),
        CasOutcome::Done
    );
    assert_eq!(
        record_version(&store.load(&stays, None).await.unwrap().unwrap()),
        Some(3)
    );
    assert_eq!(cluster.command_calls(target).get("asking"), None);
    assert_eq!(cluster.master_of(&stays), target);
}

/// How long the migration is held open: its keys move one at a time,
/// spread over this.
const HELD_OPEN: Duration = Duration::from_secs(10);

/// A slot holding 8 live flows is migrated as an operator would on a busy
/// cluster, slowly: its keys move one at a time, the last after 10 s, while
/// 16 clients race increments of the 8 flows over two app servers. Every
/// flow spends part of the race on each side of the migration; no request
/// fails, and every acknowledged increment is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_held_open_for_ten_seconds_answers_no_503_and_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let cluster = Arc::new(RedisCluster::start());
    let slot = cluster.slot("pipeline:held-open");
    let ids = ids_in_slot(slot, 8);
    plant_flows(&cluster, &ids);
    let apps = [
        serve_with(PipelineStateLayer::new(cluster_store(&cluster).await)).await,
        serve_with(PipelineStateLayer::new(cluster_store(&cluster).await)).await,
    ];
    let source = cluster.master_of_slot(slot);
    let target = *cluster.masters().keys().find(|p| **p != source).unwrap();
    cluster.reset_stats();

    let stop = Arc::new(AtomicBool::new(false));
    let migrating = {
        let (cluster, stop) = (cluster.clone(), stop.clone());
        tokio::task::spawn_blocking(move || {
            // Let the race start on the old master.
            std::thread::sleep(Duration::from_millis(500));
            let migration = cluster.begin_migration(slot, target);
            let keys = migration.keys_left();
            assert_eq!(keys.len(), 8, "the slot holds the 8 flows: {keys:?}");
            let pause = HELD_OPEN / u32::try_from(keys.len() + 1).unwrap();
            for key in &keys {
                std::thread::sleep(pause);
                migration.move_key(key);
            }
            std::thread::sleep(pause);
            migration.finish();
            // And a little on the new master.
            std::thread::sleep(Duration::from_millis(500));
            stop.store(true, Ordering::SeqCst);
        })
    };
    let tallies = hammer_flows(&[&apps[0], &apps[1]], &ids, 16, stop).await;
    migrating.await.unwrap();

    assert_eq!(cluster.master_of_slot(slot), target, "the slot moved");
    check(&cluster, &ids, &tallies, "migration held open");
    let asking = cluster.command_calls(target).get("asking").copied();
    println!("ASK redirects followed: {asking:?}");
    assert!(
        asking.is_some_and(|n| n > 0),
        "requests met the migration and followed ASK"
    );
}

/// The cluster suite's race (16 clients over two app servers, here on 12
/// flows spread over the three masters' slot ranges) while a fourth master
/// joins and `redis-cli --cluster rebalance --cluster-use-empty-masters`
/// moves a quarter of all slots onto it, one slot at a time with its keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_rebalance_onto_a_fourth_master_answers_no_503_and_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let mut cluster = RedisCluster::start();
    // Four flows in each master's range, from its first slots (the ones a
    // rebalance hands over first) to its last.
    let slots = [
        0, 700, 1300, 5000, 5461, 6100, 6800, 10000, 10923, 11600, 12250, 16000,
    ];
    let ids: Vec<String> = slots
        .iter()
        .flat_map(|slot| ids_in_slot(*slot, 1))
        .collect();
    plant_flows(&cluster, &ids);
    let apps = [
        serve_with(PipelineStateLayer::new(cluster_store(&cluster).await)).await,
        serve_with(PipelineStateLayer::new(cluster_store(&cluster).await)).await,
    ];
    let before: Vec<u16> = ids
        .iter()
        .map(|id| cluster.master_of(&format!("pipeline:{id}")))
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    let stop_flag = stop.clone();
    let rebalancing = tokio::task::spawn_blocking(move || {
        // Let the race start on three masters.
        std::thread::sleep(Duration::from_millis(500));
        let added = cluster.add_master();
        let printed = cluster.rebalance();
        // And a little on four.
        std::thread::sleep(Duration::from_millis(500));
        stop_flag.store(true, Ordering::SeqCst);
        (cluster, added, printed)
    });
    let tallies = hammer_flows(&[&apps[0], &apps[1]], &ids, 16, stop).await;
    let (cluster, added, printed) = rebalancing.await.unwrap();

    let counts = cluster.slot_counts();
    println!("slots per master after the rebalance: {counts:?}");
    let moved: Vec<&String> = ids
        .iter()
        .zip(&before)
        .filter(|(id, master)| cluster.master_of(&format!("pipeline:{id}")) != **master)
        .map(|(id, _)| id)
        .collect();
    println!(
        "{} of {} flows moved to another master during the race",
        moved.len(),
        ids.len()
    );
    assert!(
        counts.get(&added).is_some_and(|n| *n >= 4000),
        "the new master serves a quarter of the slots: {counts:?}\n{printed}"
    );
    assert!(!moved.is_empty(), "flows moved while the race ran");
    check(&cluster, &ids, &tallies, "rebalance");
}

/// A master just added serves no slot, so the cluster connection does not
/// know it; yet while its first slot migrates to it, the old node sends
/// that slot's moved keys there. `connect_cluster` reaches it over a
/// connection of the store's own; a store from `connect_cluster_with`
/// (whose builder's settings it cannot read) sends the command again until
/// it gives up, as its documentation says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_without_slots_is_reached_while_its_first_slot_migrates() {
    let _serial = SERIAL.lock().await;
    let mut cluster = RedisCluster::start();
    let store = cluster_store(&cluster).await;
    let builder = redis::cluster::ClusterClient::builder(cluster.urls());
    let without_seeds = RedisStore::connect_cluster_with(builder).await.unwrap();
    let slot = cluster.slot("pipeline:first slot");
    let [moved, created] = <[String; 2]>::try_from(ids_in_slot(slot, 2)).unwrap();
    let [moved, created] = [moved, created].map(|id| format!("pipeline:{id}"));
    let minute = Duration::from_secs(60);
    assert!(store.create(&moved, COUNT_ONE, minute).await.unwrap());

    let added = cluster.add_master();
    let migration = cluster.begin_migration(slot, added);
    migration.move_key(&moved);
    cluster.reset_stats();
    let v2 = br#"{"format":1,"version":2,"data":{"count":2}}"#;
    assert_eq!(
        store.load(&moved, Some(minute)).await.unwrap().as_deref(),
        Some(COUNT_ONE)
    );
    assert_eq!(
        store.update(&moved, 1, v2, minute).await.unwrap(),
        CasOutcome::Done
    );
    assert!(store.create(&created, COUNT_ONE, minute).await.unwrap());
    // The new master has none of the store's scripts yet: the load and the
    // compare-and-set each meet NOSCRIPT, load their script there and are
    // sent once more, with ASKING again.
    let on_added = cluster.command_calls(added);
    assert_eq!(on_added.get("asking"), Some(&5), "{on_added:?}");
    assert_eq!(on_added.get("script|load"), Some(&2), "{on_added:?}");
    assert_eq!(on_added.get("set"), Some(&2), "{on_added:?}");

    let error = without_seeds
        .load(&moved, None)
        .await
        .expect_err("the cluster connection does not know the new master");
    println!("connect_cluster_with: {error}");
    // The old node answered ASK and did not run it: nothing was sent
    // anywhere that could write.
    assert_eq!(error.kind(), "unreachable");
    assert!(error.nothing_written());

    migration.finish();
    assert_eq!(
        without_seeds.load(&moved, None).await.unwrap().as_deref(),
        Some(&v2[..]),
        "once the slot is the new master's, the cluster connection knows it"
    );
    assert_eq!(cluster.master_of(&created), added);
}

/// With `durability`, a write redirected by `ASK` carries its `WAIT` in
/// the same pipeline to the new master, which waits for its own replica:
/// the `200` comes from that `WAIT`'s count, and the replica has the write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirected_write_with_durability_waits_for_the_new_masters_replica() {
    let _serial = SERIAL.lock().await;
    let cluster = RedisCluster::start_with(1, &[]);
    let layer = PipelineStateLayer::new(cluster_store(&cluster).await)
        .durability(1, Duration::from_millis(500));
    let app = serve_with(layer).await;
    let slot = cluster.slot("pipeline:durable");
    let ids = ids_in_slot(slot, 1);
    plant_flows(&cluster, &ids);
    let key = format!("pipeline:{}", ids[0]);

    let source = cluster.master_of_slot(slot);
    let target = *cluster.masters().keys().find(|p| **p != source).unwrap();
    let replica = cluster.masters()[&target][0];
    let migration = cluster.begin_migration(slot, target);
    migration.move_key(&key);
    cluster.reset_stats();
    let answer = reqwest::Client::new()
        .post(app.url("/incr"))
        .header("cookie", format!("pipeline_id={}", ids[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.text().await.unwrap(), "2");
    let on_target = cluster.command_calls(target);
    assert_eq!(
        on_target.get("asking"),
        Some(&2),
        "the load and the write: {on_target:?}"
    );
    assert_eq!(on_target.get("wait"), Some(&1), "{on_target:?}");
    // The replica serves the slot once the migration has ended.
    migration.finish();
    let on_replica: Option<Vec<u8>> = redis::cmd("GET")
        .arg(&key)
        .query(
            &mut redis::Client::open(format!("redis://127.0.0.1:{replica}"))
                .unwrap()
                .get_connection()
                .map(|mut connection| {
                    let _: () = redis::cmd("READONLY").query(&mut connection).unwrap();
                    connection
                })
                .unwrap(),
        )
        .unwrap();
    assert_eq!(
        on_replica.map(|raw| {
            serde_json::from_slice::<serde_json::Value>(&raw).unwrap()["data"]["count"].clone()
        }),
        Some(2.into()),
        "the new master's replica has the write"
    );
}
