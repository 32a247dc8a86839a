//! What an ended flow leaves behind (issue 16): its record, replaced in the
//! write that ends it by a small one saying how it ended, for the
//! pipeline's replay window, and its cookie set again for as long. The
//! checks the tests of ending flows share.

use std::time::Duration;

use cookie::Cookie;
use serde_json::{Value, json};

use crate::common::RedisServer;

/// A pipeline's replay window when it sets none.
pub(crate) const DEFAULT_WINDOW: Duration = Duration::from_secs(120);

/// `ended.how` of a finished flow.
pub(crate) fn finished() -> Value {
    json!({"as": "finished"})
}

/// `ended.how` of a cancelled flow.
pub(crate) fn cancelled() -> Value {
    json!({"as": "cancelled"})
}

/// `ended.how` of a flow a failure of `kind` ended.
pub(crate) fn failed(kind: &str) -> Value {
    json!({"as": "failed", "kind": kind})
}

/// Checks that `fields` (a record's `data`) are an ended flow's, ended as
/// `how`: nothing the steps bound, no nonce, no nested run, no deadline.
/// Returns its `ended`.
pub(crate) fn ended_fields(fields: &Value, how: &Value) -> Value {
    assert_eq!(fields["ended"]["how"], *how, "how it ended: {fields}");
    assert_eq!(fields["data"], json!({}), "nothing bound is kept: {fields}");
    for gone in ["nonce", "nested", "deadline"] {
        assert!(fields.get(gone).is_none(), "no `{gone}`: {fields}");
    }
    fields["ended"].clone()
}

/// The fields of the ended record under `key`, checked as
/// [`ended_fields`] does, and its TTL within `window`.
pub(crate) fn ended_record(redis: &RedisServer, key: &str, how: &Value, window: Duration) -> Value {
    let raw = redis
        .get(key)
        .expect("an ended flow's record stays for the replay window");
    let fields = serde_json::from_slice::<Value>(&raw).unwrap()["data"].clone();
    ended_fields(&fields, how);
    let ttl = redis.ttl(key);
    assert!(
        ttl > 0 && ttl.unsigned_abs() <= window.as_secs(),
        "the ended record lives for the window ({window:?}), no longer: TTL {ttl}"
    );
    fields
}

/// Checks that `cookie`, set by the response that ended its flow, keeps
/// the flow for the replay window: not removed, `Max-Age` within `window`.
pub(crate) fn kept_for(cookie: &Cookie, window: Duration) {
    let max_age = cookie
        .max_age()
        .unwrap_or_else(|| panic!("an ended flow's cookie has a Max-Age: {cookie}"));
    assert!(
        max_age > cookie::time::Duration::ZERO
            && max_age.whole_seconds().unsigned_abs() <= window.as_secs(),
        "the cookie lives for the window ({window:?}): {cookie}"
    );
}
