//! The `pubsub` app on the real binary: waiters hold no worker, one POST
//! releases them all, a timeout answers 204, and a waiter whose client
//! leaves is not counted by the next POST.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::*;

fn server(extra: &[&str]) -> Server {
    let args = [
        &[
            "--listen",
            "fastcgi:{dir}/f.sock",
            "--mount",
            "/events=pubsub",
            "--mount",
            "/ping=ping",
            "--mount",
            "/sleep=sleep",
            "--max-threads",
            "2",
            "--min-threads",
            "2",
        ][..],
        extra,
    ]
    .concat();
    Server::start(&args)
}

/// Sends `GET uri` and leaves the reply to be read later.
fn wait_on(spec: &str, uri: &str) -> FcgiConn {
    let mut c = FcgiConn::connect(spec);
    c.request(1, false, &nginx_params("GET", uri, None), b"");
    c
}

fn publish(spec: &str, uri: &str, message: &[u8]) -> Response {
    let mut c = FcgiConn::connect(spec);
    c.request(
        1,
        false,
        &nginx_params("POST", uri, Some(message.len())),
        message,
    );
    complete(&c.read_until_end(1), "POST")
}

/// Publishes until the answer says `want` waiters got it (the waiters'
/// requests may still be on their way into the server).
fn publish_to(spec: &str, uri: &str, message: &[u8], want: usize) -> Response {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = publish(spec, uri, message);
        if r.body_str() == format!("delivered {want}\n") || Instant::now() > deadline {
            return r;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn one_post_releases_every_waiter_and_holds_no_worker() {
    let server = server(&[]);
    let spec = server.spec(0);
    // Both workers busy: waiting and publishing must not need them.
    let _busy: Vec<FcgiConn> = (0..2).map(|_| wait_on(&spec, "/sleep?ms=3000")).collect();
    let mut waiters: Vec<FcgiConn> = (0..3).map(|_| wait_on(&spec, "/events/room")).collect();
    let _other = wait_on(&spec, "/events/elsewhere?timeout=5");
    thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    assert_eq!(
        publish(&spec, "/events/room", b"hi all").body_str(),
        "delivered 3\n"
    );
    for w in &mut waiters {
        let r = complete(&w.read_until_end(1), "waiter");
        assert_eq!((r.status, r.body_str().as_str()), (200, "hi all"));
    }
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(
        publish(&spec, "/events/room", b"again").body_str(),
        "delivered 0\n"
    );
}

#[test]
fn a_timeout_answers_204() {
    let server = server(&[]);
    let t = Instant::now();
    let mut w = wait_on(&server.spec(0), "/events/quiet?timeout=1");
    let r = complete(&w.read_until_end(1), "waiter");
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[test]
fn waiters_that_leave_are_not_counted() {
    let server = server(&[]);
    let spec = server.spec(0);
    let mut stay: Vec<FcgiConn> = (0..2).map(|_| wait_on(&spec, "/events/c")).collect();
    let leave: Vec<FcgiConn> = (0..5).map(|_| wait_on(&spec, "/events/c")).collect();
    thread::sleep(Duration::from_millis(200));
    drop(leave);
    thread::sleep(Duration::from_millis(200));
    let r = publish_to(&spec, "/events/c", b"m", 2);
    assert_eq!(r.body_str(), "delivered 2\n");
    for w in &mut stay {
        assert_eq!(complete(&w.read_until_end(1), "stayer").body_str(), "m");
    }
}

#[test]
fn bad_requests_get_clear_answers() {
    let server = server(&[]);
    let spec = server.spec(0);
    assert_eq!(fcgi_get(&spec, "/events").status, 404);
    assert_eq!(fcgi_get(&spec, "/events/x?timeout=soon").status, 400);
    let big = vec![b'x'; (1 << 20) + 1];
    assert_eq!(publish(&spec, "/events/x", &big).status, 413);
}

/// `pending_async` from the status page.
fn pending(spec: &str) -> u64 {
    let page = fcgi_get(spec, "/status?json").body_str();
    let json: serde_json::Value = serde_json::from_str(&page).expect("status JSON");
    json["pending_async"].as_u64().expect("pending_async")
}

fn wait_pending(spec: &str, want: u64, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    let mut now = pending(spec);
    while now != want && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
        now = pending(spec);
    }
    now
}

/// Lets this process hold as many sockets as its hard limit allows.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

#[test]
fn waiters_that_leave_bring_pending_back_to_zero() {
    let server = server(&["--mount", "/status=status"]);
    let spec = server.spec(0);
    let waiters: Vec<FcgiConn> = (0..50).map(|_| wait_on(&spec, "/events/gone")).collect();
    assert_eq!(wait_pending(&spec, 50, Duration::from_secs(10)), 50);
    drop(waiters);
    assert_eq!(wait_pending(&spec, 0, Duration::from_secs(10)), 0);
    assert_eq!(
        publish(&spec, "/events/gone", b"x").body_str(),
        "delivered 0\n"
    );
}

/// 10,000 waiters on one process with two worker threads, released by one
/// POST. Prints the memory each waiter costs and the time from the POST to
/// the last answer (`cargo test --test pubsub -- --nocapture`).
#[test]
fn ten_thousand_waiters_are_released_by_one_post() {
    const N: usize = 10_000;
    raise_fd_limit();
    let server = server(&["--mount", "/status=status", "--max-conns", "10100"]);
    let spec = server.spec(0);
    let rss_before = server.rss_bytes();
    let mut waiters: Vec<FcgiConn> = (0..N)
        .map(|_| wait_on(&spec, "/events/all?timeout=120"))
        .collect();
    assert_eq!(
        wait_pending(&spec, N as u64, Duration::from_secs(60)),
        N as u64
    );
    let per_waiter = server.rss_bytes().saturating_sub(rss_before) / N as u64;
    println!("RSS per pending waiter: {per_waiter} bytes ({N} waiters)");
    assert_eq!(fcgi_get(&spec, "/ping").body_str(), "pong\n");
    let t = Instant::now();
    let answer = publish(&spec, "/events/all", b"go");
    assert_eq!(answer.body_str(), format!("delivered {N}\n"));
    for (i, w) in waiters.iter_mut().enumerate() {
        let r = complete(&w.read_until_end(1), &format!("waiter {i}"));
        assert_eq!((r.status, r.body_str().as_str()), (200, "go"), "waiter {i}");
    }
    let took = t.elapsed();
    println!("POST to the last of {N} answers: {} ms", took.as_millis());
    assert!(took < Duration::from_secs(60), "{took:?}");
    drop(waiters);
    assert_eq!(wait_pending(&spec, 0, Duration::from_secs(10)), 0);
}
