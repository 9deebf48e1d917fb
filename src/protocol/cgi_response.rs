//! The head of a CGI-style response: an optional `Status:` header, other
//! headers, a blank line (RFC 3875 §6). Parsed by the `fastgate request`
//! client and the CGI gateway, written by every handler's response.
//!
//! The parser is httparse-shaped (`Complete`, `Partial`, or an error) and
//! bounded: a head that does not end within its limit is an error, so a
//! runaway script cannot make the host buffer without end.

use std::io::Write;

use std::borrow::Cow;

use memchr::memchr;

use super::Error;

/// A parsed response head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// The `Status` header's code, 200 when absent (302 with a `Location`).
    pub status: u16,
    /// The `Status` header's reason phrase, or the standard one (borrowed:
    /// no allocation for the usual case).
    pub reason: Cow<'static, str>,
    /// Every header but `Status`, in order, values trimmed.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The head of an answer a server gives itself, without a handler
    /// (a refusal): plain text, and a 503 (a load problem) says when to
    /// retry (`Retry-After: 1`). One rule for every protocol.
    ///
    /// ```
    /// use fastgate::protocol::cgi_response::Head;
    /// assert_eq!(Head::refusal(503).header("Retry-After"), Some("1"));
    /// assert_eq!(Head::refusal(404).header("Retry-After"), None);
    /// ```
    pub fn refusal(status: u16) -> Head {
        let mut headers = vec![("Content-Type".into(), "text/plain".into())];
        if status == 503 {
            headers.push(("Retry-After".into(), "1".into()));
        }
        Head {
            status,
            reason: reason_phrase(status).into(),
            headers,
        }
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The outcome of [`parse_head`].
#[derive(Debug)]
pub enum Parsed {
    /// The head ends after `consumed` bytes; the body follows.
    Complete {
        /// Bytes of the head, blank line included.
        consumed: usize,
        /// The head.
        head: Head,
    },
    /// More bytes are needed.
    Partial,
}

/// Lines end in "\n" or "\r\n"; the head ends at an empty line. Status: "NNN reason" (status 100..=999);
/// no Status but Location => 302; else 200. An "HTTP/1.x NNN reason" first line (nph style) is also accepted.
/// Header names are tokens; obs-fold is rejected. Past `limit` bytes without the end => HeadTooLarge.
///
/// Values are read as UTF-8, any invalid byte replaced; control bytes
/// other than tab are refused.
///
/// ```
/// use fastgate::protocol::cgi_response::{parse_head, Parsed};
/// let out = b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nnope";
/// let Ok(Parsed::Complete { consumed, head }) = parse_head(out, 8192) else { panic!() };
/// assert_eq!((head.status, &*head.reason), (404, "Not Found"));
/// assert_eq!(head.header("content-type"), Some("text/plain"));
/// assert_eq!(&out[consumed..], b"nope");
/// ```
pub fn parse_head(input: &[u8], limit: usize) -> Result<Parsed, Error> {
    let window = &input[..input.len().min(limit)];
    let mut builder = Builder::default();
    let mut pos = 0;
    while let Some(nl) = memchr(b'\n', &window[pos..]) {
        let line = trim_cr(&window[pos..pos + nl]);
        pos += nl + 1;
        if line.is_empty() {
            return Ok(Parsed::Complete {
                consumed: pos,
                head: builder.finish()?,
            });
        }
        builder.line(line)?;
    }
    if input.len() >= limit {
        return Err(Error::HeadTooLarge { limit });
    }
    Ok(Parsed::Partial)
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The head as its lines arrive.
#[derive(Default)]
struct Builder {
    status: Option<(u16, Cow<'static, str>)>,
    headers: Vec<(String, String)>,
    lines: usize,
}

impl Builder {
    fn line(&mut self, line: &[u8]) -> Result<(), Error> {
        self.lines += 1;
        if self.lines == 1 && line.starts_with(b"HTTP/1.") {
            return self.status_line(line);
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            return Err(bad(format!("folded header line {:?}", lossy(line))));
        }
        let (name, value) = split_header(line)?;
        if name.eq_ignore_ascii_case("Status") {
            return self.set_status(&value);
        }
        self.headers.push((name, value));
        Ok(())
    }

    /// An nph-style `HTTP/1.x NNN reason` first line.
    fn status_line(&mut self, line: &[u8]) -> Result<(), Error> {
        let text = checked_text(line)?;
        let rest = text.split_once(' ').map(|(_, r)| r);
        let version_ok =
            text.len() > 8 && text.as_bytes()[7].is_ascii_digit() && text.as_bytes()[8] == b' ';
        match rest {
            Some(rest) if version_ok => self.set_status(rest),
            _ => Err(bad(format!("bad status line {text:?}"))),
        }
    }

    fn set_status(&mut self, value: &str) -> Result<(), Error> {
        if self.status.is_some() {
            return Err(bad(format!("second status {value:?}")));
        }
        self.status = Some(parse_status(value)?);
        Ok(())
    }

    fn finish(self) -> Result<Head, Error> {
        let (status, reason) = match self.status {
            Some(s) => s,
            None if self.has_location() => (302, reason_phrase(302).into()),
            None => (200, reason_phrase(200).into()),
        };
        Ok(Head {
            status,
            reason,
            headers: self.headers,
        })
    }

    fn has_location(&self) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("Location"))
    }
}

/// `NNN reason`; a missing reason is the standard phrase.
fn parse_status(value: &str) -> Result<(u16, Cow<'static, str>), Error> {
    let (code, reason) = value.split_once(' ').unwrap_or((value, ""));
    let digits_ok =
        code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()) && !code.starts_with('0');
    let status: u16 = match code.parse() {
        Ok(s) if digits_ok => s,
        _ => return Err(bad(format!("bad status {value:?}"))),
    };
    let reason = match reason.trim() {
        "" => Cow::Borrowed(reason_phrase(status)),
        given => Cow::Owned(given.to_string()),
    };
    Ok((status, reason))
}

