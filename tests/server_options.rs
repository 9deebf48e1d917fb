//! Serve options beyond the protocols: the access log and its reopening,
//! peer filters, the poll(2) backend, and the library example. Each drives
//! the real binary (or example) over real sockets.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::*;

fn wait_for_file(path: &std::path::Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn access_log_json_has_every_field_and_follows_usr1() {
    let s = Server::start(&[
        "--listen",
        "fastcgi:{dir}/a.sock",
        "--access-log",
        "{dir}/access.log",
        "--log-format",
        "json",
        "--mount",
        "/=hello",
        "--mount",
        "/echo=echo",
        "--max-body-bytes",
        "4",
    ]);
    let spec = s.spec(0);
    assert_eq!(fcgi_get(&spec, "/one?x=1").status, 200);
    let refused = fcgi_request(&spec, "POST", "/echo", b"too long");
    assert_eq!(refused.response().status, 413);
    let log = s.dir().join("access.log");
    let text = wait_for_file(&log, "\"status\":413");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    for key in [
        "time",
        "peer",
        "method",
        "uri",
        "status",
        "bytes",
        "duration_ms",
        "queue_ms",
        "fcgi_id",
        "request_id",
    ] {
        assert!(
            lines[0].contains(&format!("\"{key}\":")),
            "{key} missing: {}",
            lines[0]
        );
    }
    assert!(
        lines[0].contains("\"uri\":\"/one?x=1\"") && lines[0].contains("\"status\":200"),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("\"bytes\":14"), "{}", lines[0]);
    std::fs::rename(&log, s.dir().join("access.log.1")).unwrap();
    s.signal(nix::sys::signal::Signal::SIGUSR1);
    assert!(
        s.wait_stderr("reopened", Duration::from_secs(5)),
        "{}",
        s.stderr()
    );
    assert_eq!(fcgi_get(&spec, "/two").status, 200);
    let fresh = wait_for_file(&log, "/two");
    assert!(
        fresh.contains("\"uri\":\"/two\"") && !fresh.contains("/one"),
        "{fresh}"
    );
}

#[test]
fn access_log_text_keeps_the_field_order() {
    let s = Server::start(&[
        "--listen",
        "fastcgi:{dir}/a.sock",
        "--access-log",
        "{dir}/a.log",
    ]);
    let mut c = FcgiConn::connect(&s.spec(0));
    let mut params = nginx_params("GET", "/with space", None);
    params.push(("HTTP_X_REQUEST_ID".into(), "req-42".into()));
    c.request(7, false, &params, b"");
    assert_eq!(c.read_until_end(7).response().status, 200);
    let text = wait_for_file(&s.dir().join("a.log"), "req-42");
    assert!(text.contains(" unix GET \"/with space\" 200 14 "), "{text}");
    assert!(text.trim_end().ends_with(" 7 req-42"), "{text}");
}

#[test]
fn allow_from_refuses_peers_outside_the_ranges() {
    let s = Server::start(&[
        "--listen",
        "fastcgi://127.0.0.1:0",
        "--allow-from",
        "10.0.0.0/8",
    ]);
    // Refused at accept: closed before anything is read.
    let mut c = FcgiConn::connect(&s.spec(0));
    assert!(
        c.expect_closed(Duration::from_secs(10)).is_ok(),
        "refused peer got an answer"
    );
    assert!(
        s.wait_stderr("--allow-from", Duration::from_secs(5)),
        "{}",
        s.stderr()
    );
    let open = Server::start(&[
        "--listen",
        "fastcgi://127.0.0.1:0",
        "--allow-from",
        "127.0.0.0/8,::1",
    ]);
    assert_eq!(fcgi_get(&open.spec(0), "/").status, 200);
}

#[test]
fn allow_uid_matches_unix_peer_credentials() {
    let me = nix::unistd::getuid().as_raw();
    let other = me.wrapping_add(4242).to_string();
    let s = Server::start(&["--listen", "fastcgi:{dir}/a.sock", "--allow-uid", &other]);
    // Refused at accept: closed before anything is read.
    let mut c = FcgiConn::connect(&s.spec(0));
    assert!(
        c.expect_closed(Duration::from_secs(10)).is_ok(),
        "refused peer got an answer"
    );
    let mine = me.to_string();
    let s = Server::start(&["--listen", "fastcgi:{dir}/a.sock", "--allow-uid", &mine]);
    assert_eq!(fcgi_get(&s.spec(0), "/").status, 200);
}

#[test]
fn the_poll_backend_serves_multiplexed_requests() {
    let dir = TempDir::new();
    let args = vec![
        "--listen".to_string(),
        format!("fastcgi:{}/p.sock", dir.path().display()),
        "--mount".into(),
        "/=echo".into(),
    ];
    let mut cmd = serve_command(&args);
    cmd.env("FASTGATE_POLLER", "poll");
    let s = Server::spawn(cmd, dir, 1);
    let mut c = FcgiConn::connect(&s.spec(0));
    let ids: Vec<u16> = (1..=20).collect();
    for &id in &ids {
        c.begin(id, 1, true);
        c.params(id, &nginx_params("POST", "/", Some(3000)));
    }
    for round in 0..3 {
        for &id in &ids {
            c.stdin(id, &pattern(1000, u64::from(id) * 10 + round));
        }
    }
    for &id in &ids {
        c.end_stdin(id);
    }
    let replies = c.read_all_until(&ids);
    for &id in &ids {
        let want: Vec<u8> = (0..3)
            .flat_map(|r| pattern(1000, u64::from(id) * 10 + r))
            .collect();
        assert_bytes_eq(
            &replies[&id].response().body,
            &want,
            &format!("request {id}"),
        );
    }
}

#[test]
fn the_library_example_serves_its_handlers() {
    let dir = TempDir::new();
    let sock = format!("fastcgi:{}/lib.sock", dir.path().display());
    let example = start_example("library", &sock);
    let greet = fcgi_get(&sock, "/greet?name=Ada");
    let counted = fcgi_request(&sock, "POST", "/count", &pattern(100_000, 3)).response();
    drop(example);
    assert_eq!(greet.body_str(), "Hello, Ada!\n");
    assert_eq!(counted.body_str(), "100000 bytes\n");
}

#[test]
fn an_http_request_on_an_auto_listener_is_answered_in_http() {
    use std::io::Write;
    let s = Server::start(&["--listen", "127.0.0.1:0"]);
    let mut c = std::net::TcpStream::connect(s.tcp_addr(0)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nHello, world!\n"), "{answer}");
    assert_eq!(
        fcgi_get(&s.spec(0), "/").status,
        200,
        "the listener still serves FastCGI"
    );
}

#[test]
fn the_pool_grows_for_requests_stuck_behind_blocked_workers() {
    let s = Server::start(&[
        "--listen",
        "fastcgi:{dir}/a.sock",
        "--mount",
        "/=sleep",
        "--min-threads",
        "1",
        "--max-threads",
        "8",
    ]);
    let mut c = FcgiConn::connect(&s.spec(0));
    let ids: Vec<u16> = (1..=6).collect();
    let started = Instant::now();
    for &id in &ids {
        c.request(id, true, &nginx_params("GET", "/?ms=1000", None), b"");
    }
    let replies = c.read_all_until(&ids);
    let took = started.elapsed();
    for id in ids {
        assert_eq!(replies[&id].response().body_str(), "slept 1000 ms\n");
    }
    // One thread would take 6 s; grown at once, about 1 s; grown only when
    // the first sleep ends, 2 s. The bound catches both.
    assert!(
        took < Duration::from_millis(3000),
        "6 sleeps of 1 s took {took:?}"
    );
    let threads = std::fs::read_dir(format!("/proc/{}/task", s.pid()))
        .unwrap()
        .count();
    assert!(threads <= 1 + 8, "{threads} threads for --max-threads 8");
}

/// A TCP client that sends FIN (no reset) while its unread body has paused
/// the reading of its connection: the hang-up is watched for while paused,
/// so the request is aborted and the only worker freed.
fn fin_while_paused(poller: &str) {
    let dir = TempDir::new();
    let args: Vec<String> = [
        "--listen",
        "fastcgi://127.0.0.1:0",
        "--max-threads",
        "1",
        "--min-threads",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(ALL_APPS.iter().map(|s| s.to_string()))
    .collect();
    let mut cmd = serve_command(&args);
    cmd.env("FASTGATE_POLLER", poller);
    let s = Server::spawn(cmd, dir, 1);
    let spec = s.spec(0);
    let mut c = FcgiConn::connect(&spec);
    c.begin(1, RESPONDER, true);
    c.params(1, &nginx_params("POST", "/sleep?ms=20000", Some(1 << 20)));
    c.stdin(1, &pattern(300_000, 5));
    std::thread::sleep(Duration::from_millis(300));
    c.conn.shutdown_write();
    let t = Instant::now();
    assert_eq!(fcgi_get(&spec, "/ping").body_str(), "pong\n");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "{poller}: ping waited {:?} behind a client that left",
        t.elapsed()
    );
}

#[test]
fn a_fin_while_paused_aborts_the_request_epoll() {
    fin_while_paused("epoll");
}

#[test]
fn a_fin_while_paused_aborts_the_request_poll() {
    fin_while_paused("poll");
}
