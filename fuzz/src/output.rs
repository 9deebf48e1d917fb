//! What the server wrote back on one connection, read for the protocol
//! its input spoke. Each reader returns what was answered, or the first
//! thing the server must never write (a malformed record or response, an
//! answer to a request never begun); `truncated` says the output stops
//! inside a record or response (fine while more may come, a fault at the
//! end of the connection).

use std::collections::HashMap;

use fastgate::protocol::cgi_response::{parse_head, Parsed};
use fastgate::protocol::fastcgi::{Decoder, Event, Stream};

use crate::requests::{FastCgi, Http};

/// The longest CGI head the checks accept.
const HEAD_LIMIT: usize = 64 << 10;

/// What came back on a FastCGI connection.
#[derive(Default, Debug)]
pub struct FastCgiAnswers {
    /// END_REQUESTs per request id.
    pub ended: HashMap<u16, usize>,
    /// The output stops inside a record.
    pub truncated: bool,
}

/// Reads FastCGI records: STDOUT and STDERR only for requests begun and
/// not yet ended, END_REQUEST at most once per BEGIN_REQUEST, a
/// completed request's STDOUT a CGI head, management answers only to
/// management records.
pub fn fastcgi(out: &[u8], input: &FastCgi) -> Result<FastCgiAnswers, String> {
    let mut dec = Decoder::new();
    let mut answers = FastCgiAnswers::default();
    let mut stdout: HashMap<u16, Vec<u8>> = HashMap::new();
    let (mut get_values, mut unknown) = (0, 0);
    let mut rest = out;
    loop {
        let (n, event) = dec
            .decode(rest)
            .map_err(|e| format!("a bad record from the server: {e}"))?;
        let Some(event) = event else { break };
        rest = &rest[n..];
        let open = |id: u16, a: &FastCgiAnswers| {
            input.begun.get(&id).copied().unwrap_or(0) > a.ended.get(&id).copied().unwrap_or(0)
        };
        match event {
            Event::Stream {
                stream: Stream::Stdout | Stream::Stderr,
                request_id,
                data,
            } if open(request_id, &answers) => stdout
                .entry(request_id)
                .or_default()
                .extend_from_slice(data),
            Event::EndRequest {
                request_id,
                protocol_status,
                ..
            } if open(request_id, &answers) => {
                *answers.ended.entry(request_id).or_default() += 1;
                let data = stdout.remove(&request_id).unwrap_or_default();
                if protocol_status == 0 {
                    check_cgi_head(&data)?;
                }
            }
            Event::GetValuesResult { .. } if get_values < input.get_values => get_values += 1,
            Event::UnknownType { .. } if unknown < input.unknown_types => unknown += 1,
            other => return Err(format!("the server wrote {other}")),
        }
    }
    answers.truncated = !dec.is_between_records();
    Ok(answers)
}

/// A completed request's output: empty, or a CGI head and a body. (Its
/// STDERR is mixed in: the apps served write none.)
fn check_cgi_head(data: &[u8]) -> Result<(), String> {
    if data.is_empty() {
        return Ok(());
    }
    match parse_head(data, HEAD_LIMIT) {
        Ok(Parsed::Complete { .. }) => Ok(()),
        other => Err(format!(
            "a completed request's output is not a CGI response ({other:?}): {:?}",
            String::from_utf8_lossy(&data[..data.len().min(200)])
        )),
    }
}

/// What came back on an HTTP connection.
#[derive(Default, Debug)]
pub struct HttpAnswers {
    /// Final (not 1xx) responses.
    pub responses: usize,
    /// The last response said `Connection: close`.
    pub closing: bool,
    /// The output stops inside a response.
    pub truncated: bool,
}

