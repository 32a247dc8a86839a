//! The stored form of a flow's state.
//!
//! A record is one JSON object whose first two members are fixed:
//! `{"format":1,"version":7,"data":{...}}`. `format` lets a later release read
//! what this one wrote; `version` counts writes and is what the atomic
//! compare-and-set compares. The fixed member order lets the Redis script read
//! the version with a pattern match instead of decoding the whole record.
//!
//! A record of a later format is recognised from its decoded `format`
//! member, wherever it stands and however it is spaced ([`format_of`]), and
//! nothing here ever matches its version ([`version_of`] reads only this
//! format's header), so no store overwrites or deletes it by version.
//!
//! The fields stay JSON text in memory ([`Field`]): a load splits the record
//! into its top-level fields without building a tree of values, a handler's
//! read parses only the field it asks for, and a write copies unchanged
//! fields' text as it came.

use std::{collections::BTreeMap, fmt};

use serde::{
    Deserialize, Deserializer, Serialize,
    de::{IgnoredAny, MapAccess, Visitor},
};
use serde_json::{Number, Value, value::RawValue};

/// The format this release writes and reads.
pub(crate) const FORMAT: u32 = 1;

/// How every record this release writes starts: the format, then the
/// version's member name. The compare-and-set script and the load script
/// match the same text (`compare_and_set.lua`, `load.lua`).
pub(crate) const HEADER: &[u8] = b"{\"format\":1,\"version\":";

/// One top-level field's value, as JSON text; two are equal when their
/// texts are.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Field(Box<RawValue>);

impl Field {
    /// The field's JSON text.
    pub(crate) fn get(&self) -> &str {
        self.0.get()
    }

    /// The text, for deserializing from.
    pub(crate) fn raw(&self) -> &RawValue {
        &self.0
    }
}

impl PartialEq for Field {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

/// A flow's state: its top-level fields.
pub(crate) type Data = BTreeMap<String, Field>;

/// A field's JSON text for `value`. The text is compared as it is: a value
/// whose serialization has no fixed order (a `HashMap`) may give another
/// text for the same content, and so count as changed.
pub(crate) fn field<T: Serialize + ?Sized>(value: &T) -> Result<Field, serde_json::Error> {
    serde_json::value::to_raw_value(value).map(Field)
}

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
    #[error("record format {0} is newer than this release reads (format {FORMAT})")]
    NewerFormat(String),
    #[error("record format {0} is not known to this release (it reads format {FORMAT})")]
    UnknownFormat(u32),
    #[error("the record does not start with the exact header the compare-and-set reads")]
    Header,
    #[error("the record nests past the recursion limit ({MAX_DEPTH} levels)")]
    TooDeep,
}

/// How deep a record may nest, counting the record itself: as deep as
/// serde_json reads (its recursion limit of 128 refuses the 128th level),
/// whether the record is read whole or, as now, field by field when a
/// handler asks.
const MAX_DEPTH: usize = 127;

