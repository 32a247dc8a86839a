//! [`Error`] and [`ErrorKind`]: every way a sign-in with a provider fails,
//! with a stable name for logs and metrics, a sentence that is safe to show,
//! and the provider's own detail kept for the log.

use std::fmt;

use tower_pipeline_state::pipeline::FlowError;

/// What kind of failure an [`Error`] is. [`as_str`](Self::as_str) is a
/// short, stable name (logged in the `kind` field); the `Display` text is a
/// sentence that names nothing the provider sent, safe to show a person.
///
/// A failed step ends its flow with the [`Error`] itself
/// ([`FlowError::failed_with`], whose text is the kind's sentence);
/// [`ErrorKind::of`] reads the kind back, typed, in the pipeline's error
/// handler.
///
/// ```
/// use tower_pipeline_oidc::{Error, ErrorKind};
/// use tower_pipeline_state::pipeline::FlowError;
///
/// let error = FlowError::failed_with(Error::from(ErrorKind::AccessDenied));
/// assert_eq!(ErrorKind::of(&error), Some(ErrorKind::AccessDenied));
/// assert_eq!(ErrorKind::AccessDenied.as_str(), "access_denied");
/// assert_eq!(ErrorKind::of(&FlowError::Expired), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The provider answered `error=access_denied`: the person declined or
    /// cancelled at the provider.
    AccessDenied,
    /// The provider answered `login_required`, `consent_required`,
    /// `interaction_required` or `account_selection_required` (the answers
    /// to `prompt=none`): the person has to act at the provider.
    InteractionRequired,
    /// The provider answered another `error=` (`server_error`,
    /// `temporarily_unavailable`, `invalid_request`...); its code and
    /// description are in the log.
    ProviderError,
    /// The answer's `iss` parameter names another issuer than the provider
    /// this sign-in went to, or is missing where the provider promises it
    /// (RFC 9207): a mix-up between two providers.
    MixUp,
    /// The answer carries neither a code nor an error, or does not decode.
    BadCallback,
    /// The provider could not be reached in time, or broke off.
    Unreachable,
    /// The provider answered with something that is not what the protocol
    /// asks for (not JSON, too large, a status it should not use).
    BadResponse,
    /// The provider's metadata or the client's settings do not fit (another
    /// issuer in discovery, no PKCE S256, no `form_post`, an endpoint over
    /// plain HTTP): a configuration problem, not the person's.
    Misconfigured,
    /// The token endpoint refused the code (`invalid_grant` and friends):
    /// used already, expired, or not this client's.
    CodeRefused,
    /// The token answer carries no ID token.
    IdTokenMissing,
    /// The ID token's signature does not verify, or uses an algorithm the
    /// provider does not list (or a symmetric one, or `none`).
    IdTokenSignature,
    /// The ID token names a key the provider's JWKS does not hold, even
    /// after fetching it again.
    IdTokenUnknownKey,
    /// The ID token's `iss` is not the provider's issuer.
    IdTokenIssuer,
    /// The ID token is not for this client: `aud` does not list the client
    /// id, lists others, or `azp` names another client.
    IdTokenAudience,
    /// The ID token expired.
    IdTokenExpired,
    /// The ID token's `iat` is further from now than the allowed clock
    /// skew.
    IdTokenIssuedAt,
    /// The ID token's `nonce` is not the one this sign-in sent.
    IdTokenNonce,
    /// The ID token's `at_hash` does not match the access token that came
    /// with it.
    AccessTokenHash,
    /// The ID token does not decode or misses a required claim.
    IdTokenInvalid,
    /// The user info answer failed its checks: another subject than the ID
    /// token's, or no subject where the mapping needs one.
    UserInfo,
}

impl ErrorKind {
    #[cfg(test)]
    const ALL: [Self; 20] = [
        Self::AccessDenied,
        Self::InteractionRequired,
        Self::ProviderError,
        Self::MixUp,
        Self::BadCallback,
        Self::Unreachable,
        Self::BadResponse,
        Self::Misconfigured,
        Self::CodeRefused,
        Self::IdTokenMissing,
        Self::IdTokenSignature,
        Self::IdTokenUnknownKey,
        Self::IdTokenIssuer,
        Self::IdTokenAudience,
        Self::IdTokenExpired,
        Self::IdTokenIssuedAt,
        Self::IdTokenNonce,
        Self::AccessTokenHash,
        Self::IdTokenInvalid,
        Self::UserInfo,
    ];

