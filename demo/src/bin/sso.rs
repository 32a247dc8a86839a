//! Sign in with OpenID Connect or plain OAuth 2.0, with the flow's state in
//! Redis: `cargo run -p demo` (this is the demo's default binary), then
//! open the URL it prints.
//!
//! The application (a start page, an account page, and a sign-in pipeline
//! per provider on `/sso` and `/oauth`) is served on `127.0.0.1`. By
//! default it signs in with a small built-in provider served on `localhost`
//! (another site, as a real provider is), which is both an OpenID provider
//! (Demo ID) and a plain OAuth 2.0 provider (Demo Hub). Any other OpenID
//! Connect provider works too, and GitHub as the plain OAuth 2.0 one:
//!
//! | variable | meaning |
//! | --- | --- |
//! | `SSO_ISSUER` | the OpenID provider's issuer URL (discovery at `<issuer>/.well-known/openid-configuration`); unset: the built-in provider |
//! | `SSO_CLIENT_ID` | the application's client id there (required with `SSO_ISSUER`) |
//! | `SSO_CLIENT_SECRET` | its client secret (unset: a public client) |
//! | `SSO_DISPLAY_NAME` | the name on its button (default: the issuer's host) |
//! | `SSO_RESPONSE_MODE` | `query` (default) or `form_post` (the sign-in pipeline then accepts the callback as a cross-site POST: `cross_site_callbacks`) |
//! | `GITHUB_CLIENT_ID`, `GITHUB_CLIENT_SECRET` | sign in with GitHub (an OAuth App) instead of Demo Hub |
//! | `SSO_FLOW_TTL_SECS` | how long an unfinished sign-in waits without activity (default 600) |
//! | `SSO_FLOW_MAX_SECS` | how long a sign-in may take at all (default 1800) |
//! | `REDIS_URL` | default `redis://127.0.0.1:6379`; unreachable: `MemoryStore` |
//! | `PORT` | the application's port (default 3000, another one when taken) |
//!
//! Register `http://127.0.0.1:<PORT>/sso/callback` as the redirect URI at
//! the OpenID provider (and `/signed-out` as its post-logout redirect
//! URI), `http://127.0.0.1:<PORT>/oauth/callback` at GitHub. A bad setting
//! stops the demo with one line that names it. Every request is logged to
//! stdout, one line each.

use std::{process::ExitCode, time::Duration};

use demo::{
    listen,
    sso::{self, OAuthSettings, OidcSettings, Settings, Storage, app::Providers},
};
use tokio::net::TcpListener;
use tower_pipeline_oidc::{OAuthDescription, ResponseMode};
use tower_pipeline_state::{MemoryStore, RedisStore};
use tracing_subscriber::{filter::Targets, layer::SubscriberExt, util::SubscriberInitExt};

#[tokio::main]
async fn main() -> ExitCode {
    // The request log at `info`, everything else (the layer's, the engine's
    // and the provider crate's warnings) from `warn` up.
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_target(false)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout())),
        )
        .with(
            Targets::new()
                .with_target(sso::app::LOG_TARGET, tracing::Level::INFO)
                .with_default(tracing::Level::WARN),
        )
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The longest lifetime the engine takes (30 days).
const MAX_SECS: u64 = 30 * 24 * 3600;

