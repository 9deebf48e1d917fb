//! The deploy files that are not a front server's, tested as shipped:
//!
//! - `deploy/systemd/fastgate.service` and `fastgate.socket` pass
//!   `systemd-analyze verify` (the binary's path substituted); the
//!   service's ExecStart command line is run the way systemd runs it, with
//!   the socket of fastgate.socket handed over as `LISTEN_FDS` (by
//!   `systemd-socket-activate`, from the systemd package) and
//!   `NOTIFY_SOCKET` set: it says READY=1, serves, and stops on TERM (the
//!   unit's KillSignal) with exit 0 and STOPPING=1. Starting the units
//!   under a real systemd needs systemd as PID 1, which a container lacks:
//!   that part says so and skips.
//! - `deploy/logrotate/fastgate` passes `logrotate -d`, and rotates a log
//!   fastgate is writing (paths and postrotate substituted): fastgate goes
//!   on in a new file after USR1.
//! - `deploy/spawn-fcgi/fastgate-multiwatch.sh` runs as shipped: the copies
//!   serve the socket (as www-data when the test is root) and stop on TERM.

mod common;
mod frontend;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{bin, clean_env, eventually, fcgi_get, require_tool, Server, Signal, TempDir};

const SERVICE: &str = include_str!("../deploy/systemd/fastgate.service");
const SOCKET: &str = include_str!("../deploy/systemd/fastgate.socket");
const LOGROTATE: &str = include_str!("../deploy/logrotate/fastgate");
const MULTIWATCH: &str = "deploy/spawn-fcgi/fastgate-multiwatch.sh";

/// The binary path the units and snippets name.
const SHIPPED_BIN: &str = "/usr/local/bin/fastgate";

/// The value of the first `KEY=` line of a unit file.
fn unit_value<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in the unit"))
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    if !require_tool("systemd-analyze") {
        return;
    }
    let dir = TempDir::new();
    let service = frontend::replace_once(SERVICE, SHIPPED_BIN, bin());
    std::fs::write(dir.path().join("fastgate.service"), service).expect("write unit");
    std::fs::write(dir.path().join("fastgate.socket"), SOCKET).expect("write unit");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.path().join("fastgate.socket"))
        .arg(dir.path().join("fastgate.service"))
        .output()
        .expect("run systemd-analyze");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // Complaints about our units name them; other lines (about the host's
    // own units) are not ours to fix.
    let ours: Vec<&str> = said.lines().filter(|l| l.contains("fastgate.s")).collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify: {said}"
    );
}

#[test]
fn the_units_hard_rules_hold() {
    // What the service promises its reader, checked so an edit cannot
    // quietly drop it.
    for line in [
        "Type=notify",
        "NotifyAccess=all",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillSignal=SIGTERM",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "RuntimeDirectory=fastgate",
        "Requires=fastgate.socket",
    ] {
        assert!(
            SERVICE.lines().any(|l| l == line),
            "fastgate.service lacks {line}"
        );
    }
    // systemd must wait longer than fastgate's graceful stop.
    let stop = unit_value(SERVICE, "TimeoutStopSec");
    let secs: u64 = stop.trim_end_matches('s').parse().expect("seconds");
    assert!(
        secs > 30,
        "TimeoutStopSec={stop} not above --shutdown-timeout's 30s"
    );
    // No --listen: the socket comes from systemd.
    assert!(!unit_value(SERVICE, "ExecStart").contains("--listen"));
}

