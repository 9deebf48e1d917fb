//! `--allow-from` and `--allow-uid`/`--allow-gid` hold however the
//! listeners came to the process: bound by `--listen`, inherited on fd 0
//! (spawn-fcgi, a dual-stack `[::]` socket whose IPv4 peers are reported
//! IPv4-mapped), from systemd's `LISTEN_FDS`, shared by prefork children,
//! and handed to a new master by a USR2 upgrade. In each mode an allowed
//! peer is served and a refused one is closed with no answer. A refused
//! peer is closed before anything is read (its request moves no counter
//! of the status page), and one that reconnects in a loop is logged once.
//!
//! Every socket is made here, on 127.0.0.1, ::1 or a Unix path (the one
//! dual-stack socket admits loopback peers only: the filter refuses the
//! rest); processes are ended by pid.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use common::*;

/// A uid that is not ours, for an `--allow-uid` that refuses us.
fn other_uid() -> String {
    nix::unistd::getuid()
        .as_raw()
        .wrapping_add(4242)
        .to_string()
}

fn my_uid() -> String {
    nix::unistd::getuid().as_raw().to_string()
}

/// A whole FastCGI GET of `/`, as a refused client sends it before it
/// reads anything.
fn get_request() -> Vec<u8> {
    let mut out = record(rec::BEGIN_REQUEST, 1, &begin_body(RESPONDER, false));
    let params = encode_pairs(&nginx_params("GET", "/", None));
    out.extend(stream_records(rec::PARAMS, 1, &params, true));
    out.extend(stream_records(rec::STDIN, 1, b"", true));
    out
}

/// The peer at `spec` is served: `/` (hello) answers 200.
fn assert_served(spec: &str, what: &str) {
    let r = fcgi_get(spec, "/");
    assert_eq!(r.status, 200, "{what}: {spec} not served");
}

/// The peer at `spec` is refused: its request written first, the
/// connection ends (EOF, or a reset since its bytes were never read)
/// with not one byte of answer.
fn assert_refused(spec: &str, what: &str) {
    let mut c = Conn::connect(spec);
    // The server may have closed already: a failed write is a refusal too.
    let _ = c.write_all(&get_request());
    if let Err(got) = c.expect_closed(Duration::from_secs(10)) {
        panic!(
            "{what}: {spec} was not refused: {} bytes of answer (or no close in 10 s)",
            got.len()
        );
    }
}

fn tcp_spec(addr: SocketAddr) -> String {
    format!("fastcgi://{addr}")
}

fn unix_spec(path: &std::path::Path) -> String {
    format!("fastcgi:{}", path.display())
}

/// A dual-stack listening socket on `[::]` (IPV6_V6ONLY off), port 0.
fn dual_stack_listener() -> (OwnedFd, u16) {
    use nix::sys::socket::{self, sockopt, AddressFamily, Backlog, SockFlag, SockType};
    let fd = socket::socket(
        AddressFamily::Inet6,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )
    .expect("socket");
    socket::setsockopt(&fd, sockopt::Ipv6V6Only, &false).expect("IPV6_V6ONLY off");
    let any: SocketAddr = "[::]:0".parse().unwrap();
    let addr = socket::SockaddrStorage::from(any);
    socket::bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr).expect("bind [::]:0");
    socket::listen(&fd, Backlog::new(128).unwrap()).expect("listen");
    let port = TcpListener::from(fd.try_clone().unwrap())
        .local_addr()
        .unwrap()
        .port();
    (fd, port)
}

// ---- fd 0 (spawn-fcgi) ----

/// fd 0 is a dual-stack `[::]` socket: 127.0.0.1 arrives as
/// `::ffff:127.0.0.1` and must match an IPv4 range (or its mapped
/// spelling), and ::1 must not; then the other way round.
#[test]
fn fd0_dual_stack_filters_mapped_and_ipv6_peers() {
    for (allow, served, refused) in [
        ("127.0.0.1/32", "127.0.0.1", "[::1]"),
        ("::ffff:127.0.0.0/104", "127.0.0.1", "[::1]"),
        ("::1", "[::1]", "127.0.0.1"),
    ] {
        let (fd, port) = dual_stack_listener();
        let args: Vec<String> = ["--allow-from", allow].map(String::from).to_vec();
        let mut cmd = serve_command(&args);
        cmd.stdin(Stdio::from(fd));
        let s = Server::spawn(cmd, TempDir::new(), 1);
        let what = format!("fd 0, --allow-from {allow}");
        assert_served(&format!("fastcgi://{served}:{port}"), &what);
        assert_refused(&format!("fastcgi://{refused}:{port}"), &what);
        assert!(s.wait_stderr("refused:", Duration::from_secs(5)), "{what}");
    }
}

