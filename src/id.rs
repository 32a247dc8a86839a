//! The random id that names a flow, and its one accepted text form.

use std::{fmt, str::FromStr};

use uuid::Uuid;

/// The id of one flow: 122 random bits (a UUID v4), written as 32 lowercase
/// hex digits. The Redis key is the configured prefix followed by this text.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PipelineId(Uuid);

impl PipelineId {
    /// The length of the text form.
    pub const LEN: usize = 32;

    /// A fresh random id.
    pub(crate) fn generate() -> Self {
        Self(Uuid::new_v4())
    }

    /// Writes the text form into `buffer`, without the `fmt` machinery.
    pub(crate) fn encode(self, buffer: &mut [u8; Self::LEN]) -> &str {
        self.0.simple().encode_lower(buffer)
    }

    /// Parses the text form; see [`FromStr`](#impl-FromStr-for-PipelineId).
    pub(crate) fn parse(text: &str) -> Option<Self> {
        Self::parse_ascii(text.as_bytes())
    }

    /// [`parse`](Self::parse) over bytes, as they come in a header.
    pub(crate) fn parse_ascii(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != Self::LEN || !bytes.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return None;
        }
        Uuid::try_parse_ascii(bytes).ok().map(Self)
    }
}

/// The error of parsing a [`PipelineId`] from text that is not exactly 32
/// lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a pipeline id is exactly 32 lowercase hex digits")]
#[non_exhaustive]
pub struct ParsePipelineIdError;

impl FromStr for PipelineId {
    type Err = ParsePipelineIdError;

    /// Parses the text form: exactly 32 lowercase hex digits, nothing else.
    /// Anything looser (braces, hyphens, upper case) is refused, so one flow
    /// has exactly one spelling and one Redis key.
    ///
    /// ```
    /// use tower_pipeline_state::PipelineId;
    ///
    /// let id: PipelineId = "0123456789abcdef0123456789abcdef".parse().unwrap();
    /// assert_eq!(id.to_string(), "0123456789abcdef0123456789abcdef");
    /// assert!("0123456789ABCDEF0123456789ABCDEF".parse::<PipelineId>().is_err());
    /// ```
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text).ok_or(ParsePipelineIdError)
    }
}

impl fmt::Display for PipelineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.simple(), f)
    }
}

impl fmt::Debug for PipelineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PipelineId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_its_text_form() {
        let id = PipelineId::generate();
        let text = id.to_string();
        assert_eq!(text.len(), PipelineId::LEN);
        assert_eq!(id.encode(&mut [0; PipelineId::LEN]), text);
        assert_eq!(text.parse::<PipelineId>(), Ok(id));
    }

    #[test]
    fn refuses_every_other_spelling() {
        let id = PipelineId::generate();
        let hyphenated = id.0.hyphenated().to_string();
        for bad in [
            "",
            "abc",
            hyphenated.as_str(),
            &id.to_string().to_uppercase(),
            &format!("{id}0"),
            &format!("{{{id}}}"),
            "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
        ] {
            assert_eq!(
                bad.parse::<PipelineId>(),
                Err(ParsePipelineIdError),
                "{bad:?}"
            );
        }
    }
}
