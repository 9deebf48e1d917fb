//! The life of a `fastgate serve` process: graceful stop on SIGTERM/SIGINT
//! (listeners closed, its socket file removed, requests in flight
//! finished, exit 0), start-up over a stale or a live socket file, usage
//! errors, the spawn-fcgi convention of a listening socket on fd 0,
//! `--idle-timeout`, and the auto listener serving FastCGI and SCGI on one
//! socket.

mod common;

use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

fn exit_code(server: &mut Server, timeout: Duration) -> Option<i32> {
    let status = server.wait_exit(timeout);
    assert!(
        status.is_some(),
        "fastgate still running {timeout:?} after the signal; stderr:\n{}",
        server.stderr()
    );
    status.and_then(|s| s.code())
}

#[test]
fn sigterm_finishes_in_flight_requests_removes_the_socket_and_exits_0() {
    let mut server = Server::start(&[
        "--listen",
        "fastcgi:{dir}/a.sock",
        "--listen",
        "fastcgi://127.0.0.1:0",
        "--mount",
        "/sleep=sleep",
    ]);
    let path = server.unix_path(0);
    let tcp = server.tcp_addr(1);
    assert!(path.exists(), "{} not created", path.display());
    let mut c = FcgiConn::connect(&server.spec(0));
    c.request(1, false, &nginx_params("GET", "/sleep?ms=1500", None), b"");
    // An idle kept-alive connection, closed when the stop begins.
    let mut idle = FcgiConn::connect(&server.spec(1));
    idle.request(1, true, &nginx_params("GET", "/sleep?ms=1", None), b"");
    complete(&idle.read_until_end(1), "short sleep");
    thread::sleep(Duration::from_millis(300));
    server.signal(Signal::SIGTERM);
    assert_eq!(
        idle.expect_closed(Duration::from_secs(5)),
        Ok(()),
        "idle kept-alive connection not closed on SIGTERM"
    );

    assert!(
        eventually(Duration::from_secs(5), || !path.exists()),
        "socket file {} not removed on SIGTERM",
        path.display()
    );
    assert!(
        UnixStream::connect(&path).is_err(),
        "unix listener still accepts after SIGTERM"
    );
    assert!(
        eventually(Duration::from_secs(5), || TcpStream::connect(tcp).is_err()),
        "tcp listener {tcp} still accepts after SIGTERM"
    );
    let r = complete(&c.read_until_end(1), "sleep in flight at SIGTERM");
    assert_eq!((r.status, r.body_str().as_str()), (200, "slept 1500 ms\n"));
    assert_eq!(exit_code(&mut server, Duration::from_secs(10)), Some(0));
}

#[test]
fn sigterm_lets_a_request_still_uploading_finish() {
    let mut server = Server::start(&["--listen", "fastcgi://127.0.0.1:0", "--mount", "/echo=echo"]);
    let body = pattern(200_000, 12);
    let mut c = FcgiConn::connect(&server.spec(0));
    c.begin(1, RESPONDER, false);
    c.params(1, &nginx_params("POST", "/echo", Some(body.len())));
    c.stdin(1, &body[..100_000]);
    thread::sleep(Duration::from_millis(200));
    server.signal(Signal::SIGTERM);
    thread::sleep(Duration::from_millis(200));
    c.stdin(1, &body[100_000..]);
    c.end_stdin(1);
    let r = complete(&c.read_until_end(1), "echo uploading at SIGTERM");
    assert_bytes_eq(&r.body, &body, "echo of a body finished after SIGTERM");
    assert_eq!(exit_code(&mut server, Duration::from_secs(10)), Some(0));
}

#[test]
fn sigterm_and_sigint_on_an_idle_server_exit_0() {
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        let mut server = Server::start(&["--listen", "fastcgi:{dir}/a.sock"]);
        let path = server.unix_path(0);
        assert_eq!(fcgi_get(&server.spec(0), "/").status, 200);
        server.signal(sig);
        assert_eq!(
            exit_code(&mut server, Duration::from_secs(10)),
            Some(0),
            "{sig}"
        );
        assert!(!path.exists(), "{sig}: socket file left behind");
    }
}

#[test]
fn shutdown_timeout_bounds_the_wait_for_requests_in_flight() {
    let mut server = Server::start(&[
        "--listen",
        "fastcgi://127.0.0.1:0",
        "--mount",
        "/sleep=sleep",
        "--shutdown-timeout",
        "1s",
    ]);
    let mut c = FcgiConn::connect(&server.spec(0));
    c.request(1, false, &nginx_params("GET", "/sleep?ms=30000", None), b"");
    thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    server.signal(Signal::SIGTERM);
    assert_eq!(exit_code(&mut server, Duration::from_secs(10)), Some(0));
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "stop took {:?} with --shutdown-timeout 1s",
        t.elapsed()
    );
}