/// `Name: value` with a token name; the value is trimmed of spaces and tabs.
fn split_header(line: &[u8]) -> Result<(String, String), Error> {
    let colon = memchr(b':', line)
        .ok_or_else(|| bad(format!("header line without ':' {:?}", lossy(line))))?;
    let name = &line[..colon];
    if name.is_empty() || !name.iter().all(|&b| is_token(b)) {
        return Err(bad(format!("bad header name {:?}", lossy(name))));
    }
    let value = checked_text(&line[colon + 1..])?
        .trim_matches([' ', '\t'])
        .to_string();
    Ok((lossy(name), value))
}

/// The bytes as text, refusing control bytes (a stray CR or NUL would
/// smuggle a line break or end a C string downstream).
fn checked_text(bytes: &[u8]) -> Result<String, Error> {
    if let Some(&b) = bytes
        .iter()
        .find(|&&b| (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        return Err(bad(format!("control byte 0x{b:02x} in {:?}", lossy(bytes))));
    }
    Ok(lossy(bytes))
}

/// RFC 9110 §5.6.2 tchar.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn bad(what: String) -> Error {
    Error::BadCgiHeader(what)
}

/// Appends "Status: NNN Reason\r\n" + each "Name: value\r\n" + "\r\n".
///
/// An empty `reason` becomes the standard phrase. CR and LF are dropped
/// from names, values and the reason, so no value can split the response.
pub fn write_head(out: &mut Vec<u8>, status: u16, reason: &str, headers: &[(String, String)]) {
    let reason = if reason.is_empty() {
        reason_phrase(status)
    } else {
        reason
    };
    // Writing to a Vec cannot fail.
    let _ = write!(out, "Status: {status}");
    if !reason.is_empty() {
        out.push(b' ');
        push_clean(out, reason);
    }
    out.extend_from_slice(b"\r\n");
    write_fields(out, headers);
}

