//! No client can exhaust the server: each test is a client that tried,
//! against the real binary. Unfinished PARAMS on many requests and many
//! connections (memory stays bounded, then everyone is served again),
//! uploaders that trickle and readers that never read (workers come back
//! after `--body-timeout` / `--send-timeout`), and clients whose bytes
//! would flood the log (each line stays short, the out-of-fds warning
//! comes once per episode).

mod common;

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
