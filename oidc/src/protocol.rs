//! What both protocols share: what the authorization step keeps for the
//! callback, the callback's parameters and their first checks, the token
//! endpoint's errors, and the rule for endpoint URLs.

use serde::{Deserialize, Serialize};
use url::Url;

use crate::{Error, ErrorKind};

/// The authorization URL and what the callback will need.
#[derive(Debug)]
pub(crate) struct Begun {
    pub(crate) url: Url,
    pub(crate) pending: Pending,
}

/// The secrets of one authorization request, kept in the flow's state (on
/// the server) between the two steps and removed by the callback: the PKCE
/// verifier and the OIDC nonce.
#[derive(Clone, Default, Deserialize, Serialize)]
pub(crate) struct Pending {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) pkce_verifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) nonce: Option<String>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").finish_non_exhaustive()
    }
}

/// The authorization response's parameters (RFC 6749 section 4.1.2, RFC
/// 9207), from the query of a redirect or the form of a `form_post`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Callback {
    pub(crate) code: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) error_description: Option<String>,
    pub(crate) iss: Option<String>,
}

impl Callback {
    /// Reads the parameters from urlencoded text; a parameter given twice
    /// is refused (a callback is made by the provider, which never does).
    pub(crate) fn parse(text: &str) -> Result<Self, Error> {
        let mut callback = Self::default();
        for (name, value) in form_urlencoded::parse(text.as_bytes()) {
            let slot = match &*name {
                "code" => &mut callback.code,
                "error" => &mut callback.error,
                "error_description" => &mut callback.error_description,
                "iss" => &mut callback.iss,
                _ => continue,
            };
            if slot.replace(value.into_owned()).is_some() {
                return Err(Error::new(
                    ErrorKind::BadCallback,
                    format!("the answer carries `{name}` twice"),
                ));
            }
        }
        Ok(callback)
    }

    /// The mix-up defence (RFC 9207, RFC 9700 section 4.4): an `iss` must
    /// be the issuer this sign-in went to, and must be there when the
    /// provider promised it. Checked before anything else the answer says,
    /// its errors included.
    pub(crate) fn check_issuer(&self, issuer: &str, promised: bool) -> Result<(), Error> {
        match &self.iss {
            Some(iss) if iss != issuer => Err(Error::new(
                ErrorKind::MixUp,
                format!("the answer's iss {iss:?} is not {issuer:?}"),
            )),
            None if promised => Err(Error::new(
                ErrorKind::MixUp,
                format!("{issuer:?} promises an iss parameter, and the answer has none"),
            )),
            _ => Ok(()),
        }
    }

    /// The provider's `error=`, as a typed failure; the code and
    /// description go to the log only.
    pub(crate) fn provider_error(&self) -> Option<Error> {
        let error = self.error.as_deref()?;
        let kind = match error {
            "access_denied" => ErrorKind::AccessDenied,
            "login_required"
            | "consent_required"
            | "interaction_required"
            | "account_selection_required" => ErrorKind::InteractionRequired,
            _ => ErrorKind::ProviderError,
        };
        // Bounded: the provider's text goes to a log line.
        let description: String = self
            .error_description
            .as_deref()
            .unwrap_or("")
            .chars()
            .take(300)
            .collect();
        let code: String = error.chars().take(64).collect();
        Some(Error::new(
            kind,
            format!("the provider answered error={code:?}: {description:?}"),
        ))
    }
}

/// An endpoint the back channel talks to (tokens go there, or keys come
/// from there): HTTPS, or plain HTTP on a loopback host only (development
/// and tests).
pub(crate) fn check_endpoint(what: &str, url: &Url) -> Result<(), Error> {
    let loopback = match url.host() {
        Some(url::Host::Domain(domain)) => domain == "localhost",
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => address.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(Error::new(
            ErrorKind::Misconfigured,
            format!("the {what} {url} is not HTTPS (plain HTTP only on loopback)"),
        )),
    }
}

/// The token endpoint's failure, with no token or body in the detail.
pub(crate) fn token_error<RE, T>(error: oauth2::RequestTokenError<RE, T>) -> Error
where
    RE: std::error::Error + 'static,
    T: oauth2::ErrorResponse + 'static,
{
    use oauth2::RequestTokenError;
    match error {
        RequestTokenError::ServerResponse(response) => {
            // The standard fields only (`error`, `error_description`).
            let detail = serde_json::to_value(&response)
                .ok()
                .map(|value| {
                    let field = |name: &str| {
                        value
                            .get(name)
                            .and_then(|v| v.as_str())
                            .unwrap_or("")
                            .chars()
                            .take(300)
                            .collect::<String>()
                    };
                    format!(
                        "the token endpoint answered error={:?}: {:?}",
                        field("error"),
                        field("error_description")
                    )
                })
                .unwrap_or_else(|| "the token endpoint refused the code".to_owned());
            Error::new(ErrorKind::CodeRefused, detail)
        }
        RequestTokenError::Request(error) => Error::new(
            crate::http::failure_kind(&error),
            format!("token endpoint: {}", crate::http::chain(&error)),
        ),
        // The body may hold tokens: only where the decoding stopped.
        RequestTokenError::Parse(error, _) => Error::new(
            ErrorKind::BadResponse,
            format!("the token answer does not decode at {}", error.path()),
        ),
        RequestTokenError::Other(detail) => {
            Error::new(ErrorKind::BadResponse, format!("token endpoint: {detail}"))
        }
    }
}
