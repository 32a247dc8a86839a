//! The cookie that carries a flow's id: reading it from a request (checked
//! for length, format and signature before anything else) and writing the
//! `Set-Cookie` that sets or expires it.

use cookie::{Cookie, CookieJar, Key, SameSite};
use http::{HeaderMap, HeaderValue, header::COOKIE};

use crate::{
    flow_cookie::{CookieSlot, Tag},
    id::PipelineId,
};

/// How the id is protected in the cookie.
#[derive(Clone, Debug)]
pub(crate) enum Protection {
    /// The bare id: unguessable, but a client can present any well-formed id.
    Plain,
    /// HMAC-signed with the first key; any key verifies (rotation).
    Signed(Vec<Key>),
    /// Encrypted and authenticated with the first key; any key opens it.
    Private(Vec<Key>),
}

/// The id cookie's name and attributes.
#[derive(Clone, Debug)]
pub(crate) struct CookieConfig {
    pub(crate) name: String,
    pub(crate) secure: bool,
    pub(crate) http_only: bool,
    pub(crate) same_site: SameSite,
    pub(crate) path: String,
    pub(crate) domain: Option<String>,
    pub(crate) protection: Protection,
    pub(crate) max_len: usize,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            name: "pipeline_id".to_owned(),
            secure: true,
            http_only: true,
            // Strict would drop the cookie on the identity provider's
            // redirect back, which is a cross-site navigation.
            same_site: SameSite::Lax,
            path: "/".to_owned(),
            domain: None,
            protection: Protection::Plain,
            max_len: 256,
        }
    }
}

/// What the request's cookies say about the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// No cookie of ours.
    Absent,
    /// A cookie of ours that is too long, malformed, or fails its signature.
    Rejected,
    /// A valid id.
    Id(PipelineId),
}

/// How many cookies of our name a request may bring before the rest are
/// ignored, in signed and private mode: each costs an HMAC or an AES-GCM
/// open per key, and a browser holds at most a few (one per path or domain).
pub(crate) const MAX_CANDIDATES: usize = 4;

impl CookieConfig {
    /// Finds the flow id in the request, in every `Cookie` header, whatever
    /// the other cookies hold (bytes that are not text included). With
    /// several cookies of our name (for instance one planted for a wider
    /// path), the first valid one wins; in signed and private mode only the
    /// first [`MAX_CANDIDATES`] are checked.
    pub(crate) fn read(&self, headers: &HeaderMap) -> Incoming {
        let mut seen = 0;
        let limit = match self.protection {
            Protection::Plain => usize::MAX,
            Protection::Signed(_) | Protection::Private(_) => MAX_CANDIDATES,
        };
        for header in headers.get_all(COOKIE) {
            for (name, value) in pairs(header.as_bytes()) {
                if name != self.name.as_bytes() {
                    continue;
                }
                if seen == limit {
                    return Incoming::Rejected;
                }
                seen += 1;
                if let Some(id) = self.verify(value) {
                    return Incoming::Id(id);
                }
            }
        }
        if seen > 0 {
            Incoming::Rejected
        } else {
            Incoming::Absent
        }
    }

