//! What may start a flow (issue 16): only a top-level navigation, as the
//! browser marks it (`Sec-Fetch-Mode: navigate`, `Sec-Fetch-Dest: document`,
//! no prefetch or prerender purpose), or a request with no such marks (an
//! older browser, a client that is no browser); a `fetch`, a frame or a
//! prefetch is refused with `not_navigation` before any Redis command, so
//! it neither stores a flow nor drops the flows the browser holds, unless
//! the pipeline allows it (`background_start`). And `start_to` takes only
//! a path of this site as the `return_to`. Real HTTP, a private
//! redis-server, round trips counted; the pipeline of
//! `common/forgiving.rs`.

use std::collections::BTreeMap;

use axum::http::StatusCode;

use crate::common::{
    forgiving::{App, answer, calls, refused},
    *,
};

/// The marks of requests that are not top-level navigations.
const BACKGROUND: [(&str, &[(&str, &str)]); 5] = [
    (
        "fetch",
        &[
            ("sec-fetch-mode", "cors"),
            ("sec-fetch-dest", "empty"),
            ("sec-fetch-site", "same-origin"),
        ],
    ),
    (
        "an image",
        &[("sec-fetch-mode", "no-cors"), ("sec-fetch-dest", "image")],
    ),
    (
        "an iframe",
        &[("sec-fetch-mode", "navigate"), ("sec-fetch-dest", "iframe")],
    ),
    (
        "a prefetch",
        &[
            ("sec-fetch-mode", "navigate"),
            ("sec-fetch-dest", "document"),
            ("sec-purpose", "prefetch"),
        ],
    ),
    ("an older browser's prefetch", &[("purpose", "prefetch")]),
];

fn with(mut request: reqwest::RequestBuilder, headers: &[(&str, &str)]) -> reqwest::RequestBuilder {
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
}

/// Each background request to the start route is refused with
/// `not_navigation`: no Redis command, no cookie set or dropped (the
/// browser holds as many flows as the layer keeps, so a start would drop
/// the oldest). A navigation, and a request without the marks, start a
/// flow for one `SET NX`.
#[tokio::test]
async fn only_navigations_start_flows_and_a_refused_start_costs_no_redis_command() {
    let app = App::new(|b| b).await;
    let browser = browser();
    for _ in 0..5 {
        let started = browser.get(app.url("/sso/start")).send().await.unwrap();
        assert_eq!(started.status(), StatusCode::OK);
    }
    let keys = app.redis.keys();
    assert_eq!(keys.len(), 5, "as many flows as max_flows");

    for (what, headers) in BACKGROUND {
        for method in [reqwest::Method::GET, reqwest::Method::POST] {
            let request = with(
                browser.request(method.clone(), app.url("/sso/start")),
                headers,
            );
            let (response, trips, commands) = app.measure(request).await;
            assert!(
                set_cookies(response.headers()).is_empty(),
                "{what} {method}: no cookie set or dropped"
            );
            assert_eq!(
                answer(response).await,
                refused("outcome=not_navigation"),
                "{what} {method}"
            );
            assert_eq!(
                (trips, commands),
                (0, BTreeMap::new()),
                "{what} {method}: no Redis command"
            );
        }
    }
    assert_eq!(app.redis.keys(), keys, "nothing stored, nothing dropped");

    let navigate: &[(&str, &str)] = &[
        ("sec-fetch-mode", "navigate"),
        ("sec-fetch-dest", "document"),
        ("sec-fetch-site", "same-origin"),
    ];
    for (what, headers) in [("a navigation", navigate), ("no marks", &[])] {
        let fresh = crate::common::browser();
        let request = with(fresh.post(app.url("/sso/start")), headers);
        let (response, trips, commands) = app.measure(request).await;
        assert!(flow_cookie(&response).is_some(), "{what}");
        let (status, body) = answer(response).await;
        assert_eq!(status, StatusCode::OK, "{what}: {body}");
        assert!(body.starts_with("authorize state="), "{what}: {body}");
        assert_eq!((trips, commands), (1, calls(&[("set", 1)])), "{what}");
    }
}

/// A pipeline that is started by background requests on purpose
/// (`background_start(true)`) starts on each of them.
#[tokio::test]
async fn background_start_lets_background_requests_start_flows() {
    let app = App::new(|b| b.background_start(true)).await;
    for (what, headers) in BACKGROUND {
        let started = with(browser().get(app.url("/sso/start")), headers)
            .send()
            .await
            .unwrap();
        assert!(flow_cookie(&started).is_some(), "{what}");
        let (status, body) = answer(started).await;
        assert_eq!(status, StatusCode::OK, "{what}: {body}");
    }
    assert_eq!(app.redis.keys().len(), BACKGROUND.len());
}

/// `start_to` keeps a path of this site, and refuses anything a browser
/// could read as another site (or that could split a header), before any
/// Redis command.
#[tokio::test]
async fn start_to_refuses_a_return_to_that_is_not_a_path_of_this_site() {
    let app = App::new(|b| b).await;
    let long = format!("/{}", "a".repeat(600));
    for bad in [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "javascript:alert(1)",
        "billing",
        "/a b",
        "/a\r\nSet-Cookie: x=1",
        long.as_str(),
    ] {
        let to: String = form_urlencoded::byte_serialize(bad.as_bytes()).collect();
        let (response, trips, _) = app
            .measure(browser().get(app.url(&format!("/sso/start?to={to}"))))
            .await;
        assert_eq!(flow_cookie(&response), None, "{bad:?}");
        assert_eq!(
            answer(response).await,
            refused("outcome=return_to"),
            "{bad:?}"
        );
        assert_eq!(trips, 0, "{bad:?}");
    }
    assert_eq!(app.redis.keys(), Vec::<String>::new());

    let started = browser()
        .get(app.url("/sso/start?to=%2Fbilling%3Fplan%3Dteam"))
        .send()
        .await
        .unwrap();
    let key = started_flow_key(&started);
    let (status, body) = answer(started).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.ends_with(" to=/billing?plan=team"), "{body}");
    let raw = app.redis.get(&key).unwrap();
    let fields = serde_json::from_slice::<serde_json::Value>(&raw).unwrap()["data"].clone();
    assert_eq!(fields["return_to"], "/billing?plan=team");
}
