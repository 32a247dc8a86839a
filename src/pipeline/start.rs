//! Starting a flow: the checks a start must pass (a pipeline's own kind, a
//! request from this site that the browser navigates to, a `return_to`
//! that is a path of this site), then a new flow with its own cookie,
//! entered at its first step. An expired flow that starts again by itself
//! goes through the same door.

use http::{HeaderMap, Request, request::Parts};

use super::{
    FlowError, Pipeline,
    context::{Engine, entering},
    fields::{Run, Stored},
    funnel, presented,
    running::Running,
};
use crate::{
    LazyPipelineState,
    backend::{Lifetime, unix_now},
    cookies::{MAX_RETURN_TO, Reference, Ticket},
};

impl<B, R> Pipeline<B, R>
where
    B: Default + Send + 'static,
    R: Send + 'static,
{
    /// Starts a flow of `kind` and enters its first step with `request`.
    ///
    /// The step is entered as [`Flow::next`](super::Flow::next) enters one:
    /// it gets `request` as a `GET` with an empty body (same URI, headers
    /// and extensions), so it renders, whatever the start route took (a
    /// button's `POST`, say); read what the start form sent before calling
    /// `start`. A request the browser marks as coming from another site
    /// (`Sec-Fetch-Site: cross-site`) is refused with
    /// [`FlowError::CrossSite`] unless the pipeline allows it
    /// ([`cross_site_start`](super::PipelineBuilder::cross_site_start)), and
    /// one it marks as not a top-level navigation (a `fetch`, a prefetch)
    /// with [`FlowError::NotNavigation`] unless the pipeline allows it
    /// ([`background_start`](super::PipelineBuilder::background_start));
    /// neither costs a store command.
    ///
    /// The flow is new, with a cookie of its own: the browser's other flows
    /// (another tab's sign-in, an account link in progress) go on untouched,
    /// except that past the layer's
    /// [`max_flows`](crate::PipelineStateLayer::max_flows) the oldest flows'
    /// cookies are dropped. It holds the starting user's id (see
    /// [`PipelineBuilder::user`](super::PipelineBuilder::user)), step index
    /// 0, the pipeline's signature, the flow kind, a fresh
    /// [`Nonce`](super::Nonce) and empty data, under a fresh id (one `SET
    /// NX` when the request ends). If the first step fails, nothing is kept.
    pub async fn start(&self, request: Request<B>, kind: &str) -> R {
        self.begin(request, kind, None).await
    }

    /// [`start`](Self::start), with where the application will send the
    /// person once the flow is done: a path of this site (it must start
    /// with one `/`, hold no `\`, control characters or spaces, and be at
    /// most 512 bytes; else [`FlowError::ReturnTo`]). The flow keeps it,
    /// and so does its cookie: steps and the finish hook read it
    /// ([`Flow::return_to`](super::Flow::return_to),
    /// [`Finished::return_to`](super::Finished::return_to)), a finished
    /// flow's replays are sent there unless the hook named another landing,
    /// and a flow that expires starts again towards it
    /// ([`restart_on_expiry`](super::PipelineBuilder::restart_on_expiry)) or
    /// hands it to the error handler ([`Failure::return_to`](super::Failure::return_to)).
    ///
    /// ```
    /// # async fn route(
    /// #     sso: tower_pipeline_state::pipeline::Pipeline<axum::body::Body, axum::response::Response>,
    /// #     request: axum::extract::Request,
    /// # ) -> axum::response::Response {
    /// sso.start_to(request, "login", "/billing?plan=team").await
    /// # }
    /// ```
    pub async fn start_to(&self, request: Request<B>, kind: &str, return_to: &str) -> R {
        if let Err(reason) = check_return_to(return_to) {
            return self.fail(
                None,
                FlowError::ReturnTo(reason),
                Some(kind.to_owned()),
                None,
            );
        }
        self.begin(request, kind, Some(return_to.to_owned())).await
    }

    /// Starts a flow of `kind` towards `return_to`, after the checks a start
    /// must pass.
    pub(super) async fn begin(
        &self,
        request: Request<B>,
        kind: &str,
        return_to: Option<String>,
    ) -> R {
        let Some(lazy) = request.extensions().get::<LazyPipelineState>().cloned() else {
            return self.fail(None, FlowError::MissingLayer, None, None);
        };
        if !self.inner.kinds.iter().any(|known| known == kind) {
            return self.fail(
                None,
                FlowError::UnknownFlowKind(kind.to_owned()),
                None,
                None,
            );
        }
        if let Err(error) = self.may_start(request.headers()) {
            return self.fail(None, error, Some(kind.to_owned()), None);
        }
        // The first step is entered, not submitted to: whatever the start
        // route took (a button's POST), the step gets a GET and renders.
        let (parts, _) = request.into_parts();
        let parts = entering(parts);
        self.open(&lazy, parts, kind, return_to, None).await
    }

    /// Whether a request may start a flow: another site must not start
    /// flows in this browser, nor may a background request, since each
    /// start may drop the oldest of the browser's flows.
    pub(super) fn may_start(&self, headers: &HeaderMap) -> Result<(), FlowError> {
        if !self.inner.cross_site_start && presented::is_cross_site(headers) {
            return Err(FlowError::CrossSite);
        }
        self.may_restart(headers)
    }

    /// Whether a request may start an expired flow again: the person's own
    /// navigation, from this site or another (the provider's redirect back
    /// is one), but no background request. A restart takes the expired
    /// flow's place, so it drops no other flow, and it uses nothing of the
    /// request: another site can at most make a browser start again a flow
    /// it already ran, as the person clicking "Sign in" again would.
    pub(super) fn may_restart(&self, headers: &HeaderMap) -> Result<(), FlowError> {
        if !self.inner.background_start && !is_navigation(headers) {
            return Err(FlowError::NotNavigation);
        }
        Ok(())
    }

    /// A new flow of `kind` in its own cookie, its first step entered with
    /// `parts` (already made a `GET`); `replacing` the flow whose cookie it
    /// takes the place of (a restart), which then counts for no eviction.
    pub(super) async fn open(
        &self,
        lazy: &LazyPipelineState,
        parts: Parts,
        kind: &str,
        return_to: Option<String>,
        replacing: Option<&Reference>,
    ) -> R {
        let lifetimes = self.inner.lifetimes;
        let deadline = lifetimes
            .max
            .map(|max| unix_now().saturating_add(max.as_secs()));
        let ticket = Ticket {
            pipeline: self.inner.name.clone(),
            kind: kind.to_owned(),
            deadline,
            return_to: return_to.clone(),
        };
        let state = lazy.start_flow(&parts.headers, self.inner.cross_site, ticket, replacing);
        state.set_lifetime(Lifetime {
            idle: lifetimes.idle,
            deadline,
        });
        let user = (self.inner.user)(&parts);
        let run = Run::start(kind, &self.inner.signature);
        let mut stored = Stored::start(&self.inner.name, user, run);
        stored.deadline = deadline;
        stored.return_to = return_to;
        if let Err(error) = state.replace(&stored) {
            return self.fail(Some(&state), error.into(), Some(kind.to_owned()), None);
        }
        tracing::info!(
            pipeline = %self.inner.name,
            flow = kind,
            outcome = "started",
            "pipeline flow started"
        );
        funnel::started(&self.inner.name, kind);
        let running = Running::default();
        let flow = self.flow(&state, &running, parts.clone(), 0, stored, None);
        let result = self
            .inner
            .enter(flow, Request::from_parts(parts, B::default()))
            .await;
        // A start that fails keeps nothing: the new flow was never usable.
        self.settle(&state, &running, Some(kind.to_owned()), false, result)
    }
}

