//! Chromium under chromedriver, one browser per test, and the few things a
//! test does with it: open, click, type, read the heading, wait for a page,
//! take a screenshot. Debian's `chromium` and `chromedriver`; `CHROMIUM`
//! and `CHROMEDRIVER` override their paths.

use std::{
    future::Future,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The WebDriver client, for what a test does beyond [`Browser`]'s helpers
/// (cookies, windows, waiting for an element of its own).
pub use fantoccini;
use fantoccini::{Client, ClientBuilder, Locator, elements::Element};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::{INSTALL, free_port, target_dir, tool};

/// How long a page may take to appear. Generous: two cores, and Chromium.
const PAGE_WAIT: Duration = Duration::from_secs(30);

/// A chromedriver process, killed when dropped (it takes its Chromium
/// along when the session was closed; the session is closed by [`run`]).
#[derive(Debug)]
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Self {
        let chromedriver = tool("CHROMEDRIVER", "chromedriver");
        let port = free_port();
        let child = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {chromedriver:?}: {error}; {INSTALL}"));
        Self { child, port }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Chromium, headless, with a fresh profile, for one test.
async fn open_browser(driver: &Driver) -> Client {
    let chromium = tool("CHROMIUM", "chromium");
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-quic",
                // No calls home: the machine has no network but loopback.
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-features=PasswordLeakDetection,Translate",
                "--window-size=900,720",
            ],
            "prefs": {
                "credentials_enable_service": false,
                "profile.password_manager_enabled": false,
            },
        },
    });
    let serde_json::Value::Object(capabilities) = capabilities else {
        unreachable!("an object literal")
    };
    let url = format!("http://127.0.0.1:{}", driver.port);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(capabilities.clone());
        match builder.connect(&url).await {
            Ok(client) => return client,
            // chromedriver not listening yet.
            Err(error) if Instant::now() < deadline => {
                let _ = error;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("no Chromium session from chromedriver: {error}; {INSTALL}"),
        }
    }
}

/// Runs one test in a fresh browser: on a panic, saves a screenshot of the
/// page under `target/browser-failures/<name>.png`; closes the browser in
/// every case.
pub async fn run<F, Fut>(name: &str, test: F)
where
    F: FnOnce(Browser) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    // Fail early and clearly when a tool is missing.
    tool("CHROMIUM", "chromium");
    let driver = Driver::start();
    let client = open_browser(&driver).await;
    let outcome = tokio::spawn(test(Browser {
        client: client.clone(),
    }))
    .await;
    if outcome.is_err() {
        let dir = target_dir().join("browser-failures");
        let _ = std::fs::create_dir_all(&dir);
        if let Ok(png) = client.screenshot().await {
            let path = dir.join(format!("{name}.png"));
            if std::fs::write(&path, png).is_ok() {
                eprintln!("screenshot of the failing page: {}", path.display());
            }
        }
    }
    let _ = client.close().await;
    drop(driver);
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

/// The browser of one test.
#[derive(Clone, Debug)]
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
}

impl Browser {
    /// Goes to `url`.
    pub async fn open(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|error| panic!("open {url}: {error}"));
    }

    /// The address of the page open.
    pub async fn url(&self) -> String {
        self.client.current_url().await.unwrap().to_string()
    }

    /// The whole text of the page.
    pub async fn text(&self) -> String {
        self.find("body").await.text().await.unwrap_or_default()
    }

    /// The element `css` selects, waiting for it to appear.
    pub async fn find(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(PAGE_WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("no {css:?} on the page: {error}"))
    }

    /// Waits until the page's heading is `expected`; says what it was
    /// instead when it does not come.
    pub async fn expect_heading(&self, expected: &str) {
        let deadline = Instant::now() + PAGE_WAIT;
        let mut seen = String::new();
        while Instant::now() < deadline {
            if let Ok(heading) = self.client.find(Locator::Css("h1")).await
                && let Ok(text) = heading.text().await
            {
                if text == expected {
                    return;
                }
                seen = text;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "expected the page {expected:?}, got {seen:?} at {}:\n{}",
            self.url().await,
            self.text().await
        );
    }

    /// Clicks the button whose text is `label`.
    pub async fn click(&self, label: &str) {
        let xpath =
            format!("//button[normalize-space()='{label}'] | //a[normalize-space()='{label}']");
        self.client
            .wait()
            .at_most(PAGE_WAIT)
            .for_element(Locator::XPath(&xpath))
            .await
            .unwrap_or_else(|error| panic!("no button {label:?}: {error}"))
            .click()
            .await
            .unwrap_or_else(|error| panic!("click {label:?}: {error}"));
    }

    /// Types `text` into the field `css` selects.
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    /// Saves a screenshot under `target/browser-screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        let dir = target_dir().join("browser-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}
