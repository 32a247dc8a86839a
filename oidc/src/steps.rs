//! The two steps a [`Provider`] gives a pipeline: the authorization step
//! (off to the provider) and the callback step (back with the answer, out
//! with an [`Identity`] bound into the flow).

use std::{future::Future, pin::Pin};

use http::{
    HeaderValue, Method, Request, Response, StatusCode,
    header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, REFERRER_POLICY},
};
use http_body_util::{BodyExt, Limited};
use tower_pipeline_state::pipeline::{Flow, FlowError, PipelineBuilder};

use crate::{
    Error, ErrorKind, Provider, ResponseMode,
    protocol::{Callback, Pending},
    provider::Then,
};

/// The key the authorization step keeps the PKCE verifier and the nonce
/// under, in the flow's state on the server, until the callback removes it.
const PENDING_KEY: &str = "oidc.pending";

/// The largest callback form read (a `form_post` answer is a few hundred
/// bytes; the engine reads it under its own `form_limit` first).
const CALLBACK_FORM_LIMIT: usize = 64 * 1024;

/// What a step of this crate returns: the engine boxes every step's future
/// anyway.
pub type StepFuture<R> = Pin<Box<dyn Future<Output = Result<R, FlowError>> + Send + 'static>>;

impl Provider {
    /// Adds the provider's two steps to `builder`: `authorize` (a step) and
    /// `callback` (a callback step, entered only with the flow's `state`),
    /// and, for [`ResponseMode::FormPost`], turns on
    /// [`cross_site_callbacks`](PipelineBuilder::cross_site_callbacks).
    /// Steps added before run before them (a "choose a provider" page),
    /// steps added after run once the [`Identity`](crate::Identity) is bound (a "continue
    /// as ...?" page).
    ///
    /// Route the pipeline where the registered redirect URI points: the
    /// callback comes back there, a GET (`query`) or a POST (`form_post`).
    ///
    /// ```
    /// use axum::{Router, body::Body, extract::Request, response::{IntoResponse, Redirect, Response}, routing::post};
    /// use tower_pipeline_oidc::{Identity, Provider};
    /// use tower_pipeline_state::{MemoryStore, PipelineStateLayer, pipeline::{FlowError, Pipeline}};
    ///
    /// let provider = Provider::oidc("https://id.example.com", "my-client", "https://app.example.com/sso")
    ///     .build()
    ///     .expect("valid settings");
    /// let sign_in: Pipeline<Body, Response> = provider
    ///     .steps(Pipeline::builder("sso").flow_kind("login"))
    ///     .on_finish(|_request, finished| async move {
    ///         let identity = Identity::from_finished(&finished)?.ok_or(FlowError::failed("no identity"))?;
    ///         // Start the application's own session for identity.issuer + identity.subject here.
    ///         Ok(Redirect::to("/").into_response())
    ///     })
    ///     .on_error(|failure| (axum::http::StatusCode::BAD_REQUEST, failure.error.to_string()).into_response())
    ///     .build();
    /// let start = sign_in.clone();
    /// let app: Router = Router::new()
    ///     .route("/sso/start", post(move |request: Request| async move { start.start(request, "login").await }))
    ///     .route_service("/sso", sign_in)
    ///     .layer(PipelineStateLayer::new(MemoryStore::new()));
    /// ```
    pub fn steps<B, RB>(
        &self,
        builder: PipelineBuilder<B, Response<RB>>,
    ) -> PipelineBuilder<B, Response<RB>>
    where
        B: http_body::Body + Default + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        RB: Default + Send + 'static,
    {
        let builder = builder
            .step("authorize", self.authorize())
            .callback("callback", self.callback());
        if self.inner.options.response_mode == ResponseMode::FormPost {
            builder.cross_site_callbacks(true)
        } else {
            builder
        }
    }

