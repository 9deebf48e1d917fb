//! FastCGI conformance of the real binary over real sockets: every built-in
//! app on TCP and Unix sockets, routing, multiplexing with interleaved
//! STDIN, body sizes around the record limit, the FILTER role, aborts,
//! FCGI_KEEP_CONN, the worker pool and its queue, management records and
//! the limits (`--max-reqs`, `--max-body-bytes`, `--max-params-bytes`).
//!
//! Timing bounds here only catch hangs; none measures speed.

mod common;

use std::collections::HashMap;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const TCP: &[&str] = &["--listen", "fastcgi://127.0.0.1:0"];

/// A server with every app mounted on one TCP and one Unix listener.
fn both_listeners() -> Server {
    let args = [
        &[
            "--listen",
            "fastcgi://127.0.0.1:0",
            "--listen",
            "fastcgi:{dir}/f.sock",
        ][..],
        ALL_APPS,
    ]
    .concat();
    Server::start(&args)
}

fn tcp_server(extra: &[&str]) -> Server {
    Server::start(&[TCP, ALL_APPS, extra].concat())
}

fn get(spec: &str, uri: &str) -> Response {
    complete(&fcgi_request(spec, "GET", uri, b""), uri)
}

/// POST `body` to `/echo` with `content_type` (None: no CONTENT_TYPE).
fn echo(spec: &str, body: &[u8], content_type: Option<&str>) -> Response {
    let mut c = FcgiConn::connect(spec);
    let mut p = nginx_params("POST", "/echo", Some(body.len()));
    set_param(&mut p, "CONTENT_TYPE", content_type);
    c.request(1, false, &p, body);
    complete(&c.read_until_end(1), "echo")
}

fn check_hello(r: &Response, what: &str) {
    assert_eq!(r.status, 200, "{what}");
    assert_eq!(r.header("Content-Type"), Some("text/plain"), "{what}");
    assert_eq!(r.body_str(), "Hello, world!\n", "{what}");
}

#[test]
fn hello_is_the_default_mount() {
    let server = Server::start(TCP);
    check_hello(&get(&server.spec(0), "/"), "GET /");
    check_hello(&get(&server.spec(0), "/any/path?x=1"), "GET /any/path");
}

#[test]
fn every_app_answers_over_tcp_and_unix() {
    let server = both_listeners();
    assert_eq!(server.specs().len(), 2);
    assert!(server.unix_path(1).starts_with(server.dir()));
    for spec in server.specs() {
        check_hello(&get(spec, "/"), spec);

        let r = get(spec, "/ping");
        assert_eq!(
            (r.status, r.body_str().as_str()),
            (200, "pong\n"),
            "{spec} ping"
        );

        let r = get(spec, "/sleep?ms=30");
        assert_eq!(
            (r.status, r.body_str().as_str()),
            (200, "slept 30 ms\n"),
            "{spec} sleep"
        );

        let r = echo(spec, b"some body\0\xff", Some("text/x-test"));
        assert_eq!(r.status, 200, "{spec} echo");
        assert_eq!(r.header("Content-Type"), Some("text/x-test"), "{spec} echo");
        assert_eq!(r.body, b"some body\0\xff", "{spec} echo");

        let r = echo(spec, b"abc", None);
        assert_eq!(
            r.header("Content-Type"),
            Some("application/octet-stream"),
            "{spec} echo"
        );
        assert_eq!(r.body, b"abc", "{spec} echo");

        check_env(spec);
    }
}

fn check_env(spec: &str) {
    let mut c = FcgiConn::connect(spec);
    let mut p = nginx_params("GET", "/env?a=b", None);
    set_param(&mut p, "HTTP_X_ODD", Some("v=w x"));
    c.request(1, false, &p, b"");
    let r = complete(&c.read_until_end(1), "env");
    assert_eq!(r.status, 200, "{spec} env");
    assert_eq!(r.header("Content-Type"), Some("text/plain"), "{spec} env");
    let body = r.body_str();
    let lines: Vec<&str> = body.lines().collect();
    for (k, v) in &p {
        let want = format!("{k}={v}");
        assert!(
            lines.contains(&want.as_str()),
            "{spec} env: no line {want:?} in {body:?}"
        );
    }
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted, "{spec} env: lines not sorted by name");
}

#[test]
fn routing_matches_whole_segments_and_longest_prefix() {
    let server = Server::start(&[
        "--listen",
        "fastcgi://127.0.0.1:0",
        "--mount",
        "/a=hello",
        "--mount",
        "/a/b=ping",
        "--mount",
        "/echo=echo",
    ]);
    let spec = server.spec(0);
    check_hello(&get(&spec, "/a"), "/a");
    check_hello(&get(&spec, "/a/x"), "/a/x");
    check_hello(&get(&spec, "/a/bc"), "/a/bc");
    assert_eq!(get(&spec, "/a/b").body_str(), "pong\n", "/a/b");
    assert_eq!(get(&spec, "/a/b/c?q").body_str(), "pong\n", "/a/b/c");
    for uri in ["/", "/ab", "/echoes", "/nothing/here"] {
        assert_eq!(get(&spec, uri).status, 404, "{uri} is not mounted");
    }
}

