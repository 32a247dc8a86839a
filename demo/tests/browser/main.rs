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
//! seconds, not milliseconds; `cargo test -p demo --test it` stays quick
//! without it.
//!
//! The browser, the provider and the redis-server come from the workspace's
//! `test-kit` (feature `browser`). Tools: `./scripts/test` installs them all;
//! by hand, `apt-get update && apt-get install -y chromium chromium-driver
//! nodejs npm redis-server`, then `npm ci --prefix test-kit/oidc-provider`.
//! `CHROMIUM`, `CHROMEDRIVER` and `NODE` override the binaries' paths.
//!
//! On a failure the test saves a screenshot under
//! `target/browser-failures/<test>.png`. The pictures in the README come from
//! `target/browser-screenshots/`.

mod builtin;
mod deploy;
mod oidc_provider;