#[test]
fn the_service_command_serves_the_socket_systemd_hands_over() {
    if !require_tool("systemd-socket-activate") {
        return;
    }
    let dir = TempDir::new();
    let sock = dir.join("fastgate.sock");
    let access_log = dir.join("access.log");
    let listen = unit_value(SOCKET, "ListenStream");
    assert_eq!(listen, "/run/fastgate.sock");
    let exec = unit_value(SERVICE, "ExecStart");
    let exec = frontend::replace_once(exec, SHIPPED_BIN, bin());
    let exec = frontend::replace_once(&exec, "/var/log/fastgate/access.log", &access_log);
    let mut argv = exec.split_whitespace();
    let program = argv.next().expect("ExecStart program");

    let notify_path = dir.path().join("notify");
    let notify = UnixDatagram::bind(&notify_path).expect("bind the notify socket");
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");

    let mut cmd = Command::new("systemd-socket-activate");
    cmd.args(["-l", &sock]);
    clean_env(&mut cmd);
    cmd.env("NOTIFY_SOCKET", &notify_path);
    cmd.args(["-E", "RUST_LOG=info", "-E"])
        .arg(format!("NOTIFY_SOCKET={}", notify_path.display()));
    cmd.arg(program).args(argv);
    // systemd-socket-activate waits for a first connection, then execs the
    // service in its own pid: wait for no `listening on` line yet.
    let mut server = Server::spawn(cmd, TempDir::new(), 0);
    assert!(
        eventually(Duration::from_secs(10), || Path::new(&sock).exists()),
        "systemd-socket-activate made no socket: {}",
        server.stderr()
    );
    // This request is the one that starts fastgate.
    assert_eq!(fcgi_get(&sock, "/").body_str(), "Hello, world!\n");
    let ready = recv_until(&notify, "READY=1");
    assert!(ready.contains("READY=1"), "notify: {ready}");
    assert_eq!(fcgi_get(&sock, "/ping").body_str(), "pong\n");
    let status = fcgi_get(&sock, "/status?json");
    let json: serde_json::Value = serde_json::from_slice(&status.body).expect("status JSON");
    assert!(json["processes"].as_u64() >= Some(1), "{json}");
    let log = std::fs::read_to_string(&access_log).unwrap_or_default();
    assert!(log.contains("/ping"), "access log: {log}");

    server.signal(Signal::SIGTERM);
    let exit = server.wait_exit(Duration::from_secs(40));
    assert!(exit.is_some_and(|s| s.success()), "TERM: {exit:?}");
    let stopping = recv_until(&notify, "STOPPING=1");
    assert!(stopping.contains("STOPPING=1"), "notify: {stopping}");
    assert!(
        Path::new(&sock).exists(),
        "the socket belongs to systemd: fastgate leaves it"
    );
}

/// Datagrams from `socket` until one contains `want` (or the read times
/// out); all of them, joined.
fn recv_until(socket: &UnixDatagram, want: &str) -> String {
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains(want) {
        let Ok(n) = socket.recv(&mut buf) else {
            break;
        };
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        seen.push('\n');
    }
    seen
}

#[test]
fn the_units_under_a_running_systemd() {
    let pid1 = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
    if !Path::new("/run/systemd/system").exists() {
        eprintln!(
            "SKIPPED: systemd is not running here (PID 1 is {:?}): the units were \
             checked by systemd-analyze verify and their command run with the \
             socket handed over, but not started by systemd itself",
            pid1.trim()
        );
        return;
    }
    eprintln!(
        "SKIPPED: systemd runs here, but this test does not install units into \
         the host's systemd; start them by hand: systemctl link {}/deploy/systemd/fastgate.*",
        repo().display()
    );
}

#[test]
fn logrotate_accepts_the_file() {
    if !require_tool("logrotate") {
        return;
    }
    let dir = TempDir::new();
    let conf = dir.path().join("fastgate");
    std::fs::write(&conf, LOGROTATE).expect("write logrotate conf");
    let out = Command::new("logrotate")
        .arg("-d")
        .arg("-s")
        .arg(dir.path().join("state"))
        .arg(&conf)
        .output()
        .expect("run logrotate");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "logrotate -d: {said}");
    assert!(!said.contains("error"), "logrotate -d: {said}");
    assert!(said.contains("/var/log/fastgate/*.log"), "{said}");
}

