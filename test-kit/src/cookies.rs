//! The cookies a response sets, parsed by the `cookie` crate as a browser
//! would read them, not split by hand.

use cookie::{Cookie, time::Duration};
use http::{HeaderMap, header::SET_COOKIE};

/// Every cookie `headers` set. A `Set-Cookie` that does not parse fails the
/// test: a browser would drop it.
pub fn set_cookies(headers: &HeaderMap) -> Vec<Cookie<'static>> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|line| {
            let line = line.to_str().expect("Set-Cookie is text");
            Cookie::parse(line.to_owned())
                .unwrap_or_else(|error| panic!("Set-Cookie {line:?} does not parse: {error}"))
        })
        .collect()
}

/// The cookie named `name` that `headers` set, if any.
pub fn set_cookie_named(headers: &HeaderMap, name: &str) -> Option<Cookie<'static>> {
    set_cookies(headers)
        .into_iter()
        .find(|cookie| cookie.name() == name)
}

/// The `pipeline_id` cookie a response sets, if any.
pub fn set_cookie(response: &reqwest::Response) -> Option<Cookie<'static>> {
    set_cookie_named(response.headers(), "pipeline_id")
}

/// The cookie of an engine flow (`pipeline_id.<reference>`) that a response
/// sets, if any: each flow has its own.
pub fn flow_cookie(response: &reqwest::Response) -> Option<Cookie<'static>> {
    set_cookies(response.headers())
        .into_iter()
        .find(|cookie| cookie.name().starts_with("pipeline_id."))
}

/// Whether `cookie` tells the browser to drop it at once (`Max-Age=0`).
pub fn removes(cookie: &Cookie) -> bool {
    cookie.max_age() == Some(Duration::ZERO)
}
