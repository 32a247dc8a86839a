//! rustls's crypto provider for `rediss://` connections (feature `tls`).
//!
//! redis-rs builds its TLS settings with rustls's process-wide default
//! provider. rustls picks one by itself only when exactly one provider is
//! compiled in; a binary that also links `aws-lc-rs` (through another crate)
//! has two, and the first TLS connection panicked. So the constructors
//! install `ring`, the provider this feature brings, as the default before
//! they connect, when no default is installed yet: a provider the
//! application installed first stays the default.

/// Installs `ring` as rustls's process default provider unless one is
/// installed already.
#[cfg(feature = "tls")]
pub(super) fn install_default_provider() {
    use rustls::crypto::{CryptoProvider, ring};

    if CryptoProvider::get_default().is_none() {
        // An error means another thread installed one in the meantime: that
        // one stays, as an application's own would.
        let _ = ring::default_provider().install_default();
    }
}

/// Without TLS there is nothing to install.
#[cfg(not(feature = "tls"))]
pub(super) fn install_default_provider() {}
