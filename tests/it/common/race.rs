//! Racing increments of one flow's counter from many clients, spread over
//! one or more app servers: what the topology tests run under load.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use tokio::task::JoinSet;

use crate::common::{Server, browser, set_cookie};

/// How a race went: answers by status.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) statuses: BTreeMap<u16, u64>,
}

impl Tally {
    pub(crate) fn count(&self, status: StatusCode) -> u64 {
        self.statuses.get(&status.as_u16()).copied().unwrap_or(0)
    }
}

/// Creates a flow (count = 1) on `app` and returns its id.
pub(crate) async fn start_flow(app: &Server) -> String {
    let response = browser().post(app.url("/incr")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    set_cookie(&response).unwrap().value().to_owned()
}

/// `clients` clients each send `each` concurrent increments of flow `id`,
/// client `n` to app server `n % apps.len()`.
pub(crate) async fn race_increments(
    apps: &[&Server],
    id: &str,
    clients: usize,
    each: usize,
) -> Tally {
    let mut requests = JoinSet::new();
    for n in 0..clients {
        // Each client has its own connections; all carry the same flow.
        let client = reqwest::Client::new();
        let url = apps[n % apps.len()].url("/incr");
        for _ in 0..each {
            let request = client
                .post(&url)
                .header("cookie", format!("pipeline_id={id}"));
            requests.spawn(async move { request.send().await.unwrap().status() });
        }
    }
    let mut tally = Tally::default();
    while let Some(status) = requests.join_next().await {
        *tally.statuses.entry(status.unwrap().as_u16()).or_default() += 1;
    }
    eprintln!(
        "{} concurrent increments: answers by status {:?}",
        clients * each,
        tally.statuses
    );
    tally
}

/// `clients` clients each send increments of flow `id`, one after another,
/// until `until`; client `n` to app server `n % apps.len()`. Every answer
/// must be 200, 409 or 503 (checked by the caller from the tally).
pub(crate) async fn hammer(
    apps: &[&Server],
    id: &str,
    clients: usize,
    until: std::time::Instant,
) -> Tally {
    let mut loops = JoinSet::new();
    for n in 0..clients {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .unwrap();
        let url = apps[n % apps.len()].url("/incr");
        let cookie = format!("pipeline_id={id}");
        loops.spawn(async move {
            let mut statuses = BTreeMap::<u16, u64>::new();
            while std::time::Instant::now() < until {
                let status = client
                    .post(&url)
                    .header("cookie", &cookie)
                    .send()
                    .await
                    .unwrap()
                    .status();
                *statuses.entry(status.as_u16()).or_default() += 1;
            }
            statuses
        });
    }
    let mut tally = Tally::default();
    while let Some(statuses) = loops.join_next().await {
        for (status, count) in statuses.unwrap() {
            *tally.statuses.entry(status).or_default() += count;
        }
    }
    tally
}

/// `clients` clients each send increments, one after another, of flow
/// `ids[n % ids.len()]` through app server `n % apps.len()` (client `n`),
/// until `stop` is set. Answers a tally per flow, in the order of `ids`.
pub(crate) async fn hammer_flows(
    apps: &[&Server],
    ids: &[String],
    clients: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<Tally> {
    use std::sync::atomic::Ordering;
    let mut loops = JoinSet::new();
    for n in 0..clients {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .unwrap();
        let url = apps[n % apps.len()].url("/incr");
        let flow = n % ids.len();
        let cookie = format!("pipeline_id={}", ids[flow]);
        let stop = stop.clone();
        loops.spawn(async move {
            let mut statuses = BTreeMap::<u16, u64>::new();
            while !stop.load(Ordering::SeqCst) {
                let status = client
                    .post(&url)
                    .header("cookie", &cookie)
                    .send()
                    .await
                    .unwrap()
                    .status();
                *statuses.entry(status.as_u16()).or_default() += 1;
            }
            (flow, statuses)
        });
    }
    let mut tallies: Vec<Tally> = ids.iter().map(|_| Tally::default()).collect();
    while let Some(result) = loops.join_next().await {
        let (flow, statuses) = result.unwrap();
        for (status, count) in statuses {
            *tallies[flow].statuses.entry(status).or_default() += count;
        }
    }
    tallies
}
