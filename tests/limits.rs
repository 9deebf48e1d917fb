//! No client can exhaust the server: each test is a client that tried,
//! against the real binary. Unfinished PARAMS on many requests and many
//! connections (memory stays bounded, then everyone is served again),
//! uploaders that trickle and readers that never read (workers come back
//! after `--body-timeout` / `--send-timeout`), and clients whose bytes
//! would flood the log (each line stays short, the out-of-fds warning
//! comes once per episode).

mod common;

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// The longest log line a client may cause.
const LINE_MAX: usize = 1024;

/// A server on TCP with every test app, and extra options.
fn server(extra: &[&str]) -> Server {
    let mut args = vec!["--listen", "fastcgi://127.0.0.1:0"];
    args.extend_from_slice(ALL_APPS);
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// The longest line the server logged, for the failure message.
fn longest_line(log: &str) -> usize {
    log.lines().map(str::len).max().unwrap_or(0)
}

fn assert_short_lines(server: &Server, what: &str) {
    let log = server.stderr();
    let longest = longest_line(&log);
    assert!(
        longest < LINE_MAX,
        "{what}: a log line of {longest} bytes; the start of the log:\n{}",
        log.chars().take(2000).collect::<String>()
    );
}

/// `/ping` on a fresh connection, with how long it took.
fn timed_ping(spec: &str) -> Duration {
    let t = Instant::now();
    assert_eq!(fcgi_get(spec, "/ping").body_str(), "pong\n");
    t.elapsed()
}

// ---- the log ----

/// A client that sends STDOUT (a record only a server sends) gets its
/// connection closed and one log line, which names the record, not its
/// 65 KB of content.
#[test]
fn a_client_stdout_record_gives_a_short_log_line() {
    let server = server(&[]);
    let mut c = FcgiConn::connect(&server.spec(0));
    c.send_raw(&record(rec::STDOUT, 1, &[b'\n'; 65_000]));
    assert!(c.expect_closed(Duration::from_secs(5)).is_ok());
    assert!(
        server.wait_stderr("unexpected record", Duration::from_secs(5)),
        "no log line: {}",
        server.stderr()
    );
    assert_short_lines(&server, "65 KB STDOUT record");
    assert!(server
        .stderr()
        .contains("STDOUT record for request 1, 65000 bytes"));
}

/// SCGI headers whose bad values are huge: each answered 400, each logged
/// in a short line.
#[test]
fn huge_bad_scgi_values_give_short_log_lines() {
    let server = Server::start(&["--listen", "scgi://127.0.0.1:0"]);
    let spec = server.spec(0);
    let big = "7".repeat(60_000) + "x";
    let bad_length = scgi_raw(
        &spec,
        &netstring(&[("CONTENT_LENGTH", &big), ("SCGI", "1")]),
    );
    assert!(parse_response(&bad_length).status == 400);
    let bad_scgi = scgi_raw(
        &spec,
        &netstring(&[("CONTENT_LENGTH", "0"), ("SCGI", &big)]),
    );
    assert!(parse_response(&bad_scgi).status == 400);
    assert!(server.wait_stderr("SCGI is", Duration::from_secs(5)));
    assert_short_lines(&server, "huge bad SCGI values");
}

/// An SCGI netstring of the given pairs, in order, no body.
fn netstring(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut content = Vec::new();
    for (n, v) in pairs {
        content.extend_from_slice(n.as_bytes());
        content.push(0);
        content.extend_from_slice(v.as_bytes());
        content.push(0);
    }
    let mut out = format!("{}:", content.len()).into_bytes();
    out.extend_from_slice(&content);
    out.push(b',');
    out
}

/// Out of fds, accepting fails at every retry (each 100 ms); the warning
/// comes once when it starts and once when accepting works again.
#[test]
fn running_out_of_fds_is_logged_once_per_episode() {
    let args: Vec<String> = ["--listen", "fastcgi://127.0.0.1:0"]
        .iter()
        .chain(ALL_APPS)
        .map(|s| s.to_string())
        .collect();
    let mut cmd = serve_command(&args);
    // SAFETY: one system call, safe between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = 40;
            Ok(nix::sys::resource::setrlimit(
                nix::sys::resource::Resource::RLIMIT_NOFILE,
                limit,
                limit,
            )?)
        });
    }
    let server = Server::spawn(cmd, TempDir::new(), 1);
    let spec = server.spec(0);
    let held: Vec<Conn> = (0..60).map(|_| Conn::connect(&spec)).collect();
    thread::sleep(Duration::from_millis(1500));
    let warnings = server.stderr().matches("accept:").count();
    assert_eq!(warnings, 1, "{}", server.stderr());
    drop(held);
    thread::sleep(Duration::from_millis(500));
    assert!(timed_ping(&spec) < Duration::from_secs(5));
    assert!(
        server.wait_stderr("accepting again", Duration::from_secs(5)),
        "{}",
        server.stderr()
    );
}

