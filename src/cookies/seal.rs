//! A cookie value's protection: signing (HMAC) or sealing (AES-GCM) what a
//! cookie carries (an id, and for a flow its ticket) into a value, and
//! opening a value back. Each flow cookie has
//! keys of its own, derived from its whole name, so a value cannot be moved
//! to another flow's cookie, to the browser's, or to another layer's cookie
//! that shares the key.

use cookie::{Cookie, CookieJar, Key};

use super::config::{CookieConfig, Protection};
use crate::id::PipelineId;

impl CookieConfig {
    /// The id in `value`, a value of the browser's cookie, if it is ours.
    pub(super) fn open_id(&self, value: &[u8]) -> Option<PipelineId> {
        // Length first: no HMAC or decryption over an arbitrarily long value.
        if value.len() > self.max_len {
            return None;
        }
        if let Protection::Plain = self.protection {
            // A bare id is read where it lies: no owned copy, no UTF-8 check.
            return PipelineId::parse_ascii(value);
        }
        PipelineId::parse(&self.open(&self.name, false, value)?)
    }

    /// The text in `value`, a value of cookie `name` (a flow's when
    /// `per_name`, the browser's otherwise), if it is ours. The caller
    /// bounds the value's length first.
    pub(super) fn open(&self, name: &str, per_name: bool, value: &[u8]) -> Option<String> {
        let (keys, private) = match &self.protection {
            Protection::Plain => return Some(std::str::from_utf8(value).ok()?.to_owned()),
            Protection::Signed(keys) => (keys, false),
            Protection::Private(keys) => (keys, true),
        };
        // Our values are ASCII; anything else is not ours.
        let cookie = Cookie::new(name.to_owned(), std::str::from_utf8(value).ok()?.to_owned());
        let jar = CookieJar::new();
        let opened = keys.iter().find_map(|key| {
            let key = scoped(key, per_name.then_some(name));
            if private {
                jar.private(&key).decrypt(cookie.clone())
            } else {
                jar.signed(&key).verify(cookie.clone())
            }
        })?;
        Some(opened.value().to_owned())
    }

    /// `cookie` with its value signed or sealed with the current key (a key
    /// of the cookie's own when `per_name`), as the layer is configured.
    pub(super) fn seal(&self, cookie: Cookie<'static>, per_name: bool) -> Cookie<'static> {
        let name = per_name.then(|| cookie.name().to_owned());
        let key = |keys: &[Key]| scoped(&keys[0], name.as_deref());
        let mut jar = CookieJar::new();
        match &self.protection {
            Protection::Plain => return cookie,
            Protection::Signed(keys) => jar.signed_mut(&key(keys)).add(cookie),
            Protection::Private(keys) => jar.private_mut(&key(keys)).add(cookie),
        }
        jar.delta()
            .next()
            .cloned()
            .expect("the jar holds the cookie just added")
    }
}

/// The key for the flow cookie called `name`: derived from the layer's key
/// and the cookie's whole name (HKDF, by `Key::derive_from`), because the
/// `cookie` crate's signed values do not cover the cookie's name. The
/// browser's cookie uses the layer's key as it is.
fn scoped(key: &Key, name: Option<&str>) -> Key {
    match name {
        None => key.clone(),
        Some(name) => Key::derive_from(&[key.master(), name.as_bytes()].concat()),
    }
}