/// Reads HTTP/1.1 responses: each parses, its body framed as its head
/// says (a response to HEAD, a 204 or a 304 has none; one that closes the
/// connection may run to its end), at most one per
/// request begun plus one refusal of a request that never made a head,
/// and nothing after a `Connection: close`.
pub fn http(out: &[u8], input: &Http) -> Result<HttpAnswers, String> {
    let mut answers = HttpAnswers::default();
    let mut rest = out;
    while !rest.is_empty() {
        if answers.closing {
            return Err("bytes after a response that closes the connection".into());
        }
        let head_only = input
            .methods
            .get(answers.responses)
            .is_some_and(|m| m == "HEAD");
        let Some((len, status, closing)) = response(rest, head_only)? else {
            answers.truncated = true;
            break;
        };
        rest = &rest[len..];
        if status >= 200 {
            answers.responses += 1;
            answers.closing = closing;
        }
    }
    if answers.responses > input.methods.len() + 1 {
        return Err(format!(
            "{} responses to {} requests",
            answers.responses,
            input.methods.len()
        ));
    }
    Ok(answers)
}

/// One response at the front of `out`: its length, status and whether it
/// closes the connection; None if it is not all there.
fn response(out: &[u8], head_only: bool) -> Result<Option<(usize, u16, bool)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(out) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("a bad response head ({e}): {:?}", excerpt(out))),
    };
    let status = resp.code.unwrap_or(0);
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
    };
    let closing = header("connection").is_some_and(|v| v.contains("close"));
    let body = &out[head_len..];
    let body_len = if status < 200 || status == 204 || status == 304 || head_only {
        Some(0)
    } else if header("transfer-encoding").is_some_and(|v| v == "chunked") {
        chunked_len(body)?
    } else if let Some(len) = header("content-length") {
        let len: usize = len.parse().map_err(|_| format!("Content-Length {len:?}"))?;
        (body.len() >= len).then_some(len)
    } else if closing {
        // An HTTP/1.0 client and an unknown length: the close ends it.
        Some(body.len())
    } else {
        return Err(format!("a response with no framing: {:?}", excerpt(out)));
    };
    Ok(body_len.map(|n| (head_len + n, status, closing)))
}

/// The length of a chunked body at the front of `body` (trailers and the
/// final blank line included); None if it is not all there.
fn chunked_len(body: &[u8]) -> Result<Option<usize>, String> {
    let mut pos = 0;
    loop {
        let Some(eol) = find_crlf(&body[pos..]) else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&body[pos..pos + eol]).unwrap_or("?");
        let size = line.split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size, 16).map_err(|_| format!("chunk size {line:?}"))?;
        pos += eol + 2;
        if size == 0 {
            // No trailers are written: the blank line follows.
            return match body.get(pos..pos + 2) {
                None => Ok(None),
                Some(b"\r\n") => Ok(Some(pos + 2)),
                Some(_) => Err("no blank line after the last chunk".into()),
            };
        }
        match body.get(pos + size..pos + size + 2) {
            None => return Ok(None),
            Some(b"\r\n") => pos += size + 2,
            Some(_) => return Err("chunk data not followed by CRLF".into()),
        }
    }
}

fn find_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|w| w == b"\r\n")
}

/// The start of some output, for a message.
pub fn excerpt(out: &[u8]) -> String {
    String::from_utf8_lossy(&out[..out.len().min(300)]).into_owned()
}

/// What came back on an SCGI connection.
#[derive(Debug, PartialEq, Eq)]
pub enum ScgiAnswer {
    /// Nothing (the connection was closed).
    Nothing,
    /// A head not complete yet.
    Partial,
    /// A CGI head (a `Status` line, or an nph status line) and a body.
    Answer,
}

/// Reads an SCGI answer: nothing, or one response with a CGI head.
pub fn scgi(out: &[u8]) -> Result<ScgiAnswer, String> {
    if out.is_empty() {
        return Ok(ScgiAnswer::Nothing);
    }
    match parse_head(out, HEAD_LIMIT) {
        Ok(Parsed::Complete { .. }) => Ok(ScgiAnswer::Answer),
        Ok(Parsed::Partial) => Ok(ScgiAnswer::Partial),
        Err(e) => Err(format!("a bad SCGI answer ({e}): {:?}", excerpt(out))),
    }
}
