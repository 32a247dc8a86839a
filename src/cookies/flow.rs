//! Per-flow cookies: how one browser holds several flows at once.
//!
//! The browser-wide cookie (`pipeline_id`) names one state per browser.
//! A flow of the pipeline engine gets a cookie of its own instead, named
//! `<cookie name>.<reference>`, whose value is the flow's id (signed or
//! encrypted as the layer is configured). The [`Reference`] is the flow's
//! public handle: it goes out in URLs (the provider's `state`, the app's own
//! links) and says which of the browser's flow cookies a request continues.
//! The id itself never leaves the cookie, so a leaked URL names no record,
//! and a request from a browser that does not hold the cookie finds no
//! flow. This file also chooses among the flow cookies a request carries:
//! the newest, the one a reference names, the oldest to drop.

use std::{
    fmt,
    time::{SystemTime, UNIX_EPOCH},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use http::HeaderMap;

use super::{
    config::CookieConfig,
    header::{MAX_CANDIDATES, cookie_pairs},
    ticket::{self, MAX_FLOW_VALUE, Ticket},
};
use crate::id::PipelineId;

/// Bytes of creation time (milliseconds since the Unix epoch, big-endian)
/// at the start of a reference: enough until the year 10889.
const TIME_BYTES: usize = 6;
/// Random bytes after the time: 72 bits, so a reference cannot be guessed.
const RANDOM_BYTES: usize = 9;
/// How far ahead of this server's clock another app server's clock may
/// be: a reference dated further in the future was not made by this layer.
const MAX_CLOCK_SKEW_MILLIS: u64 = 60_000;
/// A reference's length in characters (15 bytes in unpadded URL-safe
/// base64).
pub(crate) const REFERENCE_LEN: usize = (TIME_BYTES + RANDOM_BYTES) * 4 / 3;

/// A flow's reference: its handle within one browser, 20 URL-safe
/// characters, which also record when the flow started (so the oldest
/// flows' cookies are the ones dropped past the limit). Not secret: it names
/// a cookie, and a request that presents a reference whose cookie the
/// browser does not send finds nothing.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Reference(String);

impl Reference {
    /// A fresh reference for a flow starting now.
    pub(crate) fn generate() -> Self {
        let mut bytes = [0u8; TIME_BYTES + RANDOM_BYTES];
        // The low six bytes of the time: the high ones are zero for
        // millennia.
        let time = now_millis().to_be_bytes();
        bytes[..TIME_BYTES].copy_from_slice(&time[8 - TIME_BYTES..]);
        getrandom::fill(&mut bytes[TIME_BYTES..])
            .expect("the operating system's random source failed");
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// A reference as it comes in a cookie name or a URL; `None` unless it has the
    /// exact shape of one this crate makes.
    pub(crate) fn parse(text: &[u8]) -> Option<Self> {
        if text.len() != REFERENCE_LEN
            || !text
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        {
            return None;
        }
        let text = std::str::from_utf8(text).ok()?;
        Some(Self(text.to_owned()))
    }

    /// When the flow started, in milliseconds since the Unix epoch, as far
    /// as it can be trusted: a cookie name is the client's to write, so a
    /// reference dated past now (beyond the clock skew between app servers)
    /// was planted, and counts as the oldest of all rather than the newest,
    /// so it neither passes for the flow a request continues nor outlives
    /// the flows started after it. Within the skew, it counts as now.
    pub(crate) fn started(&self) -> u64 {
        let bytes = URL_SAFE_NO_PAD
            .decode(&self.0)
            .expect("a parsed or generated reference is valid base64");
        let mut time = [0u8; 8];
        time[8 - TIME_BYTES..].copy_from_slice(&bytes[..TIME_BYTES]);
        let claimed = u64::from_be_bytes(time);
        let now = now_millis();
        if claimed > now.saturating_add(MAX_CLOCK_SKEW_MILLIS) {
            0
        } else {
            claimed.min(now)
        }
    }

    /// The text form.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// Now, in milliseconds since the Unix epoch.
fn now_millis() -> u64 {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis());
    u64::try_from(millis).unwrap_or(u64::MAX)
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({})", self.0)
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
    pub(crate) reference: Reference,
    /// `SameSite=None; Secure`, so that a callback arriving as a cross-site
    /// POST still carries it; otherwise the layer's `SameSite` (`Lax`).
    pub(crate) cross_site: bool,
    /// The oldest flows' cookies, to expire when this flow's cookie is set
    /// (the browser holds too many).
    pub(crate) evict: Vec<Reference>,
    /// What the cookie carries besides the id; `None` for a value made
    /// without one.
    pub(crate) ticket: Option<Ticket>,
    /// The ticket changed in this request: the cookie is set again with the
    /// request's write, although the id did not change.
    pub(crate) renew: bool,
}

impl CookieConfig {
    /// The flow cookies the request carries (`<name>.<reference>`), with
    /// their raw values: the first [`max_flows`](Self::max_flows) by
    /// position, since a browser the layer served holds no more, and each
    /// costs work later. A name whose reference does not parse is not one
    /// of ours and does not count. Values are checked only when one is
    /// chosen ([`flow_id`](Self::flow_id)).
    pub(crate) fn flow_cookies<'h>(
        &'h self,
        headers: &'h HeaderMap,
    ) -> impl Iterator<Item = (Reference, &'h [u8])> + 'h {
        let prefix = self.name.as_bytes();
        cookie_pairs(headers)
            .filter_map(move |(name, value)| {
                let reference = name.strip_prefix(prefix)?.strip_prefix(b".")?;
                Some((Reference::parse(reference)?, value))
            })
            .take(self.max_flows)
    }

    /// The reference of the newest flow whose cookie the request carries.
    pub(crate) fn newest_flow(&self, headers: &HeaderMap) -> Option<Reference> {
        self.flow_cookies(headers)
            .map(|(reference, _)| reference)
            .max_by_key(Reference::started)
    }

    /// The id and ticket in flow `reference`'s cookie: with several cookies
    /// of its name (one planted for a wider path), the first whose value is
    /// ours, among the first [`MAX_CANDIDATES`].
    pub(crate) fn flow_id(
        &self,
        headers: &HeaderMap,
        reference: &Reference,
    ) -> Option<(PipelineId, Option<Ticket>)> {
        let name = self.flow_name(reference);
        self.flow_cookies(headers)
            .filter(|(present, _)| present == reference)
            .take(MAX_CANDIDATES)
            // Length first: no work over an arbitrarily long value.
            .filter(|(_, value)| value.len() <= MAX_FLOW_VALUE)
            .find_map(|(_, value)| ticket::decode(&self.open(&name, true, value)?))
    }

    /// The flows whose cookies to expire when the request starts one more
    /// (in the place of `replacing`, whose cookie goes anyway): the oldest,
    /// past the layer's limit (so at most that many).
    pub(crate) fn to_evict(
        &self,
        headers: &HeaderMap,
        replacing: Option<&Reference>,
    ) -> Vec<Reference> {
        let present = self
            .flow_cookies(headers)
            .map(|(reference, _)| reference)
            .filter(|reference| Some(reference) != replacing);
        to_evict(present.collect(), self.max_flows)
    }

    /// Flow `reference`'s cookie name.
    pub(super) fn flow_name(&self, reference: &Reference) -> String {
        format!("{}.{reference}", self.name)
    }
}

/// The references to drop so that, with one more flow, the browser holds at
/// most `limit` flow cookies: the oldest first.
fn to_evict(mut present: Vec<Reference>, limit: usize) -> Vec<Reference> {
    // One flow may come twice (a cookie planted for another path).
    present.sort_by(|a, b| (a.started(), &a.0).cmp(&(b.started(), &b.0)));
    present.dedup();
    let excess = (present.len() + 1).saturating_sub(limit);
    present.truncate(excess);
    present
}

#[cfg(test)]
mod tests {
    use cookie::{Cookie, Key};
    use http::{HeaderValue, header::COOKIE};

    use super::*;
    use crate::cookies::Protection;

    #[test]
    fn references_parse_back_and_record_their_start() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let reference = Reference::generate();
        assert_eq!(reference.as_str().len(), REFERENCE_LEN);
        assert_eq!(
            Reference::parse(reference.as_str().as_bytes()),
            Some(reference.clone())
        );
        let started = u128::from(reference.started());
        assert!(started >= before && started < before + 60_000, "{started}");
        assert_ne!(Reference::generate(), reference, "random past the time");
    }

    #[test]
    fn only_the_exact_shape_parses() {
        let reference = Reference::generate();
        let text = reference.as_str();
        for bad in [
            String::new(),
            text[1..].to_owned(),
            format!("{text}A"),
            format!("{}=", &text[1..]),
            format!("{}.", &text[1..]),
            format!("{}é", &text[2..]),
        ] {
            assert_eq!(Reference::parse(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn the_oldest_are_evicted_past_the_limit() {
        let references: Vec<Reference> = (0..5)
            .map(|_| {
                std::thread::sleep(std::time::Duration::from_millis(2));
                Reference::generate()
            })
            .collect();
        let mut shuffled = references.clone();
        shuffled.reverse();
        assert!(
            to_evict(shuffled.clone(), 6).is_empty(),
            "room for one more"
        );
        assert_eq!(to_evict(shuffled.clone(), 5), references[..1]);
        assert_eq!(to_evict(shuffled.clone(), 3), references[..3]);
        assert_eq!(to_evict(shuffled, 1), references);
    }

    fn request_with(cookie: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(cookie).unwrap());
        headers
    }

    #[test]
    fn a_flow_cookie_value_opens_only_under_its_own_name() {
        let slot = |reference: &Reference| {
            CookieSlot::Flow(FlowCookie {
                reference: reference.clone(),
                cross_site: false,
                evict: Vec::new(),
                ticket: None,
                renew: false,
            })
        };
        for protection in [
            Protection::Signed(vec![Key::generate()]),
            Protection::Private(vec![Key::generate()]),
        ] {
            let config = CookieConfig {
                protection,
                ..CookieConfig::default()
            };
            let (mine, other) = (Reference::generate(), Reference::generate());
            let id = PipelineId::generate();
            let set = config.set_in(&slot(&mine), id);
            let cookie = Cookie::parse(set.to_str().unwrap().to_owned()).unwrap();
            assert_eq!(cookie.name(), format!("pipeline_id.{mine}"));
            let value = cookie.value();
            let header = |name: &str| request_with(&format!("{name}={value}"));
            assert_eq!(
                config.flow_id(&header(cookie.name()), &mine),
                Some((id, None))
            );
            let moved = format!("pipeline_id.{other}");
            assert_eq!(
                config.flow_id(&header(&moved), &other),
                None,
                "moved to another flow"
            );
            assert_eq!(
                config.read(&header("pipeline_id")),
                crate::cookies::Incoming::Rejected,
                "moved to the browser's cookie"
            );
        }
    }

    #[test]
    fn flow_cookies_are_listed_by_their_reference_and_others_ignored() {
        let config = CookieConfig::default();
        let (one, two) = (Reference::generate(), Reference::generate());
        let header = format!(
            "pipeline_id=x; pipeline_id.{one}=1; pipeline_id.short=2; pipeline_idx.{two}=3; pipeline_id.{two}=4"
        );
        let found: Vec<(Reference, Vec<u8>)> = config
            .flow_cookies(&request_with(&header))
            .map(|(reference, value)| (reference, value.to_vec()))
            .collect();
        assert_eq!(found, [(one, b"1".to_vec()), (two, b"4".to_vec())]);
    }

    #[test]
    fn a_flow_cookie_value_does_not_open_under_another_layers_name_with_the_same_key() {
        let key = Key::generate();
        let layer = |name: &str| CookieConfig {
            name: name.to_owned(),
            protection: Protection::Signed(vec![key.clone()]),
            ..CookieConfig::default()
        };
        let (a, b) = (layer("a"), layer("b"));
        let reference = Reference::generate();
        let slot = CookieSlot::Flow(FlowCookie {
            reference: reference.clone(),
            cross_site: false,
            evict: Vec::new(),
            ticket: None,
            renew: false,
        });
        let id = PipelineId::generate();
        let value = Cookie::parse(a.set_in(&slot, id).to_str().unwrap().to_owned())
            .unwrap()
            .value()
            .to_owned();
        let under = |name: &str| request_with(&format!("{name}.{reference}={value}"));
        assert_eq!(a.flow_id(&under("a"), &reference), Some((id, None)));
        assert_eq!(b.flow_id(&under("b"), &reference), None, "moved to layer b");
    }

    #[test]
    fn at_most_max_flows_flow_cookies_are_looked_at_first_by_position() {
        let config = CookieConfig {
            max_flows: 3,
            ..CookieConfig::default()
        };
        let references: Vec<Reference> = (0..5).map(|_| Reference::generate()).collect();
        let header = references
            .iter()
            .map(|reference| format!("pipeline_id.{reference}=x"))
            .collect::<Vec<_>>()
            .join("; ");
        let header = format!("pipeline_id.bad=1; {header}");
        let seen: Vec<Reference> = config
            .flow_cookies(&request_with(&header))
            .map(|(reference, _)| reference)
            .collect();
        assert_eq!(
            seen,
            references[..3],
            "a name that is not a reference does not count"
        );
        assert!(config.to_evict(&request_with(&header), None).len() <= 3);
    }

    #[test]
    fn a_reference_dated_past_the_clock_skew_counts_as_the_oldest() {
        let mut bytes = [0xffu8; TIME_BYTES + RANDOM_BYTES];
        bytes[0] = 0x0f; // a few thousand years from now
        let future = Reference(URL_SAFE_NO_PAD.encode(bytes));
        assert_eq!(future.started(), 0, "the oldest of all");
        let newer = Reference::generate();
        let config = CookieConfig::default();
        let header = format!("pipeline_id.{newer}=y; pipeline_id.{future}=x");
        assert_eq!(
            config.newest_flow(&request_with(&header)),
            Some(newer.clone()),
            "the planted date does not win"
        );
        let full = CookieConfig {
            max_flows: 2,
            ..CookieConfig::default()
        };
        assert_eq!(
            full.to_evict(&request_with(&header), None),
            [future],
            "and it is the first dropped"
        );
    }
}
