//! Sends one request to a backend and collects the answer: the library side
//! of `fastgate request`, also used by the integration tests.
//!
//! It plays the front server: the params are those nginx's `fastcgi_params`
//! sends (with `SCRIPT_NAME` set to the URI path, as `fastcgi_script_name`
//! does), over FastCGI (a bare or auto spec) or SCGI. It is a tool, not the
//! server, so it uses blocking sockets with timeouts; the whole request
//! shares one deadline.
//!
//! ```no_run
//! use fastgate::client::{self, RequestOptions};
//! let opts = RequestOptions::new("127.0.0.1:9000".parse().unwrap(), "/status?json");
//! let resp = client::send(&opts).unwrap();
//! assert_eq!(resp.head.status, 200);
//! ```

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::protocol::cgi_response::{self, Head, Parsed};
use crate::protocol::fastcgi::{self, Decoder, Event, RecordType, Stream};
use crate::protocol::scgi;
use crate::spec::{Address, ListenSpec, Protocol};

pub use crate::protocol::fastcgi::Role;

pub mod bench;

/// The request id used: front servers (nginx, lighttpd, Apache) always use 1.
const REQUEST_ID: u16 = 1;
/// The most response bytes (stdout plus stderr) kept; past it the request fails.
pub const MAX_RESPONSE_BYTES: usize = 256 << 20;
/// The longest response head accepted.
const MAX_HEAD_BYTES: usize = 64 << 10;

/// One request to send.
#[derive(Clone, Debug)]
pub struct RequestOptions {
    /// The backend; a bare (auto) spec is spoken to in FastCGI.
    pub spec: ListenSpec,
    /// Path and query, e.g. `/status?json`.
    pub uri: String,
    /// The request method, e.g. `GET`.
    pub method: String,
    /// The request body (for FILTER: the DATA stream).
    pub body: Vec<u8>,
    /// HTTP headers, sent as `HTTP_NAME` params (`Content-Type` and
    /// `Content-Length` as `CONTENT_TYPE` and `CONTENT_LENGTH`).
    pub headers: Vec<(String, String)>,
    /// Extra params, sent last: each replaces a param of the same name.
    pub params: Vec<(String, String)>,
    /// FastCGI role; FILTER sends the body as FCGI_DATA with an empty STDIN.
    pub role: Role,
    /// FastCGI `FCGI_KEEP_CONN`; without it the backend must close the
    /// connection after the request, and the client checks that it does.
    pub keep_conn: bool,
    /// For the whole request, connect to last byte.
    pub timeout: Duration,
}

impl RequestOptions {
    /// A `GET` of `uri` as a RESPONDER, keep-conn set, 30 s timeout.
    pub fn new(spec: ListenSpec, uri: &str) -> Self {
        RequestOptions {
            spec,
            uri: uri.to_string(),
            method: "GET".to_string(),
            body: Vec::new(),
            headers: Vec::new(),
            params: Vec::new(),
            role: Role::Responder,
            keep_conn: true,
            timeout: Duration::from_secs(30),
        }
    }
}

/// What the backend answered.
#[derive(Clone, Debug)]
pub struct ClientResponse {
    /// The parsed CGI head. When a FastCGI backend ended the request with
    /// no output at all (e.g. END_REQUEST with FCGI_OVERLOADED), this is
    /// the `502 Bad Gateway` nginx would answer, with no headers. (An SCGI
    /// backend that sends nothing is an error, [`ErrorKind::WrongProtocol`].)
    pub head: Head,
    /// The response body.
    pub body: Vec<u8>,
    /// FastCGI STDERR content.
    pub stderr: Vec<u8>,
    /// END_REQUEST's appStatus (FastCGI only).
    pub app_status: Option<u32>,
    /// END_REQUEST's protocolStatus (FastCGI only).
    pub protocol_status: Option<u8>,
}

