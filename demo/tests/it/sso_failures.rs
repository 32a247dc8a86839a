//! The demo's pages when the flow store fails, one per kind: unavailable
//! with nothing saved, a step not confirmed, and the way on from each. A
//! failed POST (a start, a submitted step) is answered with a form that
//! sends the same fields to the same address again, never a link that
//! would load it as a GET (405); with Redis started again on the same
//! port, that form signs the person in.

use crate::{common::*, sso_kit::*};
use demo::sso::pages;
use reqwest::StatusCode;
use tower_pipeline_state::{RedisStore, Store};

/// Waits until `store`'s client has seen Redis go: a load then fails as
/// "nothing sent", as every command until Redis is back.
async fn until_unreachable(store: &RedisStore) {
    let error = store
        .load("auth:pipeline:probe", None)
        .await
        .expect_err("Redis is down");
    assert!(error.nothing_written(), "{error}");
}

/// The "Try again" form of a page: where it posts, and its fields.
fn resend_form(page: &str) -> (String, Vec<(String, String)>) {
    let unescape = |text: &str| {
        text.replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    };
    let attribute = |tag: &str, name: &str| {
        let start = tag.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        unescape(&tag[start..start + tag[start..].find('"').unwrap()])
    };
    let (_, form) = page
        .split_once("<form method=\"post\" action=\"")
        .unwrap_or_else(|| panic!("no form that posts: {page}"));
    let form = &form[..form.find("</form>").unwrap()];
    assert!(
        form.contains("<button>Try again</button>"),
        "the form is the retry: {form}"
    );
    let action = unescape(&form[..form.find('"').unwrap()]);
    let fields = form
        .split("<input ")
        .skip(1)
        .map(|input| (attribute(input, "name"), attribute(input, "value")))
        .collect();
    (action, fields)
}

/// Posts a resend form as the browser does.
async fn resend(
    deployment: &Deployment,
    browser: &reqwest::Client,
    (action, fields): &(String, Vec<(String, String)>),
) -> reqwest::Response {
    let pairs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    post_form(browser, &deployment.at(0, action), form(&pairs)).await
}

#[tokio::test]
async fn a_start_with_redis_stopped_says_nothing_was_saved_and_its_form_signs_in_once_redis_is_back()
 {
    let (logs, _capturing) = Logs::capture();
    let mut redis = RedisServer::start();
    let store = redis_store(&redis.url()).await;
    let deployment = Deployment::over(vec![store.clone()], |_| {}).await;
    let browser = browser();

    redis.stop();
    until_unreachable(&store).await;
    let failed = start_with(
        &deployment,
        &browser,
        0,
        "/sso/start",
        &[("return_to", "/")],
    )
    .await;
    assert_eq!(flow_cookie(&failed), None, "no flow was written");
    let (status, body) = page(failed).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(shows(&body, &pages::UNAVAILABLE), "{body}");
    assert!(
        !body.contains("href=\"\""),
        "no link that would load /sso/start as a GET: {body}"
    );
    let retry = resend_form(&body);
    assert_eq!(
        retry,
        (
            "/sso/start".to_owned(),
            vec![("return_to".to_owned(), "/".to_owned())]
        )
    );
    let log = logs.text();
    assert_eq!(
        logs.matching(&["app: POST /sso/start -> 503 store_unavailable"])
            .len(),
        1,
        "{log}"
    );
    assert!(!log.contains("not confirmed"), "{log}");

    // Redis back on the same port: the form's POST starts the sign-in.
    redis.restart();
    let started = resend(&deployment, &browser, &retry).await;
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    let authorize = location(&started);
    assert!(
        authorize.starts_with(&format!("{}/authorize?", deployment.issuer())),
        "{authorize}"
    );
    let callback = sign_in_at_provider(&browser, &authorize, "alice", "wonderland").await;
    let back = follow_callback(&deployment, &browser, &callback, 0).await;
    let link = flow_link(&back);
    let (status, home) = confirm(&deployment, &browser, &link, 0, 0).await;
    assert_eq!(status, StatusCode::OK);
    assert!(home.contains("Alice Liddell"), "signed in: {home}");
}

#[tokio::test]
async fn a_step_submitted_with_redis_stopped_is_sent_again_with_its_fields_and_goes_through() {
    let mut redis = RedisServer::start();
    let store = redis_store(&redis.url()).await;
    let deployment = Deployment::over(vec![store.clone()], |_| {}).await;
    let browser = browser();
    let authorize = start(&deployment, &browser, 0).await;
    let callback = sign_in_at_provider(&browser, &authorize, "alice", "wonderland").await;
    let back = follow_callback(&deployment, &browser, &callback, 0).await;
    let link = flow_link(&back);
    let asked = browser.get(deployment.at(0, &link)).send().await.unwrap();
    assert!(asked.text().await.unwrap().contains("Continue as"));

    // Redis goes down with the sign-in kept on disk, as a server with
    // persistence does, while the person reads "Continue as ...?".
    redis.save();
    redis.stop();
    until_unreachable(&store).await;
    let failed = post_form(
        &browser,
        &deployment.at(0, &link),
        form(&[("action", "continue")]),
    )
    .await;
    let (status, body) = page(failed).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(shows(&body, &pages::UNAVAILABLE), "{body}");
    let retry = resend_form(&body);
    assert_eq!(
        retry,
        (
            link.clone(),
            vec![("action".to_owned(), "continue".to_owned())]
        )
    );

    redis.restart();
    let continued = resend(&deployment, &browser, &retry).await;
    assert_eq!(continued.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(&continued),
        at_step(&link, 3),
        "the step went through"
    );
    let done = post_form(
        &browser,
        &deployment.at(0, &at_step(&link, 3)),
        form(&[("action", "stay")]),
    )
    .await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&done), "/");
    let (_, home) = page(browser.get(deployment.at(0, "/")).send().await.unwrap()).await;
    assert!(home.contains("Alice Liddell"), "signed in: {home}");
}
