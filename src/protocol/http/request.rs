//! The HTTP/1.1 request decoder: bytes in, [`Event`]s out (a [`Head`],
//! body pieces, the end of the request), then the next pipelined request
//! from the bytes that follow.
//!
//! Memory is bounded: the head is buffered up to the limit the host passes
//! (its `--max-params-bytes`), a chunk-size line up to
//! [`MAX_CHUNK_LINE`] bytes; body bytes are never buffered (they borrow the
//! input). Trailers are skipped as they come, counted against the limit.
//!
//! Rules, with why:
//! - Line ends: CRLF, or a bare LF (RFC 9112 §2.2 lets a recipient accept
//!   one), the same in the head (as httparse does) and in chunk lines, so
//!   both parts of a message read lines alike. A bare CR is an error.
//! - The head's own rules (framing, versions, Host, keep-alive) are in
//!   [`super::head`].

use std::fmt;

use memchr::{memchr, memchr_iter};

use super::head::parse_head;
pub use super::head::{Framing, Head, Version};
use super::Error;
use crate::protocol::excerpt;

/// The longest chunk-size line (size, extensions, line end) kept while it
/// arrives; a longer one is a bad request.
pub const MAX_CHUNK_LINE: usize = 4096;

/// A buffer larger than this is freed after its request, so an idle
/// keep-alive connection holds little memory.
const KEEP_CAPACITY: usize = 4096;

/// What the decoder found.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A request head; its body (if any) follows.
    Head(Head),
    /// A piece of the body, borrowed from the input, never empty.
    Body(&'a [u8]),
    /// The request is complete; the next bytes start the next request.
    End,
}

/// A log line's view of an event: at most a short escaped excerpt of the
/// client's bytes (the derived `Debug` prints them all).
impl fmt::Display for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Head(h) => write!(
                f,
                "head {} {} {}",
                excerpt(h.method.as_bytes()),
                excerpt(h.target.as_bytes()),
                h.version.as_str()
            ),
            Event::Body(data) => write!(f, "body piece of {} bytes: {}", data.len(), excerpt(data)),
            Event::End => write!(f, "end of request"),
        }
    }
}

/// Where the decoder is within the current request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before or inside a head (buffered in `Decoder::head`).
    Head,
    /// The body is complete; `End` is due.
    EndDue,
    /// Inside a `Content-Length` body.
    Length { remaining: u64 },
    /// Inside a chunk-size line (buffered in `Decoder::line`).
    ChunkSize,
    /// Inside a chunk's data.
    ChunkData { remaining: u64 },
    /// After a chunk's data: its line end (`cr`: the CR was seen).
    ChunkDataEnd { cr: bool },
    /// After the last chunk: skipping trailer lines up to an empty one.
    Trailers(Trailers),
}

/// Progress through the trailers, which are skipped, never kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Trailers {
    /// Bytes of the current line so far.
    line_len: usize,
    /// The current line so far is exactly "\r".
    cr_only: bool,
    /// Bytes of trailers so far, bounded by the limit.
    total: usize,
}

/// A resumable request decoder: feed it whatever bytes arrived, it
/// reports how many it used and at most one [`Event`] per call.
///
/// ```
/// use fastgate::protocol::http::{Decoder, Event};
/// let wire = b"POST /a?b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi";
/// let mut dec = Decoder::new(8192);
/// let (used, Some(Event::Head(head))) = dec.decode(wire).unwrap() else { panic!() };
/// assert_eq!((head.method.as_str(), head.path(), head.query()), ("POST", "/a", "b"));
/// assert_eq!(dec.decode(&wire[used..]).unwrap(), (2, Some(Event::Body(b"hi"))));
/// assert_eq!(dec.decode(b"").unwrap(), (0, Some(Event::End)));
/// ```
#[derive(Debug)]
pub struct Decoder {
    limit: usize,
    state: State,
    head: Vec<u8>,
    /// How much of `head` was searched for its end already.
    scanned: usize,
    line: Vec<u8>,
    failed: Option<Error>,
}

impl Decoder {
    /// A decoder at the start of a connection whose heads may take at
    /// most `limit` bytes (request line, headers, blank line).
    pub fn new(limit: usize) -> Decoder {
        Decoder {
            limit,
            state: State::Head,
            head: Vec::new(),
            scanned: 0,
            line: Vec::new(),
            failed: None,
        }
    }

