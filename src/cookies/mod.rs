//! Cookies: the browser's id cookie and each flow's own cookie. Reading the
//! `Cookie` header (`header.rs`, with the one bound on how many cookies of
//! a name are checked), finding the id in the browser's cookie
//! (`id_cookie.rs`), the flows' cookies and the choice among them
//! (`flow.rs`) with what a flow's cookie carries besides its id
//! (`ticket.rs`), signing or sealing values (`seal.rs`), and writing
//! `Set-Cookie`s (`set_cookie.rs`). The settings are [`CookieConfig`] (`config.rs`).

mod config;
mod flow;
mod header;
mod id_cookie;
mod seal;
mod set_cookie;
mod ticket;

pub(crate) use self::config::{CookieConfig, Protection, assert_cookie_text};
pub(crate) use self::flow::{CookieSlot, FlowCookie, Reference};
pub(crate) use self::id_cookie::Incoming;
pub(crate) use self::ticket::{MAX_RETURN_TO, Ticket};

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
