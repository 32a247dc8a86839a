//! A private `redis-server` that also listens with TLS, on a certificate
//! signed by a certificate authority made for it (rcgen): what the `tls`
//! tests connect to over `rediss://`.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use crate::{RedisServer, free_port};

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
    /// The authority's certificate (PEM), the root a client must trust.
    pub authority: String,
    /// The certificate, key and authority files.
    dir: PathBuf,
}

impl TlsRedis {
    /// Makes an authority and a server certificate signed by it, and starts
    /// the server with them.
    pub fn start() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "tower-pipeline-state test authority");
        let authority_key = KeyPair::generate().unwrap();
        let authority = params.self_signed(&authority_key).unwrap();
        let issuer = Issuer::new(params, authority_key);

        let server_key = KeyPair::generate().unwrap();
        let server_params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();

        let tls_port = free_port();
        let dir = std::env::temp_dir().join(format!("tps-tls-{}-{tls_port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a scratch dir for the certificates");
        let (cert, key, ca) = (
            dir.join("server.crt"),
            dir.join("server.key"),
            dir.join("ca.crt"),
        );
        std::fs::write(&cert, server_cert.pem()).unwrap();
        std::fs::write(&key, server_key.serialize_pem()).unwrap();
        std::fs::write(&ca, authority.pem()).unwrap();

        let server = RedisServer::start_configured(&[
            &format!("tls-port {tls_port}"),
            &format!("tls-cert-file {}", cert.display()),
            &format!("tls-key-file {}", key.display()),
            &format!("tls-ca-cert-file {}", ca.display()),
            "tls-auth-clients no",
        ]);
        Self {
            server,
            tls_port,
            authority: authority.pem(),
            dir,
        }
    }

    /// Its `rediss://` URL, by the name its certificate carries.
    pub fn url(&self) -> String {
        format!("rediss://localhost:{}", self.tls_port)
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

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
