//! SCGI against the real binary over real sockets: every built-in app on
//! TCP and Unix sockets, echo bodies byte-exact around the buffer sizes, the
//! limits, one request per connection, and a malformed header that must not
//! disturb other clients.

mod common;

use std::time::Duration;

use common::*;

fn server() -> Server {
    let args = [
        &[
            "--listen",
            "scgi://127.0.0.1:0",
            "--listen",
            "scgi:{dir}/s.sock",
        ][..],
        ALL_APPS,
    ]
    .concat();
    Server::start(&args)
}

fn echo(spec: &str, body: &[u8], content_type: Option<&str>) -> Response {
    let mut p = scgi_params("POST", "/echo");
    set_param(&mut p, "CONTENT_TYPE", content_type);
    parse_response(&scgi_request(spec, &p, body))
}

#[test]
fn every_app_answers_over_tcp_and_unix() {
    let server = server();
    assert_eq!(server.specs().len(), 2);
    for spec in server.specs() {
        let r = scgi_get(spec, "/");
        assert_eq!(r.status, 200, "{spec} hello");
        assert_eq!(r.header("Content-Type"), Some("text/plain"), "{spec} hello");
        assert_eq!(r.body_str(), "Hello, world!\n", "{spec} hello");

        assert_eq!(scgi_get(spec, "/ping").body_str(), "pong\n", "{spec} ping");
        assert_eq!(
            scgi_get(spec, "/sleep?ms=20").body_str(),
            "slept 20 ms\n",
            "{spec} sleep"
        );
        assert_eq!(
            scgi_get(spec, "/nothing").status,
            200,
            "{spec}: / is mounted"
        );

        let r = echo(spec, b"scgi body\0\n", Some("text/x-scgi"));
        assert_eq!(r.header("Content-Type"), Some("text/x-scgi"), "{spec} echo");
        assert_eq!(r.body, b"scgi body\0\n", "{spec} echo");
        let r = echo(spec, b"x", None);
        assert_eq!(
            r.header("Content-Type"),
            Some("application/octet-stream"),
            "{spec} echo"
        );

        let r = scgi_get(spec, "/env?k=v");
        let body = r.body_str();
        for line in [
            "SCGI=1",
            "CONTENT_LENGTH=0",
            "REQUEST_METHOD=GET",
            "QUERY_STRING=k=v",
        ] {
            assert!(
                body.lines().any(|l| l == line),
                "{spec} env: no {line:?} in {body:?}"
            );
        }
        let lines: Vec<&str> = body.lines().collect();
        let mut sorted = lines.clone();
        sorted.sort();
        assert_eq!(lines, sorted, "{spec} env: lines not sorted");
    }
}

#[test]
fn unmounted_path_gets_404() {
    let server = Server::start(&["--listen", "scgi://127.0.0.1:0", "--mount", "/ping=ping"]);
    assert_eq!(scgi_get(&server.spec(0), "/pingx").status, 404);
    assert_eq!(scgi_get(&server.spec(0), "/ping/x").body_str(), "pong\n");
}

#[test]
fn echo_bodies_of_every_size_byte_exact() {
    let server = server();
    for spec in server.specs() {
        for (len, seed) in [(0, 1), (1, 2), (65535, 3), (65536, 4), (10 << 20, 5)] {
            let body = pattern(len, seed);
            let r = echo(spec, &body, None);
            assert_eq!(r.status, 200, "{spec} echo of {len} bytes");
            assert_bytes_eq(&r.body, &body, &format!("{spec} echo of {len} bytes"));
        }
    }
}

#[test]
fn header_and_body_split_across_many_writes() {
    let server = server();
    let body = pattern(30_000, 8);
    let raw = scgi_encode(&scgi_params("POST", "/echo"), &body);
    let mut c = Conn::connect(&server.spec(0));
    use std::io::Write;
    for chunk in raw.chunks(997) {
        c.write_all(chunk).expect("write");
        std::thread::sleep(Duration::from_micros(200));
    }
    let r = parse_response(&c.read_to_eof(1 << 20).expect("read"));
    assert_bytes_eq(&r.body, &body, "echo of a request written in pieces");
}

#[test]
fn body_past_max_body_bytes_gets_413() {
    let server = Server::start(&[
        "--listen",
        "scgi://127.0.0.1:0",
        "--mount",
        "/echo=echo",
        "--max-body-bytes",
        "100",
    ]);
    assert_eq!(echo(&server.spec(0), &[7; 100], None).status, 200);
    assert_eq!(echo(&server.spec(0), &[7; 101], None).status, 413);
}

#[test]
fn headers_past_max_params_bytes_get_431() {
    let server = Server::start(&[
        "--listen",
        "scgi://127.0.0.1:0",
        "--max-params-bytes",
        "2048",
    ]);
    let mut p = scgi_params("GET", "/");
    let big = "c".repeat(4000);
    set_param(&mut p, "HTTP_COOKIE", Some(&big));
    assert_eq!(
        parse_response(&scgi_request(&server.spec(0), &p, b"")).status,
        431
    );
    assert_eq!(scgi_get(&server.spec(0), "/").status, 200);
}

