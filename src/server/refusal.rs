//! The loop's own answers. A request the loop refuses (no route, a
//! malformed or oversized request, a full queue, a timeout) gets one of
//! these at once, without a worker (ARCHITECTURE.md, "Response timing").

use crate::protocol::cgi_response::{reason_phrase, write_reply_head};

/// A response the loop gives itself, without a worker.
#[derive(Debug)]
pub struct Refusal {
    pub status: u16,
    pub retry_after: bool,
}

impl Refusal {
    /// The loop's answer with `status`. A 503 (a full queue, a stop under
    /// way, a spent spool budget, no room for held output) is a load
    /// problem and says when to retry (`Retry-After: 1`).
    pub fn new(status: u16) -> Refusal {
        Refusal {
            status,
            retry_after: status == 503,
        }
    }

    /// The CGI-style response bytes.
    pub fn encode(&self) -> Vec<u8> {
        let reason = reason_phrase(self.status);
        let mut headers = vec![("Content-Type".to_string(), "text/plain".to_string())];
        if self.retry_after {
            headers.push(("Retry-After".to_string(), "1".to_string()));
        }
        let mut out = Vec::with_capacity(128);
        write_reply_head(&mut out, self.status, reason, &headers);
        out.extend_from_slice(reason.to_ascii_lowercase().as_bytes());
        out.push(b'\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_cgi_responses() {
        let r = Refusal {
            status: 503,
            retry_after: true,
        }
        .encode();
        let text = String::from_utf8(r).unwrap();
        assert!(
            text.starts_with("Status: 503 Service Unavailable\r\n"),
            "{text}"
        );
        assert!(text.contains("Retry-After: 1\r\n"));
    }
}
