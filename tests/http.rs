//! The HTTP/1.1 listener against the real binary: curl (GET, keep-alive,
//! a 10 MB body echoed, chunked upload, `Expect: 100-continue`, HEAD) and
//! raw sockets (pipelining, chunk extensions and trailers, malformed and
//! smuggling forms refused while another client is served, slowloris,
//! `--max-conns` pausing and resuming accepting),
//! an auto socket answering curl, FastCGI and SCGI at once, and the status
//! page rendered by a real headless browser (Debian's Chromium), with a
//! screenshot left in `target/http-status.png` for a person to look at.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{fcgi_get, pattern, require_tool, scgi_request, Server, TempDir};

fn http_server(extra: &[&str]) -> Server {
    let base = [
        "--listen",
        "http://127.0.0.1:0",
        "--mount",
        "/=hello",
        "--mount",
        "/echo=echo",
        "--mount",
        "/env=env",
        "--mount",
        "/sleep=sleep",
    ];
    Server::start(&[&base[..], extra].concat())
}

fn url(s: &Server, path: &str) -> String {
    format!("http://{}{path}", s.tcp_addr(0))
}

/// curl with a time bound; its stdout, and its stderr (with -v).
fn curl(args: &[&str]) -> (Vec<u8>, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30"])
        .args(args)
        .output()
        .expect("curl runs");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "curl {args:?}: {err}");
    (out.stdout, err)
}

/// Sends `bytes` on a fresh connection and reads until the server closes
/// it (or 10 s pass).
fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn curl_gets_hello_and_keeps_the_connection_for_the_next() {
    if !require_tool("curl") {
        return;
    }
    let s = http_server(&[]);
    let (body, err) = curl(&["-v", &url(&s, "/"), &url(&s, "/")]);
    assert_eq!(body, b"Hello, world!\nHello, world!\n");
    assert!(err.contains("< HTTP/1.1 200 OK"), "{err}");
    assert!(err.contains("< Content-Length: 14"), "{err}");
    assert!(err.contains("< Server: fastgate"), "{err}");
    assert!(err.contains("< Date: "), "{err}");
    assert!(err.contains("Re-using existing connection"), "{err}");
}

#[test]
fn curl_bodies_come_back_byte_for_byte_sized_chunked_and_after_100_continue() {
    if !require_tool("curl") {
        return;
    }
    let dir = TempDir::new();
    let file = dir.path().join("body");
    let body = pattern(10 << 20, 7);
    std::fs::write(&file, &body).unwrap();
    let data = format!("@{}", file.display());
    let s = http_server(&[]);
    let echo = url(&s, "/echo");
    let (got, _) = curl(&["--data-binary", &data, &echo]);
    assert!(got == body, "10 MB echoed: {} bytes back", got.len());
    let chunked = [
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &data,
        &echo,
    ];
    let (got, _) = curl(&chunked);
    assert!(
        got == body,
        "chunked upload echoed: {} bytes back",
        got.len()
    );
    let expect = [
        "-v",
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        &data,
        &echo,
    ];
    let (got, err) = curl(&expect);
    assert!(err.contains("< HTTP/1.1 100 Continue"), "{err}");
    assert!(got == body, "after 100-continue: {} bytes back", got.len());
}

#[test]
fn head_gets_the_headers_of_get_and_no_body() {
    let s = http_server(&[]);
    let answer = raw(
        s.tcp_addr(0),
        b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("Content-Length: 14\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\n"), "a body came: {answer:?}");
}

/// Found by the `connection` fuzz target: the refusal of a HEAD request
/// (a 400 for a bad chunk line of its body) came with a body.
#[test]
fn a_refused_head_request_gets_no_body() {
    let s = http_server(&[]);
    let answer = raw(
        s.tcp_addr(0),
        b"HEAD / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;\x01\r\nhello\r\n0\r\n\r\n",
    );
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    assert!(answer.contains("Content-Length: 16\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\n"), "a body came: {answer:?}");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let s = http_server(&[]);
    let answer = raw(
        s.tcp_addr(0),
        b"GET /sleep?ms=300 HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /env?n=2 HTTP/1.1\r\nHost: x\r\n\r\n\
          GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let slept = answer.find("slept 300 ms").expect(&answer);
    let env = answer.find("QUERY_STRING=n=2").expect(&answer);
    let hello = answer.find("Hello, world!").expect(&answer);
    assert!(slept < env && env < hello, "out of order: {answer}");
    assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 3, "{answer}");
}

