//! Property tests through the public API: the whole service (layer over a
//! `MemoryStore`) fed arbitrary `Cookie` headers and arbitrary stored
//! records never panics and never answers anything but the handler's answer
//! or a fresh flow; ids and records round-trip.

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use http::{HeaderValue, Request, Response, header::COOKIE};
use proptest::{prelude::*, test_runner::FileFailurePersistence};
use serde_json::{Map, Value};
use tower::{Layer, ServiceExt, service_fn};

use crate::common::set_cookie_named;
use tower_pipeline_state::{
    Key, LazyPipelineState, MemoryStore, PipelineId, PipelineStateLayer, Status, Store,
    store::record_version,
};

/// What the handler does with the state.
#[derive(Clone, Debug)]
enum Op {
    /// Nothing: only report the status.
    Look,
    /// Set the `touched` field.
    Touch,
    /// Replace the whole state.
    Replace(Map<String, Value>),
    /// Read the whole state back.
    Read,
}

/// One answer: status, `x-status` (new, loaded, expired), the `pipeline_id`
/// a `Set-Cookie` carried, and what `Read` read.
struct Answer {
    status: http::StatusCode,
    state: String,
    cookie: Option<String>,
    read: Option<Map<String, Value>>,
}

const TOUCHED: &str = "touched by a property test";

/// Runs one request through `layer` over a handler doing `op`.
async fn call(layer: &PipelineStateLayer<MemoryStore>, cookies: &[HeaderValue], op: Op) -> Answer {
    let read = Arc::new(Mutex::new(None));
    let sink = read.clone();
    let handler = service_fn(move |request: Request<()>| {
        let (op, sink) = (op.clone(), sink.clone());
        async move {
            let lazy = request
                .extensions()
                .get::<LazyPipelineState>()
                .unwrap()
                .clone();
            // A memory store never fails; a record of a newer format is
            // refused (left for the release that wrote it).
            let Ok(state) = lazy.load().await else {
                return Ok(Response::builder()
                    .status(503)
                    .header("x-status", "unavailable")
                    .body(String::new())
                    .unwrap());
            };
            let status = match state.status() {
                Status::New => "new",
                Status::Loaded => "loaded",
                Status::Expired => "expired",
                _ => "other",
            };
            match op {
                Op::Look => {}
                Op::Touch => state.set("touched", TOUCHED).unwrap(),
                Op::Replace(map) => state.replace(&map).unwrap(),
                Op::Read => *sink.lock().unwrap() = Some(state.read().unwrap()),
            }
            Ok::<_, Infallible>(
                Response::builder()
                    .header("x-status", status)
                    .body(String::new())
                    .unwrap(),
            )
        }
    });
    let mut request = Request::new(());
    for cookie in cookies {
        request.headers_mut().append(COOKIE, cookie.clone());
    }
    let response = layer.layer(handler).oneshot(request).await.unwrap();
    let cookie =
        set_cookie_named(response.headers(), "pipeline_id").map(|cookie| cookie.value().to_owned());
    let state = response
        .headers()
        .get("x-status")
        .map_or("none".to_owned(), |v| v.to_str().unwrap().to_owned());
    let read = read.lock().unwrap().take();
    Answer {
        status: response.status(),
        state,
        cookie,
        read,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

fn header(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap()
}

/// Layers in the three cookie modes over one store.
fn layers(store: &MemoryStore) -> [(&'static str, PipelineStateLayer<MemoryStore>); 3] {
    let key = Key::from(&[7u8; 64]);
    [
        ("plain", PipelineStateLayer::new(store.clone())),
        (
            "signed",
            PipelineStateLayer::new(store.clone()).signed(key.clone(), []),
        ),
        (
            "private",
            PipelineStateLayer::new(store.clone()).private(key, []),
        ),
    ]
}

/// Any JSON value, nested a few levels.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Any top-level state: a map of fields.
fn fields() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(".{0,10}", json(), 0..8).prop_map(|m| m.into_iter().collect())
}

/// `Cookie` header text: pairs of likely and unlikely names and values.
fn cookie_text() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        Just("pipeline_id".to_owned()),
        Just("PIPELINE_ID".to_owned()),
        Just(" pipeline_id".to_owned()),
        "[a-z_]{1,10}",
    ];
    let value = prop_oneof![
        "[0-9a-f]{32}",
        "[0-9a-fA-F]{30,34}",
        "\"[0-9a-f]{32}\"",
        "[A-Za-z0-9+/=]{40,90}",
        "[ -~]{0,80}",
        "[0-9a-f]{300}",
    ];
    let separator = prop_oneof![Just("; "), Just(";"), Just(", "), Just(";;")];
    prop::collection::vec((name, value, separator), 0..6).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(name, value, separator)| format!("{name}={value}{separator}"))
            .collect()
    })
}

