//! Reading the `Cookie` request header: its `name=value` pairs, over bytes,
//! and how many cookies of one name a request may make the layer check.

use http::{HeaderMap, header::COOKIE};

/// How many cookies of one name (the browser's id cookie, or one flow's
/// cookie) a request may bring before the rest are ignored: each costs an
/// HMAC or an AES-GCM open per key in signed and private mode, and a
/// browser holds at most a few (one per path or domain). The same bound in
/// every mode, so a request cannot buy work by its cookies' number.
pub(crate) const MAX_CANDIDATES: usize = 4;

/// Every `name=value` pair of every `Cookie` header of the request, in
/// order.
pub(crate) fn cookie_pairs(headers: &HeaderMap) -> impl Iterator<Item = (&[u8], &[u8])> {
    headers
        .get_all(COOKIE)
        .into_iter()
        .flat_map(|header| pairs(header.as_bytes()))
}

/// The `name=value` pairs of a `Cookie` request header, each side trimmed,
/// as `cookie`'s `Cookie::split_parse` reads them (pairs without `=` are
/// skipped), but over bytes: one cookie that is not UTF-8 (`pref=café` in
/// Latin-1) must not hide the others. Only the name and value matter here;
/// the full parser builds a whole `Cookie` per pair and cost more than the
/// rest of reading the id (measured with callgrind in `benches/overhead.rs`).
pub(crate) fn pairs(header: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
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

#[cfg(test)]
mod tests {
    use cookie::Cookie;

    use super::*;

    fn text(bytes: &[u8]) -> String {
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn the_header_is_split_and_trimmed_like_the_cookie_crate_does() {
        for header in [
            "pipeline_id=1",
            "a=1;pipeline_id = 2 ;b=2",
            ";; flag; pipeline_id_old=x; pipeline_id=3",
            "pipeline_id=nope; pipeline_id=4",
        ] {
            let parsed: Vec<_> = Cookie::split_parse(header)
                .flatten()
                .map(|c| (c.name().to_owned(), c.value().to_owned()))
                .collect();
            let ours: Vec<_> = pairs(header.as_bytes())
                .filter(|(name, _)| !name.is_empty())
                .map(|(n, v)| (text(n), text(v)))
                .collect();
            assert_eq!(ours, parsed, "{header}");
        }
    }
}
