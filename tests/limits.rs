//! No client can exhaust the server: each test is a client that tried,
//! against the real binary. Unfinished PARAMS on many requests and many
//! connections (memory stays bounded, then everyone is served again),
//! uploaders that trickle and readers that never read (workers come back
//! after `--body-timeout` / `--send-timeout`), and clients whose bytes
//! would flood the log (each line stays short, the out-of-fds warning
//! comes once per episode, and the starved server neither spins nor
//! needs help to recover), and 50 clients that pipeline at full speed
//! and read nothing (memory stays under a bound computed from the
//! code's limits, and flat).

mod common;

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
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

/// A server on a Unix socket, on the given poller backend.
fn server_on(poller: &str, extra: &[&str]) -> Server {
    let dir = TempDir::new();
    let mut args = vec![
        "--listen".to_string(),
        format!("fastcgi:{}/l.sock", dir.path().display()),
    ];
    args.extend(ALL_APPS.iter().map(|s| s.to_string()));
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut cmd = serve_command(&args);
    cmd.env("FASTGATE_POLLER", poller);
    Server::spawn(cmd, dir, 1)
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

/// CPU time (user + system) a process used so far.
fn cpu_time(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100)
        .max(1) as u64;
    Duration::from_millis(f.iter().sum::<u64>() * 1000 / hz)
}

/// Out of fds (RLIMIT_NOFILE 40, hard limit too, so the server cannot
/// raise it), accepting fails with EMFILE at every retry (each 100 ms):
/// the warning comes once for the episode; the starved server does not
/// spin (under 0.2 s of CPU in 2 s); once some clients leave (not all) it
/// accepts and serves again by itself, no signal or restart, and says so.
/// ENFILE (the system's file table full) cannot be caused safely in a
/// test; `accept_failed` takes it down the same path as EMFILE.
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
    let mut held: Vec<Conn> = (0..60).map(|_| Conn::connect(&spec)).collect();
    assert!(
        server.wait_stderr("accepting pauses", Duration::from_secs(10)),
        "{}",
        server.stderr()
    );
    let cpu = cpu_time(server.pid());
    thread::sleep(Duration::from_secs(2));
    let spent = cpu_time(server.pid()) - cpu;
    eprintln!("starved for 2 s, the server used {spent:?} of CPU");
    assert!(
        spent < Duration::from_millis(200),
        "{spent:?} of CPU in 2 s"
    );
    let warnings = server.stderr().matches("accept:").count();
    assert_eq!(warnings, 1, "{}", server.stderr());
    // The first five were accepted (the backlog is first in, first out);
    // they stay open. The rest leave: accepted ones free their fds, those
    // still in the backlog are accepted, read as closed and closed.
    held.truncate(5);
    assert!(timed_ping(&spec) < Duration::from_secs(10));
    assert!(
        server.wait_stderr("accepting again", Duration::from_secs(5)),
        "{}",
        server.stderr()
    );
    assert_eq!(server.stderr().matches("accepting pauses").count(), 1);
    drop(held);
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
    // Which clients went past the budget depends on the order the poller
    // reports them in: look at every one, latest first (a refused one has
    // its answer and its end already; a waiting one times out at once).
    let refused = flood.iter_mut().rev().any(|c| {
        c.set_timeout(Duration::from_millis(100));
        c.read_to_eof(1 << 16)
            .is_ok_and(|r| r.starts_with(b"Status: 431"))
    });
    assert!(refused, "no client was answered 431");
    drop(flood);
    let mut params = scgi_params("GET", "/ping");
    params.push(("HTTP_X_PAD".into(), "a".repeat(1_000_000)));
    let deadline = Instant::now() + Duration::from_secs(10);
    while parse_response(&scgi_request(&spec, &params, b"")).status != 200 {
        assert!(Instant::now() < deadline, "big heads still refused");
        thread::sleep(Duration::from_millis(100));
    }
}

// ---- slow clients ----

/// How long after its timeout a freed worker may take to answer.
const MARGIN: Duration = Duration::from_secs(5);