/// `Cookie` headers: structured text, or any bytes a header can hold.
fn cookie_headers() -> impl Strategy<Value = Vec<HeaderValue>> {
    let one = prop_oneof![
        cookie_text().prop_filter_map("not a header value", |t| HeaderValue::from_str(&t).ok()),
        prop::collection::vec(any::<u8>(), 0..300)
            .prop_filter_map("not a header value", |b| HeaderValue::from_bytes(&b).ok()),
    ];
    prop::collection::vec(one, 0..3)
}

/// Bytes a header value may hold (`HeaderValue::from_bytes` takes tab,
/// visible ASCII, space and 0x80-0xFF), half of them not ASCII, with the
/// cookie separators mixed in.
fn header_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        2 => 0x80u8..=0xff,
        2 => 0x20u8..0x7f,
        1 => prop::sample::select(&b";=\t \""[..]),
    ];
    prop::collection::vec(byte, 0..max)
        // Another cookie of our name would compete with the live one; these
        // are the other cookies around it.
        .prop_filter("names our cookie", |bytes| {
            !bytes.windows(11).any(|window| window == b"pipeline_id")
        })
}

/// A stored record: any bytes, any JSON, or a near-valid record (other
/// formats, versions at the edges, other spacing and member order, data of
/// another shape).
fn stored_record() -> impl Strategy<Value = Vec<u8>> {
    let version = prop_oneof![Just(0u64), Just(1), Just(u64::MAX), any::<u64>()];
    let format = prop_oneof![
        Just("1".to_owned()),
        Just("0".to_owned()),
        Just("2".to_owned()),
        any::<u32>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        Just("99999999999999999999999".to_owned()),
    ];
    let data = prop_oneof![
        4 => fields().prop_map(Value::Object),
        1 => json(),
    ];
    let layout = 0..5u8;
    let near_valid = (format, version, data, layout).prop_map(|(format, version, data, layout)| {
        let data = serde_json::to_string(&data).unwrap();
        match layout {
            0 | 1 => format!(r#"{{"format":{format},"version":{version},"data":{data}}}"#),
            2 => format!(r#"{{"format": {format}, "version": {version}, "data": {data}}}"#),
            3 => format!(r#"{{"version":{version},"format":{format},"data":{data}}}"#),
            _ => format!(r#"{{"format":{format},"version":{version},"data":{data},"more":1}}"#),
        }
        .into_bytes()
    });
    prop_oneof![
        3 => near_valid,
        1 => json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => prop::collection::vec(any::<u8>(), 0..200),
    ]
}

/// Whether a record is a later release's: a JSON object whose top-level
/// `format` is a number above this release's (1), however the record is
/// spelled.
fn newer_format(record: &[u8]) -> bool {
    serde_json::from_slice::<Value>(record).is_ok_and(|record| {
        record
            .get("format")
            .and_then(Value::as_f64)
            .is_some_and(|format| format > 1.0)
    })
}

/// 256 cases, and past failures kept next to this file
/// (`properties.proptest-regressions`). proptest's default would look in
/// `tests/proptest-regressions/` now that `tests/it/` has a `main.rs`.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn pipeline_ids_parse_exactly_32_lowercase_hex_digits(text in prop_oneof![
        "[0-9a-f]{32}",
        "[0-9a-fA-F]{31,33}",
        ".{0,40}",
    ]) {
        let valid = text.len() == 32
            && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        match text.parse::<PipelineId>().ok() {
            Some(id) => {
                prop_assert!(valid, "{text:?} parsed");
                prop_assert_eq!(id.to_string(), text);
            }
            None => prop_assert!(!valid, "{text:?} refused"),
        }
    }

    #[test]
    fn record_version_reads_the_canonical_header_and_nothing_else(
        version in any::<u64>(),
        format in prop_oneof![Just(1u32), any::<u32>()],
        rest in ".{0,20}",
        junk in prop::collection::vec(any::<u8>(), 0..100),
    ) {
        let canonical = format!(r#"{{"format":{format},"version":{version},{rest}"#);
        // Only this release's format has a version a writer can match: a
        // later release's record is never overwritten by version.
        let expected = (format == 1).then_some(version);
        prop_assert_eq!(record_version(canonical.as_bytes()), expected);
        // Never panics; anything it reads came from the exact header.
        if let Some(found) = record_version(&junk) {
            let header = format!(r#"{{"format":1,"version":{found},"#);
            prop_assert!(junk.starts_with(header.as_bytes()), "{:?}", junk);
        }
    }

    #[test]
    fn any_cookie_header_gives_a_fresh_or_expired_state_and_stores_nothing(
        cookies in cookie_headers(),
    ) {
        let store = MemoryStore::new();
        runtime().block_on(async {
            for (mode, layer) in layers(&store) {
                let answer = call(&layer, &cookies, Op::Look).await;
                prop_assert_eq!(answer.status, http::StatusCode::OK);
                prop_assert_eq!(answer.cookie, None);
                if mode == "plain" {
                    prop_assert!(answer.state == "new" || answer.state == "expired", "{}", answer.state);
                } else {
                    // Random text never carries a valid MAC or ciphertext.
                    prop_assert_eq!(answer.state.as_str(), "new", "{}", mode);
                }
            }
            prop_assert!(store.is_empty());
            Ok(())
        })?;
    }

    #[test]
    fn a_live_id_is_found_among_any_other_cookies(
        before in cookie_text(),
        after in cookie_text(),
    ) {
        let store = MemoryStore::new();
        runtime().block_on(async {
            for (mode, layer) in layers(&store) {
                let created = call(&layer, &[], Op::Touch).await;
                let value = created.cookie.unwrap();
                // Other cookies of our name must not hide the live one, so
                // the ones around it here carry no usable id.
                let before = before.replace("pipeline_id=", "other=");
                let after = after.replace("pipeline_id=", "other=");
                let text = format!("{before}; pipeline_id={value}; {after}");
                let answer = call(&layer, &[header(&text)], Op::Look).await;
                prop_assert_eq!(answer.state.as_str(), "loaded", "{} {:?}", mode, text);
            }
            Ok(())
        })?;
    }

    #[test]
    fn a_live_id_is_found_among_any_other_cookie_bytes(
        before in header_bytes(120),
        after in header_bytes(120),
        others in prop::collection::vec(header_bytes(60), 0..3),
        at in 0..3usize,
    ) {
        let store = MemoryStore::new();
        runtime().block_on(async {
            for (mode, layer) in layers(&store) {
                let created = call(&layer, &[], Op::Touch).await;
                let value = created.cookie.unwrap();
                let mut ours = before.clone();
                ours.extend_from_slice(b"; pipeline_id=");
                ours.extend_from_slice(value.as_bytes());
                ours.extend_from_slice(b"; ");
                ours.extend_from_slice(&after);
                // Every byte was drawn from what a header value may hold.
                let ours = HeaderValue::from_bytes(&ours).expect("a header value");
                // Other `Cookie` headers of the same request, before and
                // after the one that carries the id.
                let mut headers: Vec<HeaderValue> = others
                    .iter()
                    .map(|bytes| HeaderValue::from_bytes(bytes).expect("a header value"))
                    .collect();
                headers.insert(at.min(headers.len()), ours);
                let answer = call(&layer, &headers, Op::Look).await;
                prop_assert_eq!(answer.status, http::StatusCode::OK);
                prop_assert_eq!(answer.state.as_str(), "loaded", "{} {:?}", mode, headers);
                prop_assert_eq!(answer.cookie, None);
            }
            Ok(())
        })?;
    }

    #[test]
    fn any_stored_record_loads_as_loaded_or_expired_and_a_write_never_fails(
        record in stored_record(),
    ) {
        let store = MemoryStore::new();
        let layer = PipelineStateLayer::new(store.clone());
        runtime().block_on(async {
            let id = call(&layer, &[], Op::Touch).await.cookie.unwrap();
            let key = format!("pipeline:{id}");
            let minute = Duration::from_secs(60);
            store.delete(&key).await.unwrap();
            prop_assert!(store.create(&key, &record, minute).await.unwrap());

            let cookie = header(&format!("pipeline_id={id}"));
            let answer = call(&layer, std::slice::from_ref(&cookie), Op::Touch).await;
            let stored = store.load(&key, None).await.unwrap();
            if newer_format(&record) {
                // A rolling deploy: the newer release's record is left alone.
                prop_assert_eq!(answer.status, http::StatusCode::SERVICE_UNAVAILABLE);
                prop_assert_eq!(stored, Some(record.clone()));
                return Ok(());
            }
            prop_assert_eq!(answer.status, http::StatusCode::OK);
            match answer.state.as_str() {
                "loaded" => {
                    prop_assert_eq!(answer.cookie, None);
                    let stored = stored.expect("the record is still there");
                    let old = record_version(&record).expect("a loaded record has the header");
                    prop_assert_eq!(record_version(&stored), Some(old.wrapping_add(1)));
                    let stored: Value = serde_json::from_slice(&stored).unwrap();
                    prop_assert_eq!(&stored["data"]["touched"], TOUCHED);
                }
                "expired" => {
                    // A new flow replaced the unreadable record.
                    prop_assert!(stored.is_none(), "the unreadable record is deleted");
                    let new = answer.cookie.expect("a new flow");
                    prop_assert_ne!(&new, &id);
                    let created = store.load(&format!("pipeline:{new}"), None).await.unwrap();
                    prop_assert!(created.is_some(), "the new flow is stored");
                }
                other => prop_assert!(false, "status {other}"),
            }
            Ok(())
        })?;
    }

    #[test]
    fn any_state_round_trips_through_the_store(first in fields(), second in fields()) {
        let store = MemoryStore::new();
        let layer = PipelineStateLayer::new(store.clone());
        runtime().block_on(async {
            // Created from nothing (an empty state is created only by
            // regenerate, so make sure there is something to store).
            let mut first = first;
            first.insert("n".into(), Value::from(1));
            let created = call(&layer, &[], Op::Replace(first.clone())).await;
            let id = created.cookie.unwrap();
            let cookie = [header(&format!("pipeline_id={id}"))];
            let read = call(&layer, &cookie, Op::Read).await;
            prop_assert_eq!(read.read.as_ref(), Some(&first));

            // Replaced in place: read back exactly, the version moved on.
            let replaced = call(&layer, &cookie, Op::Replace(second.clone())).await;
            prop_assert_eq!(replaced.status, http::StatusCode::OK);
            let read = call(&layer, &cookie, Op::Read).await;
            prop_assert_eq!(read.read.as_ref(), Some(&second));
            let raw = store.load(&format!("pipeline:{id}"), None).await.unwrap().unwrap();
            let expected = if second == first { 1 } else { 2 };
            prop_assert_eq!(record_version(&raw), Some(expected));
            Ok(())
        })?;
    }
}