#[test]
fn malformed_headers_are_refused_and_others_still_served() {
    let server = server();
    let spec = server.spec(0);
    let base = server.quiet_fd_count();
    let bad: [&[u8]; 5] = [
        // CONTENT_LENGTH not first.
        b"24:SCGI\x001\x00CONTENT_LENGTH\x000\x00,",
        // No SCGI=1.
        b"17:CONTENT_LENGTH\x000\x00,",
        // Netstring without its comma.
        b"24:CONTENT_LENGTH\x000\x00SCGI\x001\x00;",
        // Length that is not a number, and an absurd one.
        b"2x:CONTENT_LENGTH\x000\x00,",
        b"99999999999999999999:",
    ];
    for raw in bad {
        let got = scgi_raw(&spec, raw);
        if !got.is_empty() {
            let r = parse_response(&got);
            assert!(
                (400..500).contains(&r.status),
                "malformed {:?} got status {}",
                String::from_utf8_lossy(raw),
                r.status
            );
        }
        assert_eq!(scgi_get(&spec, "/ping").body_str(), "pong\n");
    }
    let n = server.settle_fd_count(base, Duration::from_secs(5));
    assert!(n <= base, "fds: {base} before, {n} after");
}

#[test]
fn a_body_the_app_does_not_read_is_consumed_before_the_close() {
    let server = server();
    // hello ignores its body; closing with it unread would reset the
    // connection and could destroy the answer on its way.
    for spec in server.specs() {
        let body = pattern(5 << 20, 6);
        let r = parse_response(&scgi_request(spec, &scgi_params("POST", "/"), &body));
        assert_eq!(r.body_str(), "Hello, world!\n", "{spec}");
    }
}

#[test]
fn a_body_cut_short_gets_no_success() {
    let server = server();
    let spec = server.spec(0);
    let mut raw = scgi_encode(&scgi_params("POST", "/echo"), &pattern(1000, 3));
    raw.truncate(raw.len() - 990);
    let got = scgi_raw_half_closed(&spec, &raw);
    assert!(
        got.is_empty() || parse_response(&got).status >= 400,
        "a body 990 bytes short was answered: {:?}",
        String::from_utf8_lossy(&got)
    );
    assert_eq!(scgi_get(&spec, "/ping").body_str(), "pong\n");
}

/// Sends `bytes`, half-closes, reads to EOF.
fn scgi_raw_half_closed(spec: &str, bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut c = Conn::connect(spec);
    c.write_all(bytes).expect("write");
    c.shutdown_write();
    c.read_to_eof(1 << 20)
        .expect("fastgate closes a half-closed short request")
}

#[test]
fn a_closed_connection_frees_its_worker() {
    // Over a Unix socket, where a close is told apart from a half-close
    // (over TCP both are one FIN, and a half-closing client is served:
    // tests/half_close.rs).
    let server = Server::start(&[
        "--listen",
        "scgi:{dir}/s.sock",
        "--mount",
        "/sleep=sleep",
        "--mount",
        "/ping=ping",
        "--max-threads",
        "1",
        "--min-threads",
        "1",
    ]);
    let spec = server.spec(0);
    {
        use std::io::Write;
        let mut c = Conn::connect(&spec);
        let raw = scgi_encode(&scgi_params("GET", "/sleep?ms=10000"), b"");
        c.write_all(&raw).expect("write");
        std::thread::sleep(Duration::from_millis(300));
    }
    let t = std::time::Instant::now();
    assert_eq!(scgi_get(&spec, "/ping").body_str(), "pong\n");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the only worker stayed on a 10 s sleep whose client left: ping took {:?}",
        t.elapsed()
    );
}

#[test]
fn queue_overflow_gets_503_with_retry_after() {
    let server = Server::start(&[
        "--listen",
        "scgi://127.0.0.1:0",
        "--mount",
        "/sleep=sleep",
        "--queue",
        "1",
        "--max-threads",
        "1",
        "--min-threads",
        "1",
    ]);
    let spec = server.spec(0);
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let spec = spec.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(i * 20));
                let t = std::time::Instant::now();
                (scgi_get(&spec, "/sleep?ms=1500"), t.elapsed())
            })
        })
        .collect();
    let mut busy = 0;
    for h in handles {
        let (r, took) = h.join().expect("client thread");
        if r.status == 503 {
            busy += 1;
            assert!(r.header("Retry-After").is_some(), "503 without Retry-After");
            assert!(took < Duration::from_millis(1200), "a 503 took {took:?}");
        } else {
            assert_eq!(r.status, 200);
        }
    }
    assert!(
        busy >= 3,
        "only {busy} of 6 got 503 with --queue 1 --max-threads 1"
    );
}