/// `n` concurrent sleeps of 300 ms all answered: `n` workers are free.
fn assert_workers_free(spec: &str, n: usize) {
    let t = Instant::now();
    let sleeps: Vec<_> = (0..n)
        .map(|_| {
            let spec = spec.to_string();
            thread::spawn(move || fcgi_get(&spec, "/sleep?ms=300").status)
        })
        .collect();
    for s in sleeps {
        assert_eq!(s.join().expect("sleep client"), 200);
    }
    assert!(t.elapsed() < MARGIN, "{n} sleeps took {:?}", t.elapsed());
}

/// A client that sends its head and part of a declared body, then stalls.
fn stalled_upload(spec: &str) -> FcgiConn {
    let mut c = FcgiConn::connect(spec);
    c.begin(1, RESPONDER, false);
    c.params(1, &nginx_params("POST", "/echo", Some(100_000)));
    c.stdin(1, &pattern(10_000, 3));
    // Answered once the server has dispatched the request.
    c.get_values(&["FCGI_MAX_REQS"]);
    c.read_management();
    c
}

/// A handler that does not read its body pauses the connection: no
/// pause of the client, it keeps its request (sleeps 2.5 s, then 200).
fn unread_body(spec: &str) -> thread::JoinHandle<u16> {
    let spec = spec.to_string();
    thread::spawn(move || {
        let mut c = FcgiConn::connect(&spec);
        let body = pattern(1 << 20, 4);
        let params = nginx_params("POST", "/sleep?ms=2500", Some(body.len()));
        c.request(1, false, &params, &body);
        c.read_until_end(1).response().status
    })
}

/// More uploaders that stall mid-body than there are workers: past
/// `--body-timeout` they are answered 408 and their workers come back,
/// so `/ping` from anyone else is answered; a handler that simply does
/// not read its body (the connection paused for it) is left alone.
fn trickling_uploaders(poller: &str) {
    let server = server_on(
        poller,
        &[
            "--max-threads",
            "5",
            "--min-threads",
            "5",
            "--body-timeout",
            "1s",
        ],
    );
    let spec = server.spec(0);
    let sleeper = unread_body(&spec);
    thread::sleep(Duration::from_millis(200));
    let mut stalled: Vec<FcgiConn> = (0..6).map(|_| stalled_upload(&spec)).collect();
    let took = timed_ping(&spec);
    eprintln!("{poller}: ping behind 6 stalled uploads took {took:?}");
    assert!(
        took < Duration::from_secs(1) + MARGIN,
        "{poller}: ping took {took:?}"
    );
    for c in &mut stalled {
        assert_eq!(c.read_until_end(1).response().status, 408, "{poller}");
    }
    assert_eq!(
        sleeper.join().expect("sleeper"),
        200,
        "{poller}: a paused body was cut"
    );
    assert_workers_free(&spec, 5);
    assert!(server.stderr().contains("--body-timeout"));
}

#[test]
fn trickling_uploaders_free_their_workers_epoll() {
    trickling_uploaders("epoll");
}

#[test]
fn trickling_uploaders_free_their_workers_poll() {
    trickling_uploaders("poll");
}

/// A client that asks for an 8 MB echo and never reads it; says on
/// `sent` when the server has taken the whole body.
fn non_reader(
    spec: &str,
    body: &Arc<Vec<u8>>,
    sent: &mpsc::Sender<()>,
) -> thread::JoinHandle<FcgiConn> {
    let (spec, body, sent) = (spec.to_string(), body.clone(), sent.clone());
    thread::spawn(move || {
        let mut c = FcgiConn::connect(&spec);
        let params = nginx_params("POST", "/echo", Some(body.len()));
        c.conn.set_timeout(Duration::from_secs(30));
        c.request(1, true, &params, &body);
        let _ = sent.send(());
        c
    })
}

