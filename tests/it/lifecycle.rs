//! Create, load, update, clear and regenerate across requests, through a
//! real axum server, a real client and a private redis-server.

use crate::common::*;
use cookie::SameSite;
use reqwest::StatusCode;
use tower_pipeline_state::PipelineStateLayer;

#[tokio::test]
async fn a_flow_is_created_loaded_updated_and_cleared() {
    let Fixture {
        redis,
        app,
        browser,
    } = Fixture::new().await;

    let first = browser.post(app.url("/incr")).send().await.unwrap();
    let cookie = set_cookie(&first).expect("creating a flow sets the cookie");
    assert_eq!(first.text().await.unwrap(), "1");
    let id = cookie.value().to_owned();
    let key = format!("pipeline:{id}");
    assert_eq!(redis.keys(), std::slice::from_ref(&key));

    let second = browser.post(app.url("/incr")).send().await.unwrap();
    assert_eq!(
        set_cookie(&second),
        None,
        "an update keeps the id: no Set-Cookie"
    );
    assert_eq!(second.text().await.unwrap(), "2");

    assert_eq!(
        text_of(browser.get(app.url("/status"))).await,
        format!("loaded {id}")
    );
    assert_eq!(text_of(browser.get(app.url("/read"))).await, "count=2");

    let stored = String::from_utf8(redis.get(&key).unwrap()).unwrap();
    assert_eq!(stored, r#"{"format":1,"version":2,"data":{"count":2}}"#);

    let cleared = browser.post(app.url("/clear")).send().await.unwrap();
    let removal = set_cookie(&cleared).expect("clearing expires the cookie");
    assert!(removes(&removal), "{removal}");
    assert_eq!(removal.path(), Some("/"), "{removal}");
    assert_eq!(redis.keys(), Vec::<String>::new());

    assert_eq!(
        text_of(browser.get(app.url("/status"))).await,
        "new none",
        "the browser dropped the cookie"
    );
}

#[tokio::test]
async fn an_expired_flow_is_seen_as_expired_and_a_write_starts_a_new_one() {
    let Fixture {
        redis,
        app,
        browser,
    } = Fixture::new().await;

    let created = browser.post(app.url("/incr")).send().await.unwrap();
    let old_id = set_cookie(&created).unwrap().value().to_owned();
    redis.del(&format!("pipeline:{old_id}"));

    assert_eq!(
        text_of(browser.get(app.url("/status"))).await,
        "expired none"
    );

    let restarted = browser.post(app.url("/incr")).send().await.unwrap();
    let new_id = set_cookie(&restarted)
        .expect("a new flow, a new cookie")
        .value()
        .to_owned();
    assert_ne!(new_id, old_id, "a client-supplied id is never adopted");
    assert_eq!(restarted.text().await.unwrap(), "1");
    assert_eq!(redis.keys(), [format!("pipeline:{new_id}")]);
}

#[tokio::test]
async fn regenerate_moves_the_flow_to_a_new_id_and_deletes_the_old_key() {
    let Fixture {
        redis,
        app,
        browser,
    } = Fixture::new().await;

    let created = browser.post(app.url("/incr")).send().await.unwrap();
    let old_id = set_cookie(&created).unwrap().value().to_owned();

    let regenerated = browser.post(app.url("/regenerate")).send().await.unwrap();
    let new_id = set_cookie(&regenerated)
        .expect("the new id is sent")
        .value()
        .to_owned();
    assert_ne!(new_id, old_id);
    assert_eq!(regenerated.text().await.unwrap(), new_id);
    assert_eq!(
        redis.keys(),
        [format!("pipeline:{new_id}")],
        "the old key is gone"
    );

    assert_eq!(
        text_of(browser.get(app.url("/read"))).await,
        "count=1",
        "the state moved with the flow"
    );
}

#[tokio::test]
async fn the_cookie_has_the_configured_attributes() {
    let redis = RedisServer::start();
    let store = redis_store(&redis.url()).await;

    let app = serve(routes().layer(PipelineStateLayer::new(store.clone()))).await;
    let response = browser().post(app.url("/incr")).send().await.unwrap();
    let cookie = set_cookie(&response).unwrap();
    assert_eq!(cookie.http_only(), Some(true), "default cookie {cookie}");
    assert_eq!(
        cookie.same_site(),
        Some(SameSite::Lax),
        "default cookie {cookie}"
    );
    assert_eq!(cookie.secure(), Some(true), "default cookie {cookie}");
    assert_eq!(cookie.path(), Some("/"), "default cookie {cookie}");
    assert_eq!(
        cookie.value().len(),
        32,
        "a UUID v4 in simple form: {cookie}"
    );

    let layer = PipelineStateLayer::new(store)
        .cookie_name("sso")
        .cookie_path("/auth")
        .cookie_domain("localhost")
        .cookie_same_site(tower_pipeline_state::SameSite::None)
        .cookie_http_only(false)
        .cookie_secure(true);
    let app = serve(axum::Router::new().nest("/auth", routes()).layer(layer)).await;
    let response = browser().post(app.url("/auth/incr")).send().await.unwrap();
    let cookies = set_cookies(response.headers());
    let cookie = cookies.first().expect("the response sets a cookie");
    assert_eq!(cookie.name(), "sso", "{cookie}");
    assert_eq!(cookie.same_site(), Some(SameSite::None), "{cookie}");
    assert_eq!(cookie.secure(), Some(true), "{cookie}");
    assert_eq!(cookie.path(), Some("/auth"), "{cookie}");
    assert_eq!(cookie.domain(), Some("localhost"), "{cookie}");
    assert_eq!(cookie.http_only(), None, "{cookie}");
}

#[tokio::test]
async fn the_ttl_is_set_on_create_and_refreshed_on_load() {
    let redis = RedisServer::start();
    let layer = PipelineStateLayer::new(redis_store(&redis.url()).await)
        .ttl(std::time::Duration::from_secs(300));
    let app = serve_with(layer).await;
    let browser = browser();

    let created = browser.post(app.url("/incr")).send().await.unwrap();
    let key = created_key(&created);
    let ttl = redis.ttl(&key);
    assert!((295..=300).contains(&ttl), "TTL after create: {ttl}");

    redis.expire(&key, 20);
    assert_eq!(text_of(browser.get(app.url("/read"))).await, "count=1");
    let ttl = redis.ttl(&key);
    assert!(
        (295..=300).contains(&ttl),
        "a plain read slides the TTL back: {ttl}"
    );

    redis.expire(&key, 20);
    browser.post(app.url("/incr")).send().await.unwrap();
    let ttl = redis.ttl(&key);
    assert!((295..=300).contains(&ttl), "a write sets the TTL: {ttl}");
}

#[tokio::test]
async fn without_refresh_on_load_a_read_leaves_the_ttl_alone() {
    let redis = RedisServer::start();
    let layer = PipelineStateLayer::new(redis_store(&redis.url()).await).refresh_on_load(false);
    let app = serve_with(layer).await;
    let browser = browser();

    let created = browser.post(app.url("/incr")).send().await.unwrap();
    let key = created_key(&created);
    redis.expire(&key, 20);
    browser.get(app.url("/read")).send().await.unwrap();
    let ttl = redis.ttl(&key);
    assert!((1..=20).contains(&ttl), "GET does not touch the TTL: {ttl}");
}

#[tokio::test]
async fn a_server_error_writes_nothing() {
    let Fixture {
        redis,
        app,
        browser,
    } = Fixture::new().await;

    let created = browser.post(app.url("/incr")).send().await.unwrap();
    let key = created_key(&created);
    let before = redis.get(&key);

    let failed = browser.post(app.url("/fail")).send().await.unwrap();
    assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(redis.get(&key), before, "the record is untouched");
    assert_eq!(text_of(browser.get(app.url("/read"))).await, "count=1");

    // A new flow whose first request fails is never created.
    let fresh = crate::common::browser();
    let failed = fresh.post(app.url("/fail")).send().await.unwrap();
    assert_eq!(set_cookie(&failed), None);
    assert_eq!(redis.keys(), [key]);
}

#[tokio::test]
async fn a_server_error_can_be_told_to_keep_its_changes() {
    let redis = RedisServer::start();
    let layer =
        PipelineStateLayer::new(redis_store(&redis.url()).await).discard_on_server_error(false);
    let app = serve_with(layer).await;
    let browser = browser();

    browser.post(app.url("/incr")).send().await.unwrap();
    browser.post(app.url("/fail")).send().await.unwrap();
    assert_eq!(
        text_of(browser.get(app.url("/read"))).await,
        "count=1000000"
    );
}

#[tokio::test]
async fn the_key_prefix_is_configurable() {
    let redis = RedisServer::start();
    let layer =
        PipelineStateLayer::new(redis_store(&redis.url()).await).key_prefix("auth:pipeline:");
    let app = serve_with(layer).await;
    let created = browser().post(app.url("/incr")).send().await.unwrap();
    let id = set_cookie(&created).unwrap().value().to_owned();
    assert_eq!(redis.keys(), [format!("auth:pipeline:{id}")]);
}

/// Runs create → update → read → clear through `layer` and checks Redis.
async fn run_flow<St: tower_pipeline_state::Store>(
    redis: &RedisServer,
    layer: PipelineStateLayer<St>,
) {
    let app = serve_with(layer).await;
    let browser = browser();
    assert_eq!(
        browser
            .post(app.url("/incr"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "1"
    );
    assert_eq!(
        browser
            .post(app.url("/incr"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "2"
    );
    assert_eq!(
        browser
            .get(app.url("/read"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "count=2"
    );
    assert_eq!(redis.keys().len(), 1);
    browser.post(app.url("/clear")).send().await.unwrap();
    assert_eq!(redis.keys(), Vec::<String>::new());
}

#[tokio::test]
async fn every_kind_of_redis_connection_serves_a_flow() {
    let redis = RedisServer::start();

    run_flow(
        &redis,
        PipelineStateLayer::new(redis_store(&redis.url()).await),
    )
    .await;

    let client = redis::Client::open(redis.url()).unwrap();
    let multiplexed = client.get_multiplexed_async_connection().await.unwrap();
    run_flow(
        &redis,
        PipelineStateLayer::new(tower_pipeline_state::RedisStore::new(multiplexed)),
    )
    .await;

    let manager = bb8_redis::RedisConnectionManager::new(redis.url()).unwrap();
    let pool = bb8::Pool::builder()
        .max_size(4)
        .test_on_check_out(false)
        .build(manager)
        .await
        .unwrap();
    run_flow(
        &redis,
        PipelineStateLayer::new(
            tower_pipeline_state::RedisStore::from_pool(pool)
                .await
                .unwrap(),
        ),
    )
    .await;
}
