//! A server task on loopback, aborted when dropped: a test's servers stop
//! with the test, however it ends. And free loopback ports for the
//! processes the tests start.

use std::{future::Future, net::SocketAddr};

use tokio::{net::TcpListener, task::JoinHandle};

/// A server task, aborted when dropped.
#[derive(Debug)]
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

/// A listener on a free loopback port.
pub async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// A loopback port that was free a moment ago, for a process of the test's
/// own (redis-server, chromedriver, node) to listen on. Another process
/// may take it meanwhile: starters retry where that matters.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind a free loopback port")
        .port()
}

impl Server {
    /// Runs `serving`, a server loop on the listener bound to `addr`.
    pub fn spawn(addr: SocketAddr, serving: impl Future<Output = ()> + Send + 'static) -> Self {
        let task = tokio::spawn(serving);
        Self { addr, task }
    }

    /// Serves `router` on `listener`.
    pub fn axum(listener: TcpListener, router: axum::Router) -> Self {
        let addr = listener.local_addr().unwrap();
        Self::spawn(addr, async move {
            axum::serve(listener, router).await.unwrap();
        })
    }

    /// `path` on this server, as an `http://` URL.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}