/// Why a request failed; the message starts with the backend's spec.
#[derive(Debug)]
pub struct ClientError {
    /// The spec as written (`fastcgi://127.0.0.1:9000`).
    pub peer: String,
    /// What went wrong.
    pub kind: ErrorKind,
}

/// What went wrong.
#[derive(Debug)]
pub enum ErrorKind {
    /// The connection could not be made.
    Connect(io::Error),
    /// Reading or writing failed.
    Io(io::Error),
    /// The whole request took longer than its timeout.
    Timeout(Duration),
    /// The backend broke the protocol (or sent a malformed CGI head).
    Protocol(crate::protocol::Error),
    /// The connection ended before the response did.
    Closed(&'static str),
    /// The response head never ended (no blank line).
    NoHeadEnd,
    /// The response was larger than [`MAX_RESPONSE_BYTES`].
    TooLarge,
    /// The backend did not close the connection after a request sent
    /// without FCGI_KEEP_CONN.
    KeptOpen,
    /// A spec this client cannot speak (`http:`).
    Unsupported(&'static str),
    /// The backend closed without a byte, or answered in another protocol:
    /// most likely its listener speaks the other one, `other`.
    WrongProtocol {
        /// What the backend did wrong.
        what: String,
        /// The protocol it most likely speaks instead.
        other: String,
    },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.peer)?;
        match &self.kind {
            ErrorKind::Connect(e) => write!(f, "{}", describe(e)),
            ErrorKind::Io(e) => write!(f, "{}", describe(e)),
            ErrorKind::Timeout(d) => write!(f, "no complete response within {d:?}"),
            ErrorKind::Protocol(e) => write!(f, "{e}"),
            ErrorKind::Closed(when) => write!(f, "connection closed {when}"),
            ErrorKind::NoHeadEnd => f.write_str("the response head has no end (no blank line)"),
            ErrorKind::TooLarge => write!(f, "response larger than {MAX_RESPONSE_BYTES} bytes"),
            ErrorKind::KeptOpen => {
                f.write_str("the backend kept the connection open without FCGI_KEEP_CONN")
            }
            ErrorKind::Unsupported(what) => f.write_str(what),
            ErrorKind::WrongProtocol { what, other } => {
                write!(f, "the backend {what}: wrong protocol? (try {other})")
            }
        }
    }
}

impl std::error::Error for ClientError {}

/// A short lowercase description: `connection refused`, not
/// `Connection refused (os error 111)`.
fn describe(e: &io::Error) -> String {
    let text = match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused",
        io::ErrorKind::ConnectionReset => "connection reset by peer",
        io::ErrorKind::BrokenPipe => "connection closed by peer (broken pipe)",
        io::ErrorKind::NotFound => "no such socket file",
        io::ErrorKind::PermissionDenied => "permission denied",
        _ => return lowercase_first(&e.to_string()),
    };
    text.to_string()
}

pub(crate) fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map_or_else(String::new, |c| {
        c.to_lowercase().chain(chars).collect::<String>()
    })
}

/// Sends `opts` and waits for the whole response.
pub fn send(opts: &RequestOptions) -> Result<ClientResponse, ClientError> {
    let fail = |kind| ClientError {
        peer: opts.spec.to_string(),
        kind,
    };
    let deadline = Deadline::after(opts.timeout);
    log::debug!(
        "{}: {} {} ({} body bytes)",
        opts.spec,
        opts.method,
        opts.uri,
        opts.body.len()
    );
    match opts.spec.protocol {
        Protocol::Http => Err(fail(ErrorKind::Unsupported(
            "fastgate request speaks FastCGI and SCGI only (use curl for http:)",
        ))),
        Protocol::Scgi => send_scgi(opts, &deadline).map_err(fail),
        Protocol::FastCgi | Protocol::Auto => send_fastcgi(opts, &deadline).map_err(fail),
    }
}

/// The whole request's time budget.
struct Deadline {
    at: Instant,
    total: Duration,
}

