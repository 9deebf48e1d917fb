//! A decoded HTTP request head as the CGI params nginx's stock
//! `fastcgi_params` would send for it, so the built-in apps (CGI-style:
//! they read params) serve an HTTP request as they serve a FastCGI one.
//!
//! Addresses come in as text ([`Endpoint`]): this module stays free of
//! `std::net`, like the rest of `protocol/`; the host formats its socket
//! addresses (`ip().to_string()`, no brackets around IPv6, as nginx).

use super::request::{Framing, Head};
use crate::protocol::params::Params;

/// `SERVER_SOFTWARE`.
pub const SERVER_SOFTWARE: &str = concat!("fastgate/", env!("CARGO_PKG_VERSION"));

/// One end of a connection, as CGI names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint<'a> {
    /// A TCP end: its IP address as text (`127.0.0.1`, `::1`) and port.
    Inet {
        /// The address, without brackets.
        ip: &'a str,
        /// The port.
        port: u16,
    },
    /// A Unix socket end and its path (empty for an unnamed client
    /// socket): the address is `unix:PATH`, as nginx's `$remote_addr` and
    /// `$server_addr` say, and the port is empty.
    Unix(&'a str),
}

impl Endpoint<'_> {
    /// `REMOTE_ADDR` / `SERVER_ADDR`.
    pub fn addr(&self) -> String {
        match self {
            Endpoint::Inet { ip, .. } => ip.to_string(),
            Endpoint::Unix(path) => format!("unix:{path}"),
        }
    }

    /// `REMOTE_PORT` / `SERVER_PORT`: empty for a Unix socket.
    pub fn port(&self) -> String {
        match self {
            Endpoint::Inet { port, .. } => port.to_string(),
            Endpoint::Unix(_) => String::new(),
        }
    }
}

/// The params for `head` from `peer` on the listener at `server`, in
/// `fastcgi_params` order, then `HTTP_*` for every other header.
///
/// As nginx: `CONTENT_TYPE` and `CONTENT_LENGTH` are always present, empty
/// when absent (a chunked body has no length); `SCRIPT_NAME` and
/// `DOCUMENT_URI` are the normalized path ([`Head::uri`], nginx's `$uri`),
/// `REQUEST_URI` the target in origin form, `PATH_INFO` is empty; `REQUEST_SCHEME` is
/// `http` and `REDIRECT_STATUS` is `200` (PHP's `cgi.force_redirect`).
/// `SERVER_NAME` is the `Host` without its port, else the server's address.
///
/// ```
/// use fastgate::protocol::http::{Decoder, Event};
/// use fastgate::protocol::http::params::{to_params, Endpoint};
/// let mut dec = Decoder::new(8192);
/// let wire = b"GET /p?q=1 HTTP/1.1\r\nHost: example.org:8080\r\n\r\n";
/// let (_, Some(Event::Head(head))) = dec.decode(wire).unwrap() else { panic!() };
/// let peer = Endpoint::Inet { ip: "10.0.0.7", port: 40000 };
/// let params = to_params(&head, &peer, &Endpoint::Unix("/run/fg.sock"));
/// assert_eq!(params.get_str("QUERY_STRING"), Some("q=1"));
/// assert_eq!(params.get_str("SERVER_NAME"), Some("example.org"));
/// assert_eq!(params.get_str("HTTP_HOST"), Some("example.org:8080"));
/// ```
pub fn to_params(head: &Head, peer: &Endpoint<'_>, server: &Endpoint<'_>) -> Params {
    let mut p = Params::default();
    let mut put = |name: &str, value: &[u8]| p.push(name.as_bytes(), value);
    let path = &head.uri;
    put("QUERY_STRING", head.query().as_bytes());
    put("REQUEST_METHOD", head.method.as_bytes());
    put(
        "CONTENT_TYPE",
        head.header("Content-Type").unwrap_or_default(),
    );
    put("CONTENT_LENGTH", content_length(head.framing).as_bytes());
    put("SCRIPT_NAME", path);
    put("REQUEST_URI", head.request_uri().as_bytes());
    put("DOCUMENT_URI", path);
    put("PATH_INFO", b"");
    put("SERVER_PROTOCOL", head.version.as_str().as_bytes());
    put("REQUEST_SCHEME", b"http");
    put("GATEWAY_INTERFACE", b"CGI/1.1");
    put("SERVER_SOFTWARE", SERVER_SOFTWARE.as_bytes());
    put("REMOTE_ADDR", peer.addr().as_bytes());
    put("REMOTE_PORT", peer.port().as_bytes());
    put("SERVER_ADDR", server.addr().as_bytes());
    put("SERVER_PORT", server.port().as_bytes());
    put("SERVER_NAME", &server_name(head, server));
    put("REDIRECT_STATUS", b"200");
    push_headers(&mut p, head);
    p
}