// ---- params in progress ----

/// The params of a ping padded to about `bytes`.
fn padded_ping(bytes: usize) -> Vec<u8> {
    let mut params = nginx_params("GET", "/ping", None);
    params.push(("HTTP_X_PAD".into(), "a".repeat(bytes)));
    encode_pairs(&params)
}

/// BEGIN_REQUEST and PARAMS of about `bytes` for each id, never ended;
/// returns once the server has processed them (it answered the
/// GET_VALUES sent after them).
fn unfinished_params(c: &mut FcgiConn, ids: std::ops::Range<u16>, bytes: usize) {
    let block = padded_ping(bytes);
    let mut out = Vec::new();
    for id in ids {
        out.extend(record(rec::BEGIN_REQUEST, id, &begin_body(RESPONDER, true)));
        out.extend(stream_records(rec::PARAMS, id, &block, false));
    }
    c.send_raw(&out);
    c.get_values(&["FCGI_MAX_REQS"]);
    c.read_management();
}

/// Ends the params of `id` (and its empty body): the ping goes ahead.
fn finish_params(c: &mut FcgiConn, id: u16) {
    let mut out = record(rec::PARAMS, id, &[]);
    out.extend(record(rec::STDIN, id, &[]));
    c.send_raw(&out);
}

/// The status of a reply, or what refused it (FCGI_OVERLOADED as 0).
fn outcome(reply: &FcgiReply) -> u16 {
    if reply.protocol_status == OVERLOADED {
        return 0;
    }
    reply.response().status
}

/// One connection gathers at most 4 × --max-params-bytes of params not
/// yet complete: a fifth and sixth big head are refused (431) while the
/// first four wait, the connection goes on serving them, and once they
/// are dispatched a new big head fits again.
#[test]
fn one_connection_holds_at_most_four_unfinished_heads() {
    let server = server(&[]);
    let mut c = FcgiConn::connect(&server.spec(0));
    unfinished_params(&mut c, 1..7, 120_000);
    for id in [5, 6] {
        assert_eq!(outcome(&c.read_until_end(id)), 431, "request {id}");
    }
    for id in 1..5 {
        finish_params(&mut c, id);
        assert_eq!(outcome(&c.read_until_end(id)), 200, "request {id}");
    }
    let mut big = record(rec::BEGIN_REQUEST, 8, &begin_body(RESPONDER, true));
    big.extend(stream_records(rec::PARAMS, 8, &padded_ping(120_000), true));
    big.extend(record(rec::STDIN, 8, &[]));
    c.send_raw(&big);
    assert_eq!(c.read_until_end(8).response().body_str(), "pong\n");
}

/// A new client's big head, on a fresh connection.
fn big_ping(spec: &str) -> u16 {
    let mut c = FcgiConn::connect(spec);
    let mut out = record(rec::BEGIN_REQUEST, 1, &begin_body(RESPONDER, false));
    out.extend(stream_records(rec::PARAMS, 1, &padded_ping(100_000), true));
    out.extend(record(rec::STDIN, 1, &[]));
    c.send_raw(&out);
    outcome(&c.read_until_end(1))
}