#[test]
fn routing_path_is_script_name_plus_path_info_else_request_uri() {
    let server = Server::start(&[
        "--listen",
        "fastcgi://127.0.0.1:0",
        "--mount",
        "/ping=ping",
        "--mount",
        "/x/y=hello",
    ]);
    let spec = server.spec(0);
    let ask = |script: &str, info: Option<&str>, uri: &str| {
        let mut p = nginx_params("GET", uri, None);
        set_param(&mut p, "SCRIPT_NAME", Some(script));
        set_param(&mut p, "DOCUMENT_URI", None);
        set_param(&mut p, "PATH_INFO", info);
        let mut c = FcgiConn::connect(&spec);
        c.request(1, false, &p, b"");
        complete(&c.read_until_end(1), uri).status
    };
    assert_eq!(
        ask("/x", Some("/y"), "/elsewhere"),
        200,
        "SCRIPT_NAME + PATH_INFO"
    );
    assert_eq!(ask("", Some("/ping"), "/elsewhere"), 200, "PATH_INFO alone");
    assert_eq!(ask("/ping", None, "/elsewhere"), 200, "SCRIPT_NAME alone");
    assert_eq!(
        ask("", Some(""), "/ping?x=1"),
        200,
        "empty: REQUEST_URI's path"
    );
    assert_eq!(ask("", None, "/x/y/z"), 200, "absent: REQUEST_URI's path");
    assert_eq!(ask("/elsewhere", None, "/ping"), 404, "SCRIPT_NAME wins");
}

#[test]
fn fifty_requests_multiplexed_with_interleaved_stdin() {
    let server = tcp_server(&[]);
    let mut c = FcgiConn::connect(&server.spec(0));
    let bodies: HashMap<u16, Vec<u8>> = (1..=50u16)
        .map(|id| (id, pattern(500 + usize::from(id) * 997, u64::from(id))))
        .collect();
    for id in 1..=50u16 {
        c.begin(id, RESPONDER, true);
        c.params(id, &nginx_params("POST", "/echo", Some(bodies[&id].len())));
    }
    // Round robin: a chunk of each body in turn, so records of different
    // ids alternate on the wire.
    let mut offset = 0;
    while offset < 60_000 {
        for id in 1..=50u16 {
            let b = &bodies[&id];
            if offset < b.len() {
                c.stdin(id, &b[offset..b.len().min(offset + 1500)]);
            }
        }
        offset += 1500;
    }
    for id in (1..=50u16).rev() {
        c.end_stdin(id);
    }
    let ids: Vec<u16> = (1..=50).collect();
    let replies = c.read_all_until(&ids);
    for id in ids {
        let r = complete(&replies[&id], &format!("id {id}"));
        assert_eq!(r.status, 200, "id {id}");
        assert_bytes_eq(&r.body, &bodies[&id], &format!("echo of id {id}"));
    }
    // The connection is still good for more.
    c.request(7, true, &nginx_params("GET", "/ping", None), b"");
    assert_eq!(complete(&c.read_until_end(7), "ping").body_str(), "pong\n");
}

#[test]
fn echo_bodies_of_every_size_byte_exact() {
    let server = both_listeners();
    for spec in server.specs() {
        for (len, seed) in [(0, 1), (1, 2), (65535, 3), (65536, 4), (10 << 20, 5)] {
            let body = pattern(len, seed);
            let r = echo(spec, &body, Some("application/x-test"));
            assert_eq!(r.status, 200, "{spec} echo of {len} bytes");
            assert_bytes_eq(&r.body, &body, &format!("{spec} echo of {len} bytes"));
        }
    }
}

#[test]
fn stdin_split_into_small_and_odd_records() {
    let server = tcp_server(&[]);
    let mut c = FcgiConn::connect(&server.spec(0));
    let body = pattern(100_000, 9);
    c.begin(1, RESPONDER, false);
    c.params(1, &nginx_params("POST", "/echo", Some(body.len())));
    let mut sent = 0;
    for (i, size) in [1usize, 7, 8, 9, 4093, 65535, 3].iter().cycle().enumerate() {
        if sent >= body.len() || i > 10_000 {
            break;
        }
        let end = body.len().min(sent + size);
        c.stdin(1, &body[sent..end]);
        sent = end;
    }
    c.end_stdin(1);
    let r = complete(&c.read_until_end(1), "echo");
    assert_bytes_eq(&r.body, &body, "echo of odd-sized STDIN records");
}

#[test]
fn params_split_anywhere_across_records() {
    let server = tcp_server(&[]);
    let mut p = nginx_params("GET", "/env", None);
    let long = "L".repeat(300); // a 4-byte value length
    set_param(&mut p, "HTTP_X_LONG", Some(&long));
    let encoded = encode_pairs(&p);
    for split in [1usize, 2, 5, 127, 128, 129] {
        let mut c = FcgiConn::connect(&server.spec(0));
        c.begin(1, RESPONDER, false);
        for chunk in encoded.chunks(split) {
            c.send_raw(&record(rec::PARAMS, 1, chunk));
        }
        c.send_raw(&record(rec::PARAMS, 1, &[]));
        c.end_stdin(1);
        let r = complete(&c.read_until_end(1), "env");
        let body = r.body_str();
        assert!(
            body.lines().any(|l| l == format!("HTTP_X_LONG={long}")),
            "params in {split}-byte records: HTTP_X_LONG lost: {body:?}"
        );
    }
}

