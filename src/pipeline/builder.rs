//! [`PipelineBuilder`]: names, kinds, steps and hooks, checked once at
//! [`build`](PipelineBuilder::build).

use std::{collections::HashSet, fmt, future::Future, sync::Arc, time::Duration};

use http::{Request, request::Parts};

use super::{
    Failure, Finished, Flow, FlowError, Pipeline, Signature,
    definition::{Definition, ErrorFn, Lifetimes, RedirectFn, UserFn},
    hooks::FinishHook,
    step::StepDef,
};

/// The longest lifetime a setting may give a flow: a month, as the layer's
/// TTL.
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// Panics unless `value` is a lifetime a record can have.
fn assert_lifetime(what: &str, value: Duration) {
    assert!(
        value >= Duration::from_secs(1) && value <= MAX_LIFETIME,
        "{what} must be between 1 s and 30 days, got {value:?}"
    );
}

/// The default [`PipelineBuilder::form_limit`]: an OpenID Connect
/// `form_post` callback is a few hundred bytes, a signed SAML response a few
/// kilobytes to a few dozen.
const DEFAULT_FORM_LIMIT: usize = 64 * 1024;

/// Defines a [`Pipeline`]; made by [`Pipeline::builder`].
///
/// A pipeline needs at least one flow kind, at least one step, a finish hook
/// and an error handler; [`build`](Self::build) panics without them, at
/// start-up rather than on a user's request.
pub struct PipelineBuilder<B, R> {
    name: String,
    kinds: Vec<String>,
    steps: Vec<StepDef<B, R>>,
    nonce_param: String,
    reference_param: String,
    cross_site: bool,
    cross_site_start: bool,
    background_start: bool,
    form_limit: usize,
    lifetimes: Lifetimes,
    restart_on_expiry: bool,
    on_redirect: Option<Box<RedirectFn<R>>>,
    user: Box<UserFn>,
    finish: Option<Box<dyn FinishHook<B, R>>>,
    on_error: Option<Box<ErrorFn<R>>>,
}

impl<B, R> Pipeline<B, R> {
    /// Starts defining a pipeline called `name` (stored with each flow, and
    /// logged).
    ///
    /// ```
    /// use tower_pipeline_state::pipeline::Pipeline;
    ///
    /// // `String` bodies and responses here; with axum, `Body` and `Response`.
    /// let pipeline = Pipeline::<String, String>::builder("setup")
    ///     .flow_kind("setup")
    ///     .step("welcome", |_request, flow| async move { flow.next().await })
    ///     .on_finish(|_request, _finished| async { Ok("done".to_owned()) })
    ///     .on_error(|failure| failure.error.to_string())
    ///     .build();
    /// assert_eq!(pipeline.name(), "setup");
    /// ```
    pub fn builder(name: impl Into<String>) -> PipelineBuilder<B, R> {
        PipelineBuilder::new(name.into())
    }
}

impl<B, R> PipelineBuilder<B, R> {
    fn new(name: String) -> Self {
        Self {
            name,
            kinds: Vec::new(),
            steps: Vec::new(),
            nonce_param: "state".to_owned(),
            reference_param: "flow".to_owned(),
            cross_site: false,
            cross_site_start: false,
            background_start: false,
            form_limit: DEFAULT_FORM_LIMIT,
            lifetimes: Lifetimes::default(),
            restart_on_expiry: false,
            on_redirect: None,
            user: Box::new(|_| None),
            finish: None,
            on_error: None,
        }
    }

    /// Adds a flow kind the pipeline runs (Sentry's are `login` and
    /// `setup_provider`). [`Pipeline::start`] takes one of them, and a
    /// stored flow of any other kind is refused.
    ///
    /// ```
    /// # use tower_pipeline_state::pipeline::Pipeline;
    /// let builder = Pipeline::<String, String>::builder("sso")
    ///     .flow_kind("login")
    ///     .flow_kind("link");
    /// ```
    pub fn flow_kind(mut self, kind: impl Into<String>) -> Self {
        let kind = kind.into();
        if !self.kinds.contains(&kind) {
            self.kinds.push(kind);
        }
        self
    }