#[test]
fn chunk_extensions_and_trailers_are_ignored() {
    let s = http_server(&[]);
    let answer = raw(
        s.tcp_addr(0),
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nhello world"), "{answer}");
}

#[test]
fn malformed_and_smuggling_forms_get_400_while_another_client_is_served() {
    let s = http_server(&[]);
    let addr = s.tcp_addr(0);
    // A request in progress on another connection, answered afterwards.
    let mut other = TcpStream::connect(addr).unwrap();
    other
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    other
        .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello")
        .unwrap();
    let bad: [&[u8]; 7] = [
        b"GET\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\n",
    ];
    for form in bad {
        let answer = raw(addr, form);
        let shown = String::from_utf8_lossy(form);
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{shown:?}: {answer}"
        );
        assert!(
            answer.contains("Connection: close\r\n"),
            "{shown:?}: {answer}"
        );
    }
    other.write_all(b" world").unwrap();
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    while !got.ends_with(b"hello world") {
        match other.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(got.ends_with("hello world"), "{got}");
}

#[test]
fn a_slowloris_head_is_closed_after_the_header_timeout() {
    let s = http_server(&["--header-timeout", "1s"]);
    let mut c = TcpStream::connect(s.tcp_addr(0)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");
    assert!(took < Duration::from_secs(9), "closed after {took:?}");
    // A second request on a kept connection is timed the same way.
    let mut c = TcpStream::connect(s.tcp_addr(0)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\n")
        .unwrap();
    let mut all = Vec::new();
    let _ = c.read_to_end(&mut all);
    let all = String::from_utf8_lossy(&all);
    assert_eq!(all.matches("HTTP/1.1 200 OK").count(), 1, "{all}");
}

#[test]
fn an_auto_socket_answers_curl_fastcgi_and_scgi() {
    if !require_tool("curl") {
        return;
    }
    let s = Server::start(&["--listen", "{dir}/auto.sock", "--mount", "/=hello"]);
    let path = s.unix_path(0).display().to_string();
    let (body, _) = curl(&["--unix-socket", &path, "http://localhost/"]);
    assert_eq!(body, b"Hello, world!\n");
    assert_eq!(fcgi_get(&s.spec(0), "/").body_str(), "Hello, world!\n");
    let answer = scgi_request(&s.spec(0), &common::scgi_params("GET", "/"), b"");
    assert!(String::from_utf8_lossy(&answer).ends_with("Hello, world!\n"));
}

#[test]
fn the_params_are_nginx_s_with_this_connection_s_two_ends() {
    let s = http_server(&[]);
    let addr = s.tcp_addr(0);
    let answer = raw(
        addr,
        b"POST /env/x?a=1 HTTP/1.1\r\nHost: example.test:8080\r\nContent-Type: text/plain\r\n\
          Content-Length: 2\r\nX-Thing: 1\r\nX-Thing: 2\r\nConnection: close\r\n\r\nhi",
    );
    for want in [
        "REQUEST_METHOD=POST",
        "REQUEST_URI=/env/x?a=1",
        "QUERY_STRING=a=1",
        "SCRIPT_NAME=/env/x",
        "SERVER_PROTOCOL=HTTP/1.1",
        "CONTENT_TYPE=text/plain",
        "CONTENT_LENGTH=2",
        "HTTP_X_THING=1, 2",
        "SERVER_NAME=example.test",
        "REMOTE_ADDR=127.0.0.1",
    ] {
        assert!(answer.contains(want), "no {want}: {answer}");
    }
    assert!(
        answer.contains(&format!("SERVER_PORT={}", addr.port())),
        "{answer}"
    );
}

/// Chromium, headless, against `url`: `--dump-dom` gives the page as
/// rendered, `--screenshot` a PNG. Bounded by `timeout`; root needs
/// `--no-sandbox`.
fn chromium(args: &[&str], url: &str) -> std::process::Output {
    Command::new("timeout")
        .args([
            "60",
            "chromium",
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
        ])
        .args(["--disable-dev-shm-usage", "--window-size=1200,900"])
        .args(args)
        .arg(url)
        .output()
        .expect("chromium runs")
}

#[test]
fn the_status_page_renders_in_a_headless_browser() {
    if !require_tool("chromium") {
        return;
    }
    let s = Server::start(&[
        "--listen",
        "http://127.0.0.1:0",
        "--mount",
        "/status=status",
    ]);
    let page = url(&s, "/status?html");
    let dom = chromium(&["--dump-dom"], &page);
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("<h1>fastgate status</h1>"), "{dom}");
    assert!(dom.contains("accepted_conns"), "{dom}");
    let shot = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/http-status.png");
    let _ = std::fs::remove_file(&shot);
    let out = chromium(&[&format!("--screenshot={}", shot.display())], &page);
    let png = std::fs::read(&shot)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(png.len() > 10_000, "a blank page? {} bytes", png.len());
}

#[test]
fn bodies_past_max_body_bytes_get_413_sized_or_chunked_and_each_request_is_logged() {
    let dir = TempDir::new();
    let log = dir.path().join("access.log");
    let log_arg = log.display().to_string();
    let s = http_server(&["--max-body-bytes", "100", "--access-log", &log_arg]);
    let addr = s.tcp_addr(0);
    let sized = raw(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n",
    );
    assert!(sized.starts_with("HTTP/1.1 413 "), "{sized}");
    let mut chunked =
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        chunked.extend_from_slice(b"32\r\n");
        chunked.extend_from_slice(&[b'x'; 50]);
        chunked.extend_from_slice(b"\r\n");
    }
    let answer = raw(addr, &chunked);
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    let ok = raw(
        addr,
        b"GET /env?q=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(ok.starts_with("HTTP/1.1 200 OK"), "{ok}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut lines = String::new();
    while Instant::now() < deadline {
        lines = std::fs::read_to_string(&log).unwrap_or_default();
        if lines.lines().count() >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(lines.matches(" POST /echo 413 ").count(), 2, "{lines}");
    assert!(lines.contains(" GET /env?q=1 200 "), "{lines}");
}

#[test]
fn a_request_past_the_request_timeout_gets_504_and_the_next_connection_is_served() {
    let s = http_server(&["--request-timeout", "500ms"]);
    let addr = s.tcp_addr(0);
    let started = Instant::now();
    let answer = raw(addr, b"GET /sleep?ms=5000 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 504 "), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let ok = raw(
        addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(ok.ends_with("Hello, world!\n"), "{ok}");
}

/// Reads one HTTP answer of `/` (hello: `Content-Length` 14) off a
/// kept-alive connection, or gives up after `wait` with what came.
fn read_hello(c: &mut TcpStream, wait: Duration) -> String {
    c.set_read_timeout(Some(wait)).unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    while !String::from_utf8_lossy(&got).ends_with("Hello, world!\n") {
        match c.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// `--max-conns 1` on an HTTP listener: a second client waits unanswered
/// while the first keeps its connection, and is answered, by itself,
/// once the first closes (accepting paused, then resumed).
#[test]
fn max_conns_pauses_and_resumes_accepting_on_an_http_listener() {
    let s = http_server(&["--max-conns", "1"]);
    let get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut first = TcpStream::connect(s.tcp_addr(0)).unwrap();
    first.write_all(get).unwrap();
    let answer = read_hello(&mut first, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    let mut second = TcpStream::connect(s.tcp_addr(0)).unwrap();
    second.write_all(get).unwrap();
    let early = read_hello(&mut second, Duration::from_millis(500));
    assert_eq!(early, "", "a second connection served with --max-conns 1");
    drop(first);
    let answer = read_hello(&mut second, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("Hello, world!\n"), "{answer}");
}

/// Past `--queue` the HTTP listener answers 503 with `Retry-After`, as
/// FastCGI and SCGI do (the soak found the HTTP refusal without it).
#[test]
fn a_request_past_the_queue_gets_503_with_retry_after() {
    let s = http_server(&["--min-threads", "1", "--max-threads", "1", "--queue", "1"]);
    let addr = s.tcp_addr(0);
    // One worker and a queue of one: of four sleeps sent at once, one
    // runs, one waits, and the others are refused.
    let sleepers: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                raw(
                    addr,
                    b"GET /sleep?ms=2000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                )
            })
        })
        .collect();
    let answers: Vec<String> = sleepers.into_iter().map(|t| t.join().unwrap()).collect();
    let refused: Vec<&String> = answers
        .iter()
        .filter(|a| a.starts_with("HTTP/1.1 503 "))
        .collect();
    assert!(!refused.is_empty(), "no 503: {answers:?}");
    for a in &answers {
        let ok = a.ends_with("slept 2000 ms\n") || a.contains("\r\nRetry-After: 1\r\n");
        assert!(ok, "{a}");
    }
}