/// Whether the browser says the request is a top-level navigation: a page
/// it goes to, not a `fetch`, a frame, nor a prefetch or prerender of a
/// page (which browsers send as navigations marked `Sec-Purpose`, or
/// `Purpose` before it). A request without `Sec-Fetch-Mode` and
/// `Sec-Fetch-Dest` (an older browser, a client that is no browser) is
/// taken as one.
fn is_navigation(headers: &HeaderMap) -> bool {
    let is = |name: &str, expected: &[u8]| {
        headers
            .get(name)
            .is_none_or(|value| value.as_bytes().eq_ignore_ascii_case(expected))
    };
    let speculative = ["sec-purpose", "purpose"].iter().any(|name| {
        headers.get(*name).is_some_and(|value| {
            let value = value.to_str().unwrap_or_default().to_ascii_lowercase();
            value.contains("prefetch") || value.contains("prerender")
        })
    });
    is("sec-fetch-mode", b"navigate") && is("sec-fetch-dest", b"document") && !speculative
}

/// Why `return_to` is not a path of this site, if it is not: a path that
/// starts with one `/` (not `//`, which a browser reads as another host),
/// with no `\` (which some read as `/`), control characters or spaces, and
/// at most [`MAX_RETURN_TO`] bytes.
pub(crate) fn check_return_to(return_to: &str) -> Result<(), String> {
    if return_to.len() > MAX_RETURN_TO {
        return Err(format!("it is over {MAX_RETURN_TO} bytes"));
    }
    if !return_to.starts_with('/') || return_to.starts_with("//") {
        return Err(format!("{return_to:?} does not start with one `/`"));
    }
    if let Some(bad) = return_to
        .chars()
        .find(|c| *c == '\\' || c.is_control() || c.is_whitespace())
    {
        return Err(format!("{return_to:?} holds {bad:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_of_this_site_are_return_tos() {
        for good in ["/", "/billing?plan=team", "/a/b#c"] {
            assert_eq!(check_return_to(good), Ok(()), "{good}");
        }
        let long = format!("/{}", "a".repeat(MAX_RETURN_TO));
        for bad in [
            "",
            "billing",
            "//evil.example/",
            "/\\evil.example",
            "https://evil.example/",
            "/a b",
            "/a\r\nSet-Cookie: x=1",
            long.as_str(),
        ] {
            assert!(check_return_to(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn navigations_are_told_from_background_requests() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(*name, value.parse().unwrap());
            }
            headers
        };
        assert!(is_navigation(&headers(&[])), "no headers: as before");
        assert!(is_navigation(&headers(&[
            ("sec-fetch-mode", "navigate"),
            ("sec-fetch-dest", "document")
        ])));
        for background in [
            [("sec-fetch-mode", "cors"), ("sec-fetch-dest", "empty")],
            [("sec-fetch-mode", "no-cors"), ("sec-fetch-dest", "image")],
            [("sec-fetch-mode", "navigate"), ("sec-fetch-dest", "iframe")],
            [("sec-fetch-mode", "navigate"), ("sec-purpose", "prefetch")],
        ] {
            assert!(!is_navigation(&headers(&background)), "{background:?}");
        }
    }
}
