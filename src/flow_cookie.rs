//! Per-flow cookies: how one browser holds several flows at once.
//!
//! The browser-wide cookie (`pipeline_id`) names one state per browser.
//! A flow of the pipeline engine gets a cookie of its own instead, named
//! `<cookie name>.<tag>`, whose value is the flow's id (signed or encrypted
//! as the layer is configured). The [`Tag`] is the flow's public handle: it
//! goes out in URLs (the provider's `state`, the app's own links) and says
//! which of the browser's flow cookies a request continues. The id itself
//! never leaves the cookie, so a leaked URL names no record, and a request
//! from a browser that does not hold the cookie finds no flow.

use std::{
    fmt,
    time::{SystemTime, UNIX_EPOCH},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};

/// Bytes of creation time (milliseconds since the Unix epoch, big-endian)
/// at the start of a tag: enough until the year 10889.
const TIME_BYTES: usize = 6;
/// Random bytes after the time: 72 bits, so a tag cannot be guessed.
const RANDOM_BYTES: usize = 9;
/// A tag's length in characters (15 bytes in unpadded URL-safe base64).
pub(crate) const TAG_LEN: usize = (TIME_BYTES + RANDOM_BYTES) * 4 / 3;

/// A flow's handle within one browser: 20 URL-safe characters, which also
/// record when the flow started (so the oldest flows' cookies are the ones
/// dropped past the limit). Not secret: it names a cookie, and a request
/// that presents a tag whose cookie the browser does not send finds nothing.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Tag(String);

impl Tag {
    /// A fresh tag for a flow starting now.
    pub(crate) fn generate() -> Self {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis());
        let mut bytes = [0u8; TIME_BYTES + RANDOM_BYTES];
        // The low six bytes of the time: the high ones are zero for
        // millennia.
        let time = u64::try_from(millis).unwrap_or(u64::MAX).to_be_bytes();
        bytes[..TIME_BYTES].copy_from_slice(&time[8 - TIME_BYTES..]);
        getrandom::fill(&mut bytes[TIME_BYTES..])
            .expect("the operating system's random source failed");
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// A tag as it comes in a cookie name or a URL; `None` unless it has the
    /// exact shape of one this crate makes.
    pub(crate) fn parse(text: &[u8]) -> Option<Self> {
        if text.len() != TAG_LEN
            || !text
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        {
            return None;
        }
        let text = std::str::from_utf8(text).ok()?;
        Some(Self(text.to_owned()))
    }

    /// When the flow started, in milliseconds since the Unix epoch.
    pub(crate) fn started(&self) -> u64 {
        let bytes = URL_SAFE_NO_PAD
            .decode(&self.0)
            .expect("a parsed or generated tag is valid base64");
        let mut time = [0u8; 8];
        time[8 - TIME_BYTES..].copy_from_slice(&bytes[..TIME_BYTES]);
        u64::from_be_bytes(time)
    }

    /// The text form.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({})", self.0)
    }
}

/// Which cookie carries a state's id to the browser.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum CookieSlot {
    /// The browser-wide cookie.
    #[default]
    Main,
    /// A flow's own cookie.
    Flow(FlowCookie),
}

/// A flow's own cookie, and what writing it must also do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FlowCookie {
    pub(crate) tag: Tag,
    /// `SameSite=None; Secure`, so that a callback arriving as a cross-site
    /// POST still carries it; otherwise the layer's `SameSite` (`Lax`).
    pub(crate) cross_site: bool,
    /// The oldest flows' cookies, to expire when this flow's cookie is set
    /// (the browser holds too many).
    pub(crate) evict: Vec<Tag>,
}

/// The tags to drop so that, with one more flow, the browser holds at most
/// `limit` flow cookies: the oldest first.
pub(crate) fn to_evict(mut present: Vec<Tag>, limit: usize) -> Vec<Tag> {
    // One flow may come twice (a cookie planted for another path).
    present.sort_by(|a, b| (a.started(), &a.0).cmp(&(b.started(), &b.0)));
    present.dedup();
    let excess = (present.len() + 1).saturating_sub(limit);
    present.truncate(excess);
    present
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_parse_back_and_record_their_start() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let tag = Tag::generate();
        assert_eq!(tag.as_str().len(), TAG_LEN);
        assert_eq!(Tag::parse(tag.as_str().as_bytes()), Some(tag.clone()));
        let started = u128::from(tag.started());
        assert!(started >= before && started < before + 60_000, "{started}");
        assert_ne!(Tag::generate(), tag, "random past the time");
    }

    #[test]
    fn only_the_exact_shape_parses() {
        let tag = Tag::generate();
        let text = tag.as_str();
        for bad in [
            String::new(),
            text[1..].to_owned(),
            format!("{text}A"),
            format!("{}=", &text[1..]),
            format!("{}.", &text[1..]),
            format!("{}é", &text[2..]),
        ] {
            assert_eq!(Tag::parse(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn the_oldest_are_evicted_past_the_limit() {
        let tags: Vec<Tag> = (0..5)
            .map(|_| {
                std::thread::sleep(std::time::Duration::from_millis(2));
                Tag::generate()
            })
            .collect();
        let mut shuffled = tags.clone();
        shuffled.reverse();
        assert!(
            to_evict(shuffled.clone(), 6).is_empty(),
            "room for one more"
        );
        assert_eq!(to_evict(shuffled.clone(), 5), tags[..1]);
        assert_eq!(to_evict(shuffled.clone(), 3), tags[..3]);
        assert_eq!(to_evict(shuffled, 1), tags);
    }
}
