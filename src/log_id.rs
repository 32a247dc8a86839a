//! What a log line says instead of a flow's id: the id is the credential
//! that continues a flow (with an unsigned cookie, the cookie's whole
//! value), so no line may carry it. A line that must tie requests of one
//! flow together carries [`LogId`]: the first 8 bytes, in hex, of an
//! HMAC-SHA256 of the id under a key drawn at random once per process. It
//! is the same for one flow within one process, and says nothing of the id
//! to whoever reads the log (nor across processes, whose keys differ).

use std::{fmt, sync::OnceLock};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::id::PipelineId;

/// A flow's id as log lines name it (`pipeline.log_id`): 16 hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogId([u8; 8]);

/// This process's key, drawn on first use.
fn key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the operating system's random source failed");
        key
    })
}

/// The keyed hash that stands for `id` in this process's log lines.
pub(crate) fn log_id(id: PipelineId) -> LogId {
    let mut mac = Hmac::<Sha256>::new_from_slice(key()).expect("HMAC takes a key of any length");
    let mut text = [0u8; PipelineId::LEN];
    mac.update(id.encode(&mut text).as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut short = [0u8; 8];
    short.copy_from_slice(&digest[..8]);
    LogId(short)
}

impl fmt::Display for LogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for LogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_id_has_one_short_name_that_does_not_contain_it() {
        let id = PipelineId::generate();
        let (first, again) = (log_id(id).to_string(), log_id(id).to_string());
        assert_eq!(first, again, "requests of one flow correlate");
        assert_eq!(first.len(), 16);
        assert!(first.bytes().all(|byte| byte.is_ascii_hexdigit()));
        let text = id.to_string();
        assert!(!text.contains(&first) && !first.contains(&text[..8]));
        assert_ne!(log_id(PipelineId::generate()).to_string(), first);
    }
}