/// fd 0 is a Unix socket (spawn-fcgi's `-s`): `--allow-uid` applies.
#[test]
fn fd0_unix_socket_filters_by_uid() {
    for (uid, served) in [(other_uid(), false), (my_uid(), true)] {
        let dir = TempDir::new();
        let path = dir.path().join("fd0.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let mut cmd = serve_command(&["--allow-uid".into(), uid.clone()]);
        cmd.stdin(Stdio::from(OwnedFd::from(listener)));
        let s = Server::spawn(cmd, dir, 1);
        let what = format!("fd 0, --allow-uid {uid}");
        match served {
            true => assert_served(&unix_spec(&path), &what),
            false => assert_refused(&unix_spec(&path), &what),
        }
        let logged = s.wait_stderr(
            "refused: uid",
            Duration::from_secs(if served { 0 } else { 5 }),
        );
        assert_eq!(logged, !served, "{what}: {}", s.stderr());
    }
}

// ---- LISTEN_FDS (systemd) ----

/// `fastgate serve ARGS` under a shell that passes two sockets the
/// systemd way: the TCP one (given as stdin) as fd 3, the Unix one (given
/// as stdout) as fd 4, `LISTEN_PID` the server's own pid.
fn socket_activated(tcp: TcpListener, unix: UnixListener, args: &[&str], dir: TempDir) -> Server {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(
            r#"exec 3<&0 4>&1 0</dev/null 1>/dev/null
export LISTEN_PID=$$ LISTEN_FDS=2
exec "$0" serve "$@""#,
        )
        .arg(bin())
        .args(args);
    clean_env(&mut cmd);
    cmd.stdin(Stdio::from(OwnedFd::from(tcp)));
    cmd.stdout(Stdio::from(OwnedFd::from(unix)));
    Server::spawn(cmd, dir, 2)
}

/// Socket activation: each server has one listener whose peer is
/// allowed and one whose peer is refused, TCP and Unix crossed over.
#[test]
fn listen_fds_sockets_are_filtered() {
    let mine = my_uid();
    let other = other_uid();
    for (allow_from, allow_uid, tcp_served) in [
        ("127.0.0.0/8", other.as_str(), true),
        ("10.0.0.0/8", mine.as_str(), false),
    ] {
        let dir = TempDir::new();
        let path = dir.path().join("sd.sock");
        let unix = UnixListener::bind(&path).expect("bind unix");
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let tcp_addr = tcp.local_addr().unwrap();
        let args = ["--allow-from", allow_from, "--allow-uid", allow_uid];
        let s = socket_activated(tcp, unix, &args, dir);
        let what = format!("LISTEN_FDS, --allow-from {allow_from} --allow-uid {allow_uid}");
        let (tcp, unix) = (tcp_spec(tcp_addr), unix_spec(&path));
        let (served, refused) = match tcp_served {
            true => (tcp, unix),
            false => (unix, tcp),
        };
        assert_served(&served, &what);
        assert_refused(&refused, &what);
        assert!(s.wait_stderr("refused:", Duration::from_secs(5)), "{what}");
    }
}

// ---- prefork ----

fn wait_children(master: i32, n: usize) {
    let ok = eventually(Duration::from_secs(15), || child_pids(master).len() >= n);
    assert!(ok, "master {master} has not {n} children");
}

/// Several connections of each kind, so that both children take some.
fn check_many(served: &[&str], refused: &[&str], what: &str) {
    for _ in 0..6 {
        for spec in served {
            assert_served(spec, what);
        }
        for spec in refused {
            assert_refused(spec, what);
        }
    }
}

/// `--processes 2`: the children the master forks filter as one process
/// does, on TCP (IPv4 and IPv6) and Unix listeners.
#[test]
fn prefork_children_filter_every_listener() {
    let mine = my_uid();
    let other = other_uid();
    for (allow_from, allow_uid) in [("::1", other.as_str()), ("127.0.0.1", mine.as_str())] {
        let s = Server::start(&[
            "--listen",
            "fastcgi://127.0.0.1:0",
            "--listen",
            "fastcgi://[::1]:0",
            "--listen",
            "fastcgi:{dir}/p.sock",
            "--processes",
            "2",
            "--allow-from",
            allow_from,
            "--allow-uid",
            allow_uid,
        ]);
        wait_children(s.pid(), 2);
        let (v4, v6, unix) = (s.spec(0), s.spec(1), s.spec(2));
        let what = format!("prefork, --allow-from {allow_from} --allow-uid {allow_uid}");
        match allow_from {
            "::1" => check_many(&[&v6], &[&v4, &unix], &what),
            _ => check_many(&[&v4, &unix], &[&v6], &what),
        }
        assert!(s.wait_stderr("refused:", Duration::from_secs(5)), "{what}");
    }
}

/// A USR2 upgrade: the new master, re-executed with the same command
/// line, and its children filter as the old ones did.
#[test]
fn after_a_usr2_upgrade_the_filter_holds() {
    let dir = TempDir::new();
    let copy = dir.path().join("fastgate");
    std::fs::copy(bin(), &copy).expect("copy the binary");
    let pidfile = dir.path().join("fg.pid");
    let mut cmd = Command::new(&copy);
    cmd.args(["serve", "--processes", "2", "--allow-from", "::1"])
        .args(["--listen", "fastcgi://127.0.0.1:0"])
        .args(["--listen", "fastcgi://[::1]:0"])
        .arg("--pidfile")
        .arg(&pidfile);
    clean_env(&mut cmd);
    let mut s = Server::spawn(cmd, dir, 2);
    let (v4, v6) = (s.spec(0), s.spec(1));
    wait_children(s.pid(), 2);
    check_many(&[&v6], &[&v4], "before USR2");
    let refusals = |s: &Server| s.stderr().matches("refused: 127.0.0.1").count();
    let logged_before = refusals(&s);
    s.signal(Signal::SIGUSR2);
    let exited = s.wait_exit(Duration::from_secs(30));
    let new = std::fs::read_to_string(&pidfile).unwrap_or_default();
    let new: i32 = new.trim().parse().unwrap_or(0);
    let checked = std::panic::catch_unwind(|| {
        assert!(exited.is_some(), "the old master did not hand over");
        assert!(new > 0 && new != s.pid(), "no new master in the pidfile");
        wait_children(new, 2);
        check_many(&[&v6], &[&v4], "after USR2");
        // The new children log (each remembers its own refused peers).
        let more = eventually(Duration::from_secs(5), || refusals(&s) > logged_before);
        assert!(more, "no refusal logged after USR2: {}", s.stderr());
    });
    if new > 0 && new != s.pid() {
        let pid = nix::unistd::Pid::from_raw(new);
        let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
        let gone = eventually(Duration::from_secs(10), || {
            nix::sys::signal::kill(pid, None).is_err()
        });
        if !gone {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        }
    }
    if let Err(e) = checked {
        std::panic::resume_unwind(e);
    }
}

// ---- nothing read, logged once ----

fn status_json(spec: &str) -> serde_json::Value {
    let body = fcgi_get(spec, "/status?json").body_str();
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("status JSON: {e}: {body}"))
}

