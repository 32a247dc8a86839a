//! A private certificate authority for a test (rcgen), and a server
//! certificate it signed for `localhost` and `127.0.0.1`, written as PEM
//! files a `redis-server` (and `redis-cli`) can read. Removed when dropped.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A certificate authority made for one test, and a server certificate it
/// signed, on disk.
#[derive(Debug)]
pub struct Authority {
    dir: PathBuf,
    pem: String,
}

impl Authority {
    /// Makes the authority and the server certificate (valid for
    /// `localhost` and the IP address `127.0.0.1`, which cluster nodes
    /// announce) in a scratch directory of their own.
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("authority params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "tower-pipeline-state test authority");
        let authority_key = KeyPair::generate().expect("authority key");
        let authority = params
            .self_signed(&authority_key)
            .expect("self-signed authority");
        let issuer = Issuer::new(params, authority_key);

        let server_key = KeyPair::generate().expect("server key");
        let server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("server params")
            .signed_by(&server_key, &issuer)
            .expect("server certificate");

        let dir = std::env::temp_dir().join(format!(
            "tps-tls-{}-{}",
            std::process::id(),
            crate::free_port()
        ));
        std::fs::create_dir_all(&dir).expect("a scratch dir for certificates");
        let pem = authority.pem();
        std::fs::write(dir.join("ca.crt"), &pem).expect("write ca.crt");
        std::fs::write(dir.join("server.crt"), server.pem()).expect("write server.crt");
        std::fs::write(dir.join("server.key"), server_key.serialize_pem())
            .expect("write server.key");
        Self { dir, pem }
    }

    /// The authority's certificate (PEM), the root a client trusts.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The authority's certificate file.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// `redis-server` configuration lines that serve TLS on `{tls_port}`
    /// (a free port the server picks, see
    /// [`RedisServer::start_configured`](crate::RedisServer::start_configured))
    /// with the server certificate, clients not asked for one.
    pub fn server_config(&self) -> Vec<String> {
        let file = |name: &str| path(&self.dir.join(name));
        vec![
            "tls-port {tls_port}".to_owned(),
            format!("tls-cert-file {}", file("server.crt")),
            format!("tls-key-file {}", file("server.key")),
            format!("tls-ca-cert-file {}", file("ca.crt")),
            "tls-auth-clients no".to_owned(),
        ]
    }
}

impl Default for Authority {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Authority {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn path(path: &Path) -> String {
    path.display().to_string()
}