/// `name` as whole seconds from 1 to 30 days, or `default` when unset.
fn seconds(name: &str, default: u64) -> Result<Duration, String> {
    let Ok(text) = std::env::var(name) else {
        return Ok(Duration::from_secs(default));
    };
    match text.parse::<u64>() {
        Ok(secs) if (1..=MAX_SECS).contains(&secs) => Ok(Duration::from_secs(secs)),
        _ => Err(format!(
            "{name}={text}: expected whole seconds from 1 to {MAX_SECS} (30 days)"
        )),
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let response_mode = match std::env::var("SSO_RESPONSE_MODE").as_deref() {
        Err(_) | Ok("query") => ResponseMode::Query,
        Ok("form_post") => ResponseMode::FormPost,
        Ok(mode) => Err(format!(
            "SSO_RESPONSE_MODE={mode}: expected query or form_post"
        ))?,
    };
    let idle_timeout = seconds("SSO_FLOW_TTL_SECS", 10 * 60)?;
    let max_lifetime = seconds("SSO_FLOW_MAX_SECS", 30 * 60)?;
    let app_listener = listen::listener().await?;
    let app_origin = format!("http://{}", app_listener.local_addr()?);
    // Bound on loopback, named `localhost`: another site than the
    // application's `127.0.0.1`, as a real provider is.
    let idp_listener = TcpListener::bind("127.0.0.1:0").await?;
    let idp_origin = format!("http://localhost:{}", idp_listener.local_addr()?.port());

    let mut settings = Settings::builtin(&app_origin, &idp_origin);
    settings.oidc.response_mode = response_mode;
    // A `form_post` callback is a cross-site POST: its flow must accept one.
    settings.cross_site_callbacks = response_mode == ResponseMode::FormPost;
    settings.idle_timeout = idle_timeout;
    settings.max_lifetime = max_lifetime;
    if let Ok(issuer) = std::env::var("SSO_ISSUER") {
        let client_id = std::env::var("SSO_CLIENT_ID")
            .map_err(|_| "SSO_ISSUER is set: set SSO_CLIENT_ID too")?;
        let display_name = std::env::var("SSO_DISPLAY_NAME").unwrap_or_else(|_| {
            issuer
                .split("://")
                .nth(1)
                .and_then(|rest| rest.split('/').next())
                .unwrap_or(&issuer)
                .to_owned()
        });
        settings.oidc = OidcSettings {
            issuer,
            client_id,
            client_secret: std::env::var("SSO_CLIENT_SECRET").ok(),
            display_name,
            response_mode,
        };
    }
    if let Ok(client_id) = std::env::var("GITHUB_CLIENT_ID") {
        settings.oauth = Some(OAuthSettings {
            description: OAuthDescription::github(),
            client_id,
            client_secret: Some(
                std::env::var("GITHUB_CLIENT_SECRET")
                    .map_err(|_| "GITHUB_CLIENT_ID is set: set GITHUB_CLIENT_SECRET too")?,
            ),
            display_name: "GitHub".to_owned(),
        });
    }
    let builtin_used = settings.oidc.issuer == idp_origin
        || settings
            .oauth
            .as_ref()
            .is_some_and(|oauth| oauth.display_name == sso::idp::HUB_NAME);
    let providers = Providers::new(&settings)
        .map_err(|error| format!("the provider settings: {error} {}", error.detail()))?;

    if builtin_used {
        let idp = settings
            .builtin_provider()
            .layer(axum::middleware::from_fn_with_state(
                "provider",
                sso::app::log_requests,
            ));
        tokio::spawn(async move {
            if let Err(error) = axum::serve(idp_listener, idp).await {
                eprintln!("identity provider stopped: {error}");
            }
        });
        println!(
            "built-in identity provider at {idp_origin} (users: alice / wonderland, bob / builder)"
        );
    }
    // A wrong issuer or an unreachable provider says so now, not at a
    // person's first sign-in.
    providers.discover().await.map_err(|error| {
        format!(
            "the OpenID provider {}: {error} {}",
            settings.oidc.issuer,
            error.detail()
        )
    })?;
    if settings.oidc.issuer != idp_origin {
        println!(
            "OpenID provider {} (client {}); register {} as its redirect URI and {} as its post-logout redirect URI",
            settings.oidc.issuer,
            settings.oidc.client_id,
            settings.redirect_uri(),
            settings.post_logout_redirect_uri()
        );
    }
    if let Some(oauth) = settings
        .oauth
        .as_ref()
        .filter(|oauth| oauth.display_name != sso::idp::HUB_NAME)
    {
        println!(
            "{} (client {}); register {} as its callback URL",
            oauth.display_name,
            oauth.client_id,
            settings.oauth_redirect_uri()
        );
    }

    // The sign-in funnel, served at /metrics.
    settings.metrics = Some(sso::metrics::install()?);
    println!(
        "the sign-in funnel at {}/metrics (Prometheus text format)",
        settings.app_origin
    );

    let redis_url =
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let connected = tokio::time::timeout(Duration::from_secs(3), RedisStore::connect(&redis_url))
        .await
        .unwrap_or_else(|_| {
            Err(tower_pipeline_state::StoreError::Timeout(
                Duration::from_secs(3),
            ))
        });
    let app = match connected {
        Ok(store) => {
            println!("flow state in Redis at {redis_url} (keys auth:pipeline:<id>)");
            settings.storage = Storage::Redis;
            sso::app::router(store, settings.clone(), providers)
        }
        Err(error) => {
            println!(
                "Redis at {redis_url} cannot be reached ({error}); running on MemoryStore (flows live in this process only)"
            );
            settings.storage = Storage::Memory;
            sso::app::router(MemoryStore::new(), settings.clone(), providers)
        }
    };
    println!(
        "OpenID Connect responses by {}; unfinished sign-ins wait {} and take {} at most",
        settings.oidc.response_mode.as_str(),
        sso::pages::in_words(settings.idle_timeout),
        sso::pages::in_words(settings.max_lifetime)
    );
    println!("open {}/ in a browser", settings.app_origin);
    axum::serve(app_listener, app).await?;
    Ok(())
}
