//! A production start as root: who may connect to the Unix socket fastgate
//! creates (mode 0660, owned by `--socket-owner`, else by the `--user` /
//! `--group` it drops to), the warning when root keeps it to itself,
//! numeric ids, the socket file and pidfile removed at stop after root was
//! dropped, a live socket of another user's server never taken for a stale
//! one, the prefork-only signals a single process must survive, and the
//! hints that start-up errors give.
//!
//! "Who may connect" is checked by running `fastgate request` as that user
//! (uid/gid set on the child process): root would pass every permission
//! check. The tests need root to switch users and skip loudly without it.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const NOBODY: u32 = 65534;
const NOGROUP: u32 = 65534;
const WWW_DATA: u32 = 33;

fn is_root() -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").map_or(true, |v| v != "true"),
        "CI=true runs as root: these tests switch users"
    );
    eprintln!("SKIPPED: not root, cannot switch users");
    false
}

/// `fastgate request SPEC /` run as `uid:gid`, with no supplementary
/// group (root's group 0 would otherwise let it in).
fn request_as(uid: u32, gid: u32, spec: &str) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(["request", spec, "/"]);
    let (user, group) = (
        nix::unistd::Uid::from_raw(uid),
        nix::unistd::Gid::from_raw(gid),
    );
    // SAFETY: three system calls, safe between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setgroups(&[group])?;
            nix::unistd::setgid(group)?;
            Ok(nix::unistd::setuid(user)?)
        });
    }
    cmd.stdin(Stdio::null())
        .output()
        .expect("run fastgate request")
}

fn assert_served_as(uid: u32, gid: u32, spec: &str) {
    let out = request_as(uid, gid, spec);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("pong"),
        "uid {uid} could not use {spec}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn assert_refused_as(uid: u32, gid: u32, spec: &str) {
    let out = request_as(uid, gid, spec);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.to_lowercase().contains("permission denied"),
        "uid {uid} should get permission denied on {spec}; status {:?}, stderr {err}",
        out.status
    );
}

fn owner_and_mode(path: &Path) -> (u32, u32, u32) {
    let meta = std::fs::metadata(path).expect("stat socket");
    (meta.uid(), meta.gid(), meta.permissions().mode() & 0o7777)
}

fn stop(server: &mut Server) {
    server.signal(Signal::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(10));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "stderr:\n{}",
        server.stderr()
    );
}

/// Waits up to 5 s for `path` to be gone (the janitor runs as the server exits).
fn gone(path: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while path.exists() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    !path.exists()
}

#[test]
fn dropping_to_a_user_gives_it_the_socket_and_still_removes_it_at_stop() {
    if !is_root() {
        return;
    }
    let mut server = Server::start(&[
        "--listen",
        "fastcgi:{dir}/a.sock",
        "--mount",
        "/=ping",
        "-u",
        "nobody",
        "-g",
        "nogroup",
        "--pidfile",
        "{dir}/fastgate.pid",
    ]);
    let path = server.unix_path(0);
    let pidfile = server.dir().join("fastgate.pid");
    assert_eq!(owner_and_mode(&path), (NOBODY, NOGROUP, 0o660));
    assert_served_as(NOBODY, NOGROUP, &server.spec(0));
    assert_refused_as(WWW_DATA, WWW_DATA, &server.spec(0));
    assert!(pidfile.exists(), "no pidfile");
    assert!(
        !server.stderr().contains("--socket-owner"),
        "warned although the socket has an owner:\n{}",
        server.stderr()
    );
    stop(&mut server);
    assert!(
        gone(&path),
        "socket file left behind after the stop as nobody"
    );
    assert!(
        gone(&pidfile),
        "pidfile left behind after the stop as nobody"
    );
}

#[test]
fn socket_owner_lets_the_front_servers_user_in_by_number_too() {
    if !is_root() {
        return;
    }
    for owner in ["www-data:www-data", "33:33", "33"] {
        let mut server = Server::start(&[
            "--listen",
            "{dir}/a.sock",
            "--mount",
            "/=ping",
            "--socket-owner",
            owner,
        ]);
        let path = server.unix_path(0);
        assert_eq!(
            owner_and_mode(&path),
            (WWW_DATA, WWW_DATA, 0o660),
            "{owner}"
        );
        assert_served_as(WWW_DATA, WWW_DATA, &server.spec(0));
        assert_refused_as(NOBODY, NOGROUP, &server.spec(0));
        stop(&mut server);
        assert!(gone(&path), "{owner}: socket file left behind");
    }
}

#[test]
fn a_numeric_user_is_resolved() {
    if !is_root() {
        return;
    }
    let server = Server::start(&[
        "--listen",
        "fastcgi:{dir}/a.sock",
        "--mount",
        "/=ping",
        "-u",
        "33",
    ]);
    assert_eq!(
        owner_and_mode(&server.unix_path(0)),
        (WWW_DATA, WWW_DATA, 0o660)
    );
    assert_served_as(WWW_DATA, WWW_DATA, &server.spec(0));
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let line = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        line("Uid:").split_whitespace().skip(1).all(|id| id == "33"),
        "{}",
        line("Uid:")
    );
    assert!(
        line("Gid:").split_whitespace().skip(1).all(|id| id == "33"),
        "{}",
        line("Gid:")
    );
    // initgroups: www-data's supplementary groups, not root's.
    let groups = line("Groups:");
    assert!(!groups.split_whitespace().any(|g| g == "0"), "{groups}");
}

