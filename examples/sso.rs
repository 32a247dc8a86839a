//! Sign in through an OAuth 2.0 identity provider, with the flow's state in
//! Redis: `cargo run --example sso`, then open the URL it prints.
//!
//! Two servers on loopback: the application (a start page, and a three-step
//! sign-in pipeline on `/sso`) and a small identity provider (login form,
//! authorization codes, PKCE S256, a token endpoint the application calls
//! server to server). Redis is `REDIS_URL` (default
//! `redis://127.0.0.1:6379`); without one, the demo runs on `MemoryStore`.
//! `PORT` picks the application's port (default 3000).

#[path = "support/listen.rs"]
mod listen;
#[path = "sso/mod.rs"]
mod sso;

use std::{net::SocketAddr, time::Duration};

use tokio::net::TcpListener;
use tower_pipeline_state::{MemoryStore, RedisStore};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let app_listener = listen::listener().await?;
    let idp_listener = TcpListener::bind("127.0.0.1:0").await?;
    let settings = sso::Settings {
        app_origin: origin(app_listener.local_addr()?),
        idp_origin: origin(idp_listener.local_addr()?),
        ttl: Duration::from_secs(10 * 60),
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

    let idp = sso::idp::router(settings.redirect_uri());
    tokio::spawn(async move {
        if let Err(error) = axum::serve(idp_listener, idp).await {
            eprintln!("identity provider stopped: {error}");
        }
    });
    println!("identity provider at {}", settings.idp_origin);
    println!(
        "open {}/ in a browser (users: alice / wonderland, bob / builder)",
        settings.app_origin
    );
    axum::serve(app_listener, app).await?;
    Ok(())
}

fn origin(addr: SocketAddr) -> String {
    format!("http://{addr}")
}
