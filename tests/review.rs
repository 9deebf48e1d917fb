//! Defects found in review of the server core, each pinned by a test that
//! failed before its fix: a hang-up while reading is paused, input left
//! unprocessed after a timeout released a pause, output the loop makes for
//! a client that never reads, an AUTHORIZER waiting for STDIN, a FILTER
//! stalled by its unread STDIN, and bytes for an ended stream pausing a
//! connection for good.

mod common;

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// A server on a Unix socket, on the given poller backend.
fn unix_server(poller: &str, extra: &[&str]) -> Server {
    let dir = TempDir::new();
    let mut args = vec![
        "--listen".to_string(),
        format!("fastcgi:{}/r.sock", dir.path().display()),
    ];
    args.extend(ALL_APPS.iter().map(|s| s.to_string()));
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut cmd = serve_command(&args);
    cmd.env("FASTGATE_POLLER", poller);
    Server::spawn(cmd, dir, 1)
}

/// CPU time (user + system) the process has used, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    // The fields after the command name (which is in parentheses).
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line.
    f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
}

/// A client that closes while its unread body has paused the reading of
/// its connection: the loop must notice the hang-up (not spin on it) and
/// abort the request, freeing the only worker.
fn hang_up_while_paused(poller: &str) {
    let server = unix_server(poller, &["--max-threads", "1", "--min-threads", "1"]);
    let spec = server.spec(0);
    {
        let mut c = FcgiConn::connect(&spec);
        c.begin(1, RESPONDER, true);
        c.params(1, &nginx_params("POST", "/sleep?ms=10000", Some(1 << 20)));
        // Past the 256 KiB of unread body that pauses the connection.
        c.stdin(1, &pattern(300_000, 5));
        thread::sleep(Duration::from_millis(300));
    }
    thread::sleep(Duration::from_millis(100));
    let before = cpu_ticks(server.pid());
    thread::sleep(Duration::from_millis(1000));
    let spent = cpu_ticks(server.pid()) - before;
    assert!(
        spent < 30,
        "{poller}: the loop spent {spent} ticks in 1 s on a hung-up paused connection"
    );
    let t = Instant::now();
    assert_eq!(fcgi_get(&spec, "/ping").body_str(), "pong\n");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "{poller}: the only worker stayed on a sleep whose client left: ping took {:?}",
        t.elapsed()
    );
}

#[test]
fn hang_up_while_paused_epoll() {
    hang_up_while_paused("epoll");
}

#[test]
fn hang_up_while_paused_poll() {
    hang_up_while_paused("poll");
}

/// A --request-timeout that ends a request pausing its connection must
/// process the input kept while paused: here the next request (multiplexed
/// behind the body) sits in it, and the client has nothing more to send.
#[test]
fn input_kept_during_a_pause_is_processed_after_a_timeout() {
    let server = unix_server("epoll", &["--request-timeout", "1s"]);
    let mut c = FcgiConn::connect(&server.spec(0));
    c.begin(1, RESPONDER, true);
    c.params(1, &nginx_params("POST", "/sleep?ms=5000", Some(262_200)));
    // Just under the pause bound: read and queued, not pausing.
    c.stdin(1, &pattern(262_000, 1));
    thread::sleep(Duration::from_millis(300));
    // One small write (one read): the body crosses the bound, then its end
    // and request 2 stay in the server's buffer of unprocessed input.
    let mut tail = stream_records(rec::STDIN, 1, &pattern(200, 2), true);
    tail.extend_from_slice(&record(rec::BEGIN_REQUEST, 2, &begin_body(RESPONDER, true)));
    tail.extend_from_slice(&stream_records(
        rec::PARAMS,
        2,
        &encode_pairs(&nginx_params("GET", "/ping", None)),
        true,
    ));
    tail.extend_from_slice(&record(rec::STDIN, 2, &[]));
    c.send_raw(&tail);
    let first = c.read_until_end(1);
    assert_eq!(first.response().status, 504);
    c.conn.set_timeout(Duration::from_secs(5));
    let second = c
        .try_read_until_end(2)
        .unwrap_or_else(|e| panic!("request 2, kept while paused: {e}"));
    assert_eq!(complete(&second, "ping").body_str(), "pong\n");
}

/// A client that sends and never reads must not make the server buffer
/// without bound: here records the loop answers itself (UNKNOWN_TYPE).
#[test]
fn a_client_that_never_reads_cannot_grow_the_output_buffer() {
    let server = unix_server("epoll", &[]);
    let mut c = Conn::connect(&server.spec(0));
    let before = server.rss_bytes();
    // 8192 records of an unknown type (header only), 64 KiB a write.
    let chunk: Vec<u8> = (0..8192)
        .flat_map(|_| [1u8, 200, 0, 0, 0, 0, 0, 0])
        .collect();
    c.set_timeout(Duration::from_secs(1));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut sent = 0usize;
    while sent < 64 << 20 && Instant::now() < deadline {
        if c.write_all(&chunk).is_err() {
            break;
        }
        sent += chunk.len();
    }
    thread::sleep(Duration::from_millis(200));
    let grown = server.rss_bytes().saturating_sub(before);
    assert!(
        grown < 16 << 20,
        "resident memory grew {} MiB answering {} MiB from a client that never reads",
        grown >> 20,
        sent >> 20
    );
}