impl Deadline {
    fn after(total: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + total,
            total,
        }
    }

    /// The time left, never zero (a zero socket timeout means "none").
    fn remaining(&self) -> Result<Duration, ErrorKind> {
        let left = self.at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ErrorKind::Timeout(self.total));
        }
        Ok(left.max(Duration::from_millis(1)))
    }

    /// An I/O error, with a socket timeout read as the deadline passing.
    fn io_error(&self, e: io::Error) -> ErrorKind {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ErrorKind::Timeout(self.total),
            _ => ErrorKind::Io(e),
        }
    }
}

/// A connected socket, TCP or Unix.
enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    fn open(address: &Address, deadline: &Deadline) -> Result<Conn, ErrorKind> {
        let conn = match address {
            Address::Tcp(addr) => {
                TcpStream::connect_timeout(addr, deadline.remaining()?).map(Conn::Tcp)
            }
            Address::Unix(path) => UnixStream::connect(path).map(Conn::Unix),
        };
        conn.map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                ErrorKind::Timeout(deadline.total)
            }
            _ => ErrorKind::Connect(e),
        })
    }

    /// Our side of a TCP connection: REMOTE_ADDR and REMOTE_PORT.
    fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Conn::Tcp(s) => s.local_addr().ok(),
            Conn::Unix(_) => None,
        }
    }

    /// Bounds the next read and write by the time left.
    fn arm(&self, deadline: &Deadline) -> Result<(), ErrorKind> {
        let left = Some(deadline.remaining()?);
        let set = match self {
            Conn::Tcp(s) => s.set_read_timeout(left).and(s.set_write_timeout(left)),
            Conn::Unix(s) => s.set_read_timeout(left).and(s.set_write_timeout(left)),
        };
        set.map_err(ErrorKind::Io)
    }

    fn send_all(&mut self, bytes: &[u8], deadline: &Deadline) -> Result<(), ErrorKind> {
        for chunk in bytes.chunks(1 << 20) {
            self.arm(deadline)?;
            self.write_all(chunk).map_err(|e| deadline.io_error(e))?;
        }
        Ok(())
    }

    /// One read bounded by the deadline; 0 is end of stream.
    fn recv(&mut self, buf: &mut [u8], deadline: &Deadline) -> Result<usize, ErrorKind> {
        self.arm(deadline)?;
        loop {
            match self.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other.map_err(|e| deadline.io_error(e)),
            }
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The params a front server sends for `opts`, nginx's `fastcgi_params`
/// first, then the headers, then the explicit params; a later name replaces
/// an earlier one.
pub fn request_params(opts: &RequestOptions, local: Option<SocketAddr>) -> Vec<(String, String)> {
    let (path, query) = opts.uri.split_once('?').unwrap_or((&opts.uri, ""));
    let filter = opts.role == Role::Filter;
    let length = if filter { 0 } else { opts.body.len() };
    let mut params = Vec::with_capacity(24 + opts.headers.len() + opts.params.len());
    let mut set = |name: &str, value: String| set_param(&mut params, name, value);
    set("QUERY_STRING", query.to_string());
    set("REQUEST_METHOD", opts.method.clone());
    // nginx sends both even when empty ($content_type, $content_length).
    set("CONTENT_TYPE", String::new());
    set(
        "CONTENT_LENGTH",
        if length > 0 {
            length.to_string()
        } else {
            String::new()
        },
    );
    set("SCRIPT_NAME", path.to_string());
    set("REQUEST_URI", opts.uri.clone());
    set("DOCUMENT_URI", path.to_string());
    set("DOCUMENT_ROOT", "/".to_string());
    set("SERVER_PROTOCOL", "HTTP/1.1".to_string());
    set("REQUEST_SCHEME", "http".to_string());
    set("GATEWAY_INTERFACE", "CGI/1.1".to_string());
    set(
        "SERVER_SOFTWARE",
        format!("fastgate/{}", env!("CARGO_PKG_VERSION")),
    );
    set("REMOTE_ADDR", "127.0.0.1".to_string());
    set("REMOTE_PORT", local.map_or(0, |a| a.port()).to_string());
    set("SERVER_ADDR", "127.0.0.1".to_string());
    set("SERVER_PORT", "80".to_string());
    set("SERVER_NAME", "localhost".to_string());
    set("HTTP_HOST", "localhost".to_string());
    if filter {
        set("FCGI_DATA_LENGTH", opts.body.len().to_string());
        set("FCGI_DATA_LAST_MOD", unix_now().to_string());
    }
    for (name, value) in &opts.headers {
        set(&header_param(name), value.clone());
    }
    for (name, value) in &opts.params {
        set(name, value.clone());
    }
    params
}

fn set_param(params: &mut Vec<(String, String)>, name: &str, value: String) {
    match params.iter_mut().find(|(n, _)| n == name) {
        Some(slot) => slot.1 = value,
        None => params.push((name.to_string(), value)),
    }
}

/// `X-Request-ID` → `HTTP_X_REQUEST_ID`; the two content headers keep
/// their CGI names (RFC 3875 §4.1.2, §4.1.3).
fn header_param(name: &str) -> String {
    let upper = name.trim().to_ascii_uppercase().replace('-', "_");
    match upper.as_str() {
        "CONTENT_TYPE" | "CONTENT_LENGTH" => upper,
        _ => format!("HTTP_{upper}"),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn as_pairs(params: &[(String, String)]) -> Vec<(&[u8], &[u8])> {
    params
        .iter()
        .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
        .collect()
}

/// The FastCGI records of the whole request.
fn encode_fastcgi(opts: &RequestOptions, params: &[(String, String)]) -> Vec<u8> {
    encode_fastcgi_as(opts, params, REQUEST_ID)
}

/// The FastCGI records of the whole request, as request `id` (the load
/// generator keeps several in flight on one connection).
pub(crate) fn encode_fastcgi_as(
    opts: &RequestOptions,
    params: &[(String, String)],
    id: u16,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024 + opts.body.len());
    let flags = if opts.keep_conn {
        fastcgi::FCGI_KEEP_CONN
    } else {
        0
    };
    fastcgi::encode_begin_request(&mut out, id, opts.role, flags);
    fastcgi::encode_params(&mut out, id, &as_pairs(params));
    let (stdin, data): (&[u8], &[u8]) = match opts.role {
        Role::Responder => (&opts.body, &[]),
        // FastCGI 1.0 §6.3: an authorizer gets the params only; the empty
        // STDIN still tells the backend that no body follows.
        Role::Authorizer => (&[], &[]),
        Role::Filter => (&[], &opts.body),
    };
    fastcgi::encode_stream(&mut out, RecordType::Stdin, id, stdin);
    fastcgi::encode_end_of_stream(&mut out, RecordType::Stdin, id);
    if opts.role == Role::Filter {
        fastcgi::encode_stream(&mut out, RecordType::Data, id, data);
        fastcgi::encode_end_of_stream(&mut out, RecordType::Data, id);
    }
    out
}

fn send_fastcgi(opts: &RequestOptions, deadline: &Deadline) -> Result<ClientResponse, ErrorKind> {
    let mut conn = Conn::open(&opts.spec.address, deadline)?;
    let params = request_params(opts, conn.local_addr());
    conn.send_all(&encode_fastcgi(opts, &params), deadline)?;
    let reply = read_fastcgi(&mut conn, deadline, &other_protocol(&opts.spec))?;
    if !opts.keep_conn {
        expect_close(&mut conn, deadline)?;
    }
    let (head, body) = split_head(reply.stdout)?;
    Ok(ClientResponse {
        head,
        body,
        stderr: reply.stderr,
        app_status: Some(reply.app_status),
        protocol_status: Some(reply.protocol_status),
    })
}

/// What came back for our request id, up to its END_REQUEST.
#[derive(Default)]
struct FastCgiReply {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    app_status: u32,
    protocol_status: u8,
}

impl FastCgiReply {
    /// Takes one event; true once END_REQUEST for our request arrived.
    fn take(&mut self, event: Event<'_>) -> Result<bool, ErrorKind> {
        match event {
            Event::Stream {
                stream,
                request_id: REQUEST_ID,
                data,
            } => {
                if self.stdout.len() + self.stderr.len() + data.len() > MAX_RESPONSE_BYTES {
                    return Err(ErrorKind::TooLarge);
                }
                let sink = match stream {
                    Stream::Stdout => &mut self.stdout,
                    Stream::Stderr => &mut self.stderr,
                    _ => return Ok(false),
                };
                sink.extend_from_slice(data);
                Ok(false)
            }
            Event::EndRequest {
                request_id: REQUEST_ID,
                app_status,
                protocol_status,
            } => {
                self.app_status = app_status;
                self.protocol_status = protocol_status;
                Ok(true)
            }
            // Records for other ids, management answers: not ours.
            _ => Ok(false),
        }
    }
}

/// Reads records up to our END_REQUEST. `other` is the spec to suggest
/// when the answer shows the backend speaks another protocol.
fn read_fastcgi(
    conn: &mut Conn,
    deadline: &Deadline,
    other: &str,
) -> Result<FastCgiReply, ErrorKind> {
    let mut decoder = Decoder::new();
    let mut reply = FastCgiReply::default();
    let mut buf = vec![0u8; 64 << 10];
    let mut first = true;
    loop {
        let n = conn.recv(&mut buf, deadline)?;
        if std::mem::take(&mut first) {
            check_fastcgi_start(&buf[..n], other)?;
        }
        if n == 0 {
            return Err(ErrorKind::Closed("before END_REQUEST"));
        }
        if decode_into(&mut decoder, &buf[..n], &mut reply)? {
            return Ok(reply);
        }
    }
}

/// Decodes every byte of `input` into `reply`; true once it is complete.
/// The decoder buffers partial headers itself, so nothing is left over.
fn decode_into(
    decoder: &mut Decoder,
    input: &[u8],
    reply: &mut FastCgiReply,
) -> Result<bool, ErrorKind> {
    let mut pos = 0;
    while pos < input.len() {
        let (used, event) = decoder.decode(&input[pos..]).map_err(ErrorKind::Protocol)?;
        pos += used;
        let Some(event) = event else {
            if used == 0 {
                break;
            }
            continue;
        };
        if reply.take(event)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// An answer that is empty, or does not start as a FastCGI record does
/// (version byte 1), comes from a backend speaking another protocol: an
/// SCGI listener closes on FastCGI input, or answers it in plain text.
fn check_fastcgi_start(start: &[u8], other: &str) -> Result<(), ErrorKind> {
    let what = match start.first() {
        None => "closed the connection without a response".to_string(),
        Some(&fastcgi::VERSION_1) => return Ok(()),
        Some(_) => format!("answered {:?}, which is not FastCGI", first_line(start)),
    };
    Err(ErrorKind::WrongProtocol {
        what,
        other: other.to_string(),
    })
}

/// The same check for an SCGI answer: nothing at all, or FastCGI records.
fn check_scgi_answer(answer: &[u8], other: &str) -> Result<(), ErrorKind> {
    let what = match answer.first() {
        None => "closed the connection without a response",
        Some(&fastcgi::VERSION_1) => "answered with FastCGI records, not a CGI response",
        Some(_) => return Ok(()),
    };
    Err(ErrorKind::WrongProtocol {
        what: what.to_string(),
        other: other.to_string(),
    })
}

/// The first line of an unexpected answer, at most 60 bytes of it.
fn first_line(bytes: &[u8]) -> String {
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = &line[..line.len().min(60)];
    String::from_utf8_lossy(line).trim_end().to_string()
}

/// The spec of the same address in the protocol `spec` does not speak:
/// what to try when the backend seems to speak the other one.
fn other_protocol(spec: &ListenSpec) -> String {
    let protocol = match spec.protocol {
        Protocol::Scgi => Protocol::FastCgi,
        _ => Protocol::Scgi,
    };
    let other = ListenSpec {
        protocol,
        address: spec.address.clone(),
    };
    other.to_string()
}

/// Without FCGI_KEEP_CONN the backend closes after END_REQUEST (FastCGI
/// 1.0 §5.1); anything it still sends is ignored.
fn expect_close(conn: &mut Conn, deadline: &Deadline) -> Result<(), ErrorKind> {
    let mut buf = [0u8; 4096];
    loop {
        match conn.recv(&mut buf, deadline) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(ErrorKind::Timeout(_)) => return Err(ErrorKind::KeptOpen),
            // A reset after the answer is a close too.
            Err(ErrorKind::Io(_)) => return Ok(()),
            Err(other) => return Err(other),
        }
    }
}

fn send_scgi(opts: &RequestOptions, deadline: &Deadline) -> Result<ClientResponse, ErrorKind> {
    let mut conn = Conn::open(&opts.spec.address, deadline)?;
    let params = request_params(opts, conn.local_addr());
    conn.send_all(&encode_scgi(opts, params), deadline)?;
    let answer = read_to_end(&mut conn, deadline)?;
    check_scgi_answer(&answer, &other_protocol(&opts.spec))?;
    let (head, body) = split_head(answer)?;
    Ok(ClientResponse {
        head,
        body,
        stderr: Vec::new(),
        app_status: None,
        protocol_status: None,
    })
}

/// The SCGI request: the netstring header, then the body.
pub(crate) fn encode_scgi(opts: &RequestOptions, params: Vec<(String, String)>) -> Vec<u8> {
    // SCGI always carries CONTENT_LENGTH, and encode_header writes it first.
    let pairs: Vec<(String, String)> = params
        .into_iter()
        .filter(|(n, _)| n != "CONTENT_LENGTH")
        .collect();
    let length = u64::try_from(opts.body.len()).unwrap_or(u64::MAX);
    let mut out = Vec::with_capacity(1024 + opts.body.len());
    scgi::encode_header(&mut out, length, &as_pairs(&pairs));
    out.extend_from_slice(&opts.body);
    out
}

/// SCGI: the response is everything until the backend closes.
fn read_to_end(conn: &mut Conn, deadline: &Deadline) -> Result<Vec<u8>, ErrorKind> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = conn.recv(&mut buf, deadline)?;
        if n == 0 {
            return Ok(out);
        }
        if out.len() + n > MAX_RESPONSE_BYTES {
            return Err(ErrorKind::TooLarge);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// Splits a CGI response into its head and body. No output at all reads
/// as nginx's 502.
fn split_head(mut output: Vec<u8>) -> Result<(Head, Vec<u8>), ErrorKind> {
    if output.is_empty() {
        let head = Head {
            status: 502,
            reason: cgi_response::reason_phrase(502).into(),
            headers: Vec::new(),
        };
        return Ok((head, output));
    }
    match cgi_response::parse_head(&output, MAX_HEAD_BYTES).map_err(ErrorKind::Protocol)? {
        Parsed::Complete { consumed, head } => {
            let body = output.split_off(consumed);
            Ok((head, body))
        }
        Parsed::Partial => Err(ErrorKind::NoHeadEnd),
    }
}

/// Prints a response as `fastgate request` does: the head (`Status:` line,
/// headers, blank line) then the body, or the body alone.
pub fn write_response(
    out: &mut impl Write,
    resp: &ClientResponse,
    body_only: bool,
) -> io::Result<()> {
    if !body_only {
        let mut head = Vec::new();
        cgi_response::write_head(
            &mut head,
            resp.head.status,
            &resp.head.reason,
            &resp.head.headers,
        );
        out.write_all(&head)?;
    }
    out.write_all(&resp.body)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn params_follow_nginx() {
        let mut o = RequestOptions::new("/a.sock".parse().unwrap(), "/app/x?q=1");
        o.method = "POST".into();
        o.body = b"abc".to_vec();
        o.headers = vec![
            ("content-type".into(), "text/plain".into()),
            ("Host".into(), "h.test".into()),
            ("Accept-Language".into(), "fr".into()),
        ];
        o.params = vec![("DOCUMENT_ROOT".into(), "/srv".into())];
        let p = request_params(&o, "127.0.0.1:5555".parse().ok());
        assert_eq!(param(&p, "SCRIPT_NAME"), Some("/app/x"));
        assert_eq!(param(&p, "QUERY_STRING"), Some("q=1"));
        assert_eq!(param(&p, "CONTENT_LENGTH"), Some("3"));
        assert_eq!(param(&p, "CONTENT_TYPE"), Some("text/plain"));
        assert_eq!(param(&p, "HTTP_HOST"), Some("h.test"));
        assert_eq!(param(&p, "HTTP_ACCEPT_LANGUAGE"), Some("fr"));
        assert_eq!(param(&p, "DOCUMENT_ROOT"), Some("/srv"));
        assert_eq!(param(&p, "REMOTE_PORT"), Some("5555"));
        assert_eq!(param(&p, "HTTP_CONTENT_TYPE"), None);
        assert_eq!(param(&p, "FCGI_DATA_LENGTH"), None);
    }

    #[test]
    fn fastcgi_request_records() {
        let mut o = RequestOptions::new("/a.sock".parse().unwrap(), "/");
        o.body = vec![7; 70_000];
        let wire = encode_fastcgi(&o, &[("A".into(), "b".into())]);
        let mut decoder = Decoder::new();
        let (mut pos, mut stdin, mut ends) = (0, 0, 0);
        while pos < wire.len() {
            let (used, event) = decoder.decode(&wire[pos..]).unwrap();
            pos += used;
            if let Some(Event::Stream { stream, data, .. }) = event {
                match (stream, data.len()) {
                    (Stream::Stdin | Stream::Params, 0) => ends += 1,
                    (Stream::Stdin, n) => stdin += n,
                    _ => {}
                }
            }
        }
        assert_eq!((stdin, ends), (70_000, 2));
    }

    #[test]
    fn heads() {
        let (head, body) = split_head(b"Location: /x\n\nrest".to_vec()).unwrap();
        assert_eq!((head.status, body.as_slice()), (302, &b"rest"[..]));
        assert_eq!(split_head(Vec::new()).unwrap().0.status, 502);
        assert!(matches!(
            split_head(b"Status: 200".to_vec()),
            Err(ErrorKind::NoHeadEnd)
        ));
        assert!(matches!(
            split_head(b"bad line\n\n".to_vec()),
            Err(ErrorKind::Protocol(_))
        ));
    }

    #[test]
    fn printed_response() {
        let (head, body) = split_head(b"Status: 404\r\nX: y\r\n\r\nnope".to_vec()).unwrap();
        let resp = ClientResponse {
            head,
            body,
            stderr: Vec::new(),
            app_status: None,
            protocol_status: None,
        };
        let mut out = Vec::new();
        write_response(&mut out, &resp, false).unwrap();
        assert_eq!(out, b"Status: 404 Not Found\r\nX: y\r\n\r\nnope");
        out.clear();
        write_response(&mut out, &resp, true).unwrap();
        assert_eq!(out, b"nope");
    }

    #[test]
    fn io_errors_read_short() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(describe(&refused), "connection refused");
        let other = io::Error::other("Something odd");
        assert_eq!(describe(&other), "something odd");
    }
}
