//! [`CookieConfig`]: the cookies' name, attributes and protection, as the
//! layer's builder sets them.

use cookie::{Key, SameSite};

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
    /// How many flow cookies a browser keeps (starting one more drops the
    /// oldest), and so how many a request makes the layer look at.
    pub(crate) max_flows: usize,
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
            max_flows: 5,
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