fn counter(v: &serde_json::Value, name: &str) -> u64 {
    v[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no {name} in {v}"))
}

/// 20 refused connections from 127.0.0.1 and 20 from our uid, each
/// writing a whole request first: each ends with no answer, the status
/// page counts no connection accepted and no request (only the status
/// query itself), every refusal counts as a protocol error, and each
/// peer is logged once.
#[test]
fn refused_peers_are_closed_unread_and_logged_once() {
    let other = other_uid();
    let s = Server::start(&[
        "--listen",
        "fastcgi://127.0.0.1:0",
        "--listen",
        "fastcgi://[::1]:0",
        "--listen",
        "fastcgi:{dir}/r.sock",
        "--allow-from",
        "::1",
        "--allow-uid",
        &other,
        "--mount",
        "/status=status",
    ]);
    let (v4, v6, unix) = (s.spec(0), s.spec(1), s.spec(2));
    let before = status_json(&v6);
    for i in 0..20 {
        assert_refused(&v4, &format!("TCP refusal {i}"));
        assert_refused(&unix, &format!("Unix refusal {i}"));
    }
    let after = status_json(&v6);
    for name in ["accepted_conns", "requests"] {
        let moved = counter(&after, name) - counter(&before, name);
        assert_eq!(
            moved, 1,
            "{name} moved by {moved}: only the status query counts"
        );
    }
    let errors = counter(&after, "protocol_errors") - counter(&before, "protocol_errors");
    assert_eq!(errors, 40, "every refusal is counted");
    // The last refusal was logged, if at all, before the status answer.
    thread::sleep(Duration::from_millis(200));
    let log = s.stderr();
    let tcp_lines = log.matches("refused: 127.0.0.1 is outside").count();
    let unix_lines = log.matches("refused: uid").count();
    assert_eq!((tcp_lines, unix_lines), (1, 1), "{log}");
}
