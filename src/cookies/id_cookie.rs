//! The browser's id cookie (the layer's cookie name): finding the flow id a
//! request carries in it.

use http::HeaderMap;

use super::{
    config::CookieConfig,
    header::{MAX_CANDIDATES, cookie_pairs},
};
use crate::id::PipelineId;

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
    /// Finds the flow id in the request, in every `Cookie` header, whatever
    /// the other cookies hold (bytes that are not text included). With
    /// several cookies of our name (for instance one planted for a wider
    /// path), the first valid one among the first [`MAX_CANDIDATES`] wins.
    pub(crate) fn read(&self, headers: &HeaderMap) -> Incoming {
        let mut seen = 0;
        for (name, value) in cookie_pairs(headers) {
            if name != self.name.as_bytes() {
                continue;
            }
            if seen == MAX_CANDIDATES {
                return Incoming::Rejected;
            }
            seen += 1;
            if let Some(id) = self.open_id(value) {
                return Incoming::Id(id);
            }
        }
        if seen > 0 {
            Incoming::Rejected
        } else {
            Incoming::Absent
        }
    }
}

#[cfg(test)]
mod tests {
    use cookie::Key;
    use http::{HeaderValue, header::COOKIE};

    use super::*;
    use crate::cookies::{CookieSlot, Protection, tests::value_of};

    fn request_with(cookie: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(cookie).unwrap());
        headers
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
    fn the_id_is_found_among_other_cookies_and_only_under_its_exact_name() {
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
    fn at_most_four_candidates_are_checked_in_every_mode() {
        for protection in [Protection::Plain, Protection::Signed(vec![Key::generate()])] {
            let config = CookieConfig {
                protection,
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