    /// The short, stable name: `access_denied`, `interaction_required`,
    /// `provider_error`, `mix_up`, `bad_callback`, `unreachable`,
    /// `bad_response`, `misconfigured`, `code_refused`, `id_token_missing`,
    /// `id_token_signature`, `id_token_unknown_key`, `id_token_issuer`,
    /// `id_token_audience`, `id_token_expired`, `id_token_issued_at`,
    /// `id_token_nonce`, `at_hash`, `id_token_invalid`, `user_info`.
    ///
    /// ```
    /// # use tower_pipeline_oidc::ErrorKind;
    /// assert_eq!(ErrorKind::MixUp.as_str(), "mix_up");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccessDenied => "access_denied",
            Self::InteractionRequired => "interaction_required",
            Self::ProviderError => "provider_error",
            Self::MixUp => "mix_up",
            Self::BadCallback => "bad_callback",
            Self::Unreachable => "unreachable",
            Self::BadResponse => "bad_response",
            Self::Misconfigured => "misconfigured",
            Self::CodeRefused => "code_refused",
            Self::IdTokenMissing => "id_token_missing",
            Self::IdTokenSignature => "id_token_signature",
            Self::IdTokenUnknownKey => "id_token_unknown_key",
            Self::IdTokenIssuer => "id_token_issuer",
            Self::IdTokenAudience => "id_token_audience",
            Self::IdTokenExpired => "id_token_expired",
            Self::IdTokenIssuedAt => "id_token_issued_at",
            Self::IdTokenNonce => "id_token_nonce",
            Self::AccessTokenHash => "at_hash",
            Self::IdTokenInvalid => "id_token_invalid",
            Self::UserInfo => "user_info",
        }
    }

    fn sentence(self) -> &'static str {
        match self {
            Self::AccessDenied => "The sign-in was declined at the provider",
            Self::InteractionRequired => "The provider needs the person to act there first",
            Self::ProviderError => "The provider could not complete the sign-in",
            Self::MixUp => "The answer came from another provider than the one asked",
            Self::BadCallback => "The provider's answer is incomplete",
            Self::Unreachable => "The provider could not be reached",
            Self::BadResponse => "The provider answered something unusable",
            Self::Misconfigured => "The provider's configuration does not fit this application",
            Self::CodeRefused => "The provider refused the authorization code",
            Self::IdTokenMissing => "The provider sent no ID token",
            Self::IdTokenSignature => "The ID token's signature does not verify",
            Self::IdTokenUnknownKey => {
                "The ID token is signed with a key the provider does not publish"
            }
            Self::IdTokenIssuer => "The ID token comes from another issuer",
            Self::IdTokenAudience => "The ID token is not for this application",
            Self::IdTokenExpired => "The ID token expired",
            Self::IdTokenIssuedAt => "The ID token's issue time is off",
            Self::IdTokenNonce => "The ID token is not for this sign-in",
            Self::AccessTokenHash => "The ID token does not match its access token",
            Self::IdTokenInvalid => "The ID token is malformed",
            Self::UserInfo => "The provider's user information does not check out",
        }
    }

    /// The kind of a [`FlowError`] that a step of this crate ended its flow
    /// with (the [`Error`] it carries, read back with
    /// [`FlowError::cause`]); `None` for any other error, a message that
    /// merely reads like one of this crate's sentences included.
    ///
    /// ```
    /// use tower_pipeline_oidc::{Error, ErrorKind};
    /// use tower_pipeline_state::pipeline::FlowError;
    ///
    /// fn page(error: &FlowError) -> &'static str {
    ///     match ErrorKind::of(error) {
    ///         Some(ErrorKind::AccessDenied) => "You cancelled the sign-in.",
    ///         Some(_) => "The provider could not sign you in.",
    ///         None => "Something else went wrong.",
    ///     }
    /// }
    /// let denied = FlowError::failed_with(Error::from(ErrorKind::AccessDenied));
    /// assert_eq!(page(&denied), "You cancelled the sign-in.");
    /// assert_eq!(page(&FlowError::failed(ErrorKind::AccessDenied)), "Something else went wrong.");
    /// ```
    pub fn of(error: &FlowError) -> Option<Self> {
        error.cause::<Error>().map(Error::kind)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}).", self.sentence(), self.as_str())
    }
}

/// A failed sign-in: its [`kind`](Self::kind), and the detail (what the
/// provider said, which check failed) for the log. The `Display` text is
/// the kind's sentence only, so an error shown to a person carries nothing
/// the provider sent; the detail never holds a token.
///
/// ```
/// # async fn run(provider: tower_pipeline_oidc::Provider) {
/// if let Err(error) = provider.discover().await {
///     // At start-up: say which provider is misconfigured, and why.
///     eprintln!("{}: {error} {}", error.kind().as_str(), error.detail());
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    detail: String,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }

    /// What kind of failure this is.
    ///
    /// ```
    /// # use tower_pipeline_oidc::{Error, ErrorKind};
    /// fn is_the_persons_choice(error: &Error) -> bool {
    ///     error.kind() == ErrorKind::AccessDenied
    /// }
    /// ```
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// What went wrong in detail, for the log only: the provider's error
    /// code and description, the check that failed, the transport's error.
    ///
    /// ```
    /// # use tower_pipeline_oidc::Error;
    /// fn log(error: &Error) {
    ///     eprintln!("sign-in failed: {} ({})", error.kind().as_str(), error.detail());
    /// }
    /// ```
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

/// An error of `kind` with no detail: for the tests of an application's
/// own error handler.
///
/// ```
/// use tower_pipeline_oidc::{Error, ErrorKind};
///
/// let error = Error::from(ErrorKind::CodeRefused);
/// assert_eq!(error.kind(), ErrorKind::CodeRefused);
/// assert_eq!(error.detail(), "");
/// ```
impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Self {
        Self::new(kind, "")
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.kind.fmt(f)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_back_from_its_flow_error_and_no_two_share_a_name() {
        let mut names = std::collections::HashSet::new();
        let mut sentences = std::collections::HashSet::new();
        for kind in ErrorKind::ALL {
            assert!(names.insert(kind.as_str()), "{kind:?}");
            assert!(sentences.insert(kind.to_string()), "{kind:?}");
            let error = FlowError::failed_with(Error::new(kind, "the provider's detail"));
            assert_eq!(ErrorKind::of(&error), Some(kind));
            assert_eq!(error.kind(), "failed");
            assert_eq!(
                error.to_string(),
                kind.to_string(),
                "the sentence, no detail"
            );
            // A message that reads like the sentence is not the error.
            assert_eq!(ErrorKind::of(&FlowError::failed(kind)), None);
        }
        assert_eq!(ErrorKind::of(&FlowError::failed("something else")), None);
        assert_eq!(
            ErrorKind::of(&FlowError::failed_with(std::fmt::Error)),
            None
        );
    }
}