#[test]
fn logrotate_rotates_a_log_fastgate_writes_on() {
    if !require_tool("logrotate") {
        return;
    }
    // The file says `su www-data www-data`: logrotate must be root to
    // switch, and the log directory www-data's, as LogsDirectory= makes it.
    let Some((uid, gid)) = frontend::require_front_user() else {
        return;
    };
    let dir = TempDir::new();
    std::fs::create_dir(dir.path().join("logs")).expect("mkdir logs");
    let server = Server::start_in(
        dir,
        &[
            "--listen",
            "fastcgi:{dir}/fg.sock",
            "--access-log",
            "{dir}/logs/access.log",
            "--mount",
            "/=hello",
        ],
    );
    let spec = format!("fastcgi:{}/fg.sock", server.dir().display());
    let logs = server.dir().join("logs");
    let access = logs.join("access.log");
    fcgi_get(&spec, "/before");
    assert!(eventually(Duration::from_secs(5), || {
        std::fs::read_to_string(&access).is_ok_and(|l| l.contains("/before"))
    }));
    frontend::give_dir(&logs, uid, gid);

    let conf = frontend::replace_once(
        LOGROTATE,
        "/var/log/fastgate/*.log",
        &format!("{}/*.log", logs.display()),
    );
    let postrotate =
        "systemctl kill --signal=USR1 --kill-whom=main fastgate.service >/dev/null 2>&1 || true";
    let conf = frontend::replace_once(&conf, postrotate, &format!("kill -USR1 {}", server.pid()));
    let state = TempDir::new();
    let conf_path = state.path().join("fastgate");
    std::fs::write(&conf_path, conf).expect("write logrotate conf");
    let out = Command::new("logrotate")
        .args(["-f", "-s"])
        .arg(state.path().join("state"))
        .arg(&conf_path)
        .output()
        .expect("run logrotate");
    assert!(
        out.status.success(),
        "logrotate -f: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rotated = std::fs::read_to_string(logs.join("access.log.1")).expect("access.log.1");
    assert!(rotated.contains("/before"), "{rotated}");

    // fastgate reopened on USR1: the next line goes to a new access.log.
    let reopened = eventually(Duration::from_secs(10), || {
        fcgi_get(&spec, "/after");
        std::fs::read_to_string(&access).is_ok_and(|l| l.contains("/after"))
    });
    assert!(reopened, "no new access.log: {}", server.stderr());
    let rotated = std::fs::read_to_string(logs.join("access.log.1")).expect("access.log.1");
    assert!(!rotated.contains("/after"), "written to the rotated file");
}

#[test]
fn spawn_fcgi_and_multiwatch_script_as_shipped() {
    if !require_tool("spawn-fcgi") || !require_tool("multiwatch") {
        return;
    }
    let dir = TempDir::new();
    let sock = dir.join("fastgate.sock");
    let mut cmd = Command::new("sh");
    cmd.arg(repo().join(MULTIWATCH));
    clean_env(&mut cmd);
    cmd.env("SOCKET", &sock)
        .env("FASTGATE", bin())
        .env("COPIES", "2");
    let mut watcher = Server::spawn(cmd, dir, 2);
    for _ in 0..10 {
        assert_eq!(fcgi_get(&sock, "/").body_str(), "Hello, world!\n");
    }
    let status = fcgi_get(&sock, "/status?json");
    assert_eq!(status.status, 200);

    // As root, spawn-fcgi dropped to www-data before multiwatch started
    // the copies, and gave the socket to www-data.
    if let Some((uid, _)) = frontend::front_user() {
        let copies = descendants_named(watcher.pid(), "fastgate");
        assert_eq!(copies.len(), 2, "copies: {copies:?}");
        for pid in copies {
            assert_eq!(frontend::uid_of(pid), Some(uid), "copy {pid}");
        }
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&sock).expect("socket");
        assert_eq!(meta.uid(), uid, "socket owner");
    }

    watcher.signal(Signal::SIGTERM);
    let stopped = watcher.wait_exit(Duration::from_secs(15));
    assert!(stopped.is_some(), "did not stop: {}", watcher.stderr());
    let both = || watcher.stderr().matches("INFO stopped").count() == 2;
    assert!(
        eventually(Duration::from_secs(10), both),
        "both copies stop gracefully: {}",
        watcher.stderr()
    );
}

/// The processes named `name` among the children of `pid`.
fn descendants_named(pid: i32, name: &str) -> Vec<u32> {
    let mut found = Vec::new();
    eventually(Duration::from_secs(10), || {
        found = children_of(pid as u32)
            .into_iter()
            .filter(|&p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.trim_end() == name)
            })
            .collect();
        found.len() >= 2
    });
    found
}

fn children_of(pid: u32) -> Vec<u32> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}
