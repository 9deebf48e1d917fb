//! HTTP/1.1 response encoding: a CGI [`Head`] becomes a status line and
//! headers with the framing this side decides ([`encode_head`]), body
//! bytes become chunks ([`encode_chunk`]), and the loop's own answers
//! (400, 413, 431, 503, ...) get a whole response ([`encode_refusal`]).
//!
//! The clock stays outside: callers pass the Unix time for `Date`, which
//! is formatted here ([`write_http_date`]) with a small civil-from-days
//! conversion rather than a date crate.

use std::io::Write;

use super::request::Version;
use crate::protocol::cgi_response::{reason_phrase, Head};

/// The interim response to `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Headers a handler must not set: this side frames the message and
/// manages the connection (RFC 9110 §7.6.1 hop-by-hop fields). `Status`
/// is CGI's, never HTTP's.
const DROPPED: [&str; 7] = [
    "Status",
    "Connection",
    "Keep-Alive",
    "Transfer-Encoding",
    "Content-Length",
    "Proxy-Connection",
    "Upgrade",
];

/// What [`encode_head`] needs to know beyond the CGI head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The body's length when the whole body is known before the head
    /// goes out; `None` streams it.
    pub length: Option<u64>,
    /// The request was `HEAD`: headers as for `GET`, no body bytes.
    pub head_request: bool,
    /// The request's keep-alive decision.
    pub keep_alive: bool,
    /// The request's version: an HTTP/1.0 client cannot read chunks.
    pub version: Version,
    /// The Unix time for `Date`.
    pub now: u64,
}

/// How the caller must send the body after the head [`encode_head`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// Send no body byte (`HEAD`, 1xx, 204, 304); discard the handler's.
    None,
    /// Send the body bytes as they are (`Content-Length` was written).
    Identity,
    /// Send each piece with [`encode_chunk`], then [`encode_last_chunk`].
    Chunked,
    /// Send the bytes as they are, then close: the end of the connection
    /// ends the body (an HTTP/1.0 client and an unknown length).
    UntilClose,
}

/// Appends the HTTP/1.1 head for `head` and says how to send the body.
///
/// The status line is `HTTP/1.1 {status} {reason}` (the standard phrase
/// when the handler gave none), then `Date` and `Server: fastgate` unless
/// the handler set them, the handler's headers minus `Status`, the
/// hop-by-hop ones and `Content-Length` (this side always frames the body
/// itself, so a wrong length from a handler cannot desynchronize the
/// connection), `Connection: close` unless kept alive (`keep-alive` to a
/// kept HTTP/1.0 client), and the framing:
/// `Content-Length: N` when the length is known, else
/// `Transfer-Encoding: chunked` (HTTP/1.0: none, and the connection closes).
/// 1xx, 204 and 304 carry no framing header and no body.
///
/// ```
/// use std::borrow::Cow;
/// use fastgate::protocol::cgi_response::Head;
/// use fastgate::protocol::http::Version;
/// use fastgate::protocol::http::response::{encode_head, Body, Reply};
/// let head = Head { status: 200, reason: Cow::Borrowed("OK"), headers: vec![] };
/// let reply = Reply { length: Some(2), head_request: false, keep_alive: true, version: Version::Http11, now: 0 };
/// let mut out = Vec::new();
/// assert_eq!(encode_head(&mut out, &head, &reply), Body::Identity);
/// assert_eq!(out, b"HTTP/1.1 200 OK\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n\
/// Server: fastgate\r\nContent-Length: 2\r\n\r\n");
/// ```
pub fn encode_head(out: &mut Vec<u8>, head: &Head, reply: &Reply) -> Body {
    let body = body_for(head.status, reply);
    write_status_line(out, head.status, &head.reason);
    if head.header("Date").is_none() {
        write_date_header(out, reply.now);
    }
    if head.header("Server").is_none() {
        out.extend_from_slice(b"Server: fastgate\r\n");
    }
    for (name, value) in &head.headers {
        if !DROPPED.iter().any(|d| d.eq_ignore_ascii_case(name)) {
            write_field(out, name, value);
        }
    }
    let keep_alive = reply.keep_alive && body != Body::UntilClose;
    write_framing(out, head.status, reply, keep_alive);
    out.extend_from_slice(b"\r\n");
    body
}

fn body_for(status: u16, reply: &Reply) -> Body {
    match (reply.length, reply.version) {
        _ if reply.head_request || no_body(status) => Body::None,
        (Some(_), _) => Body::Identity,
        (None, Version::Http11) => Body::Chunked,
        (None, Version::Http10) => Body::UntilClose,
    }
}

/// RFC 9110 §6.4.1: 1xx, 204 and 304 responses have no content.
fn no_body(status: u16) -> bool {
    status < 200 || status == 204 || status == 304
}

