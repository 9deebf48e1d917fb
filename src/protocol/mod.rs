//! Pure protocol codecs: bytes in, events out. Nothing here touches a
//! socket, a thread or the clock, so each codec is unit-tested, property
//! tested and fuzzed on its own (`fuzz/`).
//!
//! One [`Error`] serves every codec so the host layer has a single place
//! that turns a bad peer into a reply (an HTTP status) and a log line.

pub mod cgi_response;
pub mod fastcgi;
pub mod http;
pub mod params;
pub mod scgi;

use std::fmt;

/// What a codec found wrong with its input. Each variant carries the bad
/// value so the log line names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A FastCGI record header whose version is not `FCGI_VERSION_1`.
    BadVersion(u8),
    /// A FastCGI record whose content length is wrong for its type
    /// (BEGIN_REQUEST, END_REQUEST and UNKNOWN_TYPE bodies are 8 bytes).
    BadRecordLength {
        /// The raw record type.
        record_type: u8,
        /// Its content length.
        length: u16,
    },
    /// A name-value pair whose lengths run past the end of its block.
    BadPair,
    /// A request's params are larger than the configured limit.
    ParamsTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// An SCGI netstring is malformed; the text says how.
    BadNetstring(String),
    /// An SCGI header breaks the SCGI rules; the text says how.
    BadScgiHeader(String),
    /// A CGI response head has a malformed line or a bad `Status`.
    BadCgiHeader(String),
    /// A CGI response head did not end within its limit.
    HeadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}

impl Error {
    /// The HTTP status a host answers with when this error ends a request:
    /// 431 for oversized params, 502 for a bad upstream (CGI) response,
    /// 400 for a malformed request.
    pub fn http_status(&self) -> u16 {
        match self {
            Error::ParamsTooLarge { .. } => 431,
            Error::HeadTooLarge { .. } | Error::BadCgiHeader(_) => 502,
            _ => 400,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadVersion(v) => write!(f, "bad fastcgi version {v}"),
            Error::BadRecordLength {
                record_type,
                length,
            } => write!(
                f,
                "bad content length {length} for fastcgi record type {record_type}"
            ),
            Error::BadPair => write!(f, "malformed name-value pair"),
            Error::ParamsTooLarge { limit } => {
                write!(f, "params larger than the limit of {limit} bytes")
            }
            Error::BadNetstring(what) => write!(f, "bad scgi netstring: {what}"),
            Error::BadScgiHeader(what) => write!(f, "bad scgi header: {what}"),
            Error::BadCgiHeader(what) => write!(f, "bad cgi response header: {what}"),
            Error::HeadTooLarge { limit } => {
                write!(
                    f,
                    "cgi response head larger than the limit of {limit} bytes"
                )
            }
        }
    }
}

impl std::error::Error for Error {}

/// The most client bytes a log line quotes.
pub const EXCERPT_BYTES: usize = 32;

/// A client value fit for a log line: at most [`EXCERPT_BYTES`] of it,
/// escaped and quoted, with its length when it was cut. A client controls
/// these bytes: quoted whole, one request could write a line as long as
/// its params; raw, it could forge lines or send terminal codes.
///
/// ```
/// use fastgate::protocol::excerpt;
/// assert_eq!(excerpt(b"ab\n"), r#""ab\n""#);
/// assert_eq!(excerpt(&[b'x'; 40]), format!("\"{}\"... (40 bytes)", "x".repeat(32)));
/// ```
pub fn excerpt(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(EXCERPT_BYTES)];
    let mut out = format!("\"{}\"", shown.escape_ascii());
    if shown.len() < bytes.len() {
        out.push_str(&format!("... ({} bytes)", bytes.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(Error::ParamsTooLarge { limit: 1 }.http_status(), 431);
        assert_eq!(Error::HeadTooLarge { limit: 1 }.http_status(), 502);
        assert_eq!(Error::BadCgiHeader("x".into()).http_status(), 502);
        assert_eq!(Error::BadVersion(2).http_status(), 400);
        assert_eq!(Error::BadPair.http_status(), 400);
    }

    #[test]
    fn display_is_lowercase_without_period() {
        let all = [
            Error::BadVersion(2),
            Error::BadRecordLength {
                record_type: 1,
                length: 7,
            },
            Error::BadPair,
            Error::ParamsTooLarge { limit: 10 },
            Error::BadNetstring("x".into()),
            Error::BadScgiHeader("x".into()),
            Error::BadCgiHeader("x".into()),
            Error::HeadTooLarge { limit: 10 },
        ];
        for e in all {
            let s = e.to_string();
            assert!(!s.ends_with('.'), "{s}");
            assert_eq!(s, s.to_lowercase(), "{s}");
        }
        assert_eq!(Error::BadVersion(2).to_string(), "bad fastcgi version 2");
    }

    #[test]
    fn excerpts_are_short_and_escaped() {
        assert_eq!(excerpt(b""), r#""""#);
        assert_eq!(excerpt(b"a\x1b[2J\n\""), r#""a\x1b[2J\n\"""#);
        let long = excerpt(&[0xff; 65_535]);
        assert!(long.len() < 4 * EXCERPT_BYTES + 32, "{long}");
        assert!(long.ends_with("... (65535 bytes)"), "{long}");
    }
}