/// As [`write_head`], for a response going to a front server: a plain
/// `200 OK` carries no `Status` line, as PHP-FPM sends it (200 is a CGI
/// response's default, and Caddy passes a `Status` header on to its
/// client). With no other header the line stays, so the head is never
/// empty (RFC 3875 wants at least one field).
pub fn write_reply_head(
    out: &mut Vec<u8>,
    status: u16,
    reason: &str,
    headers: &[(String, String)],
) {
    let plain_ok = status == 200 && (reason.is_empty() || reason == "OK");
    if !plain_ok || headers.is_empty() {
        return write_head(out, status, reason, headers);
    }
    write_fields(out, headers);
}

/// Each "Name: value\r\n", then the blank line that ends the head.
fn write_fields(out: &mut Vec<u8>, headers: &[(String, String)]) {
    for (name, value) in headers {
        push_clean(out, name);
        out.extend_from_slice(b": ");
        push_clean(out, value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

fn push_clean(out: &mut Vec<u8>, text: &str) {
    out.extend(text.bytes().filter(|&b| b != b'\r' && b != b'\n'));
}

/// The standard reason phrase for a status ("OK", "Not Found", "Request Header Fields Too Large", ...), "" if unknown.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        _ => client_error_phrase(status),
    }
}

fn client_error_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        _ => server_error_phrase(status),
    }
}

