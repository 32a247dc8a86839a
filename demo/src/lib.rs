//! The examples of `tower-pipeline-state`, one binary each in `src/bin/`,
//! and the parts they and the demo's tests share:
//!
//! | binary | what it shows | its parts |
//! | --- | --- | --- |
//! | `sso` (the default: `cargo run -p demo`) | an OpenID Connect sign-in as a pipeline, with a built-in provider | [`sso`] |
//! | `counter` | the smallest axum app over the layer | |
//! | `hyper` | the layer around a plain tower service served by hyper | [`hyper_app`], [`http1`] |
//! | `warp` | the layer around warp's filters, loading eagerly | [`warp_app`], [`http1`] |
//!
//! Every binary listens where [`listen`] says. This is example code, meant
//! to be read and copied: not a published crate.

pub mod http1;
pub mod hyper_app;
pub mod listen;
pub mod sso;
pub mod warp_app;

/// What the hyper and warp examples' printed URL shows: the wizard's
/// requests as buttons.
pub const WIZARD_INDEX: &str = include_str!("wizard.html");
