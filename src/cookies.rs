//! The cookie that carries a flow's id: reading it from a request (checked
//! for length, format and signature before anything else) and writing the
//! `Set-Cookie` that sets or expires it.

use cookie::{Cookie, CookieJar, Key, SameSite};
use http::{HeaderMap, HeaderValue, header::COOKIE};

use crate::id::PipelineId;

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

impl CookieConfig {
    /// Finds the flow id in the request. With several cookies of our name
    /// (for instance one planted for a wider path), the first valid one wins.
    pub(crate) fn read(&self, headers: &HeaderMap) -> Incoming {
        let mut seen = false;
        for header in headers.get_all(COOKIE) {
            let Ok(header) = header.to_str() else {
                continue;
            };
            for (name, value) in pairs(header) {
                if name != self.name {
                    continue;
                }
                seen = true;
                if let Some(id) = self.verify(value) {
                    return Incoming::Id(id);
                }
            }
        }
        if seen {
            Incoming::Rejected
        } else {
            Incoming::Absent
        }
    }

    fn verify(&self, value: &str) -> Option<PipelineId> {
        // Length first: no HMAC or decryption over an arbitrarily long value.
        if value.len() > self.max_len {
            return None;
        }
        let jar = CookieJar::new();
        let opened = match &self.protection {
            // A bare id is read where it lies: no owned copy of the cookie.
            Protection::Plain => return PipelineId::parse(value),
            Protection::Signed(keys) => {
                let cookie = Cookie::new(self.name.clone(), value.to_owned());
                keys.iter()
                    .find_map(|key| jar.signed(key).verify(cookie.clone()))
            }
            Protection::Private(keys) => {
                let cookie = Cookie::new(self.name.clone(), value.to_owned());
                keys.iter()
                    .find_map(|key| jar.private(key).decrypt(cookie.clone()))
            }
        }?;
        PipelineId::parse(opened.value())
    }

    /// The `Set-Cookie` value that hands `id` to the client.
    pub(crate) fn set(&self, id: PipelineId) -> HeaderValue {
        let cookie = self.protect(self.build(id.to_string()));
        header_value(&cookie)
    }

    /// The length of the cookie values this configuration issues (the same
    /// for every id: plain, signed and private values have fixed lengths).
    pub(crate) fn issued_len(&self) -> usize {
        self.protect(self.build(PipelineId::generate().to_string()))
            .value()
            .len()
    }

    /// The `Set-Cookie` value that expires the client's cookie (same name,
    /// path and domain, so the browser matches it).
    pub(crate) fn removal(&self) -> HeaderValue {
        let mut cookie = self.build(String::new());
        cookie.make_removal();
        header_value(&cookie)
    }

    fn build(&self, value: String) -> Cookie<'static> {
        let mut cookie = Cookie::build((self.name.clone(), value))
            .path(self.path.clone())
            .secure(self.secure)
            .http_only(self.http_only)
            .same_site(self.same_site)
            .build();
        if let Some(domain) = &self.domain {
            cookie.set_domain(domain.clone());
        }
        cookie
    }

    fn protect(&self, cookie: Cookie<'static>) -> Cookie<'static> {
        let mut jar = CookieJar::new();
        match &self.protection {
            Protection::Plain => return cookie,
            Protection::Signed(keys) => jar.signed_mut(&keys[0]).add(cookie),
            Protection::Private(keys) => jar.private_mut(&keys[0]).add(cookie),
        }
        jar.delta()
            .next()
            .cloned()
            .expect("the jar holds the cookie just added")
    }
}

/// The `name=value` pairs of a `Cookie` request header, each side trimmed,
/// as `cookie`'s `Cookie::split_parse` reads them (pairs without `=` are
/// skipped). Only the name and value matter here; the full parser builds a
/// whole `Cookie` per pair and cost more than the rest of reading the id
/// (measured with callgrind in `benches/overhead.rs`).
fn pairs(header: &str) -> impl Iterator<Item = (&str, &str)> {
    header.split(';').filter_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        Some((name.trim(), value.trim()))
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
        let value = value_of(&config.set(id));
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
            .set(PipelineId::generate())
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
        let removal = config.removal().to_str().unwrap().to_owned();
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
        let signed = value_of(&before.set(id));
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
    fn private_ids_hide_the_id() {
        let config = CookieConfig {
            protection: Protection::Private(vec![Key::generate()]),
            ..CookieConfig::default()
        };
        let id = PipelineId::generate();
        let sealed = value_of(&config.set(id));
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
            let ours: Vec<_> = pairs(&header)
                .filter(|(name, _)| !name.is_empty())
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
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
