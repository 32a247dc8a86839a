//! The demo's apps end to end, in one binary: the SSO demo over HTTP with
//! its built-in provider (`sso`), and the hyper and warp examples' services
//! running a flow (`stacks`). Headless Chromium drives the SSO demo in the
//! other test binary, `tests/browser/`.

mod common;
mod sso;
mod stacks;