    /// The flow cookies the request carries (`<name>.<tag>`), with their
    /// raw values, in header order. Their values are checked only when one
    /// is chosen ([`verify_flow`](Self::verify_flow)).
    pub(crate) fn flow_cookies<'h>(
        &'h self,
        headers: &'h HeaderMap,
    ) -> impl Iterator<Item = (Tag, &'h [u8])> + 'h {
        let prefix = self.name.as_bytes();
        headers
            .get_all(COOKIE)
            .into_iter()
            .flat_map(|header| pairs(header.as_bytes()))
            .filter_map(move |(name, value)| {
                let tag = name.strip_prefix(prefix)?.strip_prefix(b".")?;
                Some((Tag::parse(tag)?, value))
            })
    }

    /// The id in flow `tag`'s cookie value, if it is ours.
    pub(crate) fn verify_flow(&self, tag: &Tag, value: &[u8]) -> Option<PipelineId> {
        self.verify_named(&self.flow_name(tag), Some(tag), value)
    }

    fn flow_name(&self, tag: &Tag) -> String {
        format!("{}.{tag}", self.name)
    }

    fn verify(&self, value: &[u8]) -> Option<PipelineId> {
        self.verify_named(&self.name, None, value)
    }

    /// Checks a value of cookie `name` (flow `tag`'s, or the browser's):
    /// signed and private flow values are made with keys of their own flow,
    /// so one flow's value does not open as another's or as the browser's.
    fn verify_named(&self, name: &str, tag: Option<&Tag>, value: &[u8]) -> Option<PipelineId> {
        // Length first: no HMAC or decryption over an arbitrarily long value.
        if value.len() > self.max_len {
            return None;
        }
        let (keys, private) = match &self.protection {
            // A bare id is read where it lies: no owned copy, no UTF-8 check.
            Protection::Plain => return PipelineId::parse_ascii(value),
            Protection::Signed(keys) => (keys, false),
            Protection::Private(keys) => (keys, true),
        };
        // Our values are ASCII; anything else is not ours.
        let cookie = Cookie::new(name.to_owned(), std::str::from_utf8(value).ok()?.to_owned());
        let jar = CookieJar::new();
        let opened = keys.iter().find_map(|key| {
            let key = scoped(key, tag);
            if private {
                jar.private(&key).decrypt(cookie.clone())
            } else {
                jar.signed(&key).verify(cookie.clone())
            }
        })?;
        PipelineId::parse(opened.value())
    }

    /// The `Set-Cookie` value that hands `id` to the client in `slot`'s
    /// cookie.
    pub(crate) fn set_in(&self, slot: &CookieSlot, id: PipelineId) -> HeaderValue {
        let tag = match slot {
            CookieSlot::Main => None,
            CookieSlot::Flow(flow) => Some(&flow.tag),
        };
        let cookie = self.protect(self.build_in(slot, id.to_string()), tag);
        header_value(&cookie)
    }

    /// The length of the cookie values this configuration issues (the same
    /// for every id: plain, signed and private values have fixed lengths).
    pub(crate) fn issued_len(&self) -> usize {
        self.protect(self.build(PipelineId::generate().to_string()), None)
            .value()
            .len()
    }

    /// The `Set-Cookie` value that expires `slot`'s cookie in the client
    /// (same name, path and domain, so the browser matches it).
    pub(crate) fn removal_in(&self, slot: &CookieSlot) -> HeaderValue {
        let mut cookie = self.build_in(slot, String::new());
        cookie.make_removal();
        header_value(&cookie)
    }

    /// The removal of flow `tag`'s cookie (whatever its `SameSite`: a
    /// browser matches a cookie by name, path and domain).
    pub(crate) fn flow_removal(&self, tag: &Tag) -> HeaderValue {
        let mut cookie = self.build_named(self.flow_name(tag), String::new(), self.same_site);
        cookie.make_removal();
        header_value(&cookie)
    }

    fn build(&self, value: String) -> Cookie<'static> {
        self.build_in(&CookieSlot::Main, value)
    }

    fn build_in(&self, slot: &CookieSlot, value: String) -> Cookie<'static> {
        match slot {
            CookieSlot::Main => self.build_named(self.name.clone(), value, self.same_site),
            // A cross-site cookie must be `Secure`, or browsers refuse it
            // (they treat `localhost` as secure, so development works).
            CookieSlot::Flow(flow) if flow.cross_site => {
                let mut cookie = self.build_named(self.flow_name(&flow.tag), value, SameSite::None);
                cookie.set_secure(true);
                cookie
            }
            CookieSlot::Flow(flow) => {
                self.build_named(self.flow_name(&flow.tag), value, self.same_site)
            }
        }
    }

    fn build_named(&self, name: String, value: String, same_site: SameSite) -> Cookie<'static> {
        let mut cookie = Cookie::build((name, value))
            .path(self.path.clone())
            .secure(self.secure)
            .http_only(self.http_only)
            .same_site(same_site)
            .build();
        if let Some(domain) = &self.domain {
            cookie.set_domain(domain.clone());
        }
        cookie
    }

    fn protect(&self, cookie: Cookie<'static>, tag: Option<&Tag>) -> Cookie<'static> {
        let mut jar = CookieJar::new();
        match &self.protection {
            Protection::Plain => return cookie,
            Protection::Signed(keys) => jar.signed_mut(&scoped(&keys[0], tag)).add(cookie),
            Protection::Private(keys) => jar.private_mut(&scoped(&keys[0], tag)).add(cookie),
        }
        jar.delta()
            .next()
            .cloned()
            .expect("the jar holds the cookie just added")
    }
}