    /// Appends a step: `handler` gets the request and the flow's [`Flow`]
    /// context, and answers with a response (the flow stays on this step,
    /// or moves on with [`Flow::advance`]), with [`Flow::next`] (the next
    /// step answers now), or with an error (the flow fails).
    ///
    /// ```
    /// # use tower_pipeline_state::pipeline::{Flow, Pipeline};
    /// # use http::Request;
    /// async fn welcome(_request: Request<String>, flow: Flow<String, String>)
    ///     -> Result<String, tower_pipeline_state::pipeline::FlowError>
    /// {
    ///     flow.advance()?;
    ///     Ok("<h1>Welcome</h1><a href='/setup'>Next</a>".to_owned())
    /// }
    ///
    /// let builder = Pipeline::builder("setup")
    ///     .step("welcome", welcome)
    ///     .step("done", |_request, flow| async move { flow.next().await });
    /// ```
    pub fn step<F, Fut>(self, name: impl Into<String>, handler: F) -> Self
    where
        F: Fn(Request<B>, Flow<B, R>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, FlowError>> + Send + 'static,
        B: 'static,
        R: 'static,
    {
        self.push(name.into(), false, handler)
    }

    /// Appends a callback step: the step an identity provider redirects back
    /// to. It is entered only by a request that carries the flow's nonce in
    /// the query parameter named by [`nonce_param`](Self::nonce_param)
    /// (checked and consumed by the engine before the step runs), or through
    /// [`Flow::next`] within such a request; otherwise the request fails
    /// with [`FlowError::NonceMissing`].
    ///
    /// ```
    /// # use tower_pipeline_state::pipeline::Pipeline;
    /// let builder = Pipeline::<String, String>::builder("sso")
    ///     .callback("callback", |request, flow| async move {
    ///         // Only reached with `?state=<the flow's nonce>`.
    ///         flow.next().await
    ///     });
    /// ```
    pub fn callback<F, Fut>(self, name: impl Into<String>, handler: F) -> Self
    where
        F: Fn(Request<B>, Flow<B, R>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, FlowError>> + Send + 'static,
        B: 'static,
        R: 'static,
    {
        self.push(name.into(), true, handler)
    }

    fn push<F, Fut>(mut self, name: String, callback: bool, handler: F) -> Self
    where
        F: Fn(Request<B>, Flow<B, R>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, FlowError>> + Send + 'static,
        B: 'static,
        R: 'static,
    {
        self.steps.push(StepDef {
            name,
            callback,
            handler: Box::new(handler),
        });
        self
    }

    /// The query parameter that carries the flow's nonce back (default
    /// `state`, as in OAuth 2.0). Any request of the flow that carries it is
    /// treated as a callback: the value must be the flow's live nonce, and
    /// it is consumed.
    ///
    /// ```
    /// # use tower_pipeline_state::pipeline::Pipeline;
    /// let builder = Pipeline::<String, String>::builder("sso").nonce_param("relay_state");
    /// ```
    pub fn nonce_param(mut self, name: impl Into<String>) -> Self {
        self.nonce_param = name.into();
        self
    }

    /// The query parameter the application's own links and forms name their
    /// flow with (default `flow`): `/wizard?flow=<reference>`, as
    /// [`Flow::link`] writes it. A browser runs several flows at once, each
    /// with its own cookie; a request that names none continues the
    /// browser's newest flow.
    ///
    /// ```
    /// # use tower_pipeline_state::pipeline::Pipeline;
    /// let builder = Pipeline::<String, String>::builder("wizard").reference_param("wizard");
    /// ```
    pub fn reference_param(mut self, name: impl Into<String>) -> Self {
        self.reference_param = name.into();
        self
    }

    /// Lets [`Pipeline::start`] start a flow on a request that the browser
    /// marks as coming from another site (`Sec-Fetch-Site: cross-site`).
    /// Default off: another site cannot start flows in a person's browser
    /// (each start may drop the oldest of the browser's flows, the sign-in
    /// in progress among them), so a start is refused with
    /// [`FlowError::CrossSite`](super::FlowError::CrossSite). Turn it on
    /// for a start route that other sites link to on purpose (a portal's
    /// "Sign in with..." link).
    ///
    /// ```
    /// # use tower_pipeline_state::pipeline::Pipeline;
    /// let builder = Pipeline::<String, String>::builder("sso").cross_site_start(true);
    /// ```
    pub fn cross_site_start(mut self, allow: bool) -> Self {
        self.cross_site_start = allow;
        self
    }

    /// Lets [`Pipeline::start`] start a flow on a request that the browser
    /// marks as not a top-level navigation (`Sec-Fetch-Mode` other than
    /// `navigate`, or `Sec-Fetch-Dest` other than `document`: a `fetch`, a
    /// prefetch, a link preview, a frame). Default off: such a start is
    /// refused with [`FlowError::NotNavigation`] before any store command,
    /// so a background request never starts a flow nor drops the flow of
    /// the tab in use past the layer's
    /// [`max_flows`](crate::PipelineStateLayer::max_flows). Requests without
    /// those headers (older browsers, non-browser clients) start as before.
    ///
    /// ```
    /// # use tower_pipeline_state::pipeline::Pipeline;
    /// let builder = Pipeline::<String, String>::builder("api").background_start(true);
    /// ```
    pub fn background_start(mut self, allow: bool) -> Self {
        self.background_start = allow;
        self
    }

    /// How long a flow may sit unused (the sliding TTL of its record, from
    /// each request that loads or writes it). Default: the layer's
    /// [`ttl`](crate::PipelineStateLayer::ttl). A ten-minute sign-in and a
    /// day-long setup wizard can live behind one layer.
    ///
    /// # Panics
    /// If `idle` is under a second or over 30 days.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_pipeline_state::pipeline::Pipeline;
    /// let builder = Pipeline::<String, String>::builder("wizard").idle_timeout(Duration::from_secs(24 * 3600));
    /// ```
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        assert_lifetime("idle_timeout", idle);
        self.lifetimes.idle = Some(idle);
        self
    }

    /// How long a flow may live at all, from its start, however busy:
    /// past it the flow reads as expired, and its record's TTL is never
    /// longer than what is left (its nonce and a PKCE verifier do not live
    /// on while someone keeps clicking). Default: none.
    ///
    /// # Panics
    /// If `lifetime` is under a second or over 30 days.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_pipeline_state::pipeline::Pipeline;
    /// let builder = Pipeline::<String, String>::builder("sso").max_lifetime(Duration::from_secs(15 * 60));
    /// ```
    pub fn max_lifetime(mut self, lifetime: Duration) -> Self {
        assert_lifetime("max_lifetime", lifetime);
        self.lifetimes.max = Some(lifetime);
        self
    }

    /// How long an ended flow answers its own replays (default 2 minutes):
    /// its record is replaced, in the write that ends it, by a small one
    /// that says how it ended (and where a finished one sent the person),
    /// and the flow's cookie lives as long. Within it, a refresh, a Back or
    /// a callback delivered again from the same browser gets a redirect to
    /// where a finished flow landed (see [`on_redirect`](Self::on_redirect))
    /// or [`FlowError::Ended`], never an error about another browser; the
    /// finish hook does not run again. `Duration::ZERO`: an ended flow's
    /// record is deleted at once, as an ended flow's cookie.
    ///
    /// # Panics
    /// If `window` is over 30 days.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_pipeline_state::pipeline::Pipeline;
    /// let builder = Pipeline::<String, String>::builder("sso").replay_window(Duration::from_secs(300));
    /// ```
    pub fn replay_window(mut self, window: Duration) -> Self {
        if !window.is_zero() {
            assert_lifetime("replay_window", window);
        }
        self.lifetimes.replay = window;
        self
    }

    /// Starts an expired flow again by itself: a request for a flow whose
    /// record is gone (it sat unused past its idle timeout, or outlived its
    /// maximum lifetime), from the browser that holds its cookie, starts a
    /// new flow of this pipeline and the same kind, with the same
    /// `return_to` (see [`Pipeline::start_to`]), and answers with its first
    /// step: typically a redirect to the identity provider again. A restart
    /// never runs a callback step and never reuses a nonce; it is refused,
    /// as a start is, for a request from another site or one that is not a
    /// navigation. Default off: the request gets [`FlowError::Expired`],
    /// with the flow's `return_to` in [`Failure::return_to`].
    ///
    /// ```
    /// # use tower_pipeline_state::pipeline::Pipeline;
    /// let builder = Pipeline::<String, String>::builder("sso").restart_on_expiry(true);
    /// ```
    pub fn restart_on_expiry(mut self, restart: bool) -> Self {
        self.restart_on_expiry = restart;
        self
    }

    /// How this pipeline answers with a redirect to `location`: a replay of
    /// a finished flow is sent where the flow landed (`303 See Other`). With
    /// axum, [`see_other`](super::see_other). Without it, such a replay gets
    /// [`FlowError::Ended`] in the error handler.
    ///
    /// ```
    /// # use tower_pipeline_state::pipeline::Pipeline;
    /// let builder = Pipeline::<String, String>::builder("sso")
    ///     .on_redirect(|location| format!("303 See Other: {location}"));
    /// ```
    pub fn on_redirect<F>(mut self, redirect: F) -> Self
    where
        F: Fn(&str) -> R + Send + Sync + 'static,
    {
        self.on_redirect = Some(Box::new(redirect));
        self
    }

    /// The largest urlencoded form POST body the engine reads to find a
    /// callback's `state` (OpenID Connect `form_post`, SAML's POST binding)
    /// when the query has none; default 64 KiB. A larger body is refused
    /// ([`FlowError::Failed`](super::FlowError::Failed)) without reading
    /// past the limit. The form is read only for a pipeline with callback
    /// steps (or [`cross_site_callbacks`](Self::cross_site_callbacks)),
    /// and with axum under the application's own `DefaultBodyLimit` too
    /// when that is smaller. A SAML response with many certificates may
    /// need more.
    ///
    /// # Panics
    /// If `bytes` is 0.
    ///
    /// ```
    /// # use tower_pipeline_state::pipeline::Pipeline;
    /// let builder = Pipeline::<String, String>::builder("saml").form_limit(256 * 1024);
    /// ```
    pub fn form_limit(mut self, bytes: usize) -> Self {
        assert!(bytes > 0, "form_limit must be above zero");
        self.form_limit = bytes;
        self
    }

    /// Accepts callbacks that come back as cross-site POSTs (OpenID Connect
    /// `response_mode=form_post`, SAML's HTTP-POST binding). Default off.
    ///
    /// Browsers do not send `SameSite=Lax` cookies on a cross-site POST, so
    /// such a callback would not find its flow. With this on, the flows of
    /// this pipeline get `SameSite=None; Secure` cookies, which the browser
    /// sends on any request to the site; the engine then takes a cross-site
    /// POST only as a callback that brings the flow's nonce back, and
    /// refuses one to any other step (as browsers mark it,
    /// `Sec-Fetch-Site: cross-site`) with [`FlowError::CrossSite`]. The
    /// trade-off: the flow's cookie is sent on cross-site requests, so the
    /// steps' own forms rely on that check (or a CSRF token of their own)
    /// rather than on the cookie. Leave it off for providers that redirect
    /// back with a GET.
    ///
    /// ```
    /// # use tower_pipeline_state::pipeline::Pipeline;
    /// let builder = Pipeline::<String, String>::builder("saml").cross_site_callbacks(true);
    /// ```
    pub fn cross_site_callbacks(mut self, accept: bool) -> Self {
        self.cross_site = accept;
        self
    }

    /// How the engine learns who makes a request (default: nobody, every
    /// flow is anonymous). The id returned when a flow starts is stored with
    /// it; every later request must return the same (`None` included), or
    /// it fails with [`FlowError::UserMismatch`] and the flow stays as it
    /// was.
    ///
    /// ```
    /// # use tower_pipeline_state::pipeline::Pipeline;
    /// #[derive(Clone)]
    /// struct CurrentUser(String);
    ///
    /// // Whatever authenticates the request (a session layer) put the user
    /// // in the extensions.
    /// let builder = Pipeline::<String, String>::builder("link")
    ///     .user(|parts| parts.extensions.get::<CurrentUser>().map(|user| user.0.clone()));
    /// ```
    pub fn user<F>(mut self, user: F) -> Self
    where
        F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    {
        self.user = Box::new(user);
        self
    }

    /// The finish hook: called with the request and the collected data when
    /// the last step calls [`Flow::next`]. Its answer is the response. The
    /// flow is claimed before the hook runs (its record replaced by the
    /// ended one, see [`replay_window`](Self::replay_window)), so the hook
    /// runs once per flow; a hook that fails ends the flow as failed.
    ///
    /// ```
    /// # use tower_pipeline_state::pipeline::Pipeline;
    /// let builder = Pipeline::<String, String>::builder("sso").on_finish(|_request, finished| async move {
    ///     let user: String = finished.fetch("user")?.unwrap_or_default();
    ///     Ok(format!("signed in as {user}"))
    /// });
    /// ```
    pub fn on_finish<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Request<B>, Finished) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, FlowError>> + Send + 'static,
        B: 'static,
        R: 'static,
    {
        self.finish = Some(Box::new(hook));
        self
    }

    /// The error handler: turns every [`Failure`] (no flow, expired, another
    /// user, a bad nonce, a failed step...) into the response. Match on
    /// `failure.error` to answer each as the application sees fit, for
    /// example a redirect with a message.
    ///
    /// ```
    /// # use tower_pipeline_state::pipeline::{FlowError, Pipeline};
    /// let builder = Pipeline::<String, String>::builder("sso").on_error(|failure| match failure.error {
    ///     FlowError::Expired => "That sign-in took too long; start again.".to_owned(),
    ///     other => format!("Sign-in failed: {other}"),
    /// });
    /// ```
    pub fn on_error<F>(mut self, handler: F) -> Self
    where
        F: Fn(Failure) -> R + Send + Sync + 'static,
    {
        self.on_error = Some(Box::new(handler));
        self
    }

    /// The finished definition.
    ///
    /// # Panics
    /// If the pipeline has no flow kind, no step, two steps with one name,
    /// no finish hook or no error handler, or an empty nonce or reference
    /// parameter name, or one name for both.
    ///
    /// ```
    /// # use tower_pipeline_state::pipeline::Pipeline;
    /// let pipeline = Pipeline::<String, String>::builder("wizard")
    ///     .flow_kind("setup")
    ///     .step("only", |_request, flow| async move { flow.next().await })
    ///     .on_finish(|_request, _finished| async { Ok("done".to_owned()) })
    ///     .on_error(|failure| failure.error.to_string())
    ///     .build();
    /// assert_eq!(pipeline.step_names().collect::<Vec<_>>(), ["only"]);
    /// ```
    pub fn build(self) -> Pipeline<B, R> {
        let name = &self.name;
        assert!(
            !self.kinds.is_empty(),
            "pipeline `{name}` needs at least one flow kind"
        );
        assert!(
            !self.steps.is_empty(),
            "pipeline `{name}` needs at least one step"
        );
        let mut seen = HashSet::new();
        for step in &self.steps {
            assert!(
                seen.insert(step.name.as_str()),
                "pipeline `{name}` has two steps named `{}`",
                step.name
            );
        }
        assert!(
            !self.nonce_param.is_empty() && !self.reference_param.is_empty(),
            "pipeline `{name}`: the nonce or reference parameter name is empty"
        );
        assert_ne!(
            self.nonce_param, self.reference_param,
            "pipeline `{name}`: the nonce and reference parameters need different names"
        );
        let finish = self
            .finish
            .unwrap_or_else(|| panic!("pipeline `{name}` needs a finish hook (on_finish)"));
        let on_error = self
            .on_error
            .unwrap_or_else(|| panic!("pipeline `{name}` needs an error handler (on_error)"));
        let signature =
            Signature::of_steps(self.steps.iter().map(|step| (&step.name, step.callback)));
        Pipeline {
            inner: Arc::new(Definition {
                name: self.name,
                kinds: self.kinds,
                steps: self.steps,
                signature,
                nonce_param: self.nonce_param,
                reference_param: self.reference_param,
                cross_site: self.cross_site,
                cross_site_start: self.cross_site_start,
                background_start: self.background_start,
                form_limit: self.form_limit,
                lifetimes: self.lifetimes,
                restart_on_expiry: self.restart_on_expiry,
                on_redirect: self.on_redirect,
                user: self.user,
                finish,
                on_error,
            }),
        }
    }
}

impl<B, R> fmt::Debug for PipelineBuilder<B, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineBuilder")
            .field("name", &self.name)
            .field("kinds", &self.kinds)
            .field(
                "steps",
                &self.steps.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .field("nonce_param", &self.nonce_param)
            .field("reference_param", &self.reference_param)
            .field("cross_site_callbacks", &self.cross_site)
            .field("cross_site_start", &self.cross_site_start)
            .field("background_start", &self.background_start)
            .field("form_limit", &self.form_limit)
            .field("lifetimes", &self.lifetimes)
            .field("restart_on_expiry", &self.restart_on_expiry)
            .finish_non_exhaustive()
    }
}