    /// The authorization step alone, for a pipeline that names its steps
    /// itself: makes a PKCE verifier (S256) and, for OpenID Connect, a
    /// nonce, keeps both in the flow's state (never in the browser), moves
    /// the flow on, and answers `303 See Other` to the provider's
    /// authorization endpoint with the flow's callback state as `state`.
    /// A provider that cannot be discovered ends the flow with its
    /// [`ErrorKind`] (see [`ErrorKind::of`]).
    ///
    /// ```
    /// use tower_pipeline_oidc::Provider;
    /// use tower_pipeline_state::pipeline::Pipeline;
    ///
    /// # let provider = Provider::oidc("https://id.example.com", "app", "https://app.example/sso").build().unwrap();
    /// let builder = Pipeline::<axum::body::Body, axum::response::Response>::builder("sso")
    ///     .flow_kind("login")
    ///     .step("to-provider", provider.authorize())
    ///     .callback("from-provider", provider.callback());
    /// ```
    pub fn authorize<B, RB>(
        &self,
    ) -> impl Fn(Request<B>, Flow<B, Response<RB>>) -> StepFuture<Response<RB>> + Send + Sync + 'static
    where
        B: Send + 'static,
        RB: Default + Send + 'static,
    {
        let provider = self.clone();
        move |_request, flow| {
            let provider = provider.clone();
            Box::pin(async move { provider.run_authorize(flow).await })
        }
    }

    /// The callback step alone (add it with
    /// [`PipelineBuilder::callback`], so the engine has found the flow by
    /// its `state`, checked and spent its nonce before it runs): reads the
    /// answer from the query or the `form_post` form, refuses an answer
    /// from another issuer (`iss`, RFC 9207) and the provider's `error=`
    /// as typed failures, exchanges the code with the PKCE verifier server
    /// to server, verifies the ID token (signature against the JWKS, `iss`,
    /// `aud`, `azp`, `exp`, `iat`, `nonce`, `at_hash`), asks for user info
    /// when set, binds the [`Identity`](crate::Identity) and goes on (see
    /// [`ProviderBuilder::continue_at`](crate::ProviderBuilder::continue_at)).
    /// Every failure ends the flow with its [`Error`](crate::Error)
    /// ([`FlowError::failed_with`]: the error handler reads its
    /// [`ErrorKind`] back with [`ErrorKind::of`], and its text is the
    /// kind's sentence); the provider's detail goes to the log only, and no
    /// token anywhere.
    ///
    /// ```
    /// use tower_pipeline_oidc::Provider;
    /// use tower_pipeline_state::pipeline::Pipeline;
    ///
    /// # let provider = Provider::oidc("https://id.example.com", "app", "https://app.example/sso").build().unwrap();
    /// let builder = Pipeline::<axum::body::Body, axum::response::Response>::builder("sso")
    ///     .flow_kind("login")
    ///     .step("authorize", provider.authorize())
    ///     .callback("callback", provider.callback())
    ///     .step("confirm", |_request, flow| async move { flow.next().await });
    /// ```
    pub fn callback<B, RB>(
        &self,
    ) -> impl Fn(Request<B>, Flow<B, Response<RB>>) -> StepFuture<Response<RB>> + Send + Sync + 'static
    where
        B: http_body::Body + Default + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        RB: Default + Send + 'static,
    {
        let provider = self.clone();
        move |request, flow| {
            let provider = provider.clone();
            Box::pin(async move { provider.run_callback(request, flow).await })
        }
    }

    async fn run_authorize<B, RB>(
        &self,
        flow: Flow<B, Response<RB>>,
    ) -> Result<Response<RB>, FlowError>
    where
        B: Send + 'static,
        RB: Default + Send + 'static,
    {
        // Names this flow among the browser's flows and carries its nonce.
        let state = flow.callback_state()?;
        let begun = self
            .begin(state, flow.kind())
            .await
            .map_err(|error| self.fail(error))?;
        flow.bind(PENDING_KEY, &begun.pending)?;
        // The provider's answer enters the next step.
        flow.advance()?;
        Ok(see_other(begun.url.as_str()))
    }