#[test]
fn second_sigint_stops_at_once() {
    let mut server = Server::start(&[
        "--listen",
        "fastcgi://127.0.0.1:0",
        "--mount",
        "/sleep=sleep",
    ]);
    let mut c = FcgiConn::connect(&server.spec(0));
    c.request(1, false, &nginx_params("GET", "/sleep?ms=30000", None), b"");
    thread::sleep(Duration::from_millis(300));
    server.signal(Signal::SIGINT);
    thread::sleep(Duration::from_millis(300));
    assert!(
        server.is_running(),
        "first SIGINT did not wait for the request in flight"
    );
    server.signal(Signal::SIGINT);
    assert!(
        server.wait_exit(Duration::from_secs(5)).is_some(),
        "second SIGINT did not stop fastgate"
    );
}

#[test]
fn stale_socket_file_is_replaced() {
    let dir = TempDir::new();
    let path = dir.path().join("a.sock");
    drop(UnixListener::bind(&path).expect("bind"));
    assert!(path.exists(), "a dropped listener leaves its socket file");
    let server = Server::start_in(
        dir,
        &["--listen", "fastcgi:{dir}/a.sock", "--mount", "/=ping"],
    );
    assert_eq!(server.unix_path(0), path);
    assert_eq!(fcgi_get(&server.spec(0), "/").body_str(), "pong\n");
}

#[test]
fn live_socket_is_an_error_naming_the_path() {
    let dir = TempDir::new();
    let path = dir.path().join("a.sock");
    let owner = UnixListener::bind(&path).expect("bind");
    let out = run_serve_to_exit(
        &dir,
        &["--listen", "fastcgi:{dir}/a.sock"],
        Duration::from_secs(10),
    );
    assert_eq!(
        out.status.and_then(|s| s.code()),
        Some(1),
        "stderr:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&path.display().to_string()),
        "error does not name {}:\n{}",
        path.display(),
        out.stderr
    );
    // The other process's socket is untouched.
    assert!(path.exists(), "fastgate removed a live socket file");
    let _client = UnixStream::connect(&path).expect("the owner still listens");
    owner.set_nonblocking(true).expect("nonblocking");
    assert!(
        owner.accept().is_ok(),
        "the owner's socket no longer gets connections"
    );
}

#[test]
fn busy_tcp_port_exits_1_naming_it() {
    let dir = TempDir::new();
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port();
    let spec = format!("fastcgi://127.0.0.1:{port}");
    let out = run_serve_to_exit(&dir, &["--listen", &spec], Duration::from_secs(10));
    assert_eq!(
        out.status.and_then(|s| s.code()),
        Some(1),
        "stderr:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&port.to_string()),
        "error does not name port {port}:\n{}",
        out.stderr
    );
}

#[test]
fn usage_errors_exit_2() {
    let dir = TempDir::new();
    let cases: [&[&str]; 6] = [
        &["--no-such-option"],
        &["--max-reqs", "many"],
        &["--listen", "ftp://127.0.0.1:1"],
        &["--listen", "fastcgi:relative.sock"],
        &["--mount", "/=no-such-app"],
        &["--idle-timeout", "soon"],
    ];
    for args in cases {
        let out = run_serve_to_exit(&dir, args, Duration::from_secs(10));
        assert_eq!(
            out.status.and_then(|s| s.code()),
            Some(2),
            "serve {args:?}; stderr:\n{}",
            out.stderr
        );
        assert!(!out.stderr.trim().is_empty(), "serve {args:?}: no message");
    }
}

/// Spawns `fastgate serve --mount /=ping` with `listener` as fd 0 and no
/// `--listen`, as spawn-fcgi and lighttpd's `bin-path` do.
fn serve_on_fd0(listener: OwnedFd, dir: TempDir) -> Server {
    let mut cmd = serve_command(&["--mount".to_string(), "/=ping".to_string()]);
    cmd.stdin(Stdio::from(listener));
    // Zero `listening on` lines awaited: whether fd 0 is announced is not
    // part of the contract; the first request shows it is served.
    Server::spawn(cmd, dir, 0)
}

#[test]
fn listening_socket_on_fd0_is_served_unix() {
    let dir = TempDir::new();
    let path = dir.path().join("fd0.sock");
    let listener = UnixListener::bind(&path).expect("bind");
    let mut server = serve_on_fd0(OwnedFd::from(listener), dir);
    let spec = format!("fastcgi:{}", path.display());
    assert_eq!(fcgi_get(&spec, "/").body_str(), "pong\n");
    assert_eq!(fcgi_get(&spec, "/again").body_str(), "pong\n");
    server.signal(Signal::SIGTERM);
    assert_eq!(exit_code(&mut server, Duration::from_secs(10)), Some(0));
    // An inherited socket belongs to whoever made it.
    assert!(
        Path::new(&path).exists(),
        "fastgate removed the socket file it inherited"
    );
}

