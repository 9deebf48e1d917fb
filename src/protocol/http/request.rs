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
//! - Framing (RFC 9112 §6): `Content-Length` and `Transfer-Encoding`
//!   together are refused (the classic smuggling form), as are two
//!   different lengths (identical repeats are one length) and a length
//!   that is not digits. The only transfer coding accepted is `chunked`
//!   alone, case-insensitive; `gzip, chunked` or `chunked, chunked` are
//!   refused, as is any `Transfer-Encoding` on an HTTP/1.0 request.
//! - Versions: httparse reads only HTTP/1.0 and 1.1; another well-formed
//!   `HTTP/d.d` is 505, anything else in its place 400.
//! - Host (RFC 9112 §3.2): an HTTP/1.1 request needs exactly one; two are
//!   refused in any version.

use memchr::{memchr, memchr_iter};

use super::Error;
use crate::protocol::excerpt;

/// The longest chunk-size line (size, extensions, line end) kept while it
/// arrives; a longer one is a bad request.
pub const MAX_CHUNK_LINE: usize = 4096;

/// A buffer larger than this is freed after its request, so an idle
/// keep-alive connection holds little memory.
const KEEP_CAPACITY: usize = 4096;

/// The protocol version of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0: no keep-alive unless asked, no chunked body.
    Http10,
    /// HTTP/1.1.
    Http11,
}

impl Version {
    /// "HTTP/1.0" or "HTTP/1.1".
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// How a request's body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No `Content-Length` nor `Transfer-Encoding`: no body.
    None,
    /// `Content-Length: N`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A request head, owned (it may have arrived in several pieces).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// The method, a token (`GET`).
    pub method: String,
    /// The request target as sent (`/path?query`).
    pub target: String,
    /// The version.
    pub version: Version,
    /// Every header in order, names as sent, values trimmed.
    pub headers: Vec<(String, Vec<u8>)>,
    /// How the body is framed.
    pub framing: Framing,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request: the host decides
    /// whether to send [`super::response::CONTINUE`] before reading the body.
    pub expect_continue: bool,
}

impl Head {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The target's path: before the first `?`.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    /// The target's query: after the first `?`, empty if none.
    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }
}

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

/// Parses a whole head (through its empty line) and applies the rules.
fn parse_head(bytes: &[u8]) -> Result<Head, Error> {
    let lines = memchr_iter(b'\n', bytes).count();
    let mut slots = vec![httparse::EMPTY_HEADER; lines];
    let mut req = httparse::Request::new(&mut slots);
    match req.parse(bytes) {
        Ok(httparse::Status::Complete(n)) if n == bytes.len() => {}
        Ok(_) => return Err(bad(format!("malformed head {}", excerpt(bytes)))),
        Err(httparse::Error::Version) => return Err(version_error(bytes)),
        Err(e) => return Err(bad(format!("{e} in {}", excerpt(first_line(bytes))))),
    }
    // Complete means every part below is present.
    let version = match req.version {
        Some(0) => Version::Http10,
        _ => Version::Http11,
    };
    let headers: Vec<(String, Vec<u8>)> = req
        .headers
        .iter()
        .map(|h| (h.name.to_string(), h.value.trim_ascii().to_vec()))
        .collect();
    build_head(
        req.method.unwrap_or_default().to_string(),
        req.path.unwrap_or_default().to_string(),
        version,
        headers,
    )
}

fn build_head(
    method: String,
    target: String,
    version: Version,
    headers: Vec<(String, Vec<u8>)>,
) -> Result<Head, Error> {
    let mut head = Head {
        method,
        target,
        version,
        headers,
        framing: Framing::None,
        keep_alive: false,
        expect_continue: false,
    };
    check_host(&head)?;
    head.framing = framing(&head)?;
    head.keep_alive = keep_alive(&head);
    head.expect_continue = version == Version::Http11
        && head
            .values("Expect")
            .any(|v| v.eq_ignore_ascii_case(b"100-continue"));
    Ok(head)
}

fn first_line(bytes: &[u8]) -> &[u8] {
    let end = memchr(b'\n', bytes).unwrap_or(bytes.len());
    bytes[..end].trim_ascii_end()
}

/// httparse's version error: 505 for a well-formed `HTTP/d.d`, else 400.
fn version_error(bytes: &[u8]) -> Error {
    let line = first_line(bytes);
    let last = line.rsplit(|&b| b == b' ').next().unwrap_or_default();
    match last {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Error::UnsupportedVersion(excerpt(last))
        }
        _ => bad(format!("bad request line {}", excerpt(line))),
    }
}

/// RFC 9112 §3.2: exactly one Host in HTTP/1.1, at most one in 1.0.
fn check_host(head: &Head) -> Result<(), Error> {
    match (head.values("Host").count(), head.version) {
        (0, Version::Http11) => Err(bad("no host header".to_string())),
        (0 | 1, _) => Ok(()),
        _ => Err(bad("more than one host header".to_string())),
    }
}

/// RFC 9112 §6.1–6.3, strictly (see the module comment).
fn framing(head: &Head) -> Result<Framing, Error> {
    let length = content_length(head)?;
    if head.header("Transfer-Encoding").is_none() {
        return Ok(length.map_or(Framing::None, Framing::Length));
    }
    if length.is_some() {
        return Err(bad("both content-length and transfer-encoding".to_string()));
    }
    if head.version == Version::Http10 {
        return Err(bad("transfer-encoding in an http/1.0 request".to_string()));
    }
    let codings: Vec<&[u8]> = list(head, "Transfer-Encoding").collect();
    match codings[..] {
        [only] if only.eq_ignore_ascii_case(b"chunked") => Ok(Framing::Chunked),
        _ => Err(bad(format!(
            "transfer-encoding {} is not chunked alone",
            excerpt(head.header("Transfer-Encoding").unwrap_or_default())
        ))),
    }
}

/// The elements of a comma-separated header, over all its lines, trimmed,
/// empty ones skipped (RFC 9110 §5.6.1).
fn list<'a>(head: &'a Head, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
    head.values(name)
        .flat_map(|v| v.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|e| !e.is_empty())
}

/// Every `Content-Length` element must be the same run of digits.
fn content_length(head: &Head) -> Result<Option<u64>, Error> {
    let mut found = None;
    for value in head.values("Content-Length") {
        for element in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            let n = parse_decimal(element)
                .ok_or_else(|| bad(format!("bad content-length {}", excerpt(value))))?;
            if found.is_some_and(|f| f != n) {
                return Err(bad("two different content-lengths".to_string()));
            }
            found = Some(n);
        }
    }
    Ok(found)
}

fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// HTTP/1.1 keeps the connection unless `Connection: close`; HTTP/1.0
/// closes it unless `Connection: keep-alive` (RFC 9112 §9.3).
fn keep_alive(head: &Head) -> bool {
    let has = |token: &[u8]| list(head, "Connection").any(|t| t.eq_ignore_ascii_case(token));
    match head.version {
        Version::Http11 => !has(b"close"),
        Version::Http10 => has(b"keep-alive") && !has(b"close"),
    }
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
