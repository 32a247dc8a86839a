//! Writing cookies: the `Set-Cookie` values that hand a flow's id to the
//! browser in the cookie that carries it, or expire that cookie.

use cookie::{Cookie, SameSite};
use http::HeaderValue;

use super::{
    config::CookieConfig,
    flow::{CookieSlot, Reference},
    ticket,
};
use crate::{backend::unix_now, id::PipelineId};

impl CookieConfig {
    /// The `Set-Cookie` value that hands `id` to the client in `slot`'s
    /// cookie.
    pub(crate) fn set_in(&self, slot: &CookieSlot, id: PipelineId) -> HeaderValue {
        let cookie = match slot {
            CookieSlot::Main => self.seal(self.build_in(slot, id.to_string()), false),
            CookieSlot::Flow(flow) => {
                let text = ticket::encode(id, flow.ticket.as_ref());
                let mut cookie = self.build_in(slot, text);
                // An ended flow's cookie goes with its record, at the end
                // of the replay window. A live flow's stays a session
                // cookie even past its deadline: a request that brings it
                // then is told the flow expired (or starts it again), not
                // that another browser holds it.
                let ended_at = flow.ticket.as_ref().and_then(|ticket| ticket.deadline);
                if let (true, Some(deadline)) = (flow.renew, ended_at) {
                    let left = deadline.saturating_sub(unix_now());
                    cookie.set_max_age(cookie::time::Duration::seconds(
                        i64::try_from(left).unwrap_or(i64::MAX),
                    ));
                }
                self.seal(cookie, true)
            }
        };
        header_value(&cookie)
    }

    /// The length of the cookie values this configuration issues (the same
    /// for every id: plain, signed and private values have fixed lengths).
    pub(crate) fn issued_len(&self) -> usize {
        let cookie = self.build_in(&CookieSlot::Main, PipelineId::generate().to_string());
        self.seal(cookie, false).value().len()
    }

    /// The `Set-Cookie` value that expires `slot`'s cookie in the client
    /// (same name, path and domain, so the browser matches it).
    pub(crate) fn removal_in(&self, slot: &CookieSlot) -> HeaderValue {
        let mut cookie = self.build_in(slot, String::new());
        cookie.make_removal();
        header_value(&cookie)
    }

    /// The removal of flow `reference`'s cookie (whatever its `SameSite`: a
    /// browser matches a cookie by name, path and domain).
    pub(crate) fn flow_removal(&self, reference: &Reference) -> HeaderValue {
        let name = self.flow_name(reference);
        let mut cookie = self.build_named(name, String::new(), self.same_site);
        cookie.make_removal();
        header_value(&cookie)
    }

    fn build_in(&self, slot: &CookieSlot, value: String) -> Cookie<'static> {
        match slot {
            CookieSlot::Main => self.build_named(self.name.clone(), value, self.same_site),
            // A cross-site cookie must be `Secure`, or browsers refuse it
            // (they treat `localhost` as secure, so development works).
            CookieSlot::Flow(flow) if flow.cross_site => {
                let name = self.flow_name(&flow.reference);
                let mut cookie = self.build_named(name, value, SameSite::None);
                cookie.set_secure(true);
                cookie
            }
            CookieSlot::Flow(flow) => {
                self.build_named(self.flow_name(&flow.reference), value, self.same_site)
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
}

fn header_value(cookie: &Cookie<'_>) -> HeaderValue {
    // Name, path and domain were checked by the builder, the value is hex or
    // base64: the text is always a valid header value.
    HeaderValue::try_from(cookie.to_string()).expect("cookie text is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