#[test]
fn any_padding_on_input_is_accepted() {
    let server = tcp_server(&[]);
    let mut c = FcgiConn::connect(&server.spec(0));
    let padded = |kind: u8, content: &[u8], pad: u8| {
        let len = u16::try_from(content.len()).expect("small record");
        let mut out = vec![1, kind, 0, 1];
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&[pad, 0]);
        out.extend_from_slice(content);
        out.resize(out.len() + usize::from(pad), 0xAA);
        out
    };
    c.send_raw(&padded(
        rec::BEGIN_REQUEST,
        &begin_body(RESPONDER, false),
        255,
    ));
    let params = encode_pairs(&nginx_params("POST", "/echo", Some(5)));
    c.send_raw(&padded(rec::PARAMS, &params, 3));
    c.send_raw(&padded(rec::PARAMS, &[], 1));
    c.send_raw(&padded(rec::STDIN, b"hello", 200));
    c.send_raw(&padded(rec::STDIN, &[], 7));
    assert_eq!(complete(&c.read_until_end(1), "echo").body, b"hello");
}

#[test]
fn filter_role_echoes_the_data_stream() {
    let server = tcp_server(&[]);
    let mut c = FcgiConn::connect(&server.spec(0));
    let data = pattern(70_000, 11);
    let stdin = b"request body, not the filtered file";
    let mut p = nginx_params("POST", "/echo", Some(stdin.len()));
    set_param(&mut p, "FCGI_DATA_LENGTH", Some(&data.len().to_string()));
    set_param(&mut p, "FCGI_DATA_LAST_MOD", Some("1700000000"));
    c.begin(1, FILTER, false);
    c.params(1, &p);
    c.stdin(1, stdin);
    c.end_stdin(1);
    c.data(1, &data[..30_000]);
    c.data(1, &data[30_000..]);
    c.end_data(1);
    let r = complete(&c.read_until_end(1), "filter echo");
    assert_eq!(r.status, 200);
    assert_bytes_eq(&r.body, &data, "FILTER echo of FCGI_DATA");
}

#[test]
fn authorizer_role_is_served() {
    let server = tcp_server(&[]);
    let mut c = FcgiConn::connect(&server.spec(0));
    c.begin(1, AUTHORIZER, false);
    c.params(1, &nginx_params("GET", "/ping", None));
    // FastCGI 1.0 §6.3 sends an Authorizer no body; an empty STDIN record
    // is sent anyway so the test holds whether or not the server waits for
    // one (a record for an ended request is ignored, §3.3).
    c.end_stdin(1);
    let reply = c.read_until_end(1);
    assert_eq!(reply.protocol_status, REQUEST_COMPLETE);
    assert_eq!(reply.response().status, 200);
}

#[test]
fn abort_request_ends_a_sleeping_request_promptly() {
    let server = tcp_server(&[]);
    let mut c = FcgiConn::connect(&server.spec(0));
    c.request(1, true, &nginx_params("GET", "/sleep?ms=10000", None), b"");
    thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    c.abort(1);
    let reply = c.read_until_end(1);
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "END_REQUEST came {took:?} after ABORT_REQUEST of a 10 s sleep"
    );
    assert!(
        reply.response_status_or_none() != Some(200) || reply.stdout.is_empty(),
        "an aborted sleep reported success: {:?}",
        String::from_utf8_lossy(&reply.stdout)
    );
    // FCGI_KEEP_CONN was set: the connection lives on.
    c.request(2, true, &nginx_params("GET", "/ping", None), b"");
    assert_eq!(
        complete(&c.read_until_end(2), "ping after abort").body_str(),
        "pong\n"
    );
}

trait StatusOrNone {
    fn response_status_or_none(&self) -> Option<u16>;
}

impl StatusOrNone for FcgiReply {
    fn response_status_or_none(&self) -> Option<u16> {
        if self.stdout.windows(4).any(|w| w == b"\r\n\r\n") {
            Some(self.response().status)
        } else {
            None
        }
    }
}

#[test]
fn abort_of_a_request_still_reading_its_body() {
    let server = tcp_server(&[]);
    let mut c = FcgiConn::connect(&server.spec(0));
    c.begin(1, RESPONDER, true);
    c.params(1, &nginx_params("POST", "/echo", Some(100_000)));
    c.stdin(1, &pattern(10_000, 1));
    c.abort(1);
    let reply = c.read_until_end(1);
    assert!(
        reply.stdout.len() < 100_000,
        "aborted echo sent a whole body"
    );
    c.request(2, true, &nginx_params("GET", "/ping", None), b"");
    assert_eq!(complete(&c.read_until_end(2), "ping").body_str(), "pong\n");
}

#[test]
fn closing_mid_request_leaves_the_others_served() {
    let server = tcp_server(&[]);
    let spec = server.spec(0);
    let mut other = FcgiConn::connect(&spec);
    other.request(1, true, &nginx_params("GET", "/ping", None), b"");
    complete(&other.read_until_end(1), "warm-up");
    let base = server.quiet_fd_count();
    for round in 0..5u16 {
        {
            // Mid-body: params done, half the body sent.
            let mut c = FcgiConn::connect(&spec);
            c.begin(1, RESPONDER, false);
            c.params(1, &nginx_params("POST", "/echo", Some(50_000)));
            c.stdin(1, &pattern(25_000, 3));
        }
        {
            // Mid-response: a sleeping request whose client leaves.
            let mut c = FcgiConn::connect(&spec);
            c.request(1, false, &nginx_params("GET", "/sleep?ms=300", None), b"");
        }
        let id = round + 2;
        other.request(id, true, &nginx_params("GET", "/ping", None), b"");
        assert_eq!(
            complete(&other.read_until_end(id), "ping").body_str(),
            "pong\n"
        );
    }
    let n = server.settle_fd_count(base, Duration::from_secs(5));
    assert!(n <= base, "fds: {base} before, {n} after the clients left");
}

