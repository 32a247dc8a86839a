//! A server task on loopback, aborted when dropped: a test's servers stop
//! with the test, however it ends.

use std::{future::Future, net::SocketAddr};

use tokio::{net::TcpListener, task::JoinHandle};

pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    task: JoinHandle<()>,
}

/// A listener on a free loopback port.
pub(crate) async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

impl Server {
    /// Runs `serving`, a server loop on the listener bound to `addr`.
    pub(crate) fn spawn(
        addr: SocketAddr,
        serving: impl Future<Output = ()> + Send + 'static,
    ) -> Self {
        let task = tokio::spawn(serving);
        Self { addr, task }
    }

    /// Serves `router` on `listener`.
    pub(crate) fn axum(listener: TcpListener, router: axum::Router) -> Self {
        let addr = listener.local_addr().unwrap();
        Self::spawn(addr, async move {
            axum::serve(listener, router).await.unwrap();
        })
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}