/// The key for flow `tag`'s cookie: derived from the layer's key and the
/// tag (HKDF, by `Key::derive_from`), because the `cookie` crate's signed
/// values do not cover the cookie's name. The browser's cookie uses the
/// layer's key as it is.
fn scoped(key: &Key, tag: Option<&Tag>) -> Key {
    match tag {
        None => key.clone(),
        Some(tag) => Key::derive_from(&[key.master(), tag.as_str().as_bytes()].concat()),
    }
}

/// The `name=value` pairs of a `Cookie` request header, each side trimmed,
/// as `cookie`'s `Cookie::split_parse` reads them (pairs without `=` are
/// skipped), but over bytes: one cookie that is not UTF-8 (`pref=café` in
/// Latin-1) must not hide the others. Only the name and value matter here;
/// the full parser builds a whole `Cookie` per pair and cost more than the
/// rest of reading the id (measured with callgrind in `benches/overhead.rs`).
fn pairs(header: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    // `memchr` finds the separators a word at a time: a byte-by-byte split
    // cost a third more than the whole rest of reading the id (callgrind).
    let mut start = 0;
    let ends = memchr::memchr_iter(b';', header).chain(std::iter::once(header.len()));
    ends.filter_map(move |end| {
        let pair = &header[start..end];
        start = end + 1;
        let equals = memchr::memchr(b'=', pair)?;
        Some((pair[..equals].trim_ascii(), pair[equals + 1..].trim_ascii()))
    })
}

fn header_value(cookie: &Cookie<'_>) -> HeaderValue {
    // Name, path and domain were checked by the builder, the value is hex or
    // base64: the text is always a valid header value.
    HeaderValue::try_from(cookie.to_string()).expect("cookie text is a valid header value")
}