    async fn run_callback<B, RB>(
        &self,
        request: Request<B>,
        flow: Flow<B, Response<RB>>,
    ) -> Result<Response<RB>, FlowError>
    where
        B: http_body::Body + Default + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        RB: Default + Send + 'static,
    {
        let callback = read_callback(request)
            .await
            .map_err(|error| self.fail(error))?;
        let pending: Pending = flow.fetch(PENDING_KEY)?.unwrap_or_default();
        let identity = self
            .complete(callback, pending)
            .await
            .map_err(|error| self.fail(error))?;
        // The verifier and the nonce did their job: keep no more secrets
        // than needed.
        flow.unbind(PENDING_KEY)?;
        identity.bind(&flow)?;
        tracing::info!(
            target: crate::LOG_TARGET,
            provider = %self.inner.display_name,
            "signed in"
        );
        let mut response = match &self.inner.options.then {
            Then::Next => flow.next().await?,
            Then::Redirect(path) => {
                flow.advance()?;
                see_other(&flow.link(path))
            }
        };
        // The callback's URL carries the code: a page rendered at it must
        // not send it on in a `Referer`.
        response
            .headers_mut()
            .entry(REFERRER_POLICY)
            .or_insert(HeaderValue::from_static("no-referrer"));
        Ok(response)
    }

    /// Logs a failure with its detail and ends the flow with the error
    /// itself, which the error handler reads back typed
    /// ([`ErrorKind::of`]); shown or logged, it reads as its kind's
    /// sentence only.
    fn fail(&self, error: Error) -> FlowError {
        let level_warn = !matches!(
            error.kind(),
            ErrorKind::AccessDenied | ErrorKind::InteractionRequired
        );
        if level_warn {
            tracing::warn!(
                target: crate::LOG_TARGET,
                provider = %self.inner.display_name,
                kind = error.kind().as_str(),
                "sign-in failed: {}",
                error.detail()
            );
        } else {
            tracing::info!(
                target: crate::LOG_TARGET,
                provider = %self.inner.display_name,
                kind = error.kind().as_str(),
                "sign-in not completed: {}",
                error.detail()
            );
        }
        FlowError::failed_with(error)
    }
}

/// The answer's parameters: the query of a GET, the form of a POST.
async fn read_callback<B>(request: Request<B>) -> Result<Callback, Error>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if request.method() != Method::POST {
        return Callback::parse(request.uri().query().unwrap_or(""));
    }
    let urlencoded = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value.split(';').next().is_some_and(|essence| {
                essence
                    .trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !urlencoded {
        return Err(Error::new(
            ErrorKind::BadCallback,
            "a POST answer that is not a urlencoded form",
        ));
    }
    let body = Limited::new(request.into_body(), CALLBACK_FORM_LIMIT)
        .collect()
        .await
        .map_err(|error| {
            Error::new(
                ErrorKind::BadCallback,
                format!("the answer's form: {error}"),
            )
        })?
        .to_bytes();
    let text = std::str::from_utf8(&body)
        .map_err(|_| Error::new(ErrorKind::BadCallback, "the answer's form is not UTF-8"))?;
    Callback::parse(text)
}

/// `303 See Other` to `location`, never cached.
fn see_other<RB: Default>(location: &str) -> Response<RB> {
    let mut response = Response::new(RB::default());
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(value) = HeaderValue::try_from(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parameter_given_twice_is_refused() {
        let error = Callback::parse("code=a&state=s&code=b").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::BadCallback);
        let callback = Callback::parse("code=a&iss=https%3A%2F%2Fid.example").unwrap();
        assert_eq!(callback.code.as_deref(), Some("a"));
        assert_eq!(callback.iss.as_deref(), Some("https://id.example"));
    }

    #[test]
    fn the_issuer_parameter_must_be_this_providers_and_present_when_promised() {
        let from = |iss: Option<&str>| Callback {
            iss: iss.map(str::to_owned),
            ..Callback::default()
        };
        let issuer = "https://id.example";
        assert!(from(Some(issuer)).check_issuer(issuer, true).is_ok());
        assert!(from(None).check_issuer(issuer, false).is_ok());
        for (callback, promised) in [
            (from(Some("https://evil.example")), false),
            (from(None), true),
        ] {
            let error = callback.check_issuer(issuer, promised).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::MixUp);
        }
    }
}
