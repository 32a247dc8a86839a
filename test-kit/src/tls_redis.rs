//! A private `redis-server` that also listens with TLS, on a certificate
//! signed by a certificate authority made for it: what the `tls` tests and
//! the crypto-provider tests connect to over `rediss://`.

use crate::{RedisServer, tls::Authority};

/// A [`RedisServer`] with TLS on [`tls_port`](Self::tls_port) besides its
/// plain port (which the admin connection keeps using), and the authority
/// that signed its certificate. Clients are not asked for a certificate.
/// Its certificate names `localhost` and `127.0.0.1`.
#[derive(Debug)]
pub struct TlsRedis {
    /// The server, on its plain port.
    pub server: RedisServer,
    /// Where it listens with TLS.
    pub tls_port: u16,
    /// The authority that signed its certificate, the root a client must
    /// trust.
    pub authority: Authority,
}

impl TlsRedis {
    /// Makes an authority and a server certificate signed by it, and starts
    /// the server with them.
    pub fn start() -> Self {
        let authority = Authority::new();
        let server = RedisServer::start_configured(&authority.server_config());
        let tls_port = server.tls_port().expect("the server listens with TLS");
        Self {
            server,
            tls_port,
            authority,
        }
    }

    /// Its `rediss://` URL, by the name its certificate carries.
    pub fn url(&self) -> String {
        format!("rediss://localhost:{}", self.tls_port)
    }

    /// The authority's certificate (PEM) as the bytes a client trusts.
    pub fn root(&self) -> Vec<u8> {
        self.authority.pem().as_bytes().to_vec()
    }

    /// The clients connected over TLS (`CLIENT LIST` lines whose local
    /// address is the TLS port), asked on the plain port.
    pub fn tls_clients(&self) -> Vec<String> {
        let clients: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query(&mut self.server.admin())
            .expect("CLIENT LIST");
        let local = format!("laddr=127.0.0.1:{}", self.tls_port);
        clients
            .lines()
            .filter(|line| line.contains(&local))
            .map(str::to_owned)
            .collect()
    }
}
