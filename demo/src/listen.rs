//! Where an example listens: `PORT` (default 3000) on loopback, or any free
//! port when that one is taken, saying so; a newcomer's second example (or
//! anything else on 3000) must not end in "address in use".
//! The demo's `tests/it/stacks.rs` checks it.

use tokio::net::TcpListener;

/// A loopback listener on `PORT` (default 3000), or on a free port.
pub async fn listener() -> std::io::Result<TcpListener> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|port| port.parse().ok())
        .unwrap_or(3000);
    listener_on(port).await
}

/// A loopback listener on `port`, or on a free port when it is taken.
pub async fn listener_on(port: u16) -> std::io::Result<TcpListener> {
    match TcpListener::bind(("127.0.0.1", port)).await {
        Ok(listener) => Ok(listener),
        Err(error) => {
            println!("port {port} is not free ({error}); using another");
            TcpListener::bind("127.0.0.1:0").await
        }
    }
}