fn server_error_phrase(status: u16) -> &'static str {
    match status {
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        511 => "Network Authentication Required",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_200_goes_to_the_front_server_without_a_status_line() {
        let ct = [("Content-Type".to_string(), "text/plain".to_string())];
        let head = |status, reason, headers: &[(String, String)]| {
            let mut out = Vec::new();
            write_reply_head(&mut out, status, reason, headers);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(head(200, "", &ct), "Content-Type: text/plain\r\n\r\n");
        assert_eq!(head(200, "OK", &ct), "Content-Type: text/plain\r\n\r\n");
        assert_eq!(
            head(200, "Fine", &ct),
            "Status: 200 Fine\r\nContent-Type: text/plain\r\n\r\n"
        );
        assert_eq!(head(200, "", &[]), "Status: 200 OK\r\n\r\n");
        assert_eq!(
            head(404, "", &ct),
            "Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\n"
        );
    }
    use proptest::prelude::*;

    fn head(input: &[u8]) -> (usize, Head) {
        match parse_head(input, 4096) {
            Ok(Parsed::Complete { consumed, head }) => (consumed, head),
            other => panic!("{:?}: {other:?}", lossy(input)),
        }
    }

    fn h(name: &str, value: &str) -> (String, String) {
        (name.to_string(), value.to_string())
    }

    #[test]
    fn statuses() {
        let table: &[(&[u8], u16, &str)] = &[
            (b"Content-Type: text/plain\n\n", 200, "OK"),
            (b"Status: 404 Gone Fishing\r\n\r\n", 404, "Gone Fishing"),
            (b"status:431\n\n", 431, "Request Header Fields Too Large"),
            (b"Status: 299\n\n", 299, ""),
            (b"Location: /x\n\n", 302, "Found"),
            (b"Location: /x\nStatus: 301 Moved\n\n", 301, "Moved"),
            (b"HTTP/1.1 503 Busy\r\nRetry-After: 1\r\n\r\n", 503, "Busy"),
            (b"HTTP/1.0 204\n\n", 204, "No Content"),
            (b"\r\n", 200, "OK"),
        ];
        for (input, status, reason) in table {
            let (consumed, head) = head(input);
            assert_eq!(consumed, input.len());
            assert_eq!(
                (head.status, &*head.reason),
                (*status, *reason),
                "{:?}",
                lossy(input)
            );
        }
    }

    #[test]
    fn headers_are_kept_in_order_and_trimmed() {
        let input = b"X-A:  1 \t\r\nStatus: 201 Created\nx-b:\nX-A: 2\n\nbody";
        let (consumed, head) = head(input);
        assert_eq!(&input[consumed..], b"body");
        assert_eq!(
            head.headers,
            vec![h("X-A", "1"), h("x-b", ""), h("X-A", "2")]
        );
        assert_eq!(head.header("x-a"), Some("1"));
        assert_eq!(head.header("X-B"), Some(""));
        assert_eq!(head.header("Status"), None);
    }

    #[test]
    fn bad_heads() {
        let table: &[(&[u8], &str)] = &[
            (b"Content-Type text/plain\n\n", "without ':'"),
            (b"Bad Name: x\n\n", "bad header name"),
            (b": x\n\n", "bad header name"),
            (b"X: a\n b\n\n", "folded"),
            (b"Status: 20\n\n", "bad status"),
            (b"Status: 099 x\n\n", "bad status"),
            (b"Status: 1000\n\n", "bad status"),
            (b"Status: abc\n\n", "bad status"),
            (b"Status: 200\nStatus: 200\n\n", "second status"),
            (b"HTTP/1.1200 OK\n\n", "bad status line"),
            (b"X: a\rb\n\n", "control byte 0x0d"),
            (b"X: a\x00\n\n", "control byte 0x00"),
        ];
        for (input, want) in table {
            let err = parse_head(input, 4096).unwrap_err();
            assert!(err.to_string().contains(want), "{:?}: {err}", lossy(input));
            assert_eq!(err.http_status(), 502);
        }
    }

    #[test]
    fn limit() {
        let input = b"X: 1\n\n";
        assert!(matches!(
            parse_head(input, input.len()),
            Ok(Parsed::Complete { .. })
        ));
        assert_eq!(
            parse_head(input, input.len() - 1).unwrap_err(),
            Error::HeadTooLarge { limit: 5 }
        );
        assert!(matches!(parse_head(b"X: 1\n", 7), Ok(Parsed::Partial)));
        assert_eq!(
            parse_head(b"X: 1234", 7).unwrap_err(),
            Error::HeadTooLarge { limit: 7 }
        );
    }

    #[test]
    fn every_prefix_is_partial() {
        let input = b"Status: 200 OK\r\nContent-Type: text/html\r\n\r\n";
        for end in 0..input.len() {
            assert!(
                matches!(parse_head(&input[..end], 4096), Ok(Parsed::Partial)),
                "{end}"
            );
        }
    }

    #[test]
    fn write_head_bytes() {
        let mut out = Vec::new();
        write_head(
            &mut out,
            404,
            "",
            &[
                h("Content-Type", "text/plain"),
                h("X-Evil", "a\r\nSet-Cookie: b"),
            ],
        );
        assert_eq!(
            out,
            b"Status: 404 Not Found\r\nContent-Type: text/plain\r\nX-Evil: aSet-Cookie: b\r\n\r\n"
        );
        out.clear();
        write_head(&mut out, 299, "", &[]);
        assert_eq!(out, b"Status: 299\r\n\r\n");
    }

    #[test]
    fn phrases() {
        assert_eq!(reason_phrase(200), "OK");
        assert_eq!(reason_phrase(404), "Not Found");
        assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
        assert_eq!(reason_phrase(504), "Gateway Timeout");
        assert_eq!(reason_phrase(299), "");
    }

    proptest! {
        #[test]
        fn round_trip(status in 100u16..=999, reason in "[A-Za-z][A-Za-z ]{0,20}[A-Za-z]",
                      headers in proptest::collection::vec(("[A-Za-z0-9-]{1,16}", "[!-~]([ -~]{0,30}[!-~])?"), 0..8)) {
            let headers: Vec<(String, String)> = headers.into_iter().filter(|(n, _)| !n.eq_ignore_ascii_case("status")).collect();
            let mut out = Vec::new();
            write_head(&mut out, status, &reason, &headers);
            out.extend_from_slice(b"body");
            let Ok(Parsed::Complete { consumed, head }) = parse_head(&out, 1 << 20) else { panic!("incomplete") };
            prop_assert_eq!(consumed, out.len() - 4);
            prop_assert_eq!(head, Head { status, reason: reason.into(), headers });
            for end in 0..consumed {
                prop_assert!(matches!(parse_head(&out[..end], 1 << 20), Ok(Parsed::Partial)));
            }
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), limit in 0usize..400) {
            let _ = parse_head(&bytes, limit);
        }
    }
}
