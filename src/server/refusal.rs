//! The loop's own answers. A request the loop refuses (no route, a
//! malformed or oversized request, a full queue, a timeout) gets one of
//! these at once, without a worker (ARCHITECTURE.md, "Response timing").

use crate::protocol::cgi_response::{write_reply_head, Head};

/// A response the loop gives itself, without a worker.
#[derive(Debug)]
pub struct Refusal {
    pub status: u16,
}

impl Refusal {
    /// The loop's answer with `status`. A 503 (a full queue, a stop under
    /// way, a spent spool budget, no room for held output) is a load
    /// problem and says when to retry ([`Head::refusal`]).
    pub fn new(status: u16) -> Refusal {
        Refusal { status }
    }

    /// The CGI-style response bytes.
    pub fn encode(&self) -> Vec<u8> {
        let head = Head::refusal(self.status);
        let mut out = Vec::with_capacity(128);
        write_reply_head(&mut out, head.status, &head.reason, &head.headers);
        out.extend_from_slice(head.reason.to_ascii_lowercase().as_bytes());
        out.push(b'\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_cgi_responses() {
        let r = Refusal::new(503).encode();
        let text = String::from_utf8(r).unwrap();
        assert!(
            text.starts_with("Status: 503 Service Unavailable\r\n"),
            "{text}"
        );
        assert!(text.contains("Retry-After: 1\r\n"));
    }
}
