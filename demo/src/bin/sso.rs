//! Sign in with OpenID Connect, with the flow's state in Redis:
//! `cargo run -p demo` (this is the demo's default binary), then open the
//! URL it prints.
//!
//! The application (a start page, and a three-step sign-in pipeline on
//! `/sso`) is served on `127.0.0.1`. By default it signs in with a small
//! built-in OpenID provider served on `localhost` (another site, as a real
//! provider is). Any other OpenID Connect provider works too:
//!
//! | variable | meaning |
//! | --- | --- |
//! | `SSO_ISSUER` | the provider's issuer URL (discovery at `<issuer>/.well-known/openid-configuration`); unset: the built-in provider |
//! | `SSO_CLIENT_ID` | the application's client id there (required with `SSO_ISSUER`) |
//! | `SSO_CLIENT_SECRET` | its client secret (unset: a public client) |
//! | `SSO_RESPONSE_MODE` | `query` (default) or `form_post` (the sign-in pipeline then accepts the callback as a cross-site POST: `cross_site_callbacks`) |
//! | `SSO_FLOW_TTL_SECS` | how long an unfinished sign-in waits (default 600) |
//! | `REDIS_URL` | default `redis://127.0.0.1:6379`; unreachable: `MemoryStore` |
//! | `PORT` | the application's port (default 3000, another one when taken) |
//!
//! Register `http://127.0.0.1:<PORT>/sso/callback` as the redirect URI at
//! the provider. Every request is logged to stdout, one line each.

use std::{process::ExitCode, time::Duration};

use demo::{listen, sso};
use tokio::net::TcpListener;
use tower_pipeline_state::{Key, MemoryStore, RedisStore};
use tracing_subscriber::{filter::Targets, layer::SubscriberExt, util::SubscriberInitExt};

#[tokio::main]
async fn main() -> ExitCode {
    // The request log at `info`, everything else (the layer's and the
    // engine's warnings) from `warn` up.
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

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let app_listener = listen::listener().await?;
    let app_origin = format!("http://{}", app_listener.local_addr()?);
    let response_mode = match std::env::var("SSO_RESPONSE_MODE") {
        Ok(mode) => sso::ResponseMode::parse(&mode)
            .ok_or_else(|| format!("SSO_RESPONSE_MODE={mode}: expected query or form_post"))?,
        Err(_) => sso::ResponseMode::Query,
    };
    let ttl = match std::env::var("SSO_FLOW_TTL_SECS") {
        Ok(secs) => Duration::from_secs(
            secs.parse()
                .map_err(|_| format!("SSO_FLOW_TTL_SECS={secs}: expected whole seconds"))?,
        ),
        Err(_) => Duration::from_secs(10 * 60),
    };

    let (provider, builtin) = match std::env::var("SSO_ISSUER") {
        Ok(issuer) => {
            let client_id = std::env::var("SSO_CLIENT_ID")
                .map_err(|_| "SSO_ISSUER is set: set SSO_CLIENT_ID too")?;
            let display_name = issuer
                .split("://")
                .nth(1)
                .and_then(|rest| rest.split('/').next())
                .unwrap_or(&issuer)
                .to_owned();
            let provider = sso::Provider {
                issuer,
                client_id,
                client_secret: std::env::var("SSO_CLIENT_SECRET").ok(),
                display_name,
            };
            (provider, None)
        }
        Err(_) => {
            // Bound on loopback, named `localhost`: another site than the
            // application's `127.0.0.1`, as a real provider is.
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let issuer = format!("http://localhost:{}", listener.local_addr()?.port());
            let provider = sso::Provider {
                issuer,
                client_id: sso::idp::CLIENT_ID.to_owned(),
                client_secret: Some(sso::idp::CLIENT_SECRET.to_owned()),
                display_name: "the demo identity provider".to_owned(),
            };
            (provider, Some(listener))
        }
    };
    let settings = sso::Settings {
        app_origin,
        provider,
        response_mode,
        // A `form_post` callback is a cross-site POST: its flow must accept
        // one.
        cross_site_callbacks: response_mode == sso::ResponseMode::FormPost,
        ttl,
        // Signs the flow cookie and encrypts the login session: made anew
        // at every start, so a restart signs everyone out.
        key: Key::generate(),
    };

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
            sso::app::router(store, settings.clone())
        }
        Err(error) => {
            println!(
                "Redis at {redis_url} cannot be reached ({error}); running on MemoryStore (flows live in this process only)"
            );
            sso::app::router(MemoryStore::new(), settings.clone())
        }
    };

    if let Some(listener) = builtin {
        let idp =
            sso::idp::router(settings.provider.issuer.clone(), settings.redirect_uri()).layer(
                axum::middleware::from_fn_with_state("provider", sso::app::log_requests),
            );
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, idp).await {
                eprintln!("identity provider stopped: {error}");
            }
        });
        println!(
            "built-in identity provider at {} (users: alice / wonderland, bob / builder)",
            settings.provider.issuer
        );
    } else {
        println!(
            "identity provider {} (client {}); register {} as its redirect URI",
            settings.provider.issuer,
            settings.provider.client_id,
            settings.redirect_uri()
        );
    }
    println!(
        "responses by {}; unfinished sign-ins wait {}",
        settings.response_mode.as_str(),
        sso::pages::in_words(settings.ttl)
    );
    println!("open {}/ in a browser", settings.app_origin);
    axum::serve(app_listener, app).await?;
    Ok(())
}
