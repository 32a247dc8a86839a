//! [`Nonce`]: the per-flow secret that goes out as the OAuth `state`
//! parameter and must come back, once.

use std::fmt;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use subtle::ConstantTimeEq;

/// Random bytes in a nonce: 256 bits, twice the 128 the OAuth 2.0 security
/// advice asks for.
const BYTES: usize = 32;

/// A per-flow random value for the OAuth 2.0 `state` parameter (or any
/// "this redirect belongs to this flow" check): 256 bits from the operating
/// system's random source, written as 43 URL-safe base64 characters.
///
/// The engine makes one when a flow starts and keeps it with the flow; a step
/// reads it with [`Flow::nonce`](super::Flow::nonce) to build the provider's
/// URL. A request that brings it back is checked in constant time and the
/// nonce is consumed, so the same callback cannot be used twice.
///
/// `Debug` does not print the value.
///
/// ```
/// use tower_pipeline_state::pipeline::Nonce;
///
/// let nonce = Nonce::generate();
/// assert_eq!(nonce.as_str().len(), 43);
/// assert!(nonce.matches(nonce.as_str()));
/// assert!(!nonce.matches(Nonce::generate().as_str()));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Nonce(String);

impl Nonce {
    /// A fresh nonce.
    ///
    /// # Panics
    /// If the operating system's random source fails, which leaves nothing
    /// safe to do.
    pub fn generate() -> Self {
        let mut bytes = [0u8; BYTES];
        getrandom::fill(&mut bytes).expect("the operating system's random source failed");
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// A nonce as stored with a flow.
    pub(crate) fn from_stored(text: String) -> Self {
        Self(text)
    }

    /// The text to send out (URL-safe as it is).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this nonce. The comparison takes the same time
    /// wherever the first difference is, so an attacker cannot find the
    /// value byte by byte from response times. (The length is not secret:
    /// every nonce has 43 characters.)
    pub fn matches(&self, presented: &str) -> bool {
        bool::from(self.0.as_bytes().ct_eq(presented.as_bytes()))
    }
}

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Nonce(..)")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn carries_at_least_128_random_bits_in_url_safe_text() {
        let nonce = Nonce::generate();
        let decoded = URL_SAFE_NO_PAD.decode(nonce.as_str()).unwrap();
        assert!(decoded.len() * 8 >= 128, "{} bits", decoded.len() * 8);
        assert!(
            nonce
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{}",
            nonce.as_str()
        );
    }

    #[test]
    fn never_repeats() {
        let seen: HashSet<String> = (0..10_000)
            .map(|_| Nonce::generate().as_str().to_owned())
            .collect();
        assert_eq!(seen.len(), 10_000);
    }

    #[test]
    fn matches_only_itself() {
        let nonce = Nonce::generate();
        let text = nonce.as_str().to_owned();
        assert!(nonce.matches(&text));
        assert!(!nonce.matches(""));
        assert!(!nonce.matches(&text[..42]), "a prefix");
        assert!(!nonce.matches(&format!("{text}x")), "a longer value");
        let mut flipped = text.clone().into_bytes();
        flipped[42] = if flipped[42] == b'A' { b'B' } else { b'A' };
        assert!(
            !nonce.matches(std::str::from_utf8(&flipped).unwrap()),
            "last byte"
        );
        assert!(!nonce.matches(&text.to_uppercase()), "case counts");
        assert!(!nonce.matches(Nonce::generate().as_str()));
    }

    #[test]
    fn debug_hides_the_value() {
        let nonce = Nonce::generate();
        let debug = format!("{nonce:?}");
        assert!(!debug.contains(nonce.as_str()), "{debug}");
    }
}
