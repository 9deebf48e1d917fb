//! What a `connection` input asks of the server, read with the project's
//! own decoders: the protocol its first byte picks, the requests it
//! begins (which bound what may come back), and whether it is a clean
//! sequence of complete, well-formed requests within the server's limits
//! (then every one of them must be answered).

use std::collections::{HashMap, HashSet};

use fastgate::protocol::fastcgi::{self, Event, Stream};
use fastgate::protocol::http;
use fastgate::protocol::params::ParamsBuffer;
use fastgate::protocol::scgi;

use crate::server::{MAX_BODY, MAX_PARAMS, MAX_REQS};

/// The input of one connection, as the server should understand it.
pub enum Input {
    /// First byte 1.
    FastCgi(FastCgi),
    /// First byte a digit.
    Scgi {
        /// One complete request within the limits, nothing after its body.
        clean: bool,
    },
    /// First byte a letter.
    Http(Http),
    /// Anything else (or nothing): the server closes without a word.
    Other,
}

/// FastCGI requests begun, and what a clean input expects.
#[derive(Default)]
pub struct FastCgi {
    /// BEGIN_REQUESTs per request id.
    pub begun: HashMap<u16, usize>,
    /// GET_VALUES records (each may get a GET_VALUES_RESULT).
    pub get_values: usize,
    /// Records of unknown types (each may get an UNKNOWN_TYPE).
    pub unknown_types: usize,
    /// For a clean input: each request's id and whether it asked
    /// FCGI_KEEP_CONN.
    pub clean: Option<Vec<(u16, bool)>>,
}

/// HTTP requests begun, and what a clean input expects.
#[derive(Default)]
pub struct Http {
    /// The method of each request head, in order.
    pub methods: Vec<String>,
    /// For a clean input: how many requests must be answered (up to the
    /// first that does not keep the connection alive).
    pub expected: Option<usize>,
}

impl Input {
    /// Reads `payload`, the bytes a connection will carry.
    pub fn read(payload: &[u8]) -> Input {
        match payload.first() {
            Some(1) => Input::FastCgi(read_fastcgi(payload)),
            Some(b'0'..=b'9') => Input::Scgi {
                clean: scgi_is_clean(payload),
            },
            Some(b) if b.is_ascii_alphabetic() => Input::Http(read_http(payload)),
            _ => Input::Other,
        }
    }
}

fn scgi_is_clean(payload: &[u8]) -> bool {
    let Ok(scgi::Header::Complete {
        consumed,
        content_length,
        ..
    }) = scgi::parse_header(payload, MAX_PARAMS)
    else {
        return false;
    };
    (payload.len() - consumed) as u64 == content_length && content_length <= MAX_BODY
}

/// Where a request of a clean FastCGI input stands.
enum Phase {
    Params(ParamsBuffer),
    Stdin(u64),
    Done,
}

/// The scan of a FastCGI input: requests in order and their phases.
#[derive(Default)]
struct Scan {
    out: FastCgi,
    requests: Vec<(u16, bool)>,
    phases: HashMap<u16, Phase>,
    seen: HashSet<u16>,
    clean: bool,
}

impl Scan {
    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::BeginRequest {
                request_id,
                role,
                flags,
            } => self.begin(request_id, role, flags),
            Event::Stream {
                stream,
                request_id,
                data,
            } => self.stream(stream, request_id, data),
            Event::GetValues { .. } => self.out.get_values += 1,
            Event::Unknown { request_id, .. } => {
                self.out.unknown_types += 1;
                self.clean &= request_id == 0;
            }
            _ => self.clean = false,
        }
    }

    fn begin(&mut self, id: u16, role: u16, flags: u8) {
        *self.out.begun.entry(id).or_default() += 1;
        let fresh = id != 0 && self.seen.insert(id);
        self.clean &= fresh && role == fastcgi::Role::Responder as u16;
        self.requests
            .push((id, flags & fastcgi::FCGI_KEEP_CONN != 0));
        self.phases
            .insert(id, Phase::Params(ParamsBuffer::new(MAX_PARAMS)));
    }

    fn stream(&mut self, stream: Stream, id: u16, data: &[u8]) {
        let next = match (stream, self.phases.remove(&id)) {
            (Stream::Params, Some(Phase::Params(mut buf))) if !data.is_empty() => {
                buf.push(data);
                Phase::Params(buf)
            }
            (Stream::Params, Some(Phase::Params(buf))) => match buf.finish() {
                Ok(_) => Phase::Stdin(0),
                Err(_) => return self.clean = false,
            },
            (Stream::Stdin, Some(Phase::Stdin(n))) if !data.is_empty() => {
                Phase::Stdin(n + data.len() as u64)
            }
            (Stream::Stdin, Some(Phase::Stdin(n))) if n <= MAX_BODY => Phase::Done,
            _ => return self.clean = false,
        };
        self.phases.insert(id, next);
    }

    fn finish(mut self, between_records: bool) -> FastCgi {
        let done = self.phases.values().all(|p| matches!(p, Phase::Done));
        let few = self.requests.len() <= MAX_REQS;
        if self.clean && between_records && done && few {
            self.out.clean = Some(self.requests);
        }
        self.out
    }
}

fn read_fastcgi(payload: &[u8]) -> FastCgi {
    let mut dec = fastcgi::Decoder::new();
    let mut scan = Scan {
        clean: true,
        ..Scan::default()
    };
    let mut rest = payload;
    loop {
        match dec.decode(rest) {
            Ok((_, None)) => break,
            Ok((n, Some(event))) => {
                scan.event(event);
                rest = &rest[n..];
            }
            Err(_) => {
                scan.clean = false;
                break;
            }
        }
    }
    scan.finish(dec.is_between_records())
}

fn read_http(payload: &[u8]) -> Http {
    let mut dec = http::Decoder::new(MAX_PARAMS);
    let mut out = Http::default();
    let (mut keep, mut body, mut clean) = (Vec::new(), 0u64, true);
    let mut rest = payload;
    loop {
        match dec.decode(rest) {
            Ok((_, None)) => break,
            Ok((n, Some(event))) => {
                match event {
                    http::Event::Head(head) => {
                        out.methods.push(head.method.clone());
                        keep.push(head.keep_alive);
                        body = 0;
                    }
                    http::Event::Body(piece) => body += piece.len() as u64,
                    http::Event::End => clean &= body <= MAX_BODY,
                }
                rest = &rest[n..];
            }
            Err(_) => {
                clean = false;
                break;
            }
        }
    }
    if clean && dec.is_idle() {
        let expected = keep.iter().position(|k| !k).map_or(keep.len(), |i| i + 1);
        out.expected = Some(expected);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::split::Split;

    /// The seeds of the `connection` corpus are clean inputs (their
    /// requests must all be answered), but for two.
    #[test]
    fn the_seeds_are_clean() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/corpus/connection");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let payload = Split::new(&data).unwrap().payload;
            let clean = match Input::read(payload) {
                Input::FastCgi(f) => f.clean.is_some(),
                Input::Scgi { clean } => clean,
                Input::Http(h) => h.expected.is_some(),
                Input::Other => false,
            };
            // HAProxy's seed aborts a request, and only RESPONDER
            // requests count as clean: those two are not, by design.
            let name = path.file_name().unwrap().to_str().unwrap();
            let by_design = name.contains("haproxy") || name.contains("filter");
            assert_eq!(clean, !by_design, "{name}");
        }
    }
}
