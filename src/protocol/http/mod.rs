//! HTTP/1.1 for the `http:` listeners (and the letter-first auto
//! sockets): the pure codec layer, in three parts.
//!
//! - [`request`]: a resumable request [`Decoder`] fed
//!   arbitrary splits of input, yielding a head, body pieces and the end of
//!   each request, pipelined requests one after another.
//! - [`head`]: the decoded head and the rules it must follow (framing,
//!   version, Host, keep-alive, `100-continue`); [`target`]: the request
//!   target's forms and the normalized path (nginx's `$uri`).
//! - [`params`]: the CGI params nginx's `fastcgi_params` would send for a
//!   decoded head, so the built-in apps see an HTTP request as they see a
//!   FastCGI one.
//! - [`response`]: a CGI response head turned into an HTTP/1.1 one
//!   (status line, `Date`, framing), the chunk encoder, and the loop's own
//!   refusals.
//!
//! The head is parsed by `httparse` (hyper's parser): it is zero-copy,
//! fuzzed, used across the Rust ecosystem, and already strict where
//! request smuggling lives (no whitespace before a colon, no obs-fold, tokens
//! checked, only HTTP/1.0 and 1.1). What it does not decide (framing,
//! keep-alive, limits, chunked bodies) is here.
//!
//! [`Error`] is this codec's own: each variant knows its status (400, 431
//! or 505), as [`super::Error`] does for the other codecs.

pub mod head;
pub mod params;
pub mod request;
pub mod response;
pub mod target;

use std::fmt;

pub use request::{Decoder, Event, Framing, Head, Version};

/// What the request decoder found wrong. After one, the decoder is dead:
/// the host answers with [`Error::http_status`] and closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A malformed request (400); the text says how.
    BadRequest(String),
    /// The head (or a chunked body's trailers) did not end within the
    /// limit (431).
    HeadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A well-formed `HTTP/x.y` version other than 1.0 and 1.1 (505).
    UnsupportedVersion(String),
}

impl Error {
    /// The status a host answers with: 400, 431 or 505.
    pub fn http_status(&self) -> u16 {
        match self {
            Error::BadRequest(_) => 400,
            Error::HeadTooLarge { .. } => 431,
            Error::UnsupportedVersion(_) => 505,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadRequest(what) => write!(f, "bad http request: {what}"),
            Error::HeadTooLarge { limit } => {
                write!(
                    f,
                    "http request head larger than the limit of {limit} bytes"
                )
            }
            Error::UnsupportedVersion(v) => write!(f, "unsupported http version {v}"),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_messages() {
        let all = [
            (Error::BadRequest("x".into()), 400),
            (Error::HeadTooLarge { limit: 9 }, 431),
            (Error::UnsupportedVersion("x".into()), 505),
        ];
        for (e, status) in all {
            assert_eq!(e.http_status(), status);
            let s = e.to_string();
            assert!(!s.ends_with('.'), "{s}");
            assert_eq!(s, s.to_lowercase(), "{s}");
        }
    }
}