#[test]
fn keep_conn_on_serves_several_requests_on_one_connection() {
    let server = tcp_server(&[]);
    let mut c = FcgiConn::connect(&server.spec(0));
    for (id, uri, body) in [
        (1u16, "/ping", "pong\n"),
        (1, "/", "Hello, world!\n"),
        (2, "/ping", "pong\n"),
    ] {
        c.request(id, true, &nginx_params("GET", uri, None), b"");
        assert_eq!(complete(&c.read_until_end(id), uri).body_str(), body);
    }
    // Nothing more is sent and the connection stays open.
    assert!(!c.anything_within(Duration::from_millis(200)));
}

#[test]
fn keep_conn_off_closes_after_end_request() {
    let server = tcp_server(&[]);
    let mut c = FcgiConn::connect(&server.spec(0));
    c.request(1, false, &nginx_params("GET", "/ping", None), b"");
    assert_eq!(complete(&c.read_until_end(1), "ping").body_str(), "pong\n");
    assert_eq!(
        c.expect_closed(Duration::from_secs(5)),
        Ok(()),
        "fastgate kept a connection open without FCGI_KEEP_CONN"
    );
}

/// Over a Unix socket a connection whose input is all in closes at once
/// (a Unix socket delivers what was written before the close, so there is
/// nothing to linger for): the peer's next write finds it gone. After a
/// refusal it lingers, still reading what the peer sends (see
/// `refusals_survive_the_close_that_follows_them` in tests/nginx.rs).
#[test]
fn a_unix_connection_closes_at_once_unless_a_refusal_must_linger() {
    let unix = [
        "--listen",
        "fastcgi:{dir}/a.sock",
        "--max-body-bytes",
        "100",
    ];
    let server = Server::start(&[&unix[..], ALL_APPS].concat());
    let mut c = FcgiConn::connect(&server.spec(0));
    c.request(1, false, &nginx_params("GET", "/ping", None), b"");
    assert_eq!(complete(&c.read_until_end(1), "ping").body_str(), "pong\n");
    assert_eq!(c.expect_closed(Duration::from_secs(5)), Ok(()));
    let late = c.try_send_raw(&[0; 8]);
    assert_eq!(
        late.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::BrokenPipe)
    );

    let mut c = FcgiConn::connect(&server.spec(0));
    c.begin(1, RESPONDER, false);
    c.params(1, &nginx_params("POST", "/echo", Some(1000)));
    c.stdin(1, &[7; 500]);
    assert_eq!(complete(&c.read_until_end(1), "413").status, 413);
    assert_eq!(c.expect_closed(Duration::from_secs(5)), Ok(()));
    c.try_send_raw(&[0; 8])
        .expect("a refused connection lingers, reading what still comes");
}

#[test]
fn third_request_waits_for_one_of_two_workers() {
    let server = tcp_server(&["--max-threads", "2", "--min-threads", "1"]);
    let spec = server.spec(0);
    let start = Instant::now();
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let spec = spec.clone();
            thread::spawn(move || {
                let r = get(&spec, "/sleep?ms=1500");
                (r.status, start.elapsed())
            })
        })
        .collect();
    let mut times: Vec<Duration> = handles
        .into_iter()
        .map(|h| {
            let (status, took) = h.join().expect("client thread");
            assert_eq!(status, 200);
            took
        })
        .collect();
    times.sort();
    assert!(
        times[2] >= Duration::from_millis(2700),
        "third of three 1.5 s sleeps on 2 workers done after {:?}",
        times[2]
    );
    assert!(times[2] < Duration::from_secs(15), "sleeps took {times:?}");
    assert!(
        times[1] < Duration::from_millis(2900),
        "two workers did not run two sleeps at once: {times:?}"
    );
}

#[test]
fn queue_overflow_gets_503_with_retry_after_quickly() {
    let server = tcp_server(&["--queue", "2", "--max-threads", "1", "--min-threads", "1"]);
    let spec = server.spec(0);
    let start = Instant::now();
    let handles: Vec<_> = (0..10)
        .map(|i| {
            let spec = spec.clone();
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(i * 20));
                let sent = Instant::now();
                let reply = fcgi_request(&spec, "GET", "/sleep?ms=2000", b"");
                (reply, sent.elapsed())
            })
        })
        .collect();
    let results: Vec<(FcgiReply, Duration)> = handles
        .into_iter()
        .map(|h| h.join().expect("client thread"))
        .collect();
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "the flood took {:?}",
        start.elapsed()
    );
    let mut ok = 0;
    let mut busy = 0;
    for (reply, took) in &results {
        // nginx turns an early END_REQUEST error into a 502: overload is
        // a 503 on STDOUT with a normal END_REQUEST.
        let r = complete(reply, "flooded sleep");
        match r.status {
            200 => ok += 1,
            503 => {
                busy += 1;
                assert!(
                    r.header("Retry-After").is_some(),
                    "503 without Retry-After: {:?}",
                    r.headers
                );
                assert!(
                    *took < Duration::from_millis(1500),
                    "a 503 took {took:?}: it waited in the queue"
                );
            }
            s => panic!("flooded sleep got status {s}"),
        }
    }
    assert!(ok >= 1, "no request of the flood was served");
    assert!(
        busy >= 5,
        "only {busy} of 10 flooded requests got 503 with --queue 2 --max-threads 1 (ok {ok})"
    );
}

