//! Arbitrary bytes stored as the live flow's record, then a request that
//! reads the state and changes it. Invariants: no panic; a record of a newer
//! format, however spelled, is answered 503 and left exactly as it was;
//! otherwise the handler's answer goes out (never a conflict or a server
//! error), a record that loads is updated in place to the next version, and
//! one that does not is replaced by a new flow and deleted.
#![no_main]

use http::{HeaderValue, StatusCode};
use libfuzzer_sys::fuzz_target;
use tower_pipeline_state::{PipelineStateLayer, Status, Store, store::record_version};
use tower_pipeline_state_fuzz::{LIVE_ID, RUNTIME, TTL, live_key, request};

fuzz_target!(|record: &[u8]| {
    RUNTIME.block_on(async {
        let store = tower_pipeline_state::MemoryStore::new();
        assert!(store.create(&live_key(), record, TTL).await.unwrap());
        let layer = PipelineStateLayer::new(store.clone());
        let cookie = HeaderValue::from_str(&format!("pipeline_id={LIVE_ID}")).unwrap();

        let outcome = request(&layer, std::slice::from_ref(&cookie), true).await;
        let stored = store.load(&live_key(), None).await.unwrap();
        let Some(state) = outcome.state else {
            assert_eq!(
                outcome.status,
                StatusCode::SERVICE_UNAVAILABLE,
                "{outcome:?}"
            );
            assert!(
                newer_format(record),
                "refused a record of this release's format"
            );
            assert_eq!(
                stored.as_deref(),
                Some(record),
                "a newer record is left alone"
            );
            return;
        };
        assert_eq!(outcome.status, StatusCode::OK, "{outcome:?}");
        match state {
            Status::Loaded => {
                assert_eq!(outcome.cookie, None);
                let old = record_version(record).expect("a loaded record has the header");
                let stored = stored.expect("updated in place");
                assert_eq!(record_version(&stored), Some(old.wrapping_add(1)));
            }
            Status::Expired => {
                assert!(!newer_format(record), "a newer record was replaced");
                assert!(stored.is_none(), "the unreadable record was replaced");
                let new = outcome.cookie.expect("a new flow");
                assert_ne!(new, LIVE_ID);
                let created = store.load(&format!("pipeline:{new}"), None).await.unwrap();
                assert!(created.is_some());
            }
            other => panic!("an id came, so the state cannot be {other:?}"),
        }
    });
});

/// Whether the record is a later release's: a JSON object whose top-level
/// `format` is a number above this release's (1), however it is spelled.
fn newer_format(record: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(record).is_ok_and(|record| {
        record
            .get("format")
            .and_then(serde_json::Value::as_f64)
            .is_some_and(|format| format > 1.0)
    })
}
