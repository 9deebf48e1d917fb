//! The response as a handler writes it: status, headers, and a body through
//! `io::Write`, handed to the event loop in chunks as it goes.
//!
//! Two rules shape it. Backpressure: each chunk takes output credit, so a
//! handler waits while too much of its output is unwritten (a slow client
//! never makes the process buffer without limit). Response timing: no byte
//! leaves before the request's input has ended (nginx stops sending a body
//! once response headers reach it), so output written earlier is held here,
//! in memory up to [`HOLD_MEMORY`] and then in an unlinked temporary file
//! (`spool.rs`, within `--max-temp-bytes`: past it the answer is a 503),
//! and the handler never blocks on it (a handler that writes before it
//! reads works).

use std::io::{self, Write};
use std::sync::Arc;

use super::message::{End, Message};
use super::shared::Shared;
use super::spool::{is_no_space, SpoolFile, TempSpace};
use crate::protocol::cgi_response::{reason_phrase, Head};

/// Body bytes gathered before a chunk is handed to the loop.
const CHUNK: usize = 32 * 1024;
/// Held output kept in memory before it spills to a temporary file.
const HOLD_MEMORY: usize = 256 * 1024;

/// The response of one request.
pub struct Response {
    shared: Arc<Shared>,
    status: u16,
    headers: Vec<(String, String)>,
    /// The head has been handed to the loop.
    head_out: bool,
    buf: Vec<u8>,
    hold: Hold,
    done: bool,
}

/// Output held until the input ends.
#[derive(Default)]
struct Hold {
    memory: Vec<u8>,
    file: Option<SpoolFile>,
}

impl Hold {
    fn is_empty(&self) -> bool {
        self.memory.is_empty() && self.file.is_none()
    }

    /// Keeps `buf` (emptied) in memory, or past [`HOLD_MEMORY`] in a
    /// temporary file counted against `--max-temp-bytes`.
    fn stash(&mut self, buf: &mut Vec<u8>, space: &Arc<TempSpace>) -> io::Result<()> {
        if self.file.is_none() && self.memory.len() + buf.len() <= HOLD_MEMORY {
            self.memory.append(buf);
            return Ok(());
        }
        if self.file.is_none() {
            self.file = Some(SpoolFile::create(space, None)?);
        }
        if let Some(f) = self.file.as_mut() {
            f.append(buf)?;
        }
        buf.clear();
        Ok(())
    }
}

impl Response {
    pub(crate) fn new(shared: Arc<Shared>) -> Response {
        Response {
            shared,
            status: 200,
            headers: Vec::new(),
            head_out: false,
            buf: Vec::new(),
            hold: Hold::default(),
            done: false,
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
        // Header injection: a CR or LF would end the line early.
        let clean = |s: &str| s.replace(['\r', '\n'], " ");
        self.headers.push((clean(name), clean(value)));
    }

    /// Whether the status and headers can no longer change.
    pub fn headers_sent(&self) -> bool {
        self.head_out
    }

    /// Whether the client went away; writes fail from then on.
    pub fn is_aborted(&self) -> bool {
        self.shared.is_aborted()
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
            reason: reason_phrase(self.status).to_string(),
            headers: std::mem::take(&mut self.headers),
        })
    }

    /// Hands one chunk to the loop, waiting for output credit.
    fn send(&mut self, body: Vec<u8>, end: End) -> io::Result<()> {
        self.shared.acquire_output(body.len())?;
        let head = self.take_head();
        let req = self.shared.req;
        self.shared.sender().send(Message::Output {
            req,
            head,
            body,
            end,
        });
        Ok(())
    }

    /// Moves buffered output on: held while input is still arriving, sent
    /// (held output first) once it has ended.
    fn push(&mut self, end: End) -> io::Result<()> {
        if !self.shared.input_complete() {
            if end == End::No {
                return self.hold.stash(&mut self.buf, self.shared.temp_space());
            }
            // The handler is done; its unread input is discarded.
            self.shared.wait_input_complete()?;
        }
        self.release_hold()?;
        let body = std::mem::take(&mut self.buf);
        if body.is_empty() && end == End::No && self.head_out {
            return Ok(());
        }
        self.send(body, end)
    }

    fn release_hold(&mut self) -> io::Result<()> {
        if self.hold.is_empty() {
            return Ok(());
        }
        let memory = std::mem::take(&mut self.hold.memory);
        if !memory.is_empty() {
            self.send(memory, End::No)?;
        }
        if let Some(mut file) = self.hold.file.take() {
            loop {
                let mut chunk = vec![0; 64 * 1024];
                let n = file.read(&mut chunk)?;
                if n == 0 {
                    break;
                }
                chunk.truncate(n);
                self.send(chunk, End::No)?;
            }
        }
        Ok(())
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
        self.hold = Hold::default();
        // Out of temporary space: a load problem, worth a retry.
        let (status, text) = match is_no_space(&e) {
            true => (503, &b"service unavailable\n"[..]),
            false => (500, &b"internal server error\n"[..]),
        };
        self.status = status;
        self.headers = vec![("Content-Type".into(), "text/plain".into())];
        if status == 503 {
            self.headers.push(("Retry-After".into(), "1".into()));
        }
        self.buf.extend_from_slice(text);
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