fn write_framing(out: &mut Vec<u8>, status: u16, reply: &Reply, keep_alive: bool) {
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if reply.version == Version::Http10 {
        // An HTTP/1.0 client keeps the connection only when told so
        // (RFC 9112 Appendix C.2.2).
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    if no_body(status) {
        return;
    }
    match (reply.length, reply.version) {
        // Writing to a Vec cannot fail.
        (Some(n), _) => drop(write!(out, "Content-Length: {n}\r\n")),
        (None, Version::Http11) => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        (None, Version::Http10) => {}
    }
}

fn write_status_line(out: &mut Vec<u8>, status: u16, reason: &str) {
    let reason = if reason.is_empty() {
        reason_phrase(status)
    } else {
        reason
    };
    let _ = write!(out, "HTTP/1.1 {status} ");
    push_clean(out, reason);
    out.extend_from_slice(b"\r\n");
}

fn write_field(out: &mut Vec<u8>, name: &str, value: &str) {
    push_clean(out, name);
    out.extend_from_slice(b": ");
    push_clean(out, value);
    out.extend_from_slice(b"\r\n");
}

/// CR and LF are dropped, so no value can split the response.
fn push_clean(out: &mut Vec<u8>, text: &str) {
    out.extend(text.bytes().filter(|&b| b != b'\r' && b != b'\n'));
}

fn write_date_header(out: &mut Vec<u8>, now: u64) {
    out.extend_from_slice(b"Date: ");
    write_http_date(out, now);
    out.extend_from_slice(b"\r\n");
}

/// Appends one chunk holding `bytes`; nothing for an empty piece (an empty
/// chunk would end the body).
pub fn encode_chunk(out: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    let _ = write!(out, "{:x}\r\n", bytes.len());
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// Appends the last chunk, which ends a chunked body (no trailers).
pub fn encode_last_chunk(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n\r\n");
}

/// Appends a whole response the loop sends itself (400, 404, 413, 431,
/// 503, 504, ...): a short `text/plain` body naming the status; a 503
/// also says `Retry-After: 1`, as the FastCGI and SCGI refusals do.
///
/// ```
/// use fastgate::protocol::http::response::encode_refusal;
/// let mut out = Vec::new();
/// encode_refusal(&mut out, 431, false, 0);
/// let text = String::from_utf8(out).unwrap();
/// assert!(text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
/// assert!(text.contains("\r\nConnection: close\r\n"));
/// assert!(text.ends_with("\r\n\r\n431 Request Header Fields Too Large\n"));
/// ```
pub fn encode_refusal(out: &mut Vec<u8>, status: u16, keep_alive: bool, now: u64) {
    refusal(out, status, keep_alive, false, now);
}

/// [`encode_refusal`] in answer to a `HEAD` request: the same head
/// (`Content-Length` that of the body a `GET` would get), no body (RFC
/// 9110 §9.3.2), which the client would read as the start of the next
/// response.
///
/// ```
/// use fastgate::protocol::http::response::encode_head_refusal;
/// let mut out = Vec::new();
/// encode_head_refusal(&mut out, 404, false, 0);
/// let text = String::from_utf8(out).unwrap();
/// assert!(text.contains("\r\nContent-Length: 14\r\n"));
/// assert!(text.ends_with("\r\n\r\n"));
/// ```
pub fn encode_head_refusal(out: &mut Vec<u8>, status: u16, keep_alive: bool, now: u64) {
    refusal(out, status, keep_alive, true, now);
}

fn refusal(out: &mut Vec<u8>, status: u16, keep_alive: bool, head_request: bool, now: u64) {
    let body = format!("{status} {}\n", reason_phrase(status));
    let head = Head::refusal(status);
    let reply = Reply {
        length: Some(body.len() as u64),
        head_request,
        keep_alive,
        version: Version::Http11,
        now,
    };
    if encode_head(out, &head, &reply) == Body::Identity {
        out.extend_from_slice(body.as_bytes());
    }
}

/// Appends `now` (Unix seconds) as an RFC 9110 §5.6.7 IMF-fixdate:
/// `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn write_http_date(out: &mut Vec<u8>, now: u64) {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = now / 86_400;
    let secs = now % 86_400;
    let (year, month, day) = civil_from_days(days);
    let _ = write!(
        out,
        "{}, {day:02} {} {year:04} {:02}:{:02}:{:02} GMT",
        // 1970-01-01 was a Thursday.
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    );
}

/// The proleptic Gregorian (year, month 1–12, day 1–31) of a count of days
/// since 1970-01-01. The year is counted from 1 March, so the leap day is
/// the last of its year and a month's first day follows from a linear
/// formula; 400-year eras of 146 097 days repeat exactly.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // 719 468 days from 0000-03-01 to 1970-01-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months counted from March: 0 = March ... 11 = February.
    let march_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * march_month + 2) / 5 + 1;
    let month = if march_month < 10 {
        march_month + 3
    } else {
        march_month - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
#[path = "response_tests.rs"]
mod tests;
