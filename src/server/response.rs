//! The response as a handler writes it: status, headers, and a body through
//! `io::Write`, handed to the event loop in chunks as it goes.
//!
//! Backpressure: each chunk takes output credit, so a handler waits while
//! too much of its output is unwritten (a slow client never makes the
//! process buffer without limit). Response timing (no byte before the
//! request's input has ended) is the loop's business (`hold.rs`): output
//! that comes too early is held there and its credit given back, so a
//! handler that writes before it reads never waits for it, and a handler
//! that returns before reading its body frees its worker at once.

use std::io::{self, Write};
use std::sync::Arc;

use super::message::{End, Message};
use super::shared::Shared;
use crate::protocol::cgi_response::{reason_phrase, Head};
use crate::protocol::params::Params;

/// Body bytes gathered before a chunk is handed to the loop.
const CHUNK: usize = 32 * 1024;

/// The response of one request.
pub struct Response {
    shared: Arc<Shared>,
    status: u16,
    headers: Vec<(String, String)>,
    /// The head has been handed to the loop.
    head_out: bool,
    buf: Vec<u8>,
    done: bool,
    /// The request's params once its handler returned: they go back to
    /// the loop with the last output, to be reused.
    spare: Option<Params>,
}

impl Response {
    /// A response whose body starts in `buf` (empty; a recycled buffer's
    /// capacity saves an allocation).
    pub(crate) fn with_buffer(shared: Arc<Shared>, buf: Vec<u8>) -> Response {
        Response {
            shared,
            status: 200,
            headers: Vec::new(),
            head_out: false,
            buf,
            done: false,
            spare: None,
        }
    }

    /// Sets the status (200 by default). Ignored once the head is out.
    pub fn set_status(&mut self, status: u16) {
        self.status = status;
    }

    /// The status set so far.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Sets a header, replacing any of the same name (case-insensitive).
    pub fn set_header(&mut self, name: &str, value: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.add_header(name, value);
    }

    /// Adds a header line, keeping others of the same name.
    pub fn add_header(&mut self, name: &str, value: &str) {
        self.headers.push((clean_field(name), clean_field(value)));
    }

    /// Whether the status and headers can no longer change.
    pub fn headers_sent(&self) -> bool {
        self.head_out
    }

    /// Whether the client went away; writes fail from then on.
    pub fn is_aborted(&self) -> bool {
        self.shared.is_aborted()
    }

    /// Sends error output: FCGI_STDERR records on FastCGI (nginx puts them
    /// in its error log), a log line on SCGI and HTTP. It waits for output
    /// credit as the body does.
    pub fn write_stderr(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.shared.acquire_output(bytes.len())?;
        let shared = Arc::clone(&self.shared);
        let bytes = bytes.to_vec();
        self.shared.sender().send(Message::Stderr { shared, bytes });
        Ok(())
    }

    fn take_head(&mut self) -> Option<Head> {
        if self.head_out {
            return None;
        }
        self.head_out = true;
        if !self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        {
            self.headers
                .push(("Content-Type".into(), "text/plain".into()));
        }
        Some(Head {
            status: self.status,
            reason: reason_phrase(self.status).into(),
            headers: std::mem::take(&mut self.headers),
        })
    }

    /// Hands one chunk to the loop, waiting for output credit.
    fn send(&mut self, body: Vec<u8>, end: End) -> io::Result<()> {
        self.shared.acquire_output(body.len())?;
        let head = self.take_head();
        let req = self.shared.req;
        let spare = if end == End::No {
            None
        } else {
            self.spare.take()
        };
        self.shared.sender().send(Message::Output {
            req,
            head,
            body,
            end,
            spare,
        });
        Ok(())
    }

    /// Hands buffered output to the loop. At the end, input the handler
    /// left unread is discarded (the loop sends the response once the
    /// input has ended).
    fn push(&mut self, end: End) -> io::Result<()> {
        if end != End::No {
            self.shared.give_up_input();
        }
        let body = std::mem::take(&mut self.buf);
        if body.is_empty() && end == End::No && self.head_out {
            return Ok(());
        }
        self.send(body, end)
    }

    /// Gives the response its request's params to hand back to the loop.
    pub(crate) fn keep_spare(&mut self, params: Params) {
        self.spare = Some(params);
    }

    /// Ends the response after the handler returned: complete on success;
    /// on error a 500 if nothing went out yet, else the response is cut.
    pub(crate) fn complete(&mut self, result: io::Result<()>) {
        if self.done {
            return;
        }
        self.done = true;
        let outcome = match result {
            Ok(()) => self.push(End::Complete),
            Err(e) => Err(e),
        };
        let Err(e) = outcome else { return };
        if self.shared.is_aborted() {
            return;
        }
        log::warn!("request {}: handler failed: {e}", self.shared.req.key);
        if self.head_out {
            let _ = self.send(Vec::new(), End::Failed);
            return;
        }
        self.buf.clear();
        self.status = 500;
        self.headers = vec![("Content-Type".into(), "text/plain".into())];
        self.buf.extend_from_slice(b"internal server error\n");
        if self.push(End::Complete).is_err() {
            let _ = self.send(Vec::new(), End::Failed);
        }
    }
}

impl Write for Response {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.shared.is_aborted() {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "request aborted by the client",
            ));
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.push(End::No)?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.push(End::No)
    }
}

impl Drop for Response {
    fn drop(&mut self) {
        // A response dropped without `complete` (a panicking handler
        // unwinding through a library user's own code) still ends.
        if !self.done {
            self.complete(Err(io::Error::other("response dropped unfinished")));
        }
    }
}

/// A header name or value fit for a head: each control byte but tab
/// becomes a space. A CR or LF would end the line early (header
/// injection); any other makes a head that a front server refuses (nginx
/// answers 502) and that fastgate's own CGI parser calls malformed, and
/// handlers copy client text into headers (`echo`: `CONTENT_TYPE`).
fn clean_field(s: &str) -> String {
    let control = |c: char| c.is_ascii_control() && c != '\t';
    match s.contains(control) {
        true => s.replace(control, " "),
        false => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::clean_field;
    use crate::protocol::cgi_response::{parse_head, write_head, Parsed};

    /// Found by the `connection` fuzz target: `echo` copied a control
    /// byte of `CONTENT_TYPE` into its `Content-Type`, a head its own CGI
    /// parser refuses.
    #[test]
    fn control_bytes_never_reach_a_head() {
        assert_eq!(clean_field("text/plai\u{10}n"), "text/plai n");
        assert_eq!(clean_field("a\r\nSet-Cookie: x\u{7f}"), "a  Set-Cookie: x ");
        assert_eq!(clean_field("tab\tkept"), "tab\tkept");
        let headers = vec![("Content-Type".to_string(), clean_field("x\u{0}\u{1b}[2J"))];
        let mut head = Vec::new();
        write_head(&mut head, 200, "", &headers);
        let Ok(Parsed::Complete { head: parsed, .. }) = parse_head(&head, 1024) else {
            panic!("{head:?}");
        };
        assert_eq!(parsed.headers[0].1, "x  [2J");
    }
}