    /// Decodes at most one event from the front of `input`; returns the
    /// bytes consumed and the event. `Ok((n, None))` means "need more" and
    /// always has `n == input.len()`: the decoder keeps what it needs.
    /// An event may consume no byte (`End` after a body that ended in an
    /// earlier call). Never panics; after an `Err` every call returns it
    /// again (the host answers and closes).
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Option<Event<'a>>), Error> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.decode_one(input);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
            self.head = Vec::new();
            self.line = Vec::new();
        }
        result
    }

    /// True between requests with nothing buffered: a connection closing
    /// here closed cleanly.
    pub fn is_idle(&self) -> bool {
        self.state == State::Head && self.head.is_empty() && self.failed.is_none()
    }

    /// The memory the decoder holds for partial input (its buffers'
    /// capacity): at most the limit plus [`MAX_CHUNK_LINE`].
    pub fn buffered(&self) -> usize {
        self.head.capacity() + self.line.capacity()
    }

    fn decode_one<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Option<Event<'a>>), Error> {
        let mut pos = 0;
        loop {
            let (n, event) = self.step(&input[pos..])?;
            pos += n;
            if event.is_some() || n == 0 {
                return Ok((pos, event));
            }
        }
    }

    /// One move: consumes bytes, or yields an event, or returns `(0, None)`
    /// only when `input` is empty.
    fn step<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Option<Event<'a>>), Error> {
        match self.state {
            State::Head => self.read_head(input),
            State::EndDue => Ok((0, Some(self.end()))),
            State::Length { remaining } => Ok(self.read_length(input, remaining)),
            State::ChunkSize => self.read_chunk_size(input),
            State::ChunkData { remaining } => Ok(self.read_chunk_data(input, remaining)),
            State::ChunkDataEnd { cr } => self.read_chunk_data_end(input, cr),
            State::Trailers(t) => self.read_trailers(input, t),
        }
    }

    fn end<'a>(&mut self) -> Event<'a> {
        self.state = State::Head;
        Event::End
    }

    fn read_head<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Option<Event<'a>>), Error> {
        if self.head.is_empty() {
            return self.read_head_start(input);
        }
        let take = input.len().min(self.limit - self.head.len());
        let old = self.head.len();
        push_bounded(&mut self.head, &input[..take], self.limit);
        match head_end(&self.head, self.scanned) {
            Some(end) => {
                let head = parse_head(&self.head[..end])?;
                self.release_head();
                Ok((end - old, Some(self.begin(head))))
            }
            None if self.head.len() >= self.limit => Err(self.too_large()),
            None => {
                self.scanned = self.head.len();
                Ok((take, None))
            }
        }
    }

    /// A head's first bytes: empty lines before it are skipped (RFC 9112
    /// §2.2), and a head that is whole in `input` is parsed from there,
    /// without a copy.
    fn read_head_start<'a>(
        &mut self,
        input: &'a [u8],
    ) -> Result<(usize, Option<Event<'a>>), Error> {
        let blank = input
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        if blank > 0 || input.is_empty() {
            return Ok((blank, None));
        }
        let window = &input[..input.len().min(self.limit)];
        if let Some(end) = head_end(window, 0) {
            let head = parse_head(&input[..end])?;
            return Ok((end, Some(self.begin(head))));
        }
        if input.len() >= self.limit {
            return Err(self.too_large());
        }
        push_bounded(&mut self.head, input, self.limit);
        self.scanned = input.len();
        Ok((input.len(), None))
    }

    fn too_large(&self) -> Error {
        Error::HeadTooLarge { limit: self.limit }
    }

    fn release_head(&mut self) {
        if self.head.capacity() > KEEP_CAPACITY {
            self.head = Vec::new();
        }
        self.head.clear();
        self.scanned = 0;
    }

    /// The state after a head: its body, or the end at once.
    fn begin<'a>(&mut self, head: Head) -> Event<'a> {
        self.state = match head.framing {
            Framing::None | Framing::Length(0) => State::EndDue,
            Framing::Length(remaining) => State::Length { remaining },
            Framing::Chunked => State::ChunkSize,
        };
        Event::Head(head)
    }

    fn read_length<'a>(&mut self, input: &'a [u8], remaining: u64) -> (usize, Option<Event<'a>>) {
        if input.is_empty() {
            return (0, None);
        }
        let n = clamp(remaining, input.len());
        let remaining = remaining - n as u64;
        self.state = if remaining == 0 {
            State::EndDue
        } else {
            State::Length { remaining }
        };
        (n, Some(Event::Body(&input[..n])))
    }

    fn read_chunk_size<'a>(
        &mut self,
        input: &'a [u8],
    ) -> Result<(usize, Option<Event<'a>>), Error> {
        let (take, complete) = match memchr(b'\n', input) {
            Some(i) => (i + 1, true),
            None => (input.len(), false),
        };
        if self.line.len() + take > MAX_CHUNK_LINE {
            return Err(bad(format!(
                "chunk size line longer than {MAX_CHUNK_LINE} bytes"
            )));
        }
        push_bounded(&mut self.line, &input[..take], MAX_CHUNK_LINE);
        if complete {
            let size = parse_chunk_size(&self.line[..self.line.len() - 1])?;
            self.line.clear();
            self.state = match size {
                0 => State::Trailers(Trailers::default()),
                remaining => State::ChunkData { remaining },
            };
        }
        Ok((take, None))
    }

    fn read_chunk_data<'a>(
        &mut self,
        input: &'a [u8],
        remaining: u64,
    ) -> (usize, Option<Event<'a>>) {
        if input.is_empty() {
            return (0, None);
        }
        let n = clamp(remaining, input.len());
        let remaining = remaining - n as u64;
        self.state = if remaining == 0 {
            State::ChunkDataEnd { cr: false }
        } else {
            State::ChunkData { remaining }
        };
        (n, Some(Event::Body(&input[..n])))
    }

    fn read_chunk_data_end<'a>(
        &mut self,
        input: &'a [u8],
        cr: bool,
    ) -> Result<(usize, Option<Event<'a>>), Error> {
        match input.first() {
            None => return Ok((0, None)),
            Some(b'\r') if !cr => self.state = State::ChunkDataEnd { cr: true },
            Some(b'\n') => self.state = State::ChunkSize,
            Some(&b) => {
                return Err(bad(format!(
                    "chunk data followed by {:?}, not a line end",
                    char::from(b)
                )))
            }
        }
        Ok((1, None))
    }

    /// Skips trailer lines (accepted, never kept) up to the empty line that
    /// ends the request.
    fn read_trailers<'a>(
        &mut self,
        input: &'a [u8],
        mut t: Trailers,
    ) -> Result<(usize, Option<Event<'a>>), Error> {
        let (seg, newline) = match memchr(b'\n', input) {
            Some(i) => (&input[..i], true),
            None => (input, false),
        };
        t.cr_only = match (t.line_len, seg) {
            (0, b"\r") => true,
            (_, []) => t.cr_only,
            _ => false,
        };
        t.line_len += seg.len();
        t.total += seg.len() + usize::from(newline);
        if t.total > self.limit {
            return Err(self.too_large());
        }
        if !newline {
            self.state = State::Trailers(t);
            return Ok((seg.len(), None));
        }
        if t.line_len == 0 || t.cr_only {
            return Ok((seg.len() + 1, Some(self.end())));
        }
        self.state = State::Trailers(Trailers {
            total: t.total,
            ..Trailers::default()
        });
        Ok((seg.len() + 1, None))
    }
}

