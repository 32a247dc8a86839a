//! [`Scope`]: whose step index, nonce and data a [`Flow`](super::Flow)
//! reads and changes.

/// A part of a flow with a nonce and a step index of its own: the outer flow,
/// or the run of the inner pipeline named so (see
/// [`Flow::nest`](super::Flow::nest)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    Outer,
    Nested(String),
}