fn content_length(framing: Framing) -> String {
    match framing {
        Framing::Length(n) => n.to_string(),
        Framing::None | Framing::Chunked => String::new(),
    }
}

/// The Host without its port (`[::1]:80` gives `[::1]`), else the
/// server's address.
fn server_name(head: &Head, server: &Endpoint<'_>) -> Vec<u8> {
    match head.header("Host") {
        Some(host) if !host.is_empty() => strip_port(host).to_vec(),
        _ => server.addr().into_bytes(),
    }
}

fn strip_port(host: &[u8]) -> &[u8] {
    let after_literal = match host.first() {
        Some(b'[') => host.iter().position(|&b| b == b']').map_or(0, |i| i + 1),
        _ => 0,
    };
    match host[after_literal..].iter().position(|&b| b == b':') {
        Some(i) => &host[..after_literal + i],
        None => host,
    }
}

/// `HTTP_*` for each header but `Content-Type` and `Content-Length`
/// (already params), in the order each name first appears; repeats are
/// joined with ", " (`Cookie` with "; "), as nginx 1.23+ does. A name with
/// anything but letters, digits and `-` is dropped, as nginx drops it by
/// default (`underscores_in_headers off`, `ignore_invalid_headers on`): else
/// `X_Forwarded_For` could pose as `X-Forwarded-For`. `Proxy` is passed as
/// `HTTP_PROXY`; the `cgi` app removes it from a script's environment.
fn push_headers(p: &mut Params, head: &Head) {
    let mut done: Vec<&str> = Vec::new();
    for (name, _) in &head.headers {
        let skip = ["Content-Type", "Content-Length"]
            .iter()
            .chain(done.iter())
            .any(|n| n.eq_ignore_ascii_case(name));
        if skip || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            continue;
        }
        done.push(name);
        p.push(&cgi_name(name), &joined(head, name));
    }
}

fn cgi_name(header: &str) -> Vec<u8> {
    let upper = header.bytes().map(|b| match b {
        b'-' => b'_',
        b => b.to_ascii_uppercase(),
    });
    b"HTTP_".iter().copied().chain(upper).collect()
}

