//! The real spawn-fcgi starting fastgate: it binds the socket and hands it
//! over on fd 0, once in the foreground (`-n`, as daemontools and systemd
//! units use it) and as two forked copies sharing the socket (`-F 2`), a
//! Unix socket (`-s`) or a TCP port (`-a`, `-p`).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn spawn_fcgi(dir: &TempDir, extra: &[&str]) -> Command {
    spawn_fcgi_on(&["-s", &dir.join("sf.sock")], extra)
}

/// spawn-fcgi binding `socket` (`-s PATH` or `-a ADDR -p PORT`).
fn spawn_fcgi_on(socket: &[&str], extra: &[&str]) -> Command {
    let mut cmd = Command::new("spawn-fcgi");
    cmd.args(socket).args(extra);
    cmd.args([
        "--",
        bin(),
        "serve",
        "--mount",
        "/=hello",
        "--mount",
        "/echo=echo",
    ]);
    clean_env(&mut cmd);
    cmd
}

#[test]
fn foreground_spawn_fcgi_hands_over_its_socket() {
    if !require_tool("spawn-fcgi") {
        return;
    }
    let dir = TempDir::new();
    let sock = dir.join("sf.sock");
    let cmd = spawn_fcgi(&dir, &["-n"]);
    let mut s = Server::spawn(cmd, dir, 1);
    assert_eq!(s.spec(0), sock, "fd 0 is served as an auto listener");
    assert_eq!(fcgi_get(&sock, "/").body_str(), "Hello, world!\n");
    let echoed = fcgi_request(&sock, "POST", "/echo", &pattern(200_000, 9)).response();
    assert_bytes_eq(
        &echoed.body,
        &pattern(200_000, 9),
        "echo through spawn-fcgi",
    );
    s.signal(Signal::SIGTERM);
    let status = s
        .wait_exit(Duration::from_secs(10))
        .expect("exit after TERM");
    assert!(status.success(), "{status}");
    assert!(
        std::path::Path::new(&sock).exists(),
        "the inherited socket belongs to spawn-fcgi"
    );
}

#[test]
fn a_tcp_port_is_handed_over() {
    if !require_tool("spawn-fcgi") {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let port_arg = port.to_string();
    let cmd = spawn_fcgi_on(&["-a", "127.0.0.1", "-p", &port_arg], &["-n"]);
    let mut s = Server::spawn(cmd, TempDir::new(), 1);
    let addr = format!("127.0.0.1:{port}");
    assert!(s.spec(0).ends_with(&addr), "served as {}", s.spec(0));
    let spec = format!("fastcgi://{addr}");
    assert_eq!(fcgi_get(&spec, "/").body_str(), "Hello, world!\n");
    let body = pattern(100_000, 4);
    let echoed = fcgi_request(&spec, "POST", "/echo", &body).response();
    assert_bytes_eq(&echoed.body, &body, "echo over spawn-fcgi's TCP socket");
    // fd 0 is an auto listener: SCGI on the same port.
    let scgi = format!("scgi://{addr}");
    let reply = parse_response(&scgi_request(&scgi, &scgi_params("GET", "/"), b""));
    assert_eq!(reply.body_str(), "Hello, world!\n");
    s.signal(Signal::SIGTERM);
    let status = s
        .wait_exit(Duration::from_secs(10))
        .expect("exit after TERM");
    assert!(status.success(), "{status}");
}

#[test]
fn forked_copies_share_the_socket() {
    if !require_tool("spawn-fcgi") {
        return;
    }
    let dir = TempDir::new();
    let sock = dir.join("sf.sock");
    let pidfile = dir.join("sf.pid");
    let out = spawn_fcgi(&dir, &["-F", "2", "-P", &pidfile])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pids: Vec<i32> = std::fs::read_to_string(&pidfile)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    let copies = Copies(pids.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut answered = 0;
    while answered < 40 && Instant::now() < deadline {
        let reply = fcgi_request(&sock, "GET", "/", b"");
        answered += usize::from(reply.response().status == 200);
    }
    drop(copies);
    assert_eq!(pids.len(), 2, "spawn-fcgi -F 2 started two copies");
    assert_eq!(answered, 40);
}

/// The forked copies, killed by pid however the test ends.
struct Copies(Vec<i32>);

impl Drop for Copies {
    fn drop(&mut self) {
        for &p in &self.0 {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
    }
}

/// multiwatch (the lighttpd project's watcher) under spawn-fcgi: it keeps
/// `-f 2` copies of fastgate on the socket spawn-fcgi bound (fd 0), and
/// stops them when it is stopped.
#[test]
fn multiwatch_keeps_two_copies_on_the_socket() {
    if !require_tool("spawn-fcgi") || !require_tool("multiwatch") {
        return;
    }
    let dir = TempDir::new();
    let sock = dir.join("mw.sock");
    let multiwatch = find_on_path("multiwatch").expect("multiwatch");
    let mut cmd = Command::new("spawn-fcgi");
    cmd.args(["-s", &sock, "-n", "--"]).arg(multiwatch);
    // multiwatch's graceful signal defaults to USR1 (which reopens
    // fastgate's logs): TERM is fastgate's graceful stop.
    cmd.args(["-f", "2", "-s", "TERM", "--", bin(), "serve"]);
    cmd.args(["--mount", "/=hello"]);
    clean_env(&mut cmd);
    let mut watcher = Server::spawn(cmd, dir, 2);
    for _ in 0..10 {
        assert_eq!(fcgi_get(&sock, "/").body_str(), "Hello, world!\n");
    }
    let copies = watcher.stderr().matches("listening on").count();
    assert_eq!(copies, 2, "{}", watcher.stderr());
    watcher.signal(Signal::SIGTERM);
    let status = watcher.wait_exit(Duration::from_secs(15));
    assert!(
        status.is_some(),
        "multiwatch did not stop: {}",
        watcher.stderr()
    );
    // multiwatch passes its stop on (as QUIT, here): both copies stop.
    let both = || {
        let log = watcher.stderr();
        log.matches("INFO stopped").count() + log.matches("INFO stopping now").count() == 2
    };
    assert!(
        eventually(Duration::from_secs(5), both),
        "both copies stop: {}",
        watcher.stderr()
    );
}