pub(crate) fn encode(version: u64, data: &Data) -> Vec<u8> {
    // Serializing a map of JSON texts cannot fail: every key is a string.
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

/// Decodes a record into its fields, each kept as JSON text. Nesting is
/// bounded as serde_json bounds it (127 levels, checked before anything is
/// parsed), so a hostile record cannot exhaust the stack. A
/// record of a later format, however spelled, is
/// [`DecodeError::NewerFormat`]. A record must
/// start with the exact header [`version_of`] reads: one that decodes but
/// that the compare-and-set cannot match could never be updated (every
/// write would look like a concurrent one), so it counts as corrupt.
pub(crate) fn decode(raw: &[u8]) -> Result<Record, DecodeError> {
    if let Format::Newer(found) = format_of(raw) {
        return Err(DecodeError::NewerFormat(found));
    }
    if !within_depth(raw) {
        return Err(DecodeError::TooDeep);
    }
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

/// Whether `raw` nests at most [`MAX_DEPTH`] arrays and objects deep, by
/// one pass over its bytes (brackets inside strings do not count). The
/// fields are kept as text, so a too deep record would otherwise load and
/// only fail when a handler reads the field: it reads as corrupt instead,
/// as when records were decoded whole.
fn within_depth(raw: &[u8]) -> bool {
    // Fewer opening brackets than the limit cannot nest past it: a count
    // the compiler vectorizes spares the byte-by-byte walk for every
    // ordinary record.
    let opening = raw.iter().filter(|&&b| b == b'[' || b == b'{').count();
    if opening <= MAX_DEPTH {
        return true;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in raw {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// A stored record's format, as far as this release can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Format {
    /// This release's format, spelled as it writes it ([`HEADER`]).
    This,
    /// A later release's: a JSON object whose `format` member is a number
    /// above [`FORMAT`], given as the record spells it.
    Newer(String),
    /// Anything else: garbage, an older or unknown format, no `format`, or
    /// this format spelled otherwise than this release writes it. Corrupt.
    Other,
}

/// Tells a record of this release's format from a later release's. The
/// common case costs one prefix comparison; anything else is parsed
/// (members skipped, not built) for its top-level `format` member,
/// wherever it stands and however it is spelled, so a later format's
/// record is never taken for a corrupt one and deleted.
pub(crate) fn format_of(raw: &[u8]) -> Format {
    if raw.starts_with(HEADER) {
        return Format::This;
    }
    match serde_json::from_slice::<Formats>(raw) {
        Ok(Formats(Some(newer))) => Format::Newer(newer.to_string()),
        _ => Format::Other,
    }
}

/// The highest `format` above [`FORMAT`] among a JSON object's top-level
/// members (several, if the object repeats the name), if any.
struct Formats(Option<Number>);

impl<'de> Deserialize<'de> for Formats {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FormatsVisitor)
    }
}

struct FormatsVisitor;

impl<'de> Visitor<'de> for FormatsVisitor {
    type Value = Formats;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut members: A) -> Result<Formats, A::Error> {
        let mut newer: Option<Number> = None;
        while let Some(name) = members.next_key::<Name>()? {
            if !name.0 {
                members.next_value::<IgnoredAny>()?;
                continue;
            }
            // Only a number can name a format; any other value is skipped.
            if let Value::Number(format) = members.next_value::<Value>()?
                && later(&format)
                && newer
                    .as_ref()
                    .is_none_or(|seen| value(&format) > value(seen))
            {
                newer = Some(format);
            }
        }
        Ok(Formats(newer))
    }
}

/// Whether a member's name is `format` (after unescaping).
struct Name(bool);

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl Visitor<'_> for NameVisitor {
            type Value = Name;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_str<E>(self, name: &str) -> Result<Name, E> {
                Ok(Name(name == "format"))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

/// Whether a `format` number is past this release's. Integers of any size
/// count (past `u64` they arrive as floats), and so does a fraction above.
fn later(format: &Number) -> bool {
    value(format) > f64::from(FORMAT)
}

/// A format number's magnitude, for comparisons only.
fn value(format: &Number) -> f64 {
    format.as_f64().unwrap_or(f64::NAN)
}

/// Reads a record's version without decoding it, exactly as the Redis
/// compare-and-set script does: the text must start with
/// `{"format":1,"version":<digits>,`. A record of any other format, or
/// spelled otherwise, has no version a writer can match, so a
/// compare-and-set never overwrites or deletes it (a later release's record
/// stays as that release wrote it).
pub fn version_of(raw: &[u8]) -> Option<u64> {
    let rest = raw.strip_prefix(HEADER)?;
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
        Value::Object(map) => map
            .into_iter()
            .map(|(name, value)| (name, field(&value).unwrap()))
            .collect(),
        other => panic!("test data must be a JSON object, not {other}"),
    }
}

/// A state's fields as one JSON value, for tests.
#[cfg(test)]
pub(crate) fn to_json(data: &Data) -> Value {
    serde_json::to_value(data).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use self::object as data;

    #[test]
    fn every_record_this_release_writes_starts_with_the_header() {
        assert!(encode(3, &Data::new()).starts_with(HEADER));
        assert_eq!(format_of(&encode(3, &Data::new())), Format::This);
        assert_eq!(
            std::str::from_utf8(HEADER).unwrap(),
            format!(r#"{{"format":{FORMAT},"version":"#)
        );
    }

    #[test]
    fn a_later_format_is_recognised_whatever_its_spelling() {
        let newer = |found: &str| Format::Newer(found.to_owned());
        for (record, format) in [
            (r#"{"format":2,"version":1,"data":{}}"#, newer("2")),
            (r#"{"format": 2, "version": 1, "data": {}}"#, newer("2")),
            (r#"{ "version":1,"format":2,"data":{}}"#, newer("2")),
            (
                r#"{"fields":{},"extra":[1,{"format":1}],"format":3}"#,
                newer("3"),
            ),
            ("{\"form\\u0061t\":2}", newer("2")),
            (r#"{"format":4294967296,"version":1}"#, newer("4294967296")),
            (
                r#"{"format":18446744073709551615,"version":1}"#,
                newer("18446744073709551615"),
            ),
            (r#"{"format":99999999999999999999999}"#, newer("1e+23")),
            (r#"{"format":1.5}"#, newer("1.5")),
            (r#"{"format":1,"format":7}"#, newer("7")),
            (r#"{"format":9,"format":1}"#, newer("9")),
            (" \n{\"format\":2}\n", newer("2")),
        ] {
            assert_eq!(format_of(record.as_bytes()), format, "{record}");
            assert!(
                matches!(decode(record.as_bytes()), Err(DecodeError::NewerFormat(found)) if Format::Newer(found.clone()) == format),
                "{record}"
            );
        }
    }

    #[test]
    fn anything_else_is_no_later_format() {
        for record in [
            r#"{"format":1, "version":1, "data":{}}"#,
            r#"{"version":1,"format":1,"data":{}}"#,
            r#"{"format":0,"version":1,"data":{}}"#,
            r#"{"format":-2,"version":1,"data":{}}"#,
            r#"{"format":1.0}"#,
            r#"{"format":"2","version":1,"data":{}}"#,
            r#"{"format":[2]}"#,
            r#"{"data":{"format":2}}"#,
            r#"[{"format":2}]"#,
            r#"{"format":2,"version":1,"data":{}"#,
            r#"{"format":2} and more"#,
            r#"{"format":,"version":1}"#,
            "garbage",
            "",
        ] {
            assert_eq!(format_of(record.as_bytes()), Format::Other, "{record}");
            assert!(
                !matches!(
                    decode(record.as_bytes()),
                    Err(DecodeError::NewerFormat(_)) | Ok(_)
                ),
                "{record}"
            );
        }
    }

    #[test]
    fn encodes_with_the_fixed_header_and_decodes_back() {
        let fields = data(json!({"step": 2, "nested": {"a": [1, 2]}}));
        let raw = encode(41, &fields);
        assert!(raw.starts_with(br#"{"format":1,"version":41,"data":"#));
        assert_eq!(version_of(&raw), Some(41));
        let decoded = decode(&raw).unwrap();
        assert_eq!(
            decoded,
            Record {
                version: 41,
                data: fields
            }
        );
        assert_eq!(
            decoded.data["nested"].get(),
            r#"{"a":[1,2]}"#,
            "a field keeps its text"
        );
    }

    #[test]
    fn refuses_other_formats_and_garbage() {
        assert!(matches!(
            decode(br#"{"format":0,"version":1,"data":{}}"#),
            Err(DecodeError::UnknownFormat(0))
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
        let deep = |depth: usize| {
            format!(
                r#"{{"format":1,"version":1,"data":{{"s":"[{{\"]","x":{}{}}}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            )
        };
        assert!(matches!(
            decode(deep(10_000).as_bytes()),
            Err(DecodeError::TooDeep)
        ));
        assert!(matches!(
            decode(deep(126).as_bytes()),
            Err(DecodeError::TooDeep)
        ));
        // At the limit (the record, its data and 125 arrays: 127 levels),
        // the field loads and reads back, as serde_json reads the record
        // whole exactly up to there; brackets inside a string do not count.
        let record = decode(deep(125).as_bytes()).unwrap();
        serde_json::from_str::<Value>(record.data["x"].get()).unwrap();
        assert!(serde_json::from_slice::<Value>(deep(125).as_bytes()).is_ok());
        assert!(serde_json::from_slice::<Value>(deep(126).as_bytes()).is_err());
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
            // Another format's version is never matched, so never overwritten.
            r#"{"format":2,"version":7,"data":{}}"#,
            r#"{"format":11,"version":7,"data":{}}"#,
        ] {
            assert_eq!(version_of(bad.as_bytes()), None, "{bad:?}");
        }
    }
}