fn get_values(c: &mut FcgiConn) -> HashMap<String, String> {
    // FastCGI 1.0 §4.1: names the application does not know are ignored.
    c.get_values(&[
        "FCGI_MAX_CONNS",
        "FCGI_MAX_REQS",
        "X_NOT_A_VARIABLE",
        "FCGI_MPXS_CONNS",
    ]);
    let r = c.read_management();
    assert_eq!(r.kind, rec::GET_VALUES_RESULT, "reply to GET_VALUES: {r:?}");
    let pairs = decode_pairs(&r.content).expect("GET_VALUES_RESULT body is name-value pairs");
    pairs
        .into_iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(&k).into_owned(),
                String::from_utf8_lossy(&v).into_owned(),
            )
        })
        .collect()
}

#[test]
fn get_values_reports_limits_and_multiplexing() {
    let server = tcp_server(&["--max-reqs", "7"]);
    let mut c = FcgiConn::connect(&server.spec(0));
    let v = get_values(&mut c);
    assert_eq!(
        v.get("FCGI_MAX_REQS").map(String::as_str),
        Some("7"),
        "{v:?}"
    );
    assert_eq!(
        v.get("FCGI_MPXS_CONNS").map(String::as_str),
        Some("1"),
        "{v:?}"
    );
    assert!(
        !v.contains_key("X_NOT_A_VARIABLE"),
        "an unknown name was answered: {v:?}"
    );
    let conns = v
        .get("FCGI_MAX_CONNS")
        .unwrap_or_else(|| panic!("no FCGI_MAX_CONNS in {v:?}"));
    assert!(
        conns.parse::<u64>().is_ok_and(|n| n > 0),
        "FCGI_MAX_CONNS={conns:?}"
    );
    // A management record does not end the connection.
    c.request(1, true, &nginx_params("GET", "/ping", None), b"");
    assert_eq!(complete(&c.read_until_end(1), "ping").body_str(), "pong\n");
}

#[test]
fn get_values_default_max_reqs_is_128() {
    let server = Server::start(TCP);
    let mut c = FcgiConn::connect(&server.spec(0));
    let v = get_values(&mut c);
    assert_eq!(
        v.get("FCGI_MAX_REQS").map(String::as_str),
        Some("128"),
        "{v:?}"
    );
}

#[test]
fn unknown_management_type_gets_unknown_type() {
    let server = tcp_server(&[]);
    let mut c = FcgiConn::connect(&server.spec(0));
    c.send_raw(&record(42, 0, b"whatever"));
    let r = c.read_management();
    assert_eq!(r.kind, rec::UNKNOWN_TYPE, "{r:?}");
    assert_eq!(r.content.len(), 8, "FCGI_UnknownTypeBody is 8 bytes: {r:?}");
    assert_eq!(r.content[0], 42, "UNKNOWN_TYPE names the type: {r:?}");
    c.request(1, true, &nginx_params("GET", "/ping", None), b"");
    assert_eq!(complete(&c.read_until_end(1), "ping").body_str(), "pong\n");
}

#[test]
fn unknown_role_gets_end_request_unknown_role() {
    let server = tcp_server(&[]);
    let mut c = FcgiConn::connect(&server.spec(0));
    c.begin(1, 9, true);
    let reply = c.read_until_end(1);
    assert_eq!(reply.protocol_status, UNKNOWN_ROLE, "{reply:?}");
    c.request(2, true, &nginx_params("GET", "/ping", None), b"");
    assert_eq!(complete(&c.read_until_end(2), "ping").body_str(), "pong\n");
}

#[test]
fn past_max_reqs_gets_overloaded_and_the_connection_lives_on() {
    let server = tcp_server(&["--max-reqs", "2"]);
    let mut c = FcgiConn::connect(&server.spec(0));
    for id in [1u16, 2] {
        c.begin(id, RESPONDER, true);
        c.params(id, &nginx_params("POST", "/echo", Some(3)));
        c.stdin(id, b"ab");
    }
    c.begin(3, RESPONDER, true);
    let reply = c.read_until_end(3);
    assert_eq!(reply.protocol_status, OVERLOADED, "{reply:?}");
    for id in [1u16, 2] {
        c.stdin(id, &[b'0' + id as u8]);
        c.end_stdin(id);
    }
    let replies = c.read_all_until(&[1, 2]);
    assert_eq!(complete(&replies[&1], "id 1").body, b"ab1");
    assert_eq!(complete(&replies[&2], "id 2").body, b"ab2");
    c.request(3, true, &nginx_params("GET", "/ping", None), b"");
    assert_eq!(complete(&c.read_until_end(3), "ping").body_str(), "pong\n");
}

#[test]
fn body_past_max_body_bytes_gets_413() {
    let server = tcp_server(&["--max-body-bytes", "1000"]);
    let spec = server.spec(0);
    assert_eq!(
        echo(&spec, &pattern(1000, 1), None).status,
        200,
        "1000 bytes"
    );
    assert_eq!(
        echo(&spec, &pattern(1001, 1), None).status,
        413,
        "1001 bytes"
    );
    // Without CONTENT_LENGTH the limit is met while reading.
    let mut c = FcgiConn::connect(&spec);
    let mut p = nginx_params("POST", "/echo", None);
    set_param(&mut p, "CONTENT_LENGTH", None);
    c.request(1, false, &p, &pattern(5000, 2));
    assert_eq!(
        complete(&c.read_until_end(1), "echo").status,
        413,
        "5000 bytes, no length"
    );
}