/// More clients that never read an 8 MB answer than there are workers:
/// past `--send-timeout` their connections are cut and their workers
/// come back, so `/ping` from anyone else is answered.
fn non_readers(poller: &str) {
    let server = server_on(
        poller,
        &[
            "--max-threads",
            "4",
            "--min-threads",
            "4",
            "--send-timeout",
            "1s",
        ],
    );
    let spec = server.spec(0);
    let body = Arc::new(pattern(8 << 20, 6));
    let (sent, bodies_taken) = mpsc::channel();
    let clients: Vec<_> = (0..6).map(|_| non_reader(&spec, &body, &sent)).collect();
    // Four bodies taken: every worker holds a response nobody reads (the
    // other two clients wait for a worker to take theirs).
    for _ in 0..4 {
        bodies_taken.recv().expect("a non-reader sent its body");
    }
    let took = timed_ping(&spec);
    eprintln!("{poller}: ping behind 6 non-readers took {took:?}");
    assert!(
        took < Duration::from_secs(1) + MARGIN,
        "{poller}: ping took {took:?}"
    );
    // The last two get workers once the first four are cut, and are cut
    // in turn (reading now would take their answers).
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.stderr().matches("--send-timeout").count() < 6 {
        assert!(Instant::now() < deadline, "{poller}: {}", server.stderr());
        thread::sleep(Duration::from_millis(50));
    }
    for c in clients {
        let mut c = c.join().expect("non-reader");
        c.conn.set_timeout(Duration::from_secs(10));
        let got = c.conn.read_to_eof(16 << 20);
        assert!(got.is_ok_and(|b| b.len() < 8 << 20), "{poller}: not cut");
    }
    assert_workers_free(&spec, 4);
}

#[test]
fn non_readers_free_their_workers_epoll() {
    non_readers("epoll");
}

#[test]
fn non_readers_free_their_workers_poll() {
    non_readers("poll");
}

/// An SCGI upload that stalls mid-body is answered 408 past
/// `--body-timeout`, and its connection closed.
#[test]
fn a_stalled_scgi_upload_is_answered_408() {
    let mut args = vec!["--listen", "scgi://127.0.0.1:0", "--body-timeout", "1s"];
    args.extend_from_slice(ALL_APPS);
    let server = Server::start(&args);
    let mut upload = netstring(&[
        ("CONTENT_LENGTH", "100000"),
        ("SCGI", "1"),
        ("REQUEST_METHOD", "POST"),
        ("REQUEST_URI", "/echo"),
    ]);
    upload.extend(pattern(10_000, 7));
    let mut c = Conn::connect(&server.spec(0));
    let t = Instant::now();
    c.write_all(&upload).expect("send a partial upload");
    let answer = c.read_to_eof(1 << 16).expect("an answer, then the close");
    assert_eq!(parse_response(&answer).status, 408);
    assert!(
        t.elapsed() < Duration::from_secs(1) + MARGIN,
        "{:?}",
        t.elapsed()
    );
}

// ---- clients that send at full speed and read nothing ----

/// One FastCGI echo request with an 8 KiB body, kept-alive, as bytes.
fn echo_request(id: u16, body: &[u8]) -> Vec<u8> {
    let mut out = record(rec::BEGIN_REQUEST, id, &begin_body(RESPONDER, true));
    let params = nginx_params("POST", "/echo", Some(body.len()));
    out.extend(stream_records(
        rec::PARAMS,
        id,
        &encode_pairs(&params),
        true,
    ));
    out.extend(stream_records(rec::STDIN, id, body, true));
    out
}

/// A client that pipelines echo requests (ids 1 to 4000, never reused)
/// as fast as its socket takes them and never reads, until `stop` or 30 s.
fn flooder(spec: &str, stop: &Arc<AtomicBool>) -> thread::JoinHandle<Conn> {
    let (spec, stop) = (spec.to_string(), stop.clone());
    thread::spawn(move || {
        let mut c = Conn::connect(&spec);
        c.set_timeout(Duration::from_millis(100));
        let body = pattern(8192, 9);
        let deadline = Instant::now() + Duration::from_secs(30);
        let done = || stop.load(Ordering::Relaxed) || Instant::now() > deadline;
        'requests: for id in 1..=4000 {
            let req = echo_request(id, &body);
            let mut off = 0;
            while off < req.len() {
                if done() {
                    break 'requests;
                }
                match c.write(&req[off..]) {
                    Ok(n) => off += n,
                    Err(e) if is_timeout(&e) => {}
                    Err(_) => break 'requests,
                }
            }
        }
        while !done() {
            thread::sleep(Duration::from_millis(50));
        }
        c
    })
}

/// `/ping` on a fresh connection: its status (or its failure).
fn ping_status(spec: &str) -> String {
    let mut c = FcgiConn::connect(spec);
    c.request(1, false, &nginx_params("GET", "/ping", None), b"");
    match c.try_read_until_end(1) {
        Ok(r) => r.response().status.to_string(),
        Err(e) => e,
    }
}

