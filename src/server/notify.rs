//! systemd's readiness protocol (`Type=notify`, sd_notify(3)), spoken
//! without libsystemd: one datagram of `NAME=VALUE` lines to the Unix
//! socket named by `NOTIFY_SOCKET` (a path, or an abstract name when it
//! starts with `@`).
//!
//! The process systemd started says `READY=1` once its listeners accept
//! (systemd holds back units ordered after it until then), a `STATUS=`
//! line as it serves (what `systemctl status` shows) and `STOPPING=1` when
//! a graceful stop begins. The messages are formatted by pure functions;
//! [`Notifier`] only sends them. Under prefork the master holds the
//! notifier and the children none (see [`Notifier::from_env`]).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::stats::{Stats, StatsHandle};

/// The environment variable systemd sets for a `Type=notify` service.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// What a graceful stop says.
pub const STOPPING: &str = "STOPPING=1";

/// How often a serving process sends its `STATUS=` line, unless
/// `FASTGATE_NOTIFY_INTERVAL_MS` (a test switch, like `FASTGATE_POLLER`)
/// says otherwise.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(5);

/// How long `READY=1` and `STOPPING=1` may wait for room in systemd's
/// queue. They are sent once, and a lost `READY=1` gets the service
/// killed at its start timeout, so they wait a little; a `STATUS=` line
/// never waits (the next one comes soon).
const PATIENCE: Duration = Duration::from_secs(1);

/// `READY=1`, with `MAINPID=` when the sender is not the process systemd
/// watches (a prefork master re-executed by a binary upgrade names
/// itself the new main process).
///
/// ```
/// use fastgate::server::notify::ready_message;
/// assert_eq!(ready_message(None), "READY=1");
/// assert_eq!(ready_message(Some(42)), "READY=1\nMAINPID=42");
/// ```
pub fn ready_message(main_pid: Option<u32>) -> String {
    match main_pid {
        Some(pid) => format!("READY=1\nMAINPID={pid}"),
        None => "READY=1".to_string(),
    }
}

/// `STATUS=line`, on one line: a newline would start another assignment.
///
/// ```
/// use fastgate::server::notify::status_message;
/// assert_eq!(status_message("a\nb"), "STATUS=a b");
/// ```
pub fn status_message(line: &str) -> String {
    format!("STATUS={}", line.replace(['\n', '\r'], " "))
}

/// The status line of DESIGN.md: requests served, busy workers of all
/// workers, processes serving.
///
/// ```
/// use fastgate::server::notify::status_line;
/// assert_eq!(status_line(120, 3, 8, 1), "requests 120, busy 3/8 threads, processes 1");
/// ```
pub fn status_line(requests: u64, busy: u64, threads: u64, processes: u64) -> String {
    format!("requests {requests}, busy {busy}/{threads} threads, processes {processes}")
}

/// The status line of one process, read from its counters.
pub fn status_of(stats: &Stats) -> String {
    let total = stats.threads_total.load(Ordering::Relaxed);
    let idle = stats.threads_idle.load(Ordering::Relaxed);
    let requests = stats.requests.load(Ordering::Relaxed);
    // Two relaxed reads may see idle ahead of total for a moment.
    status_line(requests, total.saturating_sub(idle), total, 1)
}

/// A socket to systemd's notify socket.
///
/// ```no_run
/// use fastgate::server::notify::Notifier;
/// // Early in main, before any thread starts (it edits the environment).
/// if let Some(notifier) = Notifier::from_env() {
///     notifier.ready(None).ok();
///     notifier.status("requests 0, busy 0/2 threads, processes 1").ok();
///     notifier.stopping().ok();
/// }
/// ```
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    path: OsString,
}

impl Notifier {
    /// The notifier systemd asked for, if `NOTIFY_SOCKET` is set, which
    /// is then removed from the environment, so that the programs this
    /// process starts (CGI scripts, forked children that exec) do not
    /// speak for it; [`path`](Self::path) keeps the value. A value that
    /// names no usable socket is logged and gives `None`.
    ///
    /// It edits the environment: call it before starting threads.
    pub fn from_env() -> Option<Notifier> {
        let path = std::env::var_os(NOTIFY_SOCKET)?;
        std::env::remove_var(NOTIFY_SOCKET);
        match Notifier::new(&path) {
            Ok(n) => Some(n),
            Err(e) => {
                log::warn!(
                    "{NOTIFY_SOCKET}={}: {e}; systemd is not notified",
                    path.to_string_lossy()
                );
                None
            }
        }
    }

    /// A notifier for `path`: an absolute socket path, or `@name` for an
    /// abstract socket (Linux).
    pub fn new(path: &OsStr) -> io::Result<Notifier> {
        let addr = socket_addr(path)?;
        let socket = UnixDatagram::unbound()?;
        // Never block the event loop: a full queue is waited for in
        // short steps, within PATIENCE, or not at all.
        socket.set_nonblocking(true)?;
        Ok(Notifier {
            socket,
            addr,
            path: path.to_os_string(),
        })
    }

    /// The value `NOTIFY_SOCKET` had, to hand to a process that should
    /// speak for this one (a re-executed binary).
    pub fn path(&self) -> &OsStr {
        &self.path
    }

    /// `READY=1` (see [`ready_message`] for `main_pid`).
    pub fn ready(&self, main_pid: Option<u32>) -> io::Result<()> {
        self.send_within(&ready_message(main_pid), PATIENCE)
    }

    /// `STATUS=line`; dropped rather than waited for when systemd's
    /// queue is full.
    pub fn status(&self, line: &str) -> io::Result<()> {
        self.send_within(&status_message(line), Duration::ZERO)
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) -> io::Result<()> {
        self.send_within(STOPPING, PATIENCE)
    }

