//! [`Ticket`]: what a flow's own cookie carries besides the flow's id, so
//! that a request can be answered from the cookie alone when the record is
//! gone (an expired flow starts again with the same kind, towards the same
//! `return_to`) and the store is asked to keep the record no longer than
//! the flow may live. The cookie is signed or sealed as the layer is
//! configured; in plain mode a client can change it, so nothing in it is
//! trusted for more than that: the record's own deadline decides whether a
//! flow is live, and `return_to` is checked as a same-site path on use.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};

use crate::id::PipelineId;

/// The longest `return_to` a flow keeps: a path and query of an application
/// page, not a document.
pub(crate) const MAX_RETURN_TO: usize = 512;

/// The largest flow cookie value the layer reads (before any signature or
/// decryption work): an id, a ticket with the longest `return_to`, and the
/// signature or seal.
pub(crate) const MAX_FLOW_VALUE: usize = 1536;

/// What a flow's cookie says about its flow.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Ticket {
    /// The pipeline that started the flow.
    #[serde(rename = "p")]
    pub(crate) pipeline: String,
    /// The flow's kind.
    #[serde(rename = "k")]
    pub(crate) kind: String,
    /// When the flow's record ends, in seconds since the Unix epoch: the
    /// pipeline's maximum lifetime, or a finished flow's replay window.
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub(crate) deadline: Option<u64>,
    /// Where the application sends the person once the flow is done.
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub(crate) return_to: Option<String>,
}

/// The text a flow cookie's value is made from: the id, then, after a `.`,
/// the ticket as URL-safe base64 of JSON. A value with the id alone (made
/// before tickets) reads with no ticket.
pub(crate) fn encode(id: PipelineId, ticket: Option<&Ticket>) -> String {
    let id = id.to_string();
    match ticket {
        None => id,
        Some(ticket) => {
            let json = serde_json::to_vec(ticket).expect("a ticket always serializes");
            format!("{id}.{}", URL_SAFE_NO_PAD.encode(json))
        }
    }
}

/// The id and ticket in a flow cookie's (opened) text; `None` when it is
/// not one this layer made.
pub(crate) fn decode(text: &str) -> Option<(PipelineId, Option<Ticket>)> {
    let (id, ticket) = match text.split_once('.') {
        Some((id, ticket)) => (id, Some(ticket)),
        None => (text, None),
    };
    let id = PipelineId::parse(id)?;
    let ticket = match ticket {
        None => None,
        Some(encoded) => {
            let json = URL_SAFE_NO_PAD.decode(encoded).ok()?;
            let ticket: Ticket = serde_json::from_slice(&json).ok()?;
            if ticket
                .return_to
                .as_ref()
                .is_some_and(|to| to.len() > MAX_RETURN_TO)
            {
                return None;
            }
            Some(ticket)
        }
    };
    Some((id, ticket))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_reads_back_and_an_id_alone_reads_without_one() {
        let id = PipelineId::generate();
        let ticket = Ticket {
            pipeline: "sso".into(),
            kind: "login".into(),
            deadline: Some(1_900_000_000),
            return_to: Some("/billing?tab=2".into()),
        };
        let text = encode(id, Some(&ticket));
        assert!(!text.contains(';') && !text.contains(' ') && !text.contains(','));
        assert_eq!(decode(&text), Some((id, Some(ticket))));
        assert_eq!(decode(&encode(id, None)), Some((id, None)));
        for bad in ["", "x", &format!("{id}.%%%"), &format!("{id}.e30")] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_overlong_return_to_is_not_ours() {
        let ticket = Ticket {
            return_to: Some(format!("/{}", "a".repeat(MAX_RETURN_TO))),
            ..Ticket::default()
        };
        assert_eq!(decode(&encode(PipelineId::generate(), Some(&ticket))), None);
    }
}