/// `/ping` until it is answered 200, as a client that honours a 503's
/// `Retry-After` does (sooner: every 100 ms), for at most 10 s; the
/// statuses seen before, and how long it took.
fn ping_until_served(spec: &str) -> (Vec<String>, Duration) {
    let t = Instant::now();
    let mut seen = Vec::new();
    loop {
        let status = ping_status(spec);
        if status == "200" || status != "503" || t.elapsed() > Duration::from_secs(10) {
            seen.push(status);
            return (seen, t.elapsed());
        }
        seen.push(status);
        thread::sleep(Duration::from_millis(100));
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// 50 clients pipeline 8 KiB echo requests at full speed and read
/// nothing. The bound, from the code's constants with the defaults, per
/// connection: reading stops once 1 MiB of output waits (`conn::OUT_HIGH`),
/// and the requests already read add at most `--max-reqs` (128) answers
/// of about 8.3 KiB each (each under its 256 KiB credit,
/// `shared::OUTPUT_HIGH`, so no worker waits): 2.05 MiB; the input kept
/// is at most `--max-params-bytes` + 64 KiB (`conn::RBUF_SLACK`): 192 KiB;
/// the one request whose body the pause cut holds under 16 KiB. For the
/// process: `--queue` (1024) requests, each with its 8 KiB body and about
/// 1 KiB of params: 9.2 MiB, and 64 worker stacks, a few MiB touched. So
/// 50 × 2.26 MiB + 9.2 MiB + 4 MiB ≈ 126 MiB above the idle server at
/// worst (measured: 90 to 105 MiB); the test asks for under 128 MiB, RSS
/// flat once every client is stalled, `/ping` answered 200 within 10 s
/// all along (after a few 503s with `Retry-After` while the flood still
/// fills the queue: the designed answer to overload), and the fds back and RSS lower once the clients leave.
///
/// `--max-threads 64`: each stalled client holds one worker until
/// `--send-timeout` (60 s), the one running the request whose body the
/// pause cut (a slow client, bounded as DESIGN says); 50 of them would
/// hold all 32 default workers. This test is about memory, so the pool
/// has room for them and for the ping.
#[test]
fn full_speed_clients_that_never_read_keep_memory_bounded() {
    let server = server(&["--max-threads", "64"]);
    let spec = server.spec(0);
    let base_fds = server.quiet_fd_count();
    let before = server.rss_bytes();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..50).map(|_| flooder(&spec, &stop)).collect();
    let mut samples = Vec::new();
    for i in 0..12 {
        thread::sleep(Duration::from_millis(500));
        let (seen, took) = ping_until_served(&spec);
        assert_eq!(
            seen.last().unwrap(),
            "200",
            "ping {i}: {seen:?} in {took:?}"
        );
        assert!(
            took < Duration::from_secs(10),
            "ping {i}: {seen:?} in {took:?}"
        );
        samples.push(server.rss_bytes().saturating_sub(before));
    }
    stop.store(true, Ordering::Relaxed);
    let mib = |b: u64| b >> 20;
    eprintln!(
        "RSS above idle every 0.5 s, MiB: {:?}",
        samples.iter().map(|&b| mib(b)).collect::<Vec<_>>()
    );
    let peak = *samples.iter().max().unwrap();
    assert!(peak < 128 << 20, "RSS grew by {} MiB", mib(peak));
    // Flat: over the last 2 s (the clients stall within a second or two).
    let last = &samples[8..];
    let (low, high) = (last.iter().min().unwrap(), last.iter().max().unwrap());
    assert!(
        high - low < 8 << 20,
        "RSS still moving over the last 2 s: {} to {} MiB",
        mib(*low),
        mib(*high)
    );
    for c in clients {
        drop(c.join().expect("flooder"));
    }
    let fds = server.settle_fd_count(base_fds, Duration::from_secs(15));
    assert_eq!(fds, base_fds, "fds after the clients left");
    assert!(timed_ping(&spec) < Duration::from_secs(5));
    let after = server.rss_bytes().saturating_sub(before);
    eprintln!("RSS above idle once they left: {} MiB", mib(after));
    assert!(after < peak, "RSS did not come down after the clients left");
}