#[test]
fn listening_socket_on_fd0_is_served_tcp() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut server = serve_on_fd0(OwnedFd::from(listener), TempDir::new());
    let spec = format!("fastcgi://{addr}");
    assert_eq!(fcgi_get(&spec, "/").body_str(), "pong\n");
    server.signal(Signal::SIGTERM);
    assert_eq!(exit_code(&mut server, Duration::from_secs(10)), Some(0));
}

#[test]
fn systemd_listen_fds_socket_is_served() {
    let dir = TempDir::new();
    let path = dir.path().join("sd.sock");
    let listener = UnixListener::bind(&path).expect("bind");
    // sd_listen_fds(3): the socket is fd 3, LISTEN_PID is the server's own
    // pid. `sh` moves the socket from stdin to fd 3 and execs fastgate in
    // its own process, so `$$` is that pid.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"exec 3<&0 0</dev/null; export LISTEN_PID=$$ LISTEN_FDS=1; exec "$0" serve --mount /=ping"#)
        .arg(bin());
    clean_env(&mut cmd);
    cmd.stdin(Stdio::from(OwnedFd::from(listener)));
    let mut server = Server::spawn(cmd, dir, 0);
    let spec = format!("fastcgi:{}", path.display());
    assert_eq!(fcgi_get(&spec, "/").body_str(), "pong\n");
    server.signal(Signal::SIGTERM);
    assert_eq!(exit_code(&mut server, Duration::from_secs(10)), Some(0));
    assert!(
        path.exists(),
        "fastgate removed the socket file systemd gave it"
    );
}

#[test]
fn idle_timeout_closes_an_idle_kept_alive_connection() {
    let server = Server::start(&[
        "--listen",
        "fastcgi://127.0.0.1:0",
        "--mount",
        "/sleep=sleep",
        "--mount",
        "/ping=ping",
        "--idle-timeout",
        "1s",
    ]);
    let spec = server.spec(0);
    // A request in flight longer than the idle timeout is not cut.
    let mut busy = FcgiConn::connect(&spec);
    busy.request(1, true, &nginx_params("GET", "/sleep?ms=1800", None), b"");
    assert_eq!(complete(&busy.read_until_end(1), "sleep").status, 200);

    let mut c = FcgiConn::connect(&spec);
    c.request(1, true, &nginx_params("GET", "/ping", None), b"");
    assert_eq!(complete(&c.read_until_end(1), "ping").body_str(), "pong\n");
    let t = Instant::now();
    assert_eq!(
        c.expect_closed(Duration::from_secs(6)),
        Ok(()),
        "idle kept-alive connection not closed"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "closed after {:?}: too soon for --idle-timeout 1s",
        t.elapsed()
    );
    assert_eq!(fcgi_get(&spec, "/ping").body_str(), "pong\n");
}

#[test]
fn auto_listener_serves_fastcgi_and_scgi_on_one_socket() {
    let server = Server::start(&[
        "--listen",
        "127.0.0.1:0",
        "--listen",
        "{dir}/auto.sock",
        "--mount",
        "/ping=ping",
        "--mount",
        "/echo=echo",
    ]);
    for spec in server.specs() {
        assert_eq!(
            fcgi_get(spec, "/ping").body_str(),
            "pong\n",
            "{spec} fastcgi"
        );
        assert_eq!(scgi_get(spec, "/ping").body_str(), "pong\n", "{spec} scgi");
        let body = pattern(70_000, 4);
        let raw = scgi_request(spec, &scgi_params("POST", "/echo"), &body);
        assert_bytes_eq(
            &parse_response(&raw).body,
            &body,
            &format!("{spec} scgi echo"),
        );
        let reply = fcgi_request(spec, "POST", "/echo", &body);
        assert_bytes_eq(
            &complete(&reply, "echo").body,
            &body,
            &format!("{spec} fastcgi echo"),
        );
    }
}

#[test]
fn socket_mode_and_pidfile() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::start(&[
        "--listen",
        "fastcgi:{dir}/m.sock",
        "--socket-mode",
        "0660",
        "--pidfile",
        "{dir}/fastgate.pid",
    ]);
    let mode = std::fs::metadata(server.unix_path(0))
        .expect("stat socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660, "socket mode {:o}", mode & 0o777);
    let pidfile = server.dir().join("fastgate.pid");
    assert!(
        eventually(Duration::from_secs(5), || std::fs::read_to_string(&pidfile)
            .is_ok_and(|s| s.trim() == server.pid().to_string())),
        "pidfile {} does not hold pid {}",
        pidfile.display(),
        server.pid()
    );
}