/// Past 64 MiB of params not yet complete across the process, new heads
/// are refused with a clear answer; when the clients holding them leave,
/// the count comes back down and heads are served again.
#[test]
fn the_process_holds_at_most_64_mib_of_unfinished_heads() {
    let server = server(&["--header-timeout", "60s"]);
    let spec = server.spec(0);
    let flood: Vec<FcgiConn> = (0..130)
        .map(|_| {
            let mut c = FcgiConn::connect(&spec);
            unfinished_params(&mut c, 1..5, 120_000);
            c
        })
        .collect();
    let refused = big_ping(&spec);
    assert!(
        matches!(refused, 0 | 431),
        "a head past the budget got {refused}"
    );
    let rss = server.rss_bytes();
    assert!(rss < 160 << 20, "RSS {} MiB", rss >> 20);
    drop(flood);
    let deadline = Instant::now() + Duration::from_secs(10);
    while big_ping(&spec) != 200 {
        assert!(
            Instant::now() < deadline,
            "heads still refused after the flood ended"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// The repro of the issue, scaled down: 40 connections of 32 requests
/// each with 120 KB of params that never end (150 MB sent) leave the
/// server within 40 × 512 KiB of params plus buffers; then it serves.
#[test]
fn forty_connections_of_unfinished_params_keep_rss_bounded() {
    let server = server(&["--header-timeout", "60s"]);
    let spec = server.spec(0);
    let before = server.rss_bytes();
    let flood: Vec<FcgiConn> = (0..40)
        .map(|_| {
            let mut c = FcgiConn::connect(&spec);
            unfinished_params(&mut c, 1..33, 120_000);
            c
        })
        .collect();
    let grown = server.rss_bytes().saturating_sub(before);
    eprintln!("RSS grew by {} KiB", grown >> 10);
    assert!(grown < 48 << 20, "RSS grew by {} MiB", grown >> 20);
    drop(flood);
    assert!(timed_ping(&spec) < Duration::from_secs(5));
}

/// SCGI heads in progress count against the same process budget: 70
/// clients each 1 MB into a header that never ends pass 64 MiB, and the
/// ones past it are answered 431; once they leave, a big head is served.
#[test]
fn unfinished_scgi_headers_share_the_process_budget() {
    let mut args = vec!["--listen", "scgi://127.0.0.1:0"];
    args.extend_from_slice(ALL_APPS);
    args.extend_from_slice(&["--max-params-bytes", "1m", "--header-timeout", "60s"]);
    let server = Server::start(&args);
    let spec = server.spec(0);
    let mut partial = b"1048000:".to_vec();
    partial.resize(1_000_008, b'a');
    let mut flood: Vec<Conn> = (0..70).map(|_| Conn::connect(&spec)).collect();
    for c in &mut flood {
        c.write_all(&partial).expect("send a partial header");
    }
    assert!(
        server.wait_stderr("past the process's budget", Duration::from_secs(10)),
        "{}",
        server.stderr()
    );
    // The last clients are the ones past the budget.
    let refused = flood.iter_mut().rev().take(10).any(|c| {
        c.set_timeout(Duration::from_millis(500));
        c.read_to_eof(1 << 16)
            .is_ok_and(|r| r.starts_with(b"Status: 431"))
    });
    assert!(refused, "none of the last clients was answered 431");
    drop(flood);
    let mut params = scgi_params("GET", "/ping");
    params.push(("HTTP_X_PAD".into(), "a".repeat(1_000_000)));
    let deadline = Instant::now() + Duration::from_secs(10);
    while parse_response(&scgi_request(&spec, &params, b"")).status != 200 {
        assert!(Instant::now() < deadline, "big heads still refused");
        thread::sleep(Duration::from_millis(100));
    }
}