#[test]
fn params_past_max_params_bytes_get_431() {
    let server = tcp_server(&["--max-params-bytes", "2048"]);
    let mut c = FcgiConn::connect(&server.spec(0));
    let mut p = nginx_params("GET", "/ping", None);
    let big = "x".repeat(4000);
    set_param(&mut p, "HTTP_COOKIE", Some(&big));
    c.request(1, true, &p, b"");
    assert_eq!(complete(&c.read_until_end(1), "big params").status, 431);
    c.request(2, true, &nginx_params("GET", "/ping", None), b"");
    assert_eq!(complete(&c.read_until_end(2), "ping").body_str(), "pong\n");
}

#[test]
fn body_without_content_length_is_read_to_the_empty_stdin_record() {
    let server = tcp_server(&[]);
    for content_length in [None, Some("")] {
        let mut c = FcgiConn::connect(&server.spec(0));
        let mut p = nginx_params("POST", "/echo", None);
        set_param(&mut p, "CONTENT_LENGTH", content_length);
        let body = pattern(150_000, 21);
        c.begin(1, RESPONDER, false);
        c.params(1, &p);
        for part in body.chunks(40_000) {
            c.stdin(1, part);
        }
        c.end_stdin(1);
        let r = complete(&c.read_until_end(1), "echo");
        assert_bytes_eq(
            &r.body,
            &body,
            &format!("echo with CONTENT_LENGTH {content_length:?}"),
        );
    }
}

#[test]
fn no_response_byte_before_stdin_ends() {
    let server = tcp_server(&[]);
    let spec = server.spec(0);
    // hello answers without reading the body: its output must wait.
    let mut c = FcgiConn::connect(&spec);
    c.begin(1, RESPONDER, false);
    c.params(1, &nginx_params("POST", "/", Some(100)));
    c.stdin(1, &[b'a'; 50]);
    assert!(
        !c.anything_within(Duration::from_millis(500)),
        "hello answered before STDIN ended"
    );
    c.stdin(1, &[b'b'; 50]);
    c.end_stdin(1);
    check_hello(
        &complete(&c.read_until_end(1), "hello"),
        "hello after STDIN",
    );

    // echo of a big body: output is held (not dropped) until STDIN ends.
    let body = pattern(10 << 20, 33);
    let mut c = FcgiConn::connect(&spec);
    c.begin(1, RESPONDER, false);
    c.params(1, &nginx_params("POST", "/echo", Some(body.len())));
    c.stdin(1, &body[..body.len() - 1000]);
    assert!(
        !c.anything_within(Duration::from_millis(500)),
        "echo answered before STDIN ended"
    );
    c.stdin(1, &body[body.len() - 1000..]);
    c.end_stdin(1);
    let r = complete(&c.read_until_end(1), "echo");
    assert_bytes_eq(&r.body, &body, "echo of 10 MB held until STDIN ended");
}

#[test]
fn request_timeout_answers_504_when_nothing_was_sent() {
    let server = tcp_server(&["--request-timeout", "500ms"]);
    let spec = server.spec(0);
    let t = Instant::now();
    let r = get(&spec, "/sleep?ms=10000");
    assert_eq!(
        r.status,
        504,
        "sleep past --request-timeout: {:?}",
        r.body_str()
    );
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "504 came after {:?}",
        t.elapsed()
    );
    assert_eq!(get(&spec, "/ping").body_str(), "pong\n");
}

#[test]
fn max_conns_pauses_accepting_until_a_connection_closes() {
    let server = tcp_server(&["--max-conns", "2"]);
    let spec = server.spec(0);
    let mut first = FcgiConn::connect(&spec);
    first.request(1, true, &nginx_params("GET", "/ping", None), b"");
    complete(&first.read_until_end(1), "first");
    let mut second = FcgiConn::connect(&spec);
    second.request(1, true, &nginx_params("GET", "/ping", None), b"");
    complete(&second.read_until_end(1), "second");
    // The kernel completes the handshake; fastgate must not take it yet.
    let mut third = FcgiConn::connect(&spec);
    third.request(1, false, &nginx_params("GET", "/ping", None), b"");
    assert!(
        !third.anything_within(Duration::from_millis(500)),
        "a third connection was served with --max-conns 2"
    );
    drop(first);
    let r = complete(&third.read_until_end(1), "third after one closed");
    assert_eq!(r.body_str(), "pong\n");
}

#[test]
fn bodies_no_handler_reads_do_not_stall_the_connection() {
    let server = tcp_server(&[]);
    let mut c = FcgiConn::connect(&server.spec(0));
    // hello never reads its body; sleep reads it only after sleeping. The
    // connection's other requests must still get through.
    let big = pattern(5 << 20, 41);
    c.request(1, true, &nginx_params("POST", "/", Some(big.len())), &big);
    let mid = pattern(3 << 20, 42);
    c.request(
        2,
        true,
        &nginx_params("POST", "/sleep?ms=300", Some(mid.len())),
        &mid,
    );
    c.request(3, true, &nginx_params("GET", "/ping", None), b"");
    let replies = c.read_all_until(&[1, 2, 3]);
    check_hello(
        &complete(&replies[&1], "hello"),
        "hello with an unread 5 MiB body",
    );
    assert_eq!(complete(&replies[&2], "sleep").body_str(), "slept 300 ms\n");
    assert_eq!(complete(&replies[&3], "ping").body_str(), "pong\n");
    c.request(4, true, &nginx_params("GET", "/ping", None), b"");
    assert_eq!(complete(&c.read_until_end(4), "ping").body_str(), "pong\n");
}

