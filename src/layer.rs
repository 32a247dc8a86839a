//! [`PipelineStateLayer`]: configuration and builder methods.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use cookie::{Key, SameSite};
use http::{Response, StatusCode};
use tower_layer::Layer;

use crate::{
    LayerError, PipelineStateService,
    answer::ErrorHook,
    config::{Config, LoadMode},
    cookies::{Protection, assert_cookie_text},
    shared::Shared,
};

/// A tower layer that keeps each flow's state in a [`Store`](crate::Store)
/// (Redis in production): it loads the state before the inner service, puts
/// a [`PipelineState`](crate::PipelineState) in the request's extensions,
/// and writes the changes back, once, after.
///
/// ```
/// use std::time::Duration;
/// use tower_pipeline_state::{MemoryStore, PipelineStateLayer};
///
/// let layer = PipelineStateLayer::new(MemoryStore::new())
///     .key_prefix("auth:pipeline:")
///     .ttl(Duration::from_secs(10 * 60));
/// ```
#[derive(Debug)]
pub struct PipelineStateLayer<St> {
    pub(crate) store: Arc<St>,
    pub(crate) config: Config,
}

impl<St> Clone for PipelineStateLayer<St> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            config: self.config.clone(),
        }
    }
}

impl<St> PipelineStateLayer<St> {
    /// A layer over `store` with the defaults: cookie `pipeline_id` (Secure,
    /// HttpOnly, `SameSite=Lax`, `Path=/`), key prefix `pipeline:`, a sliding
    /// TTL of 10 minutes refreshed on every load, the state loaded only when
    /// the request asks for it ([`LoadMode::Lazy`]), a 1 s timeout per store
    /// operation, records up to 64 KiB, server errors discard the request's
    /// changes, conflicts answer 409.
    ///
    /// ```
    /// use tower_pipeline_state::{MemoryStore, PipelineStateLayer};
    ///
    /// let layer = PipelineStateLayer::new(MemoryStore::new());
    /// ```
    pub fn new(store: St) -> Self {
        Self {
            store: Arc::new(store),
            config: Config::default(),
        }
    }

