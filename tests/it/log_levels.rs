//! Log levels that mean something: what a person's click or a third party
//! provokes (a replay, Back to an ended flow, a foreign or forged callback,
//! a forged cookie, a race lost once) logs at `info` or `debug`, never
//! `warn` or `error`, so an operator's warnings stay worth reading.

use std::sync::Arc;

use crate::common::engine::*;
use crate::common::*;
use reqwest::StatusCode;
use tokio::sync::Barrier;

#[tokio::test]
async fn clicks_and_third_parties_log_at_info_or_debug_never_warn() {
    let (logs, _guard) = Logs::capture();
    let redis = RedisServer::start();
    let racing = Options {
        barrier: Some(Arc::new(Barrier::new(2))),
        ..Options::default()
    };
    let app = serve(router(pipeline(racing), redis_store(&redis.url()).await)).await;
    let browser = browser();

    let started = browser.get(app.url("/flow/start")).send().await.unwrap();
    let cookie = flow_cookie(&started).unwrap();
    let reference = cookie
        .name()
        .strip_prefix("pipeline_id.")
        .unwrap()
        .to_owned();
    let nonce = text(started).await.1.replace("at one nonce=", "");
    browser.post(app.url("/flow")).send().await.unwrap();
    // Another browser brings the callback (a foreign flow), then someone
    // forges a `state`, then a forged cookie names the flow.
    let callback = format!("/flow?state={reference}.{nonce}");
    let foreign = crate::common::browser()
        .get(app.url(&callback))
        .send()
        .await
        .unwrap();
    assert_eq!(
        text(foreign).await,
        (StatusCode::BAD_REQUEST, "outcome=other_browser".to_owned())
    );
    browser
        .get(app.url("/flow?state=forged"))
        .send()
        .await
        .unwrap();
    let forged = crate::common::browser()
        .get(app.url("/flow"))
        .header("cookie", format!("{}=forged", cookie.name()))
        .send()
        .await
        .unwrap();
    assert_eq!(text(forged).await.0, StatusCode::BAD_REQUEST);
    // The callback, then the same callback again (a replay).
    assert_eq!(
        text(browser.get(app.url(&callback)).send().await.unwrap())
            .await
            .0,
        StatusCode::OK
    );
    let replayed = browser.get(app.url(&callback)).send().await.unwrap();
    assert_eq!(text(replayed).await.0, StatusCode::BAD_REQUEST);
    // A double click on step three: one of the two loses the race once.
    let (first, second) = tokio::join!(
        browser.post(app.url("/flow")).body("one").send(),
        browser.post(app.url("/flow")).body("two").send()
    );
    let statuses = [first.unwrap().status(), second.unwrap().status()];
    assert!(statuses.contains(&StatusCode::CONFLICT), "{statuses:?}");

    let text = logs.text();
    for outcome in ["other_browser", "nonce_mismatch", "nonce_replayed"] {
        assert_eq!(
            logs.matching(&[
                " INFO ",
                "pipeline flow did not continue",
                &format!("outcome=\"{outcome}\"")
            ])
            .len(),
            1,
            "{outcome} at info: {text}"
        );
    }
    assert_eq!(
        logs.matching(&[" INFO ", "a concurrent request changed the same field"])
            .len(),
        1,
        "{text}"
    );
    let loud: Vec<&str> = text
        .lines()
        .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
        .collect();
    assert!(
        loud.is_empty(),
        "nothing here is an operator's matter: {loud:#?}"
    );
}