    /// Sends `message` (`NAME=VALUE` lines) as it is.
    pub fn send(&self, message: &str) -> io::Result<()> {
        self.send_within(message, PATIENCE)
    }

    fn send_within(&self, message: &str, patience: Duration) -> io::Result<()> {
        let deadline = Instant::now() + patience;
        loop {
            match self.socket.send_to_addr(message.as_bytes(), &self.addr) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// `/path` or `@abstract`, as sd_notify(3) reads `NOTIFY_SOCKET`.
fn socket_addr(path: &OsStr) -> io::Result<SocketAddr> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_bytes();
    match bytes.first() {
        Some(b'/') => SocketAddr::from_pathname(path),
        Some(b'@') => abstract_addr(&bytes[1..]),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an absolute path nor an @abstract name",
        )),
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_addr(name: &[u8]) -> io::Result<SocketAddr> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_addr(_name: &[u8]) -> io::Result<SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract socket names exist on Linux only",
    ))
}

/// The loop's side: `READY=1` when it starts, a `STATUS=` line every
/// interval while it runs, `STOPPING=1` when a graceful stop begins.
pub(crate) struct Reporter {
    notifier: Notifier,
    stats: StatsHandle,
    interval: Duration,
    next: Instant,
    /// A send failed and was logged; the failures after it are not,
    /// until one succeeds (a status line every few seconds to a socket
    /// that is gone would fill the log).
    failing: bool,
}

impl Reporter {
    pub fn new(notifier: Notifier, stats: StatsHandle) -> Reporter {
        let interval = interval_from_env().unwrap_or(STATUS_INTERVAL);
        Reporter {
            notifier,
            stats,
            interval,
            next: Instant::now() + interval,
            failing: false,
        }
    }

    /// The loop is about to run: every listener accepts already (they
    /// listen since `bind`), and connections are served from the first turn.
    pub fn ready(&mut self) {
        let sent = self.notifier.ready(None);
        self.report("READY=1", sent);
        self.status(Instant::now());
    }

    /// When the next status line is due.
    pub fn next(&self) -> Instant {
        self.next
    }

    /// Sends the status line if it is due.
    pub fn tick(&mut self, now: Instant) {
        if now >= self.next {
            self.status(now);
        }
    }

    pub fn stopping(&mut self) {
        let sent = self.notifier.stopping();
        self.report(STOPPING, sent);
    }

    fn status(&mut self, now: Instant) {
        let line = status_of(&self.stats);
        let sent = self.notifier.status(&line);
        self.report("STATUS", sent);
        self.next = now + self.interval;
    }

    /// A failed notification is worth a line in the log, never the
    /// process.
    fn report(&mut self, what: &str, sent: io::Result<()>) {
        match sent {
            Ok(()) => self.failing = false,
            Err(e) if !std::mem::replace(&mut self.failing, true) => {
                log::warn!("{NOTIFY_SOCKET}: cannot send {what}: {e}");
            }
            Err(e) => log::debug!("{NOTIFY_SOCKET}: cannot send {what}: {e}"),
        }
    }
}

fn interval_from_env() -> Option<Duration> {
    let ms: u64 = std::env::var("FASTGATE_NOTIFY_INTERVAL_MS")
        .ok()?
        .parse()
        .ok()?;
    Some(Duration::from_millis(ms.max(10)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recv(socket: &UnixDatagram) -> String {
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).expect("a datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn messages_are_name_value_lines() {
        assert_eq!(ready_message(None), "READY=1");
        assert_eq!(ready_message(Some(7)), "READY=1\nMAINPID=7");
        assert_eq!(status_message("x\r\ny"), "STATUS=x  y");
        assert_eq!(
            status_line(5, 1, 2, 3),
            "requests 5, busy 1/2 threads, processes 3"
        );
    }

    #[test]
    fn status_of_counts_busy_threads_as_total_minus_idle() {
        let stats = Stats::default();
        stats.requests.store(9, Ordering::Relaxed);
        stats.threads_total.store(4, Ordering::Relaxed);
        stats.threads_idle.store(5, Ordering::Relaxed);
        assert_eq!(
            status_of(&stats),
            "requests 9, busy 0/4 threads, processes 1"
        );
        stats.threads_idle.store(1, Ordering::Relaxed);
        assert_eq!(
            status_of(&stats),
            "requests 9, busy 3/4 threads, processes 1"
        );
    }

    #[test]
    fn sends_to_a_socket_path() {
        let dir = std::env::temp_dir().join(format!("fg-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let systemd = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::new(path.as_os_str()).unwrap();
        assert_eq!(n.path(), path.as_os_str());
        n.ready(Some(12)).unwrap();
        n.status("requests 1").unwrap();
        n.stopping().unwrap();
        assert_eq!(recv(&systemd), "READY=1\nMAINPID=12");
        assert_eq!(recv(&systemd), "STATUS=requests 1");
        assert_eq!(recv(&systemd), "STOPPING=1");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sends_to_an_abstract_name() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("fastgate-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let systemd = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier::new(OsStr::new(&format!("@{name}"))).unwrap();
        n.ready(None).unwrap();
        assert_eq!(recv(&systemd), "READY=1");
    }

    #[test]
    fn a_relative_path_is_refused() {
        let err = Notifier::new(OsStr::new("notify.sock")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(Notifier::new(OsStr::new("")).is_err());
    }

    #[test]
    fn nobody_listening_is_an_error_not_a_hang() {
        let path = std::env::temp_dir().join(format!("fg-notify-none-{}", std::process::id()));
        let n = Notifier::new(path.as_os_str()).unwrap();
        assert!(n.status("x").is_err());
    }
}
