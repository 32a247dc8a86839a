//! `oidc-provider` (node), an OpenID provider nobody on this project wrote,
//! on a free loopback port: what the demo's browser suite signs in against,
//! and what provider code is tested against. Its configuration is
//! `oidc-provider/provider.js` beside this crate's manifest, installed there
//! with `npm ci` (`./scripts/test` does it).

use std::{
    io::{BufRead, BufReader, Write},
    path::PathBuf,
    process::{Child, Command, Stdio},
};

use crate::{INSTALL, free_port, target_dir, tool};

/// `oidc-provider` in a node process, killed when dropped. It knows one
/// client, [`OidcProvider::CLIENT_ID`], with one redirect URI, and signs in
/// any login with any password (its development pages), asking for consent.
#[derive(Debug)]
pub struct OidcProvider {
    /// `http://localhost:<port>`: another site than an app on `127.0.0.1`.
    pub issuer: String,
    /// The port it listens on.
    pub port: u16,
    child: Child,
}

/// How [`OidcProvider::start_with`] starts the provider.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// The port (default: a free one).
    pub port: Option<u16>,
    /// Sign ID tokens with a fresh RSA key of this `kid` (default:
    /// oidc-provider's development keys). Started again on the same port
    /// with another id, the provider has rotated its key.
    pub key_id: Option<String>,
    /// A post-logout redirect URI to register for the client.
    pub post_logout_redirect_uri: Option<String>,
}

impl OidcProvider {
    /// The one client's id.
    pub const CLIENT_ID: &str = "pipeline-demo";
    /// Its secret (`client_secret_basic`).
    pub const CLIENT_SECRET: &str = "a-test-secret-for-oidc-provider";

    /// Starts the provider for a client whose callback is `redirect_uri`,
    /// and waits until it accepts connections. Its output goes to
    /// `<target>/oidc-provider-<port>.log`. Panics, naming what to install,
    /// when node or oidc-provider is missing.
    pub fn start(redirect_uri: &str) -> Self {
        Self::start_with(redirect_uri, &Settings::default())
    }

    /// [`start`](Self::start) with `settings`: a port of the test's choice
    /// (the same one again to restart the provider as itself), a signing
    /// key of a given id, a registered post-logout redirect URI.
    pub fn start_with(redirect_uri: &str, settings: &Settings) -> Self {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("oidc-provider");
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "oidc-provider is not installed in {}: {INSTALL}",
            dir.display()
        );
        let node = tool("NODE", "node");
        let port = settings.port.unwrap_or_else(free_port);
        let mut command = Command::new(&node);
        command
            .arg("provider.js")
            .current_dir(&dir)
            .env("PORT", port.to_string())
            .env("CLIENT_ID", Self::CLIENT_ID)
            .env("CLIENT_SECRET", Self::CLIENT_SECRET)
            .env("REDIRECT_URI", redirect_uri);
        if let Some(key_id) = &settings.key_id {
            command.env("KEY_ID", key_id);
        }
        if let Some(uri) = &settings.post_logout_redirect_uri {
            command.env("POST_LOGOUT_REDIRECT_URI", uri);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {node:?}: {error}; {INSTALL}"));
        // It prints one line when it accepts connections (or exits). Its
        // output is read to the end (a closed pipe would end it), the rest
        // into <target>/oidc-provider-<port>.log for a failing test to show.
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("read oidc-provider's output");
        let log_path = target_dir().join(format!("oidc-provider-{port}.log"));
        let stderr = child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            let mut log = std::fs::File::create(log_path).ok();
            for line in stdout.lines().chain(BufReader::new(stderr).lines()) {
                if let (Some(log), Ok(line)) = (log.as_mut(), line) {
                    let _ = writeln!(log, "{line}");
                }
            }
        });
        let mut provider = Self {
            issuer: format!("http://localhost:{port}"),
            port,
            child,
        };
        if !line.starts_with("listening") {
            let status = provider.child.try_wait();
            panic!("oidc-provider did not start ({status:?}): {line:?}");
        }
        provider
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
