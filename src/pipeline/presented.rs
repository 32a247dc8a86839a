//! What a request presents: the reference that names the flow it continues,
//! and the nonce a callback brings back.
//!
//! A flow's reference names its own cookie. It goes out
//! in two places: in the application's links and forms as a query parameter
//! (`?flow=<reference>`, see [`PipelineBuilder::reference_param`]), and to an
//! identity provider inside the `state` value, as `<reference>.<nonce>`, which the
//! provider sends back on its callback (in the query, or in a form POST body
//! for OpenID Connect `form_post` and SAML's POST binding). A request that
//! names no flow continues the browser's newest one.
//!
//! [`PipelineBuilder::reference_param`]: super::PipelineBuilder::reference_param

use bytes::Bytes;
use http::{HeaderMap, Method, header::CONTENT_TYPE, request::Parts};
use http_body::Body;
use http_body_util::{BodyExt, Limited};

use super::FlowError;
use crate::cookies::Reference;

/// What a request carries to name its flow.
#[derive(Debug, Default)]
pub(crate) struct Presented {
    /// The flow's reference; `None`: the request names no flow.
    pub(crate) reference: Option<Reference>,
    /// The step the page the request comes from was made for, when its
    /// link says (`?flow=<reference>.<step>`, as [`Flow::link`] writes
    /// it).
    ///
    /// [`Flow::link`]: super::Flow::link
    pub(crate) step: Option<u64>,
    /// The nonce the request brings back (the `state` parameter), to check.
    pub(crate) nonce: Option<String>,
}

/// Where a request's reference and nonce are looked for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Params<'p> {
    /// The parameter that brings the nonce back (`state`).
    pub(crate) nonce: &'p str,
    /// The parameter of the application's links (`flow`).
    pub(crate) reference: &'p str,
    /// The largest form read for the nonce; `None`: the pipeline takes no
    /// callback, so no form is read at all.
    pub(crate) form_limit: Option<usize>,
}

/// Finds the reference in the query, or, for a urlencoded form POST whose
/// query has no `state` to a pipeline that takes callbacks, in the form: the
/// body is read under the pipeline's limit (and, with axum, the
/// application's `DefaultBodyLimit`), and handed back whole for the step.
pub(crate) async fn find<B>(
    parts: &Parts,
    body: B,
    params: Params<'_>,
) -> Result<(Presented, B), FlowError>
where
    B: Body + From<Bytes> + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let query = parts.uri.query().unwrap_or_default().as_bytes();
    let mut state = only(query, params.nonce)?;
    let named = only(query, params.reference)?;
    let mut body = body;
    if let Some(limit) = params
        .form_limit
        .filter(|_| state.is_none() && is_form_post(parts))
    {
        let bytes = Limited::new(framework_limited(parts, body), limit)
            .collect()
            .await
            .map_err(|error| {
                FlowError::failed(format_args!(
                    "the form could not be read (over the limit of {limit} bytes or the application's, or broken off): {error}"
                ))
            })?
            .to_bytes();
        state = only(&bytes, params.nonce)?;
        body = B::from(bytes);
    }
    let (named, step) = match named {
        Some(text) => {
            let (reference, step) = linked(&text).ok_or(FlowError::NoFlow)?;
            (Some(reference), step)
        }
        None => (None, None),
    };
    let Some(state) = state else {
        return Ok((
            Presented {
                reference: named,
                step,
                nonce: None,
            },
            body,
        ));
    };
    // `<reference>.<nonce>`; a bare nonce (no reference) names no flow.
    let (reference, nonce) = match state.split_once('.') {
        Some((reference, nonce)) => (
            Some(Reference::parse(reference.as_bytes()).ok_or(FlowError::NonceMismatch)?),
            nonce.to_owned(),
        ),
        None => (None, state),
    };
    if named.is_some() && reference.is_some() && named != reference {
        // Two references that disagree: never guess which one counts.
        return Err(FlowError::NonceMismatch);
    }
    Ok((
        Presented {
            reference: reference.or(named),
            step,
            nonce: Some(nonce),
        },
        body,
    ))
}

/// The reference and the step marker of a link's value: `<reference>`, or
/// `<reference>.<step>` as [`Flow::link`](super::Flow::link) writes it.
fn linked(text: &str) -> Option<(Reference, Option<u64>)> {
    let (reference, step) = match text.split_once('.') {
        Some((reference, step)) => (reference, Some(step.parse().ok()?)),
        None => (text, None),
    };
    Some((Reference::parse(reference.as_bytes())?, step))
}

/// The one value of parameter `name` in urlencoded `text`; two values are
/// refused rather than guessed between.
fn only(text: &[u8], name: &str) -> Result<Option<String>, FlowError> {
    let mut values = form_urlencoded::parse(text).filter(|(key, _)| key == name);
    let Some((_, first)) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(FlowError::NonceMismatch);
    }
    Ok(Some(first.into_owned()))
}

