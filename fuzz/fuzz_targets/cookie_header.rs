//! Arbitrary `Cookie` headers (the input split on newlines into up to four
//! header values) through the layer in plain, signed and private modes.
//! Invariants: no panic; the handler always runs and its answer goes out;
//! only the live id's record is ever loaded; signed and private layers never
//! accept a value they did not make.
#![no_main]

use http::{HeaderValue, StatusCode};
use libfuzzer_sys::fuzz_target;
use tower_pipeline_state::{PipelineStateLayer, Status};
use tower_pipeline_state_fuzz::{LIVE_ID, RUNTIME, key, request, store_with_live_flow};

fuzz_target!(|data: &[u8]| {
    let cookies: Vec<HeaderValue> = data
        .split(|b| *b == b'\n')
        .take(4)
        .filter_map(|line| HeaderValue::from_bytes(line).ok())
        .collect();
    RUNTIME.block_on(async {
        let store = store_with_live_flow().await;
        let layers = [
            PipelineStateLayer::new(store.clone()),
            PipelineStateLayer::new(store.clone()).signed(key(), []),
            PipelineStateLayer::new(store.clone()).private(key(), []),
        ];
        for (mode, layer) in layers.iter().enumerate() {
            let outcome = request(layer, &cookies, data.first() == Some(&b'!')).await;
            assert_eq!(outcome.status, StatusCode::OK, "{outcome:?}");
            if outcome.state == Some(Status::Loaded) {
                assert_eq!(mode, 0, "a signed or private layer accepted {cookies:?}");
                assert!(
                    data.windows(LIVE_ID.len()).any(|w| w == LIVE_ID.as_bytes()),
                    "loaded without the live id: {cookies:?}"
                );
            }
            if mode > 0 {
                assert_eq!(outcome.state, Some(Status::New), "{cookies:?}");
            }
        }
    });
});
