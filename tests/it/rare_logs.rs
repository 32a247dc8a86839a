//! The rare log lines the README's Logs table names, provoked through the
//! layer over a store the test writes (a Redis that answers so is hard to
//! arrange): a conflict storm is one warning that names no flow id, and an
//! id found taken is a warning each time, three in a row a store failure.

use std::{convert::Infallible, time::Duration};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{Empty, Full};
use tower::{Layer, ServiceExt, service_fn};
use tower_pipeline_state::{
    LazyPipelineState, PipelineStateLayer,
    store::{CasOutcome, Store, StoreError},
};

use crate::common::Logs;

/// A store where another writer always got there first: every flow loads
/// (empty, version 1), every compare-and-set finds a newer record that
/// changed another field, and every id to create is taken.
struct AlwaysNewer;

impl Store for AlwaysNewer {
    async fn load(&self, _: &str, _: Option<Duration>) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(Some(br#"{"format":1,"version":1,"data":{}}"#.to_vec()))
    }

    async fn create(&self, _: &str, _: &[u8], _: Duration) -> Result<bool, StoreError> {
        Ok(false)
    }

    async fn update(
        &self,
        _: &str,
        version: u64,
        _: &[u8],
        _: Duration,
    ) -> Result<CasOutcome, StoreError> {
        let newer = version + 1;
        let record = format!(r#"{{"format":1,"version":{newer},"data":{{"theirs":{newer}}}}}"#);
        Ok(CasOutcome::Newer(record.into_bytes()))
    }

    async fn delete(&self, _: &str) -> Result<(), StoreError> {
        Ok(())
    }

    async fn delete_if_version(&self, _: &str, _: u64) -> Result<CasOutcome, StoreError> {
        Ok(CasOutcome::Done)
    }
}

/// Sets one field of the request's state.
async fn handler(request: Request<Empty<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    let lazy = request.extensions().get::<LazyPipelineState>().unwrap();
    lazy.load().await.unwrap().set("mine", &1).unwrap();
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

async fn send(cookie: Option<&str>) -> StatusCode {
    let service = PipelineStateLayer::new(AlwaysNewer)
        .cookie_secure(false)
        .layer(service_fn(handler));
    let mut request = Request::builder().method("POST").uri("/");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let request = request.body(Empty::new()).unwrap();
    service.oneshot(request).await.unwrap().status()
}

#[tokio::test]
async fn a_conflict_storm_gives_up_with_one_warning_naming_no_id() {
    let (logs, _guard) = Logs::capture();
    let id = "0123456789abcdef0123456789abcdef";
    let status = send(Some(&format!("pipeline_id={id}"))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let storm = logs.matching(&[" WARN ", "too many concurrent writers", "attempts=33"]);
    assert_eq!(storm.len(), 1, "{}", logs.text());
    assert!(!logs.text().contains(id), "{}", logs.text());
}

#[tokio::test]
async fn a_taken_id_is_a_warning_each_time_and_three_in_a_row_a_store_failure() {
    let (logs, _guard) = Logs::capture();
    assert_eq!(send(None).await, StatusCode::SERVICE_UNAVAILABLE);
    let taken = logs.matching(&[" WARN ", "a new pipeline id was already taken"]);
    assert_eq!(taken.len(), 3, "{}", logs.text());
}
