//! [`HttpClient`]: the one way this crate talks to a provider, bounded in
//! time and size, given to `openidconnect` and `oauth2` through their own
//! HTTP abstraction (`AsyncHttpClient`).

use std::{fmt, future::Future, pin::Pin, time::Duration};

use oauth2::{AsyncHttpClient, HttpRequest, HttpResponse};

/// The default [`Limits::timeout`]: a provider's endpoints answer in well
/// under a second; ten seconds covers a slow one without holding the
/// person's request for long.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default [`Limits::max_response_bytes`]: discovery documents are a
/// few kilobytes, key sets and token answers less, user info less still.
const DEFAULT_MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// How long a provider may take and how much it may send.
///
/// ```
/// use std::time::Duration;
/// use tower_pipeline_oidc::Limits;
///
/// let limits = Limits::default()
///     .timeout(Duration::from_secs(5))
///     .max_response_bytes(64 * 1024);
/// assert_eq!(limits.get_timeout(), Duration::from_secs(5));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    timeout: Duration,
    max_response_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

impl Limits {
    /// The longest one request to the provider may take, from connecting to
    /// the last byte of the answer (default 10 s). Past it the sign-in fails
    /// with [`ErrorKind::Unreachable`](crate::ErrorKind::Unreachable).
    ///
    /// # Panics
    /// If `timeout` is zero.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_pipeline_oidc::Limits;
    /// let limits = Limits::default().timeout(Duration::from_secs(3));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        assert!(
            !timeout.is_zero(),
            "the provider timeout must be above zero"
        );
        self.timeout = timeout;
        self
    }

    /// The largest answer read from the provider (default 256 KiB). A larger
    /// one is refused without reading past the limit
    /// ([`ErrorKind::BadResponse`](crate::ErrorKind::BadResponse)).
    ///
    /// # Panics
    /// If `bytes` is 0.
    ///
    /// ```
    /// # use tower_pipeline_oidc::Limits;
    /// let limits = Limits::default().max_response_bytes(1024 * 1024);
    /// assert_eq!(limits.get_max_response_bytes(), 1024 * 1024);
    /// ```
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        assert!(bytes > 0, "max_response_bytes must be above zero");
        self.max_response_bytes = bytes;
        self
    }

    /// The timeout in force.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_pipeline_oidc::Limits;
    /// assert_eq!(Limits::default().get_timeout(), Duration::from_secs(10));
    /// ```
    pub fn get_timeout(&self) -> Duration {
        self.timeout
    }

    /// The response size limit in force.
    ///
    /// ```
    /// # use tower_pipeline_oidc::Limits;
    /// assert_eq!(Limits::default().get_max_response_bytes(), 256 * 1024);
    /// ```
    pub fn get_max_response_bytes(&self) -> usize {
        self.max_response_bytes
    }
}

/// Why a request to the provider failed, below the protocol.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    /// Not answered within the time limit.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The answer is larger than the size limit.
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    /// The request could not be made or the connection broke.
    #[error("{0}")]
    Transport(String),
}

/// The HTTP client under `openidconnect` and `oauth2`: reqwest over rustls
/// (ring), no redirects followed (a provider's endpoints answer directly;
/// following one would let an answer send the back channel elsewhere), a
/// time limit on every request and a size limit on every answer.
#[derive(Clone)]
pub(crate) struct HttpClient {
    client: reqwest::Client,
    limits: Limits,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    pub(crate) fn new(limits: Limits) -> Self {
        let client = reqwest::Client::builder()
            .timeout(limits.timeout)
            .connect_timeout(limits.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                env!("CARGO_PKG_NAME"),
                "/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .expect("a reqwest client with rustls builds");
        Self { client, limits }
    }

    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let request = reqwest::Request::try_from(request)
            .map_err(|error| HttpError::Transport(error.to_string()))?;
        let mut response = self
            .client
            .execute(request)
            .await
            .map_err(|error| self.transport(error))?;
        let limit = self.limits.max_response_bytes;
        if response
            .content_length()
            .is_some_and(|length| length > limit as u64)
        {
            return Err(HttpError::TooLarge(limit));
        }
        let mut builder = http::Response::builder().status(response.status());
        for (name, value) in response.headers() {
            builder = builder.header(name, value);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| self.transport(error))?
        {
            if body.len() + chunk.len() > limit {
                return Err(HttpError::TooLarge(limit));
            }
            body.extend_from_slice(&chunk);
        }
        builder
            .body(body)
            .map_err(|error| HttpError::Transport(error.to_string()))
    }

    fn transport(&self, error: reqwest::Error) -> HttpError {
        if error.is_timeout() {
            HttpError::Timeout(self.limits.timeout)
        } else {
            // Without the URL: it is the provider's configured endpoint,
            // and the log line names the provider already.
            HttpError::Transport(chain(&error.without_url()))
        }
    }
}

/// The kind of a failed request to the provider: an answer over the size
/// limit is a bad answer, anything else an unreachable provider.
pub(crate) fn failure_kind(error: &(dyn std::error::Error + 'static)) -> crate::ErrorKind {
    match error.downcast_ref::<HttpError>() {
        Some(HttpError::TooLarge(_)) => crate::ErrorKind::BadResponse,
        _ => crate::ErrorKind::Unreachable,
    }
}

/// An error and its sources, on one line: reqwest's own message is only
/// the outermost ("error sending request").
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl<'c> AsyncHttpClient<'c> for HttpClient {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}