/// Panics unless `text` can stand in a `Set-Cookie` header as a cookie name
/// (`token`) or attribute value: configuration mistakes surface at startup.
pub(crate) fn assert_cookie_text(what: &str, text: &str, token: bool) {
    let allowed = |c: char| {
        c.is_ascii_graphic()
            && c != ';'
            && c != ','
            && (!token || !"()<>@:\\\"/[]?={} ".contains(c))
    };
    assert!(
        !text.is_empty() && text.chars().all(allowed),
        "invalid {what} {text:?}: it must be non-empty printable ASCII without ';' or ','{}",
        if token { " or separators" } else { "" }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_with(cookie: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(cookie).unwrap());
        headers
    }

    fn value_of(set_cookie: &HeaderValue) -> String {
        let text = set_cookie.to_str().unwrap();
        Cookie::parse(text).unwrap().value().to_owned()
    }

    #[test]
    fn plain_ids_round_trip_and_malformed_ones_are_rejected() {
        let config = CookieConfig::default();
        let id = PipelineId::generate();
        let value = value_of(&config.set_in(&CookieSlot::Main, id));
        let header = format!("other=1; pipeline_id={value}");
        assert_eq!(config.read(&request_with(&header)), Incoming::Id(id));
        assert_eq!(
            config.read(&request_with("pipeline_id=nope")),
            Incoming::Rejected
        );
        assert_eq!(config.read(&request_with("other=1")), Incoming::Absent);
        assert_eq!(config.read(&HeaderMap::new()), Incoming::Absent);
    }

    #[test]
    fn set_cookie_carries_the_configured_attributes() {
        let config = CookieConfig {
            domain: Some("example.com".into()),
            ..CookieConfig::default()
        };
        let text = config
            .set_in(&CookieSlot::Main, PipelineId::generate())
            .to_str()
            .unwrap()
            .to_owned();
        for part in [
            "HttpOnly",
            "SameSite=Lax",
            "Secure",
            "Path=/",
            "Domain=example.com",
        ] {
            assert!(text.contains(part), "{text} lacks {part}");
        }
        let removal = config
            .removal_in(&CookieSlot::Main)
            .to_str()
            .unwrap()
            .to_owned();
        assert!(removal.contains("Max-Age=0"), "{removal}");
        assert!(removal.contains("Domain=example.com"), "{removal}");
    }

    #[test]
    fn signed_ids_verify_with_any_listed_key_and_forgeries_fail() {
        let (old, new) = (Key::generate(), Key::generate());
        let before = CookieConfig {
            protection: Protection::Signed(vec![old.clone()]),
            ..CookieConfig::default()
        };
        let rotated = CookieConfig {
            protection: Protection::Signed(vec![new, old]),
            ..CookieConfig::default()
        };
        let id = PipelineId::generate();
        let signed = value_of(&before.set_in(&CookieSlot::Main, id));
        assert_ne!(signed, id.to_string());
        assert_eq!(
            rotated.read(&request_with(&format!("pipeline_id={signed}"))),
            Incoming::Id(id)
        );
        // A bare id, or a signature over another id, is refused.
        let other = PipelineId::generate().to_string();
        let forged = format!("{}{}", &signed[..signed.len() - 32], other);
        for bad in [id.to_string(), forged] {
            assert_eq!(
                rotated.read(&request_with(&format!("pipeline_id={bad}"))),
                Incoming::Rejected
            );
        }
    }

    #[test]
    fn a_flow_cookie_value_opens_only_under_its_own_name() {
        use crate::flow_cookie::FlowCookie;
        let slot = |tag: &Tag| {
            CookieSlot::Flow(FlowCookie {
                tag: tag.clone(),
                cross_site: false,
                evict: Vec::new(),
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
            let (mine, other) = (Tag::generate(), Tag::generate());
            let id = PipelineId::generate();
            let set = config.set_in(&slot(&mine), id);
            let cookie = Cookie::parse(set.to_str().unwrap().to_owned()).unwrap();
            assert_eq!(cookie.name(), format!("pipeline_id.{mine}"));
            let value = cookie.value().as_bytes();
            assert_eq!(config.verify_flow(&mine, value), Some(id));
            assert_eq!(
                config.verify_flow(&other, value),
                None,
                "moved to another flow"
            );
            assert_eq!(config.verify(value), None, "moved to the browser's cookie");
        }
    }

    #[test]
    fn flow_cookies_are_listed_by_their_tag_and_others_ignored() {
        let config = CookieConfig::default();
        let (one, two) = (Tag::generate(), Tag::generate());
        let header = format!(
            "pipeline_id=x; pipeline_id.{one}=1; pipeline_id.short=2; pipeline_idx.{two}=3; pipeline_id.{two}=4"
        );
        let found: Vec<(Tag, Vec<u8>)> = config
            .flow_cookies(&request_with(&header))
            .map(|(tag, value)| (tag, value.to_vec()))
            .collect();
        assert_eq!(found, [(one, b"1".to_vec()), (two, b"4".to_vec())]);
    }

    #[test]
    fn private_ids_hide_the_id() {
        let config = CookieConfig {
            protection: Protection::Private(vec![Key::generate()]),
            ..CookieConfig::default()
        };
        let id = PipelineId::generate();
        let sealed = value_of(&config.set_in(&CookieSlot::Main, id));
        assert!(!sealed.contains(&id.to_string()));
        assert_eq!(
            config.read(&request_with(&format!("pipeline_id={sealed}"))),
            Incoming::Id(id)
        );
    }

    #[test]
    fn the_cookie_header_is_split_and_trimmed_like_the_cookie_crate_does() {
        let config = CookieConfig::default();
        let id = PipelineId::generate();
        for header in [
            format!("pipeline_id={id}"),
            format!("a=1;pipeline_id = {id} ;b=2"),
            format!(";; flag; pipeline_id_old=x; pipeline_id={id}"),
            format!("pipeline_id=nope; pipeline_id={id}"),
        ] {
            assert_eq!(
                config.read(&request_with(&header)),
                Incoming::Id(id),
                "{header}"
            );
            let parsed: Vec<_> = Cookie::split_parse(header.as_str())
                .flatten()
                .map(|c| (c.name().to_owned(), c.value().to_owned()))
                .collect();
            let ours: Vec<_> = pairs(header.as_bytes())
                .filter(|(name, _)| !name.is_empty())
                .map(|(n, v)| (text(n), text(v)))
                .collect();
            assert_eq!(ours, parsed, "{header}");
        }
        for header in [
            "pipeline_idx=1",
            "xpipeline_id=1",
            "pipeline_id",
            "Pipeline_Id=1",
        ] {
            let header = header.replace('1', &id.to_string());
            assert_eq!(
                config.read(&request_with(&header)),
                Incoming::Absent,
                "{header}"
            );
        }
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn other_cookies_that_are_not_text_do_not_hide_the_id() {
        let config = CookieConfig::default();
        let id = PipelineId::generate();
        // `pref=café` in Latin-1, before and after the id, and in a second
        // `Cookie` header.
        let mut header = b"pref=caf\xe9; pipeline_id=".to_vec();
        header.extend_from_slice(id.to_string().as_bytes());
        header.extend_from_slice(b"; x=\xff\xfe");
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_bytes(b"a=\x80").unwrap());
        headers.append(COOKIE, HeaderValue::from_bytes(&header).unwrap());
        assert_eq!(config.read(&headers), Incoming::Id(id));
        // Our own name with a value that is not text is refused, not read.
        let mut headers = HeaderMap::new();
        headers.append(
            COOKIE,
            HeaderValue::from_bytes(b"pipeline_id=\xe9").unwrap(),
        );
        assert_eq!(config.read(&headers), Incoming::Rejected);
    }

    #[test]
    fn signed_mode_checks_at_most_four_candidates() {
        let config = CookieConfig {
            protection: Protection::Signed(vec![Key::generate()]),
            ..CookieConfig::default()
        };
        let id = PipelineId::generate();
        let good = value_of(&config.set_in(&CookieSlot::Main, id));
        let forged = |n: usize| format!("pipeline_id=forged{n}");
        let mut within: Vec<String> = (0..MAX_CANDIDATES - 1).map(forged).collect();
        within.push(format!("pipeline_id={good}"));
        assert_eq!(
            config.read(&request_with(&within.join("; "))),
            Incoming::Id(id),
            "the fourth candidate is still checked"
        );
        let mut past: Vec<String> = (0..MAX_CANDIDATES).map(forged).collect();
        past.push(format!("pipeline_id={good}"));
        assert_eq!(
            config.read(&request_with(&past.join("; "))),
            Incoming::Rejected,
            "the fifth is not"
        );
    }

    #[test]
    fn overlong_values_are_rejected_unread() {
        let config = CookieConfig::default();
        let long = "a".repeat(config.max_len + 1);
        assert_eq!(
            config.read(&request_with(&format!("pipeline_id={long}"))),
            Incoming::Rejected
        );
    }
}
