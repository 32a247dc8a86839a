//! No log line carries a secret: scripted flows (finished, replayed,
//! refused, expired, a corrupt record, a conflict, Redis down and back)
//! run through the real layer over a real redis-server while every line of
//! every level is captured; every flow id, cookie value and nonce that went
//! over the wire is noted, and none may appear in any line. Lines that
//! must tie requests of one flow together carry a keyed hash of its id
//! (`pipeline.log_id`) instead.

use std::{collections::BTreeSet, sync::Arc};

use crate::common::engine::*;
use crate::common::*;
use reqwest::StatusCode;
use tokio::sync::Barrier;
use tower_pipeline_state::Store;

/// What went over the wire that a log line must never show.
#[derive(Default)]
struct Secrets(BTreeSet<String>);

impl Secrets {
    /// Sends `request`, notes the cookie values it set (and the flow ids
    /// in them) and any nonce its page shows; returns status and body.
    async fn send(&mut self, request: reqwest::RequestBuilder) -> (StatusCode, String) {
        let response = request.send().await.unwrap();
        self.note(&response);
        let (status, body) = text(response).await;
        if let Some(nonce) = body.strip_prefix("at one nonce=") {
            self.0.insert(nonce.to_owned());
        }
        (status, body)
    }

    /// Notes the cookie values `response` sets, and the flow ids in them.
    fn note(&mut self, response: &reqwest::Response) {
        for cookie in set_cookies(response.headers()) {
            let value = cookie.value();
            if !value.is_empty() {
                self.0.insert(value.to_owned());
                let id = value.split('.').next().unwrap();
                self.0.insert(id.to_owned());
            }
        }
    }

    /// A flow started in `browser`, walked to step three; returns its
    /// nonce (spent by the callback).
    async fn walk_to_three(&mut self, app: &Server, browser: &reqwest::Client) -> String {
        let (_, page) = self.send(browser.get(app.url("/flow/start"))).await;
        let nonce = page.strip_prefix("at one nonce=").unwrap().to_owned();
        assert_eq!(
            self.send(browser.post(app.url("/flow"))).await.0,
            StatusCode::OK
        );
        let callback = browser.get(app.url(&format!("/flow?state={nonce}")));
        assert_eq!(self.send(callback).await.0, StatusCode::OK);
        nonce
    }
}

#[tokio::test]
async fn no_log_line_of_any_level_carries_a_flow_id_a_nonce_or_a_cookie_value() {
    let (logs, _guard) = Logs::capture();
    let mut redis = RedisServer::start();
    let store = redis_store(&redis.url()).await;
    let app = serve(router(pipeline(Options::default()), store.clone())).await;
    // The same flows, where two submissions of step three meet.
    let racing = Options {
        barrier: Some(Arc::new(Barrier::new(2))),
        ..Options::default()
    };
    let racing = serve(router(pipeline(racing), store.clone())).await;
    let mut wire = Secrets::default();

    // Finished, then its callback replayed and the flow asked for again.
    let alice = browser();
    let nonce = wire.walk_to_three(&app, &alice).await;
    wire.send(alice.post(app.url("/flow")).body("team")).await;
    let (status, done) = wire.send(alice.post(app.url("/flow"))).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    wire.send(alice.get(app.url(&format!("/flow?state={nonce}"))))
        .await;
    wire.send(alice.get(app.url("/flow"))).await;

    // Refused: a forged state, another user, a spent nonce.
    let bob = browser();
    let nonce = wire.walk_to_three(&app, &bob).await;
    wire.send(bob.get(app.url("/flow?state=forged"))).await;
    wire.send(as_user(bob.get(app.url("/flow")), Some("mallory")))
        .await;
    wire.send(bob.get(app.url(&format!("/flow?state={nonce}"))))
        .await;

    // Expired: its record gone.
    let carol = browser();
    let started = carol.get(app.url("/flow/start")).send().await.unwrap();
    let key = started_flow_key(&started);
    wire.note(&started);
    redis.del(&key);
    wire.send(carol.get(app.url("/flow"))).await;

    // A corrupt record.
    let dave = browser();
    let started = dave.get(app.url("/flow/start")).send().await.unwrap();
    let key = started_flow_key(&started);
    wire.note(&started);
    redis.set(&key, b"not a record");
    wire.send(dave.get(app.url("/flow"))).await;

    // A conflict: two submissions of step three at once.
    let erin = browser();
    wire.walk_to_three(&app, &erin).await;
    let (first, second) = tokio::join!(
        erin.post(racing.url("/flow")).body("one").send(),
        erin.post(racing.url("/flow")).body("two").send()
    );
    let statuses = [first.unwrap().status(), second.unwrap().status()];
    assert!(statuses.contains(&StatusCode::CONFLICT), "{statuses:?}");

    // Redis down: a flow that cannot be loaded, one that cannot start.
    let frank = browser();
    wire.send(frank.get(app.url("/flow/start"))).await;
    redis.stop();
    assert!(store.load("pipeline:probe", None).await.is_err());
    let (down, _) = wire.send(frank.get(app.url("/flow"))).await;
    assert_eq!(down, StatusCode::BAD_REQUEST, "the engine's unavailable");
    let (down, _) = wire.send(browser().get(app.url("/flow/start"))).await;
    assert_eq!(down, StatusCode::SERVICE_UNAVAILABLE);
    redis.restart();
    let (up, _) = wire.send(browser().get(app.url("/flow/start"))).await;
    assert_eq!(up, StatusCode::OK);

    let text = logs.text();
    let ids = wire.0.iter().filter(|secret| secret.len() == 32).count();
    assert!(ids >= 7, "every flow's id was noted: {:?}", wire.0);
    for line in text.lines() {
        for secret in &wire.0 {
            assert!(
                !line.contains(secret.as_str()),
                "a log line carries {secret:?} from the wire: {line}"
            );
        }
    }
    // The lines that name a flow do, by its keyed hash.
    for event in [
        "pipeline state expired or cleared",
        "does not decode",
        "a concurrent request changed the same field",
        "not loaded: the store failed",
    ] {
        let lines = logs.matching(&[event, "pipeline.log_id="]);
        assert!(
            !lines.is_empty(),
            "no {event:?} line with a log id in:\n{text}"
        );
    }
    assert_eq!(logs.matching(&["nothing was written"]).len(), 1, "{text}");
}
