//! What a test signs in against: the demo's app with a private
//! redis-server, and its built-in provider or `oidc-provider`, all on free
//! loopback ports and stopped with the test.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    extract::{Request, State},
    http::header::COOKIE,
    middleware::Next,
    response::Response,
};

use demo::sso::{OidcSettings, Settings, app::Providers};
use test_kit::{OidcProvider, OidcProviderSettings, RedisServer, Server};
use tokio::net::TcpListener;
use tower_pipeline_oidc::ResponseMode;
use tower_pipeline_state::{RedisStore, Store};

/// How the demo is set up for a test.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Options {
    /// `Settings::idle_timeout`.
    pub(crate) idle_timeout: Duration,
    /// `Settings::max_lifetime`.
    pub(crate) max_lifetime: Duration,
    pub(crate) response_mode: ResponseMode,
    /// `Settings::cross_site_callbacks`.
    pub(crate) cross_site_callbacks: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(1800),
            response_mode: ResponseMode::Query,
            cross_site_callbacks: false,
        }
    }
}

impl Options {
    /// `form_post`, with cross-site callbacks accepted, as the example
    /// runs it.
    pub(crate) fn form_post() -> Self {
        Self {
            response_mode: ResponseMode::FormPost,
            cross_site_callbacks: true,
            ..Self::default()
        }
    }

    fn apply(self, settings: &mut Settings) {
        settings.idle_timeout = self.idle_timeout;
        settings.max_lifetime = self.max_lifetime;
        settings.oidc.response_mode = self.response_mode;
        settings.cross_site_callbacks = self.cross_site_callbacks;
    }
}

/// A request the app received, as the browser sent it: what a test reads
/// to tell how a page came (a POST from another site, with which cookies).
#[derive(Clone, Debug)]
pub(crate) struct Received {
    pub(crate) method: String,
    pub(crate) path: String,
    /// The browser's `Sec-Fetch-Site`: `same-origin`, `cross-site`...
    pub(crate) fetch_site: Option<String>,
    /// The names of the cookies it carried.
    pub(crate) cookies: Vec<String>,
}

/// The demo, served: the app on `127.0.0.1`, its flows in a private
/// redis-server.
pub(crate) struct Demo {
    pub(crate) settings: Settings,
    pub(crate) redis: RedisServer,
    /// A client of the app's store (the same kind of connection, its own),
    /// to tell when Redis is seen gone.
    pub(crate) store: RedisStore,
    /// Every request the app received, in order.
    pub(crate) received: Arc<Mutex<Vec<Received>>>,
    _app: Server,
    _idp: Option<Server>,
}

impl Demo {
    /// With the built-in provider (Demo ID and Demo Hub), on `localhost`.
    pub(crate) async fn builtin(options: Options) -> Self {
        let idp_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut settings = Settings::builtin(
            &format!("http://{}", app_listener.local_addr().unwrap()),
            &format!(
                "http://localhost:{}",
                idp_listener.local_addr().unwrap().port()
            ),
        );
        options.apply(&mut settings);
        let idp = settings.builtin_provider();
        let mut demo = Self::serve(app_listener, settings).await;
        demo._idp = Some(Server::axum(idp_listener, idp));
        demo
    }

    /// With `oidc-provider`, which must be started with this app's
    /// redirect URI (and post-logout redirect URI): the app's listener is
    /// made first. No plain OAuth 2.0 provider.
    pub(crate) async fn with_oidc_provider(options: Options) -> (Self, OidcProvider) {
        let app_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app_origin = format!("http://{}", app_listener.local_addr().unwrap());
        let mut settings = Settings::builtin(&app_origin, "http://localhost:9");
        let op = OidcProvider::start_with(
            &settings.redirect_uri(),
            &OidcProviderSettings {
                post_logout_redirect_uri: Some(settings.post_logout_redirect_uri()),
                ..OidcProviderSettings::default()
            },
        );
        settings.oidc = OidcSettings {
            issuer: op.issuer.clone(),
            client_id: OidcProvider::CLIENT_ID.to_owned(),
            client_secret: Some(OidcProvider::CLIENT_SECRET.to_owned()),
            display_name: "oidc-provider".to_owned(),
            response_mode: ResponseMode::Query,
        };
        settings.oauth = None;
        options.apply(&mut settings);
        (Self::serve(app_listener, settings).await, op)
    }

    async fn serve(listener: TcpListener, settings: Settings) -> Self {
        let redis = RedisServer::start();
        let store = RedisStore::connect(&redis.url())
            .await
            .expect("connect to the private redis-server");
        let received = Arc::new(Mutex::new(Vec::new()));
        let providers = Providers::new(&settings).expect("valid provider settings");
        let app = demo::sso::app::router(store.clone(), settings.clone(), providers).layer(
            axum::middleware::from_fn_with_state(received.clone(), record),
        );
        Self {
            settings,
            redis,
            store,
            received,
            _app: Server::axum(listener, app),
            _idp: None,
        }
    }

    /// `path` on the app.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.settings.app_origin)
    }

    /// The records of sign-ins still going on (not ended: an ended one's
    /// record stays for its replays).
    pub(crate) fn live_flows(&self) -> Vec<String> {
        self.redis
            .keys()
            .into_iter()
            .filter(|key| {
                self.redis.get(key).is_some_and(|raw| {
                    let record: serde_json::Value = serde_json::from_slice(&raw).unwrap();
                    record["data"].get("ended").is_none()
                })
            })
            .collect()
    }

    /// Waits until the app's store has seen Redis go: a load then fails
    /// with nothing sent, as every command does until Redis is back.
    pub(crate) async fn until_unreachable(&self) {
        let error = self
            .store
            .load("auth:pipeline:probe", None)
            .await
            .expect_err("Redis is down");
        assert!(error.nothing_written(), "{error}");
    }

    /// The requests the app received for `path`.
    pub(crate) fn received_at(&self, path: &str) -> Vec<Received> {
        let received = self.received.lock().unwrap();
        received
            .iter()
            .filter(|request| request.path == path)
            .cloned()
            .collect()
    }
}

/// Notes what the browser sent, then lets the app answer.
async fn record(
    State(received): State<Arc<Mutex<Vec<Received>>>>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let cookies = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| cookie::Cookie::split_parse(value.to_owned()))
        .filter_map(Result::ok)
        .map(|cookie| cookie.name().to_owned())
        .collect();
    let seen = Received {
        method: request.method().to_string(),
        path: request.uri().path().to_owned(),
        fetch_site: headers
            .get("sec-fetch-site")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned),
        cookies,
    };
    received.lock().unwrap().push(seen);
    next.run(request).await
}
