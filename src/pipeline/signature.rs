//! [`Signature`]: a stable fingerprint of a pipeline's step list.

use std::fmt;

use sha2::{Digest, Sha256};

/// Identifies the text hashed, so a signature can never equal a SHA-256 of
/// some other use of the same names; the `v1` changes only if the encoding
/// below ever does.
const DOMAIN: &[u8] = b"tower-pipeline-state/pipeline-signature/v1\n";

/// A fingerprint of a pipeline's steps, in order: their names and which of
/// them are callbacks, as 64 lowercase hex digits of SHA-256.
///
/// Every flow stores the signature of the pipeline that started it; a request
/// that finds another signature (the deployment changed the steps since) ends
/// the flow with [`FlowError::SignatureChanged`](super::FlowError) instead of
/// running a step that means something else now.
///
/// The value depends only on the steps and their order, never on the
/// process, the platform or the Rust release: it is SHA-256 over a fixed tag
/// followed, for each step, by its name's length in bytes (8 bytes,
/// big-endian) and its UTF-8 bytes, and for a callback step one more byte,
/// `0xff` (which no length of a name starts with). The length prefix keeps
/// `["ab", "c"]` and `["a", "bc"]` apart; the marker makes turning a step
/// into a callback, or back, a new signature, so flows in progress end
/// rather than run a step whose nonce rule changed.
///
/// ```
/// use tower_pipeline_state::pipeline::Signature;
///
/// let a = Signature::of(["authorize", "callback", "confirm"]);
/// let b = Signature::of(["authorize", "callback", "confirm"]);
/// assert_eq!(a, b);
/// assert_ne!(a, Signature::of(["authorize", "confirm"]));
/// assert_eq!(a.as_str().len(), 64);
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Signature(String);

impl Signature {
    /// The signature of steps called `names`, in this order, none of them a
    /// callback.
    pub fn of<I>(names: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Self::of_steps(names.into_iter().map(|name| (name, false)))
    }

    /// The signature of `steps`, in this order: each a name, and whether it
    /// is a callback step (see
    /// [`PipelineBuilder::callback`](super::PipelineBuilder::callback)).
    ///
    /// ```
    /// use tower_pipeline_state::pipeline::Signature;
    ///
    /// let plain = Signature::of(["authorize", "callback"]);
    /// let with_callback = Signature::of_steps([("authorize", false), ("callback", true)]);
    /// assert_ne!(plain, with_callback, "which steps are callbacks counts");
    /// assert_eq!(plain, Signature::of_steps([("authorize", false), ("callback", false)]));
    /// ```
    pub fn of_steps<I, N>(steps: I) -> Self
    where
        I: IntoIterator<Item = (N, bool)>,
        N: AsRef<str>,
    {
        let mut hasher = Sha256::new();
        hasher.update(DOMAIN);
        for (name, callback) in steps {
            let name = name.as_ref().as_bytes();
            hasher.update((name.len() as u64).to_be_bytes());
            hasher.update(name);
            if callback {
                hasher.update([CALLBACK]);
            }
        }
        let digest = hasher.finalize();
        let mut hex = String::with_capacity(64);
        for byte in digest {
            hex.push(char::from(HEX[usize::from(byte >> 4)]));
            hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        Self(hex)
    }

    /// The text form, as stored with each flow.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";
/// Marks a callback step: no name's length (8 bytes, big-endian, far below
/// 2^56) starts with it, so the encoding stays unambiguous.
const CALLBACK: u8 = 0xff;

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_pinned_across_releases() {
        // Computed once and written down: if this changes, every flow in
        // progress during an upgrade would be ended for nothing.
        assert_eq!(
            Signature::of(["authorize", "callback", "confirm"]).as_str(),
            PINNED_THREE_STEPS
        );
        assert_eq!(Signature::of(Vec::<String>::new()).as_str(), PINNED_EMPTY);
    }

    // Computed outside Rust (Python hashlib) from the documented encoding.
    const PINNED_THREE_STEPS: &str =
        "f9b4431bc714c52e2109e163a7662776f61ec91d53373d843e49941f53551d5b";
    const PINNED_EMPTY: &str = "8444b4f8b98e8f474af5d9feba3643bd33507fdbaceb43943589a1ee92f42072";

    #[test]
    fn equals_sha256_of_the_documented_encoding() {
        let mut text = DOMAIN.to_vec();
        for name in ["login", "ok"] {
            text.extend_from_slice(&(name.len() as u64).to_be_bytes());
            text.extend_from_slice(name.as_bytes());
        }
        let expected: String = Sha256::digest(&text)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(Signature::of(["login", "ok"]).as_str(), expected);
    }

    #[test]
    fn depends_on_names_order_and_boundaries() {
        let base = Signature::of(["a", "b", "c"]);
        assert_eq!(
            base,
            Signature::of(vec!["a".to_owned(), "b".into(), "c".into()])
        );
        assert_ne!(base, Signature::of(["a", "c", "b"]), "order counts");
        assert_ne!(base, Signature::of(["a", "b"]), "a removed step counts");
        assert_ne!(
            base,
            Signature::of(["a", "b", "c", "d"]),
            "an added step counts"
        );
        assert_ne!(
            base,
            Signature::of(["a", "b", "C"]),
            "a renamed step counts"
        );
        assert_ne!(
            Signature::of(["ab", "c"]),
            Signature::of(["a", "bc"]),
            "names are length-prefixed, not joined"
        );
        assert_ne!(Signature::of(["a b"]), Signature::of(["a", "b"]));
    }

    #[test]
    fn is_lowercase_hex() {
        let text = Signature::of(["x"]).to_string();
        assert_eq!(text.len(), 64);
        assert!(
            text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
            "{text}"
        );
    }
}
