//! Arbitrary flow-cookie headers and callback forms through the engine: the
//! input's first line is the `Cookie` header, the rest the body of a form
//! POST. Each input is sent to a pipeline's `start` and to its `dispatch`,
//! behind a signed layer over a `MemoryStore`, as a same-site and as a
//! cross-site request. Invariants: no panic; every answer is the
//! pipeline's own or the layer's (200, 400, 409); a start sets at most one
//! cookie more than `max_flows` removals; the callback step never runs
//! (no input can bring a nonce this layer made and signed).
#![no_main]

use http::{HeaderValue, StatusCode};
use libfuzzer_sys::fuzz_target;
use tower_pipeline_state_fuzz::{MAX_FLOWS, RUNTIME, engine_request};

fuzz_target!(|data: &[u8]| {
    let (header, form) = match data.iter().position(|b| *b == b'\n') {
        Some(end) => (&data[..end], &data[end + 1..]),
        None => (data, &[][..]),
    };
    let Ok(cookies) = HeaderValue::from_bytes(header) else {
        return;
    };
    RUNTIME.block_on(async {
        for start in [true, false] {
            for cross_site in [false, true] {
                let outcome = engine_request(&cookies, form, start, cross_site).await;
                assert!(
                    [StatusCode::OK, StatusCode::BAD_REQUEST, StatusCode::CONFLICT]
                        .contains(&outcome.status),
                    "{outcome:?}"
                );
                assert!(outcome.set_cookies <= MAX_FLOWS + 1, "{outcome:?}");
                assert!(!outcome.called_back, "{outcome:?}");
            }
        }
    });
});