#[test]
fn a_hundred_connections_at_once() {
    let server = tcp_server(&[]);
    let spec = server.spec(0);
    let base = server.quiet_fd_count();
    let mut conns: Vec<FcgiConn> = (0..100).map(|_| FcgiConn::connect(&spec)).collect();
    for (i, c) in conns.iter_mut().enumerate() {
        let body = pattern(1000 + i, i as u64);
        c.request(
            1,
            false,
            &nginx_params("POST", "/echo", Some(body.len())),
            &body,
        );
    }
    for (i, c) in conns.iter_mut().enumerate() {
        let r = complete(&c.read_until_end(1), "echo");
        assert_bytes_eq(
            &r.body,
            &pattern(1000 + i, i as u64),
            &format!("connection {i}"),
        );
    }
    drop(conns);
    let n = server.settle_fd_count(base, Duration::from_secs(5));
    assert!(n <= base, "fds: {base} before, {n} after 100 connections");
}

/// One request of a random interleaving: its records, in order, and
/// whether an ABORT_REQUEST ends them.
struct Plan {
    id: u16,
    body: Vec<u8>,
    steps: Vec<Vec<u8>>,
    aborted_before_end: bool,
}

fn plan(id: u16, x: &mut u64) -> Plan {
    let mut next = || {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    };
    let body = pattern((next() % 20_000) as usize, next());
    let mut steps = vec![record(rec::BEGIN_REQUEST, id, &begin_body(RESPONDER, true))];
    let params = encode_pairs(&nginx_params("POST", "/echo", Some(body.len())));
    steps.push(stream_records(rec::PARAMS, id, &params, true));
    let chunk = 1 + (next() % 7000) as usize;
    steps.extend(body.chunks(chunk).map(|c| record(rec::STDIN, id, c)));
    steps.push(record(rec::STDIN, id, &[]));
    let aborted_before_end = next() % 5 == 0;
    if aborted_before_end {
        let keep = 1 + (next() as usize) % (steps.len() - 1);
        steps.truncate(keep);
        steps.push(record(rec::ABORT_REQUEST, id, &[]));
    }
    Plan {
        id,
        body,
        steps,
        aborted_before_end,
    }
}

#[test]
fn random_interleavings_of_requests_with_aborts() {
    let server = tcp_server(&[]);
    let mut c = FcgiConn::connect(&server.spec(0));
    let mut x = 0x0123_4567_89ab_cdefu64;
    for round in 0..20u16 {
        let n = 1 + (round % 8);
        let mut plans: Vec<Plan> = (1..=n).map(|id| plan(id, &mut x)).collect();
        let mut cursor = vec![0usize; plans.len()];
        // Send the records of all requests in a random merge order.
        loop {
            let live: Vec<usize> = (0..plans.len())
                .filter(|&i| cursor[i] < plans[i].steps.len())
                .collect();
            if live.is_empty() {
                break;
            }
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = live[(x % live.len() as u64) as usize];
            let step = std::mem::take(&mut plans[i].steps[cursor[i]]);
            c.send_raw(&step);
            cursor[i] += 1;
        }
        for p in &plans {
            let reply = c
                .try_read_until_end(p.id)
                .unwrap_or_else(|e| panic!("round {round} id {}: {e}", p.id));
            if !p.aborted_before_end {
                let r = complete(&reply, &format!("round {round} id {}", p.id));
                assert_bytes_eq(&r.body, &p.body, &format!("round {round} id {}", p.id));
            }
        }
    }
    c.request(1, true, &nginx_params("GET", "/ping", None), b"");
    assert_eq!(complete(&c.read_until_end(1), "ping").body_str(), "pong\n");
}

#[test]
fn a_closed_connection_frees_its_worker() {
    let server = tcp_server(&["--max-threads", "1", "--min-threads", "1"]);
    let spec = server.spec(0);
    {
        // nginx's only abort: the connection closes mid-request.
        let mut c = FcgiConn::connect(&spec);
        c.request(1, true, &nginx_params("GET", "/sleep?ms=10000", None), b"");
        thread::sleep(Duration::from_millis(300));
    }
    let t = Instant::now();
    assert_eq!(get(&spec, "/ping").body_str(), "pong\n");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the only worker stayed on a 10 s sleep whose client left: ping took {:?}",
        t.elapsed()
    );
}

#[test]
fn params_larger_than_one_record() {
    let server = tcp_server(&[]);
    let mut p = nginx_params("GET", "/env", None);
    let cookie = "k=".to_string() + &"c".repeat(100_000);
    set_param(&mut p, "HTTP_COOKIE", Some(&cookie));
    let mut c = FcgiConn::connect(&server.spec(0));
    c.request(1, false, &p, b"");
    let r = complete(&c.read_until_end(1), "env");
    assert_eq!(
        r.status, 200,
        "100 kB of params is under the default 128 KiB"
    );
    let want = format!("HTTP_COOKIE={cookie}");
    assert!(
        r.body_str().lines().any(|l| l == want),
        "the 100 kB cookie did not come through whole"
    );
}