    /// The name of the cookie that carries the flow id (default
    /// `pipeline_id`).
    ///
    /// # Panics
    /// If `name` is not a valid cookie name (an HTTP token).
    ///
    /// ```
    /// # use tower_pipeline_state::{MemoryStore, PipelineStateLayer};
    /// let layer = PipelineStateLayer::new(MemoryStore::new()).cookie_name("sso_flow");
    /// ```
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        assert_cookie_text("cookie name", &name, true);
        self.config.cookie.name = name;
        self
    }

    /// The prefix of every Redis key (default `pipeline:`): the key is the
    /// prefix followed by the 32-hex-digit id. Sentry's layout is
    /// `auth:pipeline:`.
    ///
    /// ```
    /// # use tower_pipeline_state::{MemoryStore, PipelineStateLayer};
    /// let layer = PipelineStateLayer::new(MemoryStore::new()).key_prefix("auth:pipeline:");
    /// ```
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.key_prefix = prefix.into();
        self
    }

    /// How long a flow lives without a request (default 10 minutes). The TTL
    /// slides: every write sets it again, and so does every load while
    /// [`refresh_on_load`](Self::refresh_on_load) is on. Redis counts whole
    /// seconds; a partial second is rounded up.
    ///
    /// # Panics
    /// If `ttl` is shorter than one second or longer than 30 days.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_pipeline_state::{MemoryStore, PipelineStateLayer};
    /// let layer = PipelineStateLayer::new(MemoryStore::new()).ttl(Duration::from_secs(300));
    /// ```
    pub fn ttl(mut self, ttl: Duration) -> Self {
        assert!(
            (Duration::from_secs(1)..=MAX_TTL).contains(&ttl),
            "ttl must be between 1 s and 30 days, got {ttl:?}"
        );
        self.config.ttl = ttl;
        self
    }

    /// Whether every load refreshes the TTL (default on: the Redis store's
    /// load script runs `GET key`, then `EXPIRE key ttl` when the record is
    /// this release's, so a later release's record keeps its own) or only
    /// writes do (`GET key`).
    ///
    /// ```
    /// # use tower_pipeline_state::{MemoryStore, PipelineStateLayer};
    /// let layer = PipelineStateLayer::new(MemoryStore::new()).refresh_on_load(false);
    /// ```
    pub fn refresh_on_load(mut self, refresh: bool) -> Self {
        self.config.refresh_on_load = refresh;
        self
    }

    /// Whether the cookie is `Secure` (default on). Turn it off only for
    /// plain-HTTP development: browsers do not send `Secure` cookies over
    /// `http://` except to `localhost`.
    ///
    /// ```
    /// # use tower_pipeline_state::{MemoryStore, PipelineStateLayer};
    /// let layer = PipelineStateLayer::new(MemoryStore::new()).cookie_secure(false);
    /// ```
    pub fn cookie_secure(mut self, secure: bool) -> Self {
        self.config.cookie.secure = secure;
        self
    }

    /// Whether the cookie is `HttpOnly`, hidden from scripts (default on).
    ///
    /// ```
    /// # use tower_pipeline_state::{MemoryStore, PipelineStateLayer};
    /// let layer = PipelineStateLayer::new(MemoryStore::new()).cookie_http_only(true);
    /// ```
    pub fn cookie_http_only(mut self, http_only: bool) -> Self {
        self.config.cookie.http_only = http_only;
        self
    }

    /// The cookie's `SameSite` (default `Lax`). `Strict` breaks logins: the
    /// browser drops the cookie on the identity provider's redirect back.
    ///
    /// ```
    /// # use tower_pipeline_state::{MemoryStore, PipelineStateLayer, SameSite};
    /// let layer = PipelineStateLayer::new(MemoryStore::new()).cookie_same_site(SameSite::Lax);
    /// ```
    pub fn cookie_same_site(mut self, same_site: SameSite) -> Self {
        self.config.cookie.same_site = same_site;
        self
    }

    /// The cookie's `Path` (default `/`).
    ///
    /// # Panics
    /// If `path` is empty or holds `;`, `,`, spaces or control characters.
    ///
    /// ```
    /// # use tower_pipeline_state::{MemoryStore, PipelineStateLayer};
    /// let layer = PipelineStateLayer::new(MemoryStore::new()).cookie_path("/auth");
    /// ```
    pub fn cookie_path(mut self, path: impl Into<String>) -> Self {
        let path = path.into();
        assert_cookie_text("cookie path", &path, false);
        self.config.cookie.path = path;
        self
    }

    /// The cookie's `Domain` (default none: the cookie goes back only to the
    /// host that set it).
    ///
    /// # Panics
    /// If `domain` is empty or holds `;`, `,`, spaces or control characters.
    ///
    /// ```
    /// # use tower_pipeline_state::{MemoryStore, PipelineStateLayer};
    /// let layer = PipelineStateLayer::new(MemoryStore::new()).cookie_domain("example.com");
    /// ```
    pub fn cookie_domain(mut self, domain: impl Into<String>) -> Self {
        let domain = domain.into();
        assert_cookie_text("cookie domain", &domain, false);
        self.config.cookie.domain = Some(domain);
        self
    }

    /// Whether a server-error (5xx) response discards the request's changes
    /// (default on): a handler that failed half-way leaves the flow as it
    /// was.
    ///
    /// ```
    /// # use tower_pipeline_state::{MemoryStore, PipelineStateLayer};
    /// let layer = PipelineStateLayer::new(MemoryStore::new()).discard_on_server_error(true);
    /// ```
    pub fn discard_on_server_error(mut self, discard: bool) -> Self {
        self.config.discard_on_server_error = discard;
        self
    }

    /// The status of the answer that replaces the handler's response when a
    /// concurrent request got there first (default `409 Conflict`): it
    /// changed a field this request changed too, it cleared the flow this
    /// request updates, or it changed the flow this request clears.
    ///
    /// # Panics
    /// If `status` is not a client or server error (4xx or 5xx): a lost
    /// write must never look like a success.
    ///
    /// ```
    /// # use http::StatusCode;
    /// # use tower_pipeline_state::{MemoryStore, PipelineStateLayer};
    /// let layer = PipelineStateLayer::new(MemoryStore::new())
    ///     .conflict_status(StatusCode::SERVICE_UNAVAILABLE);
    /// ```
    pub fn conflict_status(mut self, status: StatusCode) -> Self {
        assert!(
            status.is_client_error() || status.is_server_error(),
            "conflict_status must be a 4xx or 5xx status, got {status}"
        );
        self.config.conflict_status = status;
        self
    }

    /// How long one store operation may take before the request is answered
    /// `503` (default 1 s).
    ///
    /// # Panics
    /// If `timeout` is zero: every request with an id would answer `503`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_pipeline_state::{MemoryStore, PipelineStateLayer};
    /// let layer = PipelineStateLayer::new(MemoryStore::new())
    ///     .store_timeout(Duration::from_millis(250));
    /// ```
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        assert!(
            !timeout.is_zero(),
            "store_timeout must be longer than zero, got {timeout:?}"
        );
        self.config.store_timeout = timeout;
        self
    }

    /// How many pipeline flows one browser holds at once (default 5). Each
    /// flow the engine starts has its own cookie (`<cookie name>.<reference>`),
    /// so a person can sign in in two tabs, or link an account while a
    /// setup is open; starting a flow when the browser already holds `count`
    /// expires the oldest flows' cookies (their records expire with their
    /// TTL), which keeps the request's `Cookie` header bounded.
    ///
    /// # Panics
    /// If `count` is not between 1 and 50.
    ///
    /// ```
    /// # use tower_pipeline_state::{MemoryStore, PipelineStateLayer};
    /// let layer = PipelineStateLayer::new(MemoryStore::new()).max_flows(3);
    /// ```
    pub fn max_flows(mut self, count: usize) -> Self {
        assert!(
            (1..=50).contains(&count),
            "max_flows must be between 1 and 50, got {count}"
        );
        self.config.cookie.max_flows = count;
        self
    }

    /// The largest record, in bytes, the layer writes (default 64 KiB).
    /// A request whose state encodes larger is answered `500` and writes
    /// nothing.
    ///
    /// ```
    /// # use tower_pipeline_state::{MemoryStore, PipelineStateLayer};
    /// let layer = PipelineStateLayer::new(MemoryStore::new()).max_record_size(16 * 1024);
    /// ```
    pub fn max_record_size(mut self, bytes: usize) -> Self {
        self.config.max_record_size = bytes;
        self
    }

    /// The longest id cookie value accepted (default 256 bytes). Longer
    /// values are refused before any signature check or Redis command. It
    /// must leave room for the layer's own cookies (32 bytes plain, 76
    /// signed, 80 private): [`Layer::layer`] panics otherwise.
    ///
    /// ```
    /// # use tower_pipeline_state::{MemoryStore, PipelineStateLayer};
    /// let layer = PipelineStateLayer::new(MemoryStore::new()).max_cookie_len(128);
    /// ```
    pub fn max_cookie_len(mut self, bytes: usize) -> Self {
        self.config.cookie.max_len = bytes;
        self
    }

    /// Signs the id cookie with `key` (HMAC-SHA256): a forged or tampered id
    /// is refused without any Redis command. New cookies are signed with
    /// `key`; cookies signed with one of the `previous` keys (keys being
    /// rotated out) are still accepted.
    ///
    /// ```
    /// # use tower_pipeline_state::{Key, MemoryStore, PipelineStateLayer};
    /// # let (new_key, old_key) = (Key::generate(), Key::generate());
    /// let layer = PipelineStateLayer::new(MemoryStore::new()).signed(Key::generate(), []);
    /// let rotating = PipelineStateLayer::new(MemoryStore::new()).signed(new_key, [old_key]);
    /// ```
    pub fn signed(mut self, key: Key, previous: impl IntoIterator<Item = Key>) -> Self {
        self.config.cookie.protection = Protection::Signed(keys(key, previous));
        self
    }

    /// Encrypts and authenticates the id cookie with `key` (AES-256-GCM): the
    /// client cannot read the id, and a forged one is refused without any
    /// Redis command. New cookies are encrypted with `key`; cookies made
    /// with one of the `previous` keys (keys being rotated out) are still
    /// accepted.
    ///
    /// ```
    /// # use tower_pipeline_state::{Key, MemoryStore, PipelineStateLayer};
    /// # let (new_key, old_key) = (Key::generate(), Key::generate());
    /// let layer = PipelineStateLayer::new(MemoryStore::new()).private(Key::generate(), []);
    /// let rotating = PipelineStateLayer::new(MemoryStore::new()).private(new_key, [old_key]);
    /// ```
    pub fn private(mut self, key: Key, previous: impl IntoIterator<Item = Key>) -> Self {
        self.config.cookie.protection = Protection::Private(keys(key, previous));
        self
    }

    /// Renders the layer's own answers (the store unavailable, a write not
    /// confirmed, a conflict, a state too large) as the application's own
    /// pages (default: a short plain-text message). The hook gets the
    /// [`LayerError`](crate::LayerError); keep its
    /// [`status`](crate::LayerError::status), since a `2xx` would say the
    /// changes were saved. It renders the axum extractor's `503` too, and
    /// [`LazyPipelineState::error_response`](crate::LazyPipelineState::error_response)
    /// gives it to hyper and tower code.
    ///
    /// ```
    /// use http::{Response, header::CONTENT_TYPE};
    /// use tower_pipeline_state::{LayerError, MemoryStore, PipelineStateLayer};
    ///
    /// let layer = PipelineStateLayer::new(MemoryStore::new()).on_error(|error: &LayerError| {
    ///     Response::builder()
    ///         .status(error.status())
    ///         .header(CONTENT_TYPE, "text/html; charset=utf-8")
    ///         .body(format!("<h1>Sorry</h1><p>{error}</p>"))
    ///         .unwrap()
    /// });
    /// ```
    pub fn on_error<F, T>(mut self, render: F) -> Self
    where
        F: Fn(&LayerError) -> Response<T> + Send + Sync + 'static,
        T: Into<Bytes>,
    {
        self.config.error_hook = Some(ErrorHook::new(render));
        self
    }

    /// When the store is read (default [`LoadMode::Lazy`]): only when the
    /// request asks for the state, or before every request that carries an
    /// id.
    ///
    /// ```
    /// # use tower_pipeline_state::{LoadMode, MemoryStore, PipelineStateLayer};
    /// let layer = PipelineStateLayer::new(MemoryStore::new()).load_mode(LoadMode::Eager);
    /// ```
    pub fn load_mode(mut self, mode: LoadMode) -> Self {
        self.config.load_mode = mode;
        self
    }
}

