//! The demo's `/metrics`: the crate's funnel in Prometheus's text format,
//! rendered by `metrics-exporter-prometheus`, read after a sign-in.

use crate::{common::*, sso_kit::*};
use metrics_exporter_prometheus::PrometheusBuilder;
use reqwest::StatusCode;

/// The value of the sample of `name` whose labels include every one of
/// `labels`, from a page in the text exposition format.
fn sample(page: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .find(|(series, _)| {
            series.starts_with(&format!("{name}{{"))
                && labels
                    .iter()
                    .all(|(label, value)| series.contains(&format!("{label}=\"{value}\"")))
        })
        .map(|(_, value)| value.parse().unwrap())
}

#[tokio::test]
async fn metrics_serves_the_funnel_of_a_sign_in_in_prometheus_text_format() {
    // A recorder of this test's own: the servers run on its thread.
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    let redis = RedisServer::start();
    let deployment = Deployment::configured(&redis, 1, |settings| {
        settings.metrics = Some(handle.clone());
    })
    .await;
    let browser = browser();
    let authorize = start(&deployment, &browser, 0).await;
    let callback = sign_in_at_provider(&browser, &authorize, "alice", "wonderland").await;
    let back = follow_callback(&deployment, &browser, &callback, 0).await;
    let (status, _) = confirm(&deployment, &browser, &flow_link(&back), 0, 0).await;
    assert_eq!(status, StatusCode::OK);

    let scraped = browser
        .get(deployment.at(0, "/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(scraped.status(), StatusCode::OK);
    assert_eq!(
        scraped.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let page = scraped.text().await.unwrap();
    let sso = [("pipeline", "sso"), ("flow", "login")];
    assert_eq!(
        sample(&page, "pipeline_flows_started_total", &sso),
        Some(1.0),
        "{page}"
    );
    for step in ["authorize", "callback"] {
        let labels = [sso[0], sso[1], ("step", step)];
        assert_eq!(
            sample(&page, "pipeline_steps_entered_total", &labels),
            Some(1.0),
            "{step}: {page}"
        );
    }
    let finished = [sso[0], sso[1], ("how", "finished")];
    assert_eq!(
        sample(&page, "pipeline_flows_ended_total", &finished),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        sample(
            &page,
            "pipeline_state_writes_total",
            &[("outcome", "created")]
        ),
        Some(1.0),
        "the layer's counters too: {page}"
    );
    // No label carries the flow's reference or anything the person sent.
    assert!(!page.contains("alice"), "{page}");
}