fn is_form_post(parts: &Parts) -> bool {
    parts.method == Method::POST
        && parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|kind| {
                kind.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
}

/// `body` under the application's own body limit, when it has one the
/// engine can apply: with axum, the `DefaultBodyLimit` in the request's
/// extensions (axum's 2 MB default without one). Other bodies as they are.
fn framework_limited<B: 'static>(parts: &Parts, body: B) -> B {
    #[cfg(feature = "axum")]
    {
        use std::any::Any;
        // The body is axum's exactly when `B` is `axum::body::Body`; the
        // limit's extension is axum's private type, which only axum reads.
        let mut slot = Some(body);
        if let Some(axum_body) =
            (&mut slot as &mut dyn Any).downcast_mut::<Option<axum::body::Body>>()
            && let Some(inner) = axum_body.take()
        {
            let mut request = http::Request::new(inner);
            *request.extensions_mut() = parts.extensions.clone();
            *axum_body = Some(axum::RequestExt::with_limited_body(request).into_body());
        }
        slot.expect("the body is put back")
    }
    #[cfg(not(feature = "axum"))]
    {
        let _ = parts;
        body
    }
}

/// Whether the request is a POST (or another unsafe method) that the
/// browser says comes from another site (`Sec-Fetch-Site: cross-site`,
/// sent by every current browser).
pub(crate) fn is_cross_site_write(method: &Method, headers: &HeaderMap) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) && is_cross_site(headers)
}

/// Whether the browser says the request comes from another site
/// (`Sec-Fetch-Site: cross-site`), whatever its method.
pub(crate) fn is_cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"cross-site"))
}

#[cfg(test)]
mod tests {
    use http::Request;
    use http_body_util::Full;

    use super::*;

    const LIMIT: usize = 1024;

    async fn found(method: Method, uri: &str, form: &str) -> Result<Presented, FlowError> {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(form.to_owned())))
            .unwrap();
        let (parts, body) = request.into_parts();
        let params = Params {
            nonce: "state",
            reference: "flow",
            form_limit: Some(LIMIT),
        };
        let (presented, body) = find(&parts, body, params).await?;
        let kept = body.collect().await.unwrap().to_bytes();
        assert_eq!(kept, form.as_bytes(), "the body is handed back whole");
        Ok(presented)
    }

    #[tokio::test]
    async fn the_state_names_the_flow_in_the_query_or_a_form_post() {
        let reference = Reference::generate();
        let state = format!("state={reference}.n0nce");
        for (method, uri, form) in [
            (Method::GET, format!("/cb?code=1&{state}"), String::new()),
            (Method::POST, "/cb".to_owned(), format!("code=1&{state}")),
            (Method::POST, format!("/cb?flow={reference}"), state.clone()),
        ] {
            let presented = found(method, &uri, &form).await.unwrap();
            assert_eq!(
                presented.reference.as_ref(),
                Some(&reference),
                "{uri} {form}"
            );
            assert_eq!(presented.nonce.as_deref(), Some("n0nce"));
        }
    }

    #[tokio::test]
    async fn links_name_the_flow_and_bare_nonces_name_none() {
        let reference = Reference::generate();
        let linked = found(Method::GET, &format!("/w?flow={reference}"), "")
            .await
            .unwrap();
        assert_eq!((linked.reference, linked.nonce), (Some(reference), None));
        let bare = found(Method::GET, "/cb?state=n0nce", "").await.unwrap();
        assert_eq!(
            (bare.reference, bare.nonce.as_deref()),
            (None, Some("n0nce"))
        );
        let none = found(Method::POST, "/w", "value=1").await.unwrap();
        assert_eq!((none.reference, none.nonce), (None, None));
    }

    #[tokio::test]
    async fn ambiguous_or_malformed_references_are_refused() {
        let (one, two) = (Reference::generate(), Reference::generate());
        for (uri, form, kind) in [
            ("/cb?state=a&state=b".to_owned(), "", "nonce_mismatch"),
            ("/cb?state=bad.n0nce".to_owned(), "", "nonce_mismatch"),
            (
                format!("/cb?flow={one}&state={two}.n"),
                "",
                "nonce_mismatch",
            ),
            ("/w?flow=short".to_owned(), "", "no_flow"),
            (format!("/w?flow={one}&flow={two}"), "", "nonce_mismatch"),
        ] {
            let error = found(Method::GET, &uri, form).await.unwrap_err();
            assert_eq!(error.kind(), kind, "{uri}");
        }
    }

    #[tokio::test]
    async fn a_form_over_the_limit_is_refused() {
        let big = "a".repeat(LIMIT + 1);
        let error = found(Method::POST, "/cb", &big).await.unwrap_err();
        assert_eq!(error.kind(), "failed");
    }

    #[test]
    fn only_unsafe_cross_site_requests_are_cross_site_writes() {
        let write = |method: Method, site: Option<&str>| {
            let mut headers = HeaderMap::new();
            if let Some(site) = site {
                headers.insert("sec-fetch-site", site.parse().unwrap());
            }
            is_cross_site_write(&method, &headers)
        };
        assert!(write(Method::POST, Some("cross-site")));
        assert!(!write(Method::GET, Some("cross-site")));
        assert!(!write(Method::POST, Some("same-site")));
        assert!(!write(Method::POST, None));
    }
}
