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

use demo::sso::{self, ResponseMode, Settings};
use test_kit::{OidcProvider, RedisServer, Server};
use tokio::net::TcpListener;
use tower_pipeline_state::{Key, RedisStore};

/// How the demo is set up for a test.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Options {
    pub(crate) ttl: Duration,
    pub(crate) response_mode: ResponseMode,
    /// `Settings::cross_site_callbacks`.
    pub(crate) cross_site_callbacks: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(600),
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
    /// Every request the app received, in order.
    pub(crate) received: Arc<Mutex<Vec<Received>>>,
    _app: Server,
    _idp: Option<Server>,
}

impl Demo {
    /// With the built-in provider, on `localhost`.
    pub(crate) async fn builtin(options: Options) -> Self {
        let idp_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!(
            "http://localhost:{}",
            idp_listener.local_addr().unwrap().port()
        );
        let provider = sso::Provider {
            issuer,
            client_id: sso::idp::CLIENT_ID.to_owned(),
            client_secret: Some(sso::idp::CLIENT_SECRET.to_owned()),
            display_name: "the demo identity provider".to_owned(),
        };
        let app_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut demo = Self::serve(app_listener, provider, options).await;
        let idp = sso::idp::router(
            demo.settings.provider.issuer.clone(),
            demo.settings.redirect_uri(),
        );
        demo._idp = Some(Server::axum(idp_listener, idp));
        demo
    }

    /// With `oidc-provider`, which must be started with this app's
    /// redirect URI: the app's listener is made first.
    pub(crate) async fn with_oidc_provider(options: Options) -> (Self, OidcProvider) {
        let app_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let redirect_uri = format!(
            "http://{}{}",
            app_listener.local_addr().unwrap(),
            sso::app::CALLBACK_PATH
        );
        let op = OidcProvider::start(&redirect_uri);
        let provider = sso::Provider {
            issuer: op.issuer.clone(),
            client_id: OidcProvider::CLIENT_ID.to_owned(),
            client_secret: Some(OidcProvider::CLIENT_SECRET.to_owned()),
            display_name: "oidc-provider".to_owned(),
        };
        (Self::serve(app_listener, provider, options).await, op)
    }

    async fn serve(listener: TcpListener, provider: sso::Provider, options: Options) -> Self {
        let redis = RedisServer::start();
        let settings = Settings {
            app_origin: format!("http://{}", listener.local_addr().unwrap()),
            provider,
            response_mode: options.response_mode,
            cross_site_callbacks: options.cross_site_callbacks,
            ttl: options.ttl,
            key: Key::generate(),
        };
        let store = RedisStore::connect(&redis.url())
            .await
            .expect("connect to the private redis-server");
        let received = Arc::new(Mutex::new(Vec::new()));
        let app = sso::app::router(store, settings.clone()).layer(
            axum::middleware::from_fn_with_state(received.clone(), record),
        );
        Self {
            settings,
            redis,
            received,
            _app: Server::axum(listener, app),
            _idp: None,
        }
    }

    /// `path` on the app.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.settings.app_origin)
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
