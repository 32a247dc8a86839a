//! The stored form of a flow's state.
//!
//! A record is one JSON object whose first two members are fixed:
//! `{"format":1,"version":7,"data":{...}}`. `format` lets a later release read
//! what this one wrote; `version` counts writes and is what the atomic
//! compare-and-set compares. The fixed member order lets the Redis script read
//! the version with a pattern match instead of decoding the whole record.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The format this release writes and reads.
pub(crate) const FORMAT: u32 = 1;

/// A flow's state: its top-level fields.
pub(crate) type Data = Map<String, Value>;

#[derive(Serialize)]
struct Encode<'a> {
    format: u32,
    version: u64,
    data: &'a Data,
}

#[derive(Deserialize)]
struct Decode {
    format: u32,
    version: u64,
    data: Data,
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    pub(crate) version: u64,
    pub(crate) data: Data,
}

/// Why a stored record could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("not a pipeline state record: {0}")]
    Json(#[from] serde_json::Error),
    #[error("record format {0} is not known to this release (it reads format {FORMAT})")]
    UnknownFormat(u32),
    #[error("the record does not start with the exact header the compare-and-set reads")]
    Header,
}

pub(crate) fn encode(version: u64, data: &Data) -> Vec<u8> {
    // Serializing a map of `Value`s cannot fail: every key is a string.
    serde_json::to_vec(&Encode {
        format: FORMAT,
        version,
        data,
    })
    .expect("a JSON map always serializes")
}

/// The version a write gives a record. The stored version is read from
/// Redis, where anything can be planted: at `u64::MAX` it wraps to 0 rather
/// than panic (the compare-and-set only needs it to differ from the last).
pub(crate) fn next_version(version: u64) -> u64 {
    version.wrapping_add(1)
}

/// Decodes a record. Nesting is bounded by serde_json's recursion limit
/// (128), so a hostile record cannot exhaust the stack. A record must start
/// with the exact header [`version_of`] reads: one that decodes but that the
/// compare-and-set cannot match could never be updated (every write would
/// look like a concurrent one), so it counts as corrupt.
pub(crate) fn decode(raw: &[u8]) -> Result<Record, DecodeError> {
    let Decode {
        format,
        version,
        data,
    } = serde_json::from_slice(raw)?;
    if format != FORMAT {
        return Err(DecodeError::UnknownFormat(format));
    }
    if version_of(raw) != Some(version) {
        return Err(DecodeError::Header);
    }
    Ok(Record { version, data })
}

/// Reads a record's format from its fixed header without decoding it: a
/// record of a newer format is left alone (a rolling deploy may still be
/// writing it) rather than read as corrupt.
pub(crate) fn format_of(raw: &[u8]) -> Option<u32> {
    let rest = raw.strip_prefix(b"{\"format\":")?;
    let (digits, rest) = skip_digits(rest);
    if digits.is_empty() || !rest.starts_with(b",") {
        return None;
    }
    u32::try_from(number(digits)?).ok()
}

/// Reads a record's version without decoding it, exactly as the Redis
/// compare-and-set script does: the text must start with
/// `{"format":<digits>,"version":<digits>,`.
pub fn version_of(raw: &[u8]) -> Option<u64> {
    let rest = raw.strip_prefix(b"{\"format\":")?;
    let rest = skip_digits(rest).1;
    let rest = rest.strip_prefix(b",\"version\":")?;
    let (digits, rest) = skip_digits(rest);
    if digits.is_empty() || !rest.starts_with(b",") {
        return None;
    }
    number(digits)
}

/// The value of ASCII digits; `None` past `u64::MAX`. Read in place: both
/// header reads run on every load.
fn number(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |value, digit| {
        value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    })
}

fn skip_digits(bytes: &[u8]) -> (&[u8], &[u8]) {
    let end = bytes
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(bytes.len());
    bytes.split_at(end)
}

/// A state's fields written as a JSON object literal, for tests.
#[cfg(test)]
pub(crate) fn object(value: Value) -> Data {
    match value {
        Value::Object(map) => map,
        other => panic!("test data must be a JSON object, not {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use self::object as data;

    #[test]
    fn the_format_is_read_from_the_header() {
        assert_eq!(format_of(&encode(3, &Data::new())), Some(FORMAT));
        assert_eq!(format_of(br#"{"format":2,"version":1,"data":{}}"#), Some(2));
        assert_eq!(format_of(br#"{"format":,"version":1}"#), None);
        assert_eq!(format_of(b"garbage"), None);
    }

    #[test]
    fn encodes_with_the_fixed_header_and_decodes_back() {
        let fields = data(json!({"step": 2, "nested": {"a": [1, 2]}}));
        let raw = encode(41, &fields);
        assert!(raw.starts_with(br#"{"format":1,"version":41,"data":"#));
        assert_eq!(version_of(&raw), Some(41));
        assert_eq!(
            decode(&raw).unwrap(),
            Record {
                version: 41,
                data: fields
            }
        );
    }

    #[test]
    fn refuses_other_formats_and_garbage() {
        assert!(matches!(
            decode(br#"{"format":2,"version":1,"data":{}}"#),
            Err(DecodeError::UnknownFormat(2))
        ));
        assert!(matches!(decode(b"not json"), Err(DecodeError::Json(_))));
        assert!(matches!(
            decode(br#"{"format":1,"version":1,"data":[]}"#),
            Err(DecodeError::Json(_))
        ));
    }

    #[test]
    fn refuses_records_the_compare_and_set_cannot_read() {
        for bad in [
            r#"{"format":1, "version":1, "data":{}}"#,
            r#"{"version":1,"format":1,"data":{}}"#,
            r#" {"format":1,"version":1,"data":{}}"#,
        ] {
            assert!(
                matches!(decode(bad.as_bytes()), Err(DecodeError::Header)),
                "{bad}"
            );
        }
    }

    #[test]
    fn refuses_absurdly_deep_json() {
        let deep = format!(
            r#"{{"format":1,"version":1,"data":{{"x":{}{}}}}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert!(matches!(decode(deep.as_bytes()), Err(DecodeError::Json(_))));
    }

    #[test]
    fn version_of_needs_the_exact_header() {
        assert_eq!(
            version_of(br#"{"format":1,"version":7,"data":{}}"#),
            Some(7)
        );
        for bad in [
            "",
            "\u{fffd}",
            r#"{"version":7,"format":1,"data":{}}"#,
            r#"{"format":1,"version":,"data":{}}"#,
            r#"{"format":1,"version":7"#,
            r#"{"format":1,"version":99999999999999999999999,"data":{}}"#,
        ] {
            assert_eq!(version_of(bad.as_bytes()), None, "{bad:?}");
        }
    }
}
