//! A cookie value's protection: signing (HMAC) or sealing (AES-GCM) an id
//! into a value, and opening a value back into an id. Each cookie name has
//! keys of its own for flow cookies, so a value cannot be moved to another
//! flow's cookie or to the browser's.

use cookie::{Cookie, CookieJar, Key};

use super::{
    config::{CookieConfig, Protection},
    flow::Reference,
};
use crate::id::PipelineId;

impl CookieConfig {
    /// The id in `value`, a value of cookie `name` (flow `reference`'s, or
    /// the browser's when `None`), if it is ours.
    pub(super) fn open(
        &self,
        name: &str,
        reference: Option<&Reference>,
        value: &[u8],
    ) -> Option<PipelineId> {
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
            let key = scoped(key, reference);
            if private {
                jar.private(&key).decrypt(cookie.clone())
            } else {
                jar.signed(&key).verify(cookie.clone())
            }
        })?;
        PipelineId::parse(opened.value())
    }

    /// `cookie` with its value signed or sealed with the current key, as the
    /// layer is configured.
    pub(super) fn seal(
        &self,
        cookie: Cookie<'static>,
        reference: Option<&Reference>,
    ) -> Cookie<'static> {
        let mut jar = CookieJar::new();
        match &self.protection {
            Protection::Plain => return cookie,
            Protection::Signed(keys) => jar.signed_mut(&scoped(&keys[0], reference)).add(cookie),
            Protection::Private(keys) => jar.private_mut(&scoped(&keys[0], reference)).add(cookie),
        }
        jar.delta()
            .next()
            .cloned()
            .expect("the jar holds the cookie just added")
    }
}

/// The key for flow `reference`'s cookie: derived from the layer's key and
/// the reference (HKDF, by `Key::derive_from`), because the `cookie`
/// crate's signed values do not cover the cookie's name. The browser's
/// cookie uses the layer's key as it is.
fn scoped(key: &Key, reference: Option<&Reference>) -> Key {
    match reference {
        None => key.clone(),
        Some(reference) => {
            Key::derive_from(&[key.master(), reference.as_str().as_bytes()].concat())
        }
    }
}
