//! PKCE (RFC 7636) with the S256 method: the application keeps a random
//! verifier and sends its SHA-256 (the challenge); when it exchanges the
//! code it shows the verifier, so a stolen code is useless to anyone else.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A fresh code verifier: 32 random bytes, 43 URL-safe characters (the RFC
/// asks for 43 to 128).
pub fn verifier() -> String {
    random_token()
}

/// The S256 challenge of `verifier`: `BASE64URL(SHA256(verifier))`.
pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Whether `verifier` is the one `challenge` was made from (compared in
/// constant time).
pub fn verify(verifier: &str, challenge: &str) -> bool {
    self::challenge(verifier)
        .as_bytes()
        .ct_eq(challenge.as_bytes())
        .into()
}

/// 256 random bits as URL-safe text: codes, tokens and verifiers.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    URL_SAFE_NO_PAD.encode(bytes)
}