#[test]
fn root_with_no_owner_warns_and_keeps_the_socket_to_root() {
    if !is_root() {
        return;
    }
    let server = Server::start(&["--listen", "{dir}/a.sock", "--mount", "/=ping"]);
    assert_eq!(owner_and_mode(&server.unix_path(0)), (0, 0, 0o660));
    assert!(
        server.wait_stderr("--socket-owner", Duration::from_secs(5)),
        "no warning naming --socket-owner:\n{}",
        server.stderr()
    );
    assert_served_as(0, 0, &server.spec(0));
    assert_refused_as(WWW_DATA, WWW_DATA, &server.spec(0));
}

#[test]
fn socket_mode_still_wins_over_the_default() {
    let server = Server::start(&[
        "--listen",
        "{dir}/a.sock",
        "--socket-mode",
        "0666",
        "--mount",
        "/=ping",
    ]);
    assert_eq!(owner_and_mode(&server.unix_path(0)).2, 0o666);
    assert!(
        !server.stderr().contains("--socket-owner"),
        "{}",
        server.stderr()
    );
}

#[test]
fn unknown_users_and_groups_are_usage_errors() {
    let dir = TempDir::new();
    for args in [
        &["-u", "no-such-user-here"][..],
        &["-g", "no-such-group-here"],
        &["--socket-owner", "no-such-user-here"],
        &["--socket-owner", "www-data:no-such-group-here"],
    ] {
        let out = run_serve_to_exit(&dir, args, Duration::from_secs(10));
        assert_eq!(
            out.status.and_then(|s| s.code()),
            Some(2),
            "{args:?}: {}",
            out.stderr
        );
        assert!(out.stderr.contains(args[0]), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("no such"), "{args:?}: {}", out.stderr);
    }
}

#[test]
fn another_users_live_socket_is_left_alone() {
    if !is_root() {
        return;
    }
    let dir = TempDir::new();
    // The directory is nobody's to write in, so only the stale check can
    // decide; the socket is root's alone, so nobody's connect gets EACCES.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let path = dir.path().join("a.sock");
    let owner = UnixListener::bind(&path).expect("bind");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut cmd = serve_command(&["--listen".into(), format!("fastcgi:{}", path.display())]);
    cmd.uid(NOBODY).gid(NOGROUP).stderr(Stdio::piped());
    let out = cmd.output().expect("run fastgate serve as nobody");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&path.display().to_string()) && err.contains("another user"),
        "{err}"
    );
    assert!(path.exists(), "a live socket file was deleted");
    let _client = UnixStream::connect(&path).expect("the owner still listens");
    owner.set_nonblocking(true).unwrap();
    assert!(
        owner.accept().is_ok(),
        "the owner no longer gets connections"
    );
}

fn proc_state(pid: i32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    after.chars().next().unwrap_or('?')
}

#[test]
fn prefork_signals_are_logged_and_ignored_by_a_single_process() {
    let mut server = Server::start(&[
        "--listen",
        "fastcgi:{dir}/a.sock",
        "--mount",
        "/=ping",
        "--pidfile",
        "{dir}/fastgate.pid",
    ]);
    for (sig, name) in [
        (Signal::SIGUSR2, "USR2"),
        (Signal::SIGTTIN, "TTIN"),
        (Signal::SIGTTOU, "TTOU"),
        (Signal::SIGHUP, "HUP"),
    ] {
        server.signal(sig);
        assert!(
            server.wait_stderr(&format!("{name}:"), Duration::from_secs(5)),
            "{name} not logged:\n{}",
            server.stderr()
        );
        assert!(server.is_running(), "{name} ended the process");
        let state = proc_state(server.pid());
        assert!(
            state != 'T' && state != 't',
            "{name} stopped the process ({state})"
        );
        assert_eq!(
            fcgi_get(&server.spec(0), "/").body_str(),
            "pong\n",
            "after {name}"
        );
    }
    assert!(server.unix_path(0).exists() && server.dir().join("fastgate.pid").exists());
    let path = server.unix_path(0);
    stop(&mut server);
    assert!(!path.exists());
}

#[test]
fn a_busy_port_names_the_tool_to_find_its_owner() {
    let dir = TempDir::new();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().unwrap().port();
    let spec = format!("fastcgi://127.0.0.1:{port}");
    let out = run_serve_to_exit(&dir, &["--listen", &spec], Duration::from_secs(10));
    assert_eq!(out.status.and_then(|s| s.code()), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains(&spec) && out.stderr.contains("ss -lntp"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_missing_socket_directory_is_named() {
    let dir = TempDir::new();
    let out = run_serve_to_exit(
        &dir,
        &["--listen", "fastcgi:{dir}/missing/a.sock"],
        Duration::from_secs(10),
    );
    assert_eq!(out.status.and_then(|s| s.code()), Some(1), "{}", out.stderr);
    let missing = dir.path().join("missing");
    assert!(
        out.stderr
            .contains(&format!("directory {} does not exist", missing.display())),
        "{}",
        out.stderr
    );
}
