//! `fastgate serve` under systemd's `Type=notify`: a datagram socket of the
//! test stands in for systemd's `NOTIFY_SOCKET` and reads what the real
//! binary sends, with the sender's pid as the kernel gives it (systemd's
//! default `NotifyAccess=main` drops a message from any other process).
//!
//! `FASTGATE_NOTIFY_INTERVAL_MS` shortens the interval of the `STATUS=`
//! lines, so that a test sees several within a few seconds.

mod common;

use std::io::IoSliceMut;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, UnixAddr};

/// How long a test waits for a message it expects.
const WAIT: Duration = Duration::from_secs(15);

/// systemd's side of the notify socket.
struct Systemd {
    socket: UnixDatagram,
}

/// One datagram and the pid of the process that sent it.
#[derive(Debug)]
struct Note {
    text: String,
    pid: Option<i32>,
}

impl Systemd {
    fn bind(path: &std::path::Path) -> Systemd {
        let socket = UnixDatagram::bind(path).expect("bind the notify socket");
        Systemd::with(socket)
    }

    fn with(socket: UnixDatagram) -> Systemd {
        // As systemd does: the kernel attaches the sender's credentials.
        setsockopt(&socket, sockopt::PassCred, &true).expect("SO_PASSCRED");
        Systemd { socket }
    }

    /// The next datagram, waiting at most until `deadline`.
    fn recv_by(&self, deadline: Instant) -> Option<Note> {
        let left = deadline.checked_duration_since(Instant::now())?;
        let left = left.max(Duration::from_millis(1));
        self.socket.set_read_timeout(Some(left)).unwrap();
        let mut buf = [0u8; 4096];
        let mut cmsg = nix::cmsg_space!(nix::sys::socket::UnixCredentials);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<UnixAddr>(
            self.socket.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::empty(),
        )
        .ok()?;
        let n = msg.bytes;
        let pid = msg.cmsgs().ok()?.find_map(|c| match c {
            ControlMessageOwned::ScmCredentials(cred) => Some(cred.pid()),
            _ => None,
        });
        Some(Note {
            text: String::from_utf8_lossy(&buf[..n]).into_owned(),
            pid,
        })
    }

    /// Reads datagrams until one satisfies `want`; panics naming all the
    /// others if none does within [`WAIT`].
    fn wait_for(&self, what: &str, want: impl Fn(&str) -> bool) -> Note {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        while let Some(note) = self.recv_by(deadline) {
            if want(&note.text) {
                return note;
            }
            if seen.len() < 20 {
                seen.push(note.text);
            }
        }
        panic!("no {what} within {WAIT:?}; received (the first 20) {seen:?}");
    }
}

