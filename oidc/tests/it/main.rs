//! The provider crate's integration tests: sign-ins through the real engine
//! behind `PipelineStateLayer`, over HTTP on loopback, against a provider
//! the tests control (`crafted`, `oauth`, `secrets`) and against node
//! `oidc-provider`, which nobody here wrote (`oidc_provider`).

mod common;
mod crafted;
mod oauth;
mod oidc_provider;
mod secrets;