/// The smaller of a body's remaining length and the bytes at hand.
fn clamp(remaining: u64, available: usize) -> usize {
    usize::try_from(remaining).map_or(available, |r| r.min(available))
}

/// Appends `bytes`, growing the capacity by doubling but never past
/// `limit` (the caller never pushes past it): capacity is what a host
/// counts against its budgets.
fn push_bounded(buf: &mut Vec<u8>, bytes: &[u8], limit: usize) {
    let needed = buf.len() + bytes.len();
    if needed > buf.capacity() {
        let target = needed.max(buf.capacity() * 2).min(limit).max(needed);
        buf.reserve_exact(target - buf.len());
    }
    buf.extend_from_slice(bytes);
}

/// Where the head ends (just past its empty line), searching new bytes
/// from `from`: a LF preceded by LF or by LF CR.
fn head_end(bytes: &[u8], from: usize) -> Option<usize> {
    memchr_iter(b'\n', &bytes[from..])
        .map(|i| i + from)
        .find(|&i| bytes[..i].ends_with(b"\n") || bytes[..i].ends_with(b"\n\r"))
        .map(|i| i + 1)
}

/// `chunk-size [ BWS ; chunk-ext ] [CR]` (the LF already cut); the
/// extensions are ignored but must hold no control byte.
fn parse_chunk_size(line: &[u8]) -> Result<u64, Error> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(bad(format!("bad chunk size {}", excerpt(line))));
    }
    let size = line[..digits]
        .iter()
        .try_fold(0u64, |n, &d| n.checked_mul(16)?.checked_add(hex_value(d)))
        .ok_or_else(|| bad(format!("chunk size {} overflows", excerpt(line))))?;
    let rest = &line[digits..];
    let ext = rest.trim_ascii_start();
    let control = |b: &u8| (*b < 0x20 && *b != b'\t') || *b == 0x7f;
    if !(ext.is_empty() || ext[0] == b';') || rest.iter().any(control) {
        return Err(bad(format!("bad chunk size line {}", excerpt(line))));
    }
    Ok(size)
}

fn hex_value(d: u8) -> u64 {
    // Only called on ASCII hex digits.
    u64::from(match d {
        b'0'..=b'9' => d - b'0',
        b'a'..=b'f' => d - b'a' + 10,
        _ => d - b'A' + 10,
    })
}

fn bad(what: String) -> Error {
    Error::BadRequest(what)
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