fn joined(head: &Head, name: &str) -> Vec<u8> {
    let separator: &[u8] = if name.eq_ignore_ascii_case("Cookie") {
        b"; "
    } else {
        b", "
    };
    let values: Vec<&[u8]> = head.values(name).collect();
    values.join(separator)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::http::{Decoder, Event};

    fn head(wire: &[u8]) -> Head {
        match Decoder::new(8192).decode(wire).unwrap() {
            (_, Some(Event::Head(h))) => h,
            other => panic!("{other:?}"),
        }
    }

    const PEER: Endpoint<'static> = Endpoint::Inet {
        ip: "127.0.0.1",
        port: 51234,
    };
    const SERVER: Endpoint<'static> = Endpoint::Inet {
        ip: "127.0.0.1",
        port: 80,
    };

    fn pairs(p: &Params) -> Vec<(String, String)> {
        p.iter()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into(),
                    String::from_utf8_lossy(v).into(),
                )
            })
            .collect()
    }

    #[test]
    fn nginx_fastcgi_params_for_a_get() {
        let h = head(
            b"GET /a/b.cgi?x=1 HTTP/1.1\r\nHost: localhost\r\nUser-Agent: fastgate-tests\r\n\r\n",
        );
        let got = pairs(&to_params(&h, &PEER, &SERVER));
        let want: Vec<(String, String)> = [
            ("QUERY_STRING", "x=1"),
            ("REQUEST_METHOD", "GET"),
            ("CONTENT_TYPE", ""),
            ("CONTENT_LENGTH", ""),
            ("SCRIPT_NAME", "/a/b.cgi"),
            ("REQUEST_URI", "/a/b.cgi?x=1"),
            ("DOCUMENT_URI", "/a/b.cgi"),
            ("PATH_INFO", ""),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("REQUEST_SCHEME", "http"),
            ("GATEWAY_INTERFACE", "CGI/1.1"),
            ("SERVER_SOFTWARE", SERVER_SOFTWARE),
            ("REMOTE_ADDR", "127.0.0.1"),
            ("REMOTE_PORT", "51234"),
            ("SERVER_ADDR", "127.0.0.1"),
            ("SERVER_PORT", "80"),
            ("SERVER_NAME", "localhost"),
            ("REDIRECT_STATUS", "200"),
            ("HTTP_HOST", "localhost"),
            ("HTTP_USER_AGENT", "fastgate-tests"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, want);
        assert!(SERVER_SOFTWARE.starts_with("fastgate/"));
    }

    #[test]
    fn body_headers_repeats_and_host_with_port() {
        let h = head(
            b"POST /up HTTP/1.0\r\nHost: [::1]:8080\r\nContent-Type: text/plain\r\n\
Content-Length: 3\r\nAccept: a\r\nX-Weird_Name: 1\r\naccept: b\r\nCookie: c=1\r\n\
Cookie: d=2\r\nProxy: evil\r\n\r\nabc",
        );
        let p = to_params(&h, &Endpoint::Unix(""), &Endpoint::Unix("/run/fg.sock"));
        let get = |n| p.get_str(n).unwrap_or("<none>");
        assert_eq!(
            (get("CONTENT_TYPE"), get("CONTENT_LENGTH")),
            ("text/plain", "3")
        );
        assert_eq!((get("REMOTE_ADDR"), get("REMOTE_PORT")), ("unix:", ""));
        assert_eq!(
            (get("SERVER_ADDR"), get("SERVER_PORT")),
            ("unix:/run/fg.sock", "")
        );
        assert_eq!(
            (get("SERVER_NAME"), get("HTTP_HOST")),
            ("[::1]", "[::1]:8080")
        );
        assert_eq!(
            (get("HTTP_ACCEPT"), get("HTTP_COOKIE")),
            ("a, b", "c=1; d=2")
        );
        assert_eq!(
            (get("HTTP_PROXY"), get("SERVER_PROTOCOL")),
            ("evil", "HTTP/1.0")
        );
        for absent in [
            "HTTP_CONTENT_TYPE",
            "HTTP_CONTENT_LENGTH",
            "HTTP_X_WEIRD_NAME",
        ] {
            assert_eq!(p.get(absent), None, "{absent}");
        }
        assert_eq!(p.iter().filter(|(n, _)| *n == b"HTTP_ACCEPT").count(), 1);
    }

    #[test]
    fn script_name_is_the_normalized_path() {
        let h = head(b"GET http://x/cgi-bin/../echo//a%2Fb?q=%41 HTTP/1.1\r\nHost: x\r\n\r\n");
        let p = to_params(&h, &PEER, &SERVER);
        let get = |n| p.get_str(n).unwrap_or("<none>");
        assert_eq!(
            (get("SCRIPT_NAME"), get("DOCUMENT_URI")),
            ("/echo/a/b", "/echo/a/b")
        );
        assert_eq!(
            (get("REQUEST_URI"), get("QUERY_STRING")),
            ("/cgi-bin/../echo//a%2Fb?q=%41", "q=%41")
        );
    }

    #[test]
    fn server_name_fallbacks() {
        let chunked =
            head(b"POST / HTTP/1.1\r\nHost: a.example:81\r\nTransfer-Encoding: chunked\r\n\r\n");
        let p = to_params(&chunked, &PEER, &SERVER);
        assert_eq!(p.get_str("CONTENT_LENGTH"), Some(""));
        assert_eq!(p.get_str("SERVER_NAME"), Some("a.example"));
        let no_host = head(b"GET / HTTP/1.0\r\n\r\n");
        let v6 = Endpoint::Inet {
            ip: "::1",
            port: 8080,
        };
        let p = to_params(&no_host, &v6, &v6);
        assert_eq!(p.get_str("SERVER_NAME"), Some("::1"));
        assert_eq!(p.get_str("REMOTE_ADDR"), Some("::1"));
        assert_eq!(p.get_str("QUERY_STRING"), Some(""));
        assert_eq!(strip_port(b"[::1]"), b"[::1]");
        assert_eq!(strip_port(b"h"), b"h");
        assert_eq!(strip_port(b"[bad:1"), b"[bad");
    }
}