#[test]
fn ipv6_loopback_listener() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("SKIPPED: no IPv6 loopback on this machine");
        return;
    }
    let server = Server::start(&["--listen", "fastcgi://[::1]:0", "--mount", "/=ping"]);
    assert!(server.tcp_addr(0).is_ipv6(), "{}", server.spec(0));
    assert_eq!(get(&server.spec(0), "/").body_str(), "pong\n");
}

#[test]
fn held_output_leaves_no_fd_and_no_file_behind() {
    let dir = TempDir::new();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).expect("mkdir");
    let args: Vec<String> = ["--listen", "fastcgi://127.0.0.1:0", "--mount", "/echo=echo"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut cmd = serve_command(&args);
    // Output held past its memory bound goes to a temporary file there.
    cmd.env("TMPDIR", &tmp);
    let server = Server::spawn(cmd, dir, 1);
    let spec = server.spec(0);
    let base = server.quiet_fd_count();
    for seed in 0..3 {
        let body = pattern(10 << 20, seed);
        let reply = fcgi_request(&spec, "POST", "/echo", &body);
        assert_bytes_eq(&complete(&reply, "echo").body, &body, "10 MiB echo");
    }
    let n = server.settle_fd_count(base, Duration::from_secs(5));
    assert!(
        n <= base,
        "fds: {base} before, {n} after three 10 MiB echoes"
    );
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .expect("read tmp")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "temporary files left behind: {left:?}");
}

#[test]
fn a_megabyte_of_params_is_discarded_as_it_arrives() {
    let server = tcp_server(&[]);
    let mut c = FcgiConn::connect(&server.spec(0));
    let mut p = nginx_params("GET", "/env", None);
    for i in 0..16 {
        set_param(
            &mut p,
            &format!("HTTP_X_PAD_{i}"),
            Some(&"p".repeat(64 * 1024)),
        );
    }
    c.request(1, true, &p, b"");
    let r = complete(&c.read_until_end(1), "1 MiB of params");
    assert_eq!(r.status, 431, "1 MiB of params past the default 128 KiB");
    c.request(2, true, &nginx_params("GET", "/ping", None), b"");
    assert_eq!(complete(&c.read_until_end(2), "ping").body_str(), "pong\n");
}

/// Caddy's fastcgi transport sends `CONTENT_LENGTH=-1` for a chunked
/// request body: an unknown length, read to the end of STDIN, with
/// `--max-body-bytes` still applied.
#[test]
fn a_negative_content_length_means_read_stdin_to_its_end() {
    let server = tcp_server(&["--max-body-bytes", "100000"]);
    let spec = server.spec(0);
    for (size, status) in [(0, 200), (70_000, 200), (150_000, 413)] {
        let body = pattern(size, 11);
        let mut params = nginx_params("POST", "/echo", Some(size));
        set_param(&mut params, "CONTENT_LENGTH", Some("-1"));
        let mut c = FcgiConn::connect(&spec);
        c.request(1, false, &params, &body);
        let r = complete(&c.read_until_end(1), &format!("{size} bytes"));
        assert_eq!(r.status, status, "{size} bytes: {:?}", r.body_str());
        if status == 200 {
            assert!(r.body == body, "{size} bytes: body differs");
        }
    }
}

/// Like PHP-FPM, a plain 200 goes out with no `Status:` line (Caddy would
/// pass it on to its client as a header); every other status has one.
#[test]
fn a_plain_200_has_no_status_line() {
    let server = tcp_server(&[]);
    let spec = server.spec(0);
    let mut c = FcgiConn::connect(&spec);
    c.request(1, false, &nginx_params("GET", "/", None), b"");
    let reply = c.read_until_end(1);
    let head = String::from_utf8_lossy(&reply.stdout).to_string();
    assert!(head.starts_with("Content-Type: text/plain\r\n"), "{head:?}");
    assert!(!head.to_ascii_lowercase().contains("status:"), "{head:?}");
    let only_echo = Server::start(&[TCP[0], TCP[1], "--mount", "/echo=echo"]);
    let mut c = FcgiConn::connect(&only_echo.spec(0));
    c.request(1, false, &nginx_params("GET", "/nowhere", None), b"");
    let head = String::from_utf8_lossy(&c.read_until_end(1).stdout).to_string();
    assert!(head.starts_with("Status: 404 Not Found\r\n"), "{head:?}");
}

/// The loop holds a response until its request's input has ended, so a
/// handler that answers without reading its body frees its worker at once:
/// with one worker, another client is served while the first body is
/// still on its way, and the first answer goes out once that body ends.
#[test]
fn a_handler_that_ignores_its_body_frees_its_worker_before_the_body_ends() {
    let server = tcp_server(&["--max-threads", "1", "--min-threads", "1"]);
    let spec = server.spec(0);
    let mut slow = FcgiConn::connect(&spec);
    slow.begin(1, RESPONDER, false);
    slow.params(1, &nginx_params("POST", "/", Some(200)));
    slow.stdin(1, &[b'a'; 100]);
    thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    assert_eq!(get(&spec, "/ping").body_str(), "pong\n");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(
        !slow.anything_within(Duration::from_millis(200)),
        "answered before its STDIN ended"
    );
    slow.stdin(1, &[b'b'; 100]);
    slow.end_stdin(1);
    check_hello(&complete(&slow.read_until_end(1), "hello"), "after STDIN");
}
