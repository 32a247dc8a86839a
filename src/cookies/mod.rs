//! Cookies: the browser's id cookie and each flow's own cookie. Reading the
//! `Cookie` header (`header.rs`, with the one bound on how many cookies of
//! a name are checked), finding the id in the browser's cookie
//! (`id_cookie.rs`), the flows' cookies and the choice among them
//! (`flow.rs`), signing or sealing values (`seal.rs`), and writing
//! `Set-Cookie`s (`set_cookie.rs`). The settings are [`CookieConfig`], here.

use cookie::{Key, SameSite};

mod flow;
mod header;
mod id_cookie;
mod seal;
mod set_cookie;

pub(crate) use self::flow::{CookieSlot, FlowCookie, Reference};
pub(crate) use self::id_cookie::Incoming;

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
pub(super) mod tests {
    use cookie::Cookie;
    use http::HeaderValue;

    /// The value a `Set-Cookie` sets.
    pub(crate) fn value_of(set_cookie: &HeaderValue) -> String {
        let text = set_cookie.to_str().unwrap();
        Cookie::parse(text).unwrap().value().to_owned()
    }
}