/// The longest TTL a flow may have: Redis takes larger ones, but a flow that
/// lives for more than a month is a configuration mistake (a `Duration::MAX`
/// would overflow the expiry).
const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// The current key first: it makes new cookies; every key verifies.
fn keys(current: Key, previous: impl IntoIterator<Item = Key>) -> Vec<Key> {
    std::iter::once(current).chain(previous).collect()
}

impl<S, St> Layer<S> for PipelineStateLayer<St> {
    type Service = PipelineStateService<S, St>;

    /// # Panics
    /// If [`max_cookie_len`](Self::max_cookie_len) is shorter than the id
    /// cookies the layer itself issues (32 bytes plain, 76 signed, 80
    /// private): it would refuse its own cookies. If the
    /// [`durability`](Self::durability) timeout is not shorter than
    /// [`store_timeout`](Self::store_timeout).
    fn layer(&self, inner: S) -> Self::Service {
        let cookie = &self.config.cookie;
        let issued = cookie.issued_len();
        assert!(
            cookie.max_len >= issued,
            "max_cookie_len({}) is shorter than the id cookies this layer issues ({issued} bytes): \
             the layer would refuse its own cookies",
            cookie.max_len
        );
        if let Some((_, wait)) = self.config.durability {
            assert!(
                wait < self.config.store_timeout,
                "the durability timeout ({wait:?}) must be shorter than store_timeout ({:?}), \
                 which bounds the write and its WAIT together",
                self.config.store_timeout
            );
        }
        let shared = Shared {
            store: self.store.clone(),
            config: self.config.clone(),
        };
        PipelineStateService::new(inner, Arc::new(shared))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    #[test]
    fn the_cookie_limit_fits_the_layers_own_cookies_in_every_mode() {
        let plain = PipelineStateLayer::new(MemoryStore::new()).max_cookie_len(32);
        let _ = plain.layer(());
        let signed = PipelineStateLayer::new(MemoryStore::new())
            .signed(Key::generate(), [])
            .max_cookie_len(76);
        let _ = signed.layer(());
        let private = PipelineStateLayer::new(MemoryStore::new())
            .private(Key::generate(), [])
            .max_cookie_len(80);
        let _ = private.layer(());
    }

    #[test]
    #[should_panic(
        expected = "ttl must be between 1 s and 30 days, got 18446744073709551615.999999999s"
    )]
    fn an_endless_ttl_is_refused() {
        let _ = PipelineStateLayer::new(MemoryStore::new()).ttl(Duration::MAX);
    }

    #[test]
    #[should_panic(expected = "ttl must be between 1 s and 30 days, got 999ms")]
    fn a_ttl_under_a_second_is_refused() {
        let _ = PipelineStateLayer::new(MemoryStore::new()).ttl(Duration::from_millis(999));
    }

    #[test]
    fn the_ttl_bounds_themselves_are_accepted() {
        let _ = PipelineStateLayer::new(MemoryStore::new())
            .ttl(Duration::from_secs(1))
            .ttl(MAX_TTL);
    }

    #[test]
    #[should_panic(expected = "store_timeout must be longer than zero, got 0ns")]
    fn a_zero_timeout_is_refused() {
        let _ = PipelineStateLayer::new(MemoryStore::new()).store_timeout(Duration::ZERO);
    }

    #[test]
    #[should_panic(expected = "conflict_status must be a 4xx or 5xx status, got 200 OK")]
    fn a_successful_conflict_status_is_refused() {
        let _ = PipelineStateLayer::new(MemoryStore::new()).conflict_status(StatusCode::OK);
    }

    #[test]
    #[should_panic(expected = "would refuse its own cookies")]
    fn a_cookie_limit_below_the_layers_own_cookies_is_refused() {
        let layer = PipelineStateLayer::new(MemoryStore::new())
            .signed(Key::generate(), [])
            .max_cookie_len(64);
        let _ = layer.layer(());
    }
}
