//! A request head and the rules it must follow: httparse reads the
//! request line and the header fields, and this file decides what they
//! mean for the message (RFC 9112): its version, how its body is framed,
//! whether the connection lives on, and whether a `100 Continue` is
//! awaited.
//!
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

use super::{target, Error};
use crate::protocol::excerpt;

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
    /// The path as nginx's `$uri`: percent-decoded, dot segments resolved,
    /// slashes merged ([`super::target::normalize`]).
    pub uri: Vec<u8>,
    /// The version.
    pub version: Version,
    /// Every header in order, names as sent, values trimmed.
    pub headers: Vec<(String, Vec<u8>)>,
    /// How the body is framed.
    pub framing: Framing,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request with a body (RFC 9110
    /// §10.1.1: ignored in 1.0): the host decides whether to send
    /// [`super::response::CONTINUE`] before reading the body.
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

    /// The target in origin form (`/path?query`; an absolute-form
    /// target's part from the path on), as nginx's `$request_uri`.
    pub fn request_uri(&self) -> &str {
        target::origin(&self.target)
    }

    /// The raw path of [`Head::request_uri`]: before the first `?`.
    pub fn path(&self) -> &str {
        let uri = self.request_uri();
        uri.split_once('?').map_or(uri, |(p, _)| p)
    }

    /// The query of [`Head::request_uri`]: after the first `?`, empty if
    /// none.
    pub fn query(&self) -> &str {
        self.request_uri().split_once('?').map_or("", |(_, q)| q)
    }
}

/// Parses a whole head (through its empty line) and applies the rules.
pub(super) fn parse_head(bytes: &[u8]) -> Result<Head, Error> {
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
    target::check(&method, &target)?;
    let mut head = Head {
        method,
        target,
        uri: Vec::new(),
        version,
        headers,
        framing: Framing::None,
        keep_alive: false,
        expect_continue: false,
    };
    check_host(&head)?;
    head.uri = target::normalize(head.path())?;
    head.framing = framing(&head)?;
    head.keep_alive = keep_alive(&head);
    let has_body = !matches!(head.framing, Framing::None | Framing::Length(0));
    head.expect_continue = version == Version::Http11
        && has_body
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

fn bad(what: String) -> Error {
    Error::BadRequest(what)
}