/// FastCGI 1.0 §6.3 gives an Authorizer no FCGI_STDIN, and Apache
/// (mod_authnz_fcgi, mod_fastcgi, mod_fcgid) sends none, not even the
/// empty record: the response must not wait for a stream that never comes.
#[test]
fn an_authorizer_gets_its_answer_without_any_stdin() {
    let server = unix_server("epoll", &[]);
    let mut c = FcgiConn::connect(&server.spec(0));
    c.begin(1, AUTHORIZER, true);
    c.params(1, &nginx_params("GET", "/ping", None));
    c.conn.set_timeout(Duration::from_secs(5));
    let reply = c
        .try_read_until_end(1)
        .unwrap_or_else(|e| panic!("authorizer with no STDIN: {e}"));
    assert_eq!(reply.protocol_status, REQUEST_COMPLETE);
    assert_eq!(complete(&reply, "authorizer").body_str(), "pong\n");
}

/// A FILTER handler that reads only FCGI_DATA (the file it filters) must
/// not stall on a request body it never reads: by FastCGI 1.0 §6.4 DATA
/// follows STDIN, so an unread STDIN past the pause bound kept DATA from
/// ever arriving.
#[test]
fn a_filter_reading_only_data_is_not_stalled_by_a_large_stdin() {
    let server = unix_server("epoll", &[]);
    let mut c = FcgiConn::connect(&server.spec(0));
    let stdin = pattern(400_000, 12);
    let data = pattern(70_000, 13);
    let mut p = nginx_params("POST", "/echo", Some(stdin.len()));
    set_param(&mut p, "FCGI_DATA_LENGTH", Some(&data.len().to_string()));
    set_param(&mut p, "FCGI_DATA_LAST_MOD", Some("1700000000"));
    let mut all = record(rec::BEGIN_REQUEST, 1, &begin_body(FILTER, true));
    all.extend_from_slice(&stream_records(rec::PARAMS, 1, &encode_pairs(&p), true));
    all.extend_from_slice(&stream_records(rec::STDIN, 1, &stdin, true));
    all.extend_from_slice(&stream_records(rec::DATA, 1, &data, true));
    // Written from a thread: the server rightly stops reading for a while.
    let mut w = match &c.conn {
        Conn::Unix(s) => s.try_clone().expect("clone"),
        Conn::Tcp(_) => unreachable!("a unix server"),
    };
    let writer = thread::spawn(move || w.write_all(&all));
    c.conn.set_timeout(Duration::from_secs(5));
    let reply = c
        .try_read_until_end(1)
        .unwrap_or_else(|e| panic!("filter with a 400 kB STDIN: {e}"));
    assert_bytes_eq(&complete(&reply, "filter").body, &data, "FILTER echo");
    writer.join().expect("writer").expect("write");
}

/// Input for a stream that has ended (DATA sent to a RESPONDER, whose DATA
/// stream is empty; STDIN sent to an AUTHORIZER) is never read: it must
/// not pause the connection past the end of its request.
#[test]
fn input_for_an_ended_stream_does_not_pause_the_connection_for_good() {
    let server = unix_server("epoll", &[]);
    let mut c = FcgiConn::connect(&server.spec(0));
    let mut all = record(rec::BEGIN_REQUEST, 1, &begin_body(RESPONDER, true));
    all.extend_from_slice(&stream_records(
        rec::PARAMS,
        1,
        &encode_pairs(&nginx_params("GET", "/sleep?ms=500", None)),
        true,
    ));
    all.extend_from_slice(&record(rec::STDIN, 1, &[]));
    all.extend_from_slice(&stream_records(rec::DATA, 1, &pattern(300_000, 14), false));
    let mut w = match &c.conn {
        Conn::Unix(s) => s.try_clone().expect("clone"),
        Conn::Tcp(_) => unreachable!("a unix server"),
    };
    let writer = thread::spawn(move || w.write_all(&all));
    assert_eq!(complete(&c.read_until_end(1), "sleep").status, 200);
    writer.join().expect("writer").expect("write");
    c.request(2, true, &nginx_params("GET", "/ping", None), b"");
    c.conn.set_timeout(Duration::from_secs(5));
    let reply = c
        .try_read_until_end(2)
        .unwrap_or_else(|e| panic!("request after stray DATA: {e}"));
    assert_eq!(complete(&reply, "ping").body_str(), "pong\n");
}