/// `fastgate serve` with `NOTIFY_SOCKET` set, a status line every 200 ms.
fn serve_notifying(dir: &TempDir, notify: &str) -> Command {
    let args: Vec<String> = [
        "--listen",
        &format!("fastcgi:{}", dir.join("fg.sock")),
        "--mount",
        "/=hello",
        "--mount",
        "/sleep=sleep",
        "--min-threads",
        "2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut cmd = serve_command(&args);
    cmd.env("NOTIFY_SOCKET", notify)
        .env("FASTGATE_NOTIFY_INTERVAL_MS", "200");
    cmd
}

#[test]
fn ready_then_status_lines_then_stopping_on_term() {
    let dir = TempDir::new();
    let notify = dir.path().join("notify.sock");
    let systemd = Systemd::bind(&notify);
    let cmd = serve_notifying(&dir, &notify.display().to_string());
    let mut server = Server::spawn(cmd, dir, 1);
    let spec = server.spec(0);

    let ready = systemd
        .recv_by(Instant::now() + WAIT)
        .expect("a first message");
    assert_eq!(ready.text, "READY=1", "the first message, with no MAINPID");
    assert_eq!(ready.pid, Some(server.pid()), "sent by the server itself");
    // Ready means accepting: a request right after is answered.
    assert_eq!(fcgi_get(&spec, "/").body_str(), "Hello, world!\n");

    for _ in 0..2 {
        assert_eq!(fcgi_get(&spec, "/").status, 200);
    }
    let status = systemd.wait_for("STATUS with the 3 requests", |t| {
        t.starts_with("STATUS=requests 3, ")
    });
    assert_eq!(
        status.text, "STATUS=requests 3, busy 0/2 threads, processes 1",
        "one line, every field"
    );
    assert_eq!(status.pid, Some(server.pid()));

    // A request in flight shows as a busy thread, and keeps the graceful
    // stop going while STOPPING=1 is checked.
    let sleeper = {
        let spec = spec.clone();
        thread::spawn(move || fcgi_get(&spec, "/sleep?ms=3000"))
    };
    systemd.wait_for("STATUS with a busy thread", |t| {
        t.starts_with("STATUS=requests 3, busy 1/")
    });
    server.signal(Signal::SIGTERM);
    let stopping = systemd.wait_for("STOPPING=1", |t| t == "STOPPING=1");
    assert_eq!(stopping.pid, Some(server.pid()));
    assert!(
        server.is_running(),
        "STOPPING=1 comes when the stop begins, not at the exit"
    );
    assert_eq!(sleeper.join().expect("sleeper").status, 200);
    let exited = server.wait_exit(Duration::from_secs(20));
    assert!(exited.is_some_and(|s| s.success()), "{exited:?}");
}

#[cfg(target_os = "linux")]
#[test]
fn an_abstract_notify_socket_is_used() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("fastgate-notify-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let systemd = Systemd::with(UnixDatagram::bind_addr(&addr).expect("bind @name"));
    let dir = TempDir::new();
    let cmd = serve_notifying(&dir, &format!("@{name}"));
    let server = Server::spawn(cmd, dir, 1);
    let ready = systemd.wait_for("READY=1", |t| t == "READY=1");
    assert_eq!(ready.pid, Some(server.pid()));
    systemd.wait_for("a STATUS line", |t| t.starts_with("STATUS=requests 0, "));
}

#[test]
fn a_notify_socket_nobody_reads_is_logged_and_serving_goes_on() {
    let dir = TempDir::new();
    let gone = dir.join("nobody.sock");
    let cmd = serve_notifying(&dir, &gone);
    let server = Server::spawn(cmd, dir, 1);
    assert!(
        server.wait_stderr("NOTIFY_SOCKET: cannot send READY=1", WAIT),
        "{}",
        server.stderr()
    );
    assert_eq!(fcgi_get(&server.spec(0), "/").status, 200);
}

#[test]
fn a_relative_notify_socket_is_refused_with_a_warning() {
    let dir = TempDir::new();
    let cmd = serve_notifying(&dir, "notify.sock");
    let server = Server::spawn(cmd, dir, 1);
    assert!(
        server.wait_stderr("NOTIFY_SOCKET=notify.sock: not an absolute path", WAIT),
        "{}",
        server.stderr()
    );
    assert_eq!(fcgi_get(&server.spec(0), "/").status, 200);
}

/// Under prefork the master is the process systemd started: it says
/// READY=1 once its children serve, and STOPPING=1 at a stop; the
/// children say nothing.
#[test]
fn under_prefork_the_master_notifies() {
    let dir = TempDir::new();
    let notify = dir.path().join("notify.sock");
    let systemd = Systemd::bind(&notify);
    let mut cmd = serve_notifying(&dir, &notify.display().to_string());
    cmd.args(["--processes", "2"]);
    let mut server = Server::spawn(cmd, dir, 1);
    let ready = systemd.wait_for("READY=1", |t| t == "READY=1");
    assert_eq!(ready.pid, Some(server.pid()), "sent by the master");
    assert_eq!(fcgi_get(&server.spec(0), "/").status, 200);
    let status = systemd.wait_for("STATUS", |t| t.starts_with("STATUS="));
    assert_eq!(status.pid, Some(server.pid()), "{}", status.text);
    server.signal(Signal::SIGTERM);
    let stopping = systemd.wait_for("STOPPING=1", |t| t == "STOPPING=1");
    assert_eq!(stopping.pid, Some(server.pid()));
    assert!(server
        .wait_exit(Duration::from_secs(20))
        .is_some_and(|s| s.success()));
}
