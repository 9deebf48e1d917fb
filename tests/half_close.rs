//! Clients that half-close: they send a whole request, shut their sending
//! side (shutdown(SHUT_WR), a FIN) and wait for the answer, as some clients
//! and proxies do. That is no abort: the requests are answered, then the
//! connection closes. A half-close before a request is complete still is
//! the client leaving (`tests/scgi.rs`, `tests/server_options.rs`).
//!
//! Each case runs over TCP and over a Unix socket, whose hang-up reports
//! differ, with bodies from empty to larger than one read. Two kinds of end
//! stay aborts: a FIN on a connection that asked FCGI_KEEP_CONN (nginx's
//! abort), and, on a Unix socket, a peer that closed for good. Over TCP a
//! close and a half-close are the same FIN: a client that closed is seen
//! when its answer is written.

mod common;

use std::io::Write;

use common::*;

fn server() -> Server {
    Server::start(&[
        "--listen",
        "fastcgi://127.0.0.1:0",
        "--listen",
        "fastcgi:{dir}/f.sock",
        "--listen",
        "scgi://127.0.0.1:0",
        "--listen",
        "scgi:{dir}/s.sock",
        "--mount",
        "/echo=echo",
        "--mount",
        "/sleep=sleep",
        "--mount",
        "/=ping",
    ])
}

/// Up to 3 MB: past the 256 KiB of unread body that pauses reading, so
/// the FIN often comes while the connection is paused with input still
/// unread in the socket (read to its end then, to see the request whole).
const SIZES: [usize; 4] = [0, 1000, 200_000, 3_000_000];

#[test]
fn scgi_half_close_after_the_whole_request_is_answered() {
    let server = server();
    for spec in &server.specs()[2..] {
        for size in SIZES {
            let body = pattern(size, 7);
            let mut c = Conn::connect(spec);
            c.write_all(&scgi_encode(&scgi_params("POST", "/echo"), &body))
                .expect("write");
            c.shutdown_write();
            let got = c.read_to_eof(4 << 20).expect("read");
            let r = parse_response(&got);
            assert_eq!(r.status, 200, "{spec} {size}: {:?}", r.body_str());
            assert!(r.body == body, "{spec} {size}: body differs");
        }
    }
    assert!(
        !server.stderr().contains("in flight"),
        "{}",
        server.stderr()
    );
}

#[test]
fn fastcgi_half_close_without_keep_conn_is_answered() {
    let server = server();
    for spec in &server.specs()[..2] {
        for size in SIZES {
            let body = pattern(size, 8);
            let mut c = FcgiConn::connect(spec);
            c.request(1, false, &nginx_params("POST", "/echo", Some(size)), &body);
            c.conn.shutdown_write();
            let r = complete(&c.read_until_end(1), &format!("{spec} {size}"));
            assert_eq!(r.status, 200, "{spec} {size}");
            assert!(r.body == body, "{spec} {size}: body differs");
            assert!(c.expect_closed(READ_TIMEOUT).is_ok(), "{spec}: not closed");
        }
    }
}

/// With FCGI_KEEP_CONN the connection was meant to live on: its end is
/// nginx's abort (it never half-closes), so the request is cancelled.
#[test]
fn a_fin_on_a_kept_alive_connection_still_aborts() {
    let server = Server::start(&[
        "--listen",
        "fastcgi://127.0.0.1:0",
        "--mount",
        "/sleep=sleep",
        "--mount",
        "/=ping",
        "--max-threads",
        "1",
        "--min-threads",
        "1",
    ]);
    let spec = server.spec(0);
    let mut c = FcgiConn::connect(&spec);
    c.request(1, true, &nginx_params("GET", "/sleep?ms=10000", None), b"");
    std::thread::sleep(std::time::Duration::from_millis(200));
    c.conn.shutdown_write();
    let t = std::time::Instant::now();
    assert_eq!(fcgi_get(&spec, "/").body_str(), "pong\n");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        t.elapsed()
    );
}

/// Over a Unix socket a peer that closes for good is told apart from one
/// that half-closes: its request is cancelled and the worker freed.
#[test]
fn a_full_close_over_a_unix_socket_still_aborts() {
    let server = Server::start(&[
        "--listen",
        "scgi:{dir}/s.sock",
        "--listen",
        "fastcgi:{dir}/f.sock",
        "--mount",
        "/sleep=sleep",
        "--mount",
        "/=ping",
        "--max-threads",
        "1",
        "--min-threads",
        "1",
    ]);
    {
        let mut c = Conn::connect(&server.spec(0));
        c.write_all(&scgi_encode(&scgi_params("GET", "/sleep?ms=10000"), b""))
            .expect("write");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    {
        let mut c = FcgiConn::connect(&server.spec(1));
        c.request(1, false, &nginx_params("GET", "/sleep?ms=10000", None), b"");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let t = std::time::Instant::now();
    assert_eq!(fcgi_get(&server.spec(1), "/").body_str(), "pong\n");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn a_half_close_while_the_handler_runs_does_not_abort_it() {
    let server = server();
    for spec in &server.specs()[..2] {
        let mut c = FcgiConn::connect(spec);
        c.request(1, false, &nginx_params("GET", "/sleep?ms=500", None), b"");
        std::thread::sleep(std::time::Duration::from_millis(100));
        c.conn.shutdown_write();
        let r = complete(&c.read_until_end(1), spec);
        assert_eq!(r.body_str(), "slept 500 ms\n", "{spec}");
    }
}

#[test]
fn a_half_close_before_the_params_end_still_closes() {
    let server = server();
    for spec in &server.specs()[..2] {
        let mut c = FcgiConn::connect(spec);
        c.begin(1, RESPONDER, false);
        c.conn.shutdown_write();
        assert!(c.expect_closed(READ_TIMEOUT).is_ok(), "{spec}: not closed");
    }
    assert_eq!(fcgi_get(&server.spec(0), "/").body_str(), "pong\n");
}
