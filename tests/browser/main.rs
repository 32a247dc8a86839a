//! The SSO demo driven like a person would, in headless Chromium: Debian's
//! `chromium` through `chromedriver` (WebDriver, with `fantoccini`), against
//! the demo's routers served on loopback (the app on `127.0.0.1`, its
//! built-in provider on `localhost`, two sites), a private redis-server, and
//! `oidc-provider` (node) for a provider nobody here wrote.
//!
//! A test target of its own rather than a module of `tests/it`: every test
//! starts processes of its own (chromedriver and a Chromium, often a
//! redis-server, sometimes node), needs tools `tests/it` does not (and says
//! how to install them when they are missing, never skipping), and runs for
//! seconds, not milliseconds; `cargo test --test it` stays quick without it.
//!
//! Tools: `apt-get update && apt-get install -y chromium chromium-driver
//! nodejs npm redis-server`, then `npm ci --prefix tests/browser/oidc`
//! (`.ci/run` does both). `CHROMIUM`, `CHROMEDRIVER` and `NODE` override the
//! binaries' paths.
//!
//! On a failure the test saves a screenshot under
//! `target/browser-failures/<test>.png`. The pictures in the README come from
//! `target/browser-screenshots/`.

#[allow(dead_code)] // the demo's parts this suite does not call
#[path = "../../examples/sso/mod.rs"]
mod example;

mod builtin;
mod deploy;
mod harness;
mod oidc_provider;
