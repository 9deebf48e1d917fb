//! The server the `connection` target talks to: one `fastgate::Server` per
//! fuzzing process, started on first use, with an `auto` listener (the
//! first byte picks FastCGI, SCGI or HTTP) on a Unix socket in a
//! directory of its own, small limits and short timeouts, and the `hello`
//! and `echo` apps mounted. Also the client side of the socket: sending a
//! chunk and waiting until the server has read it (TIOCOUTQ).

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fastgate::server::StatsHandle;
use fastgate::{apps, ListenSpec, Options, Server};

/// `--max-params-bytes`: small, so the fuzzer reaches the limit.
pub const MAX_PARAMS: usize = 1024;
/// `--max-body-bytes`.
pub const MAX_BODY: u64 = 2048;
/// `--max-reqs`.
pub const MAX_REQS: usize = 4;
/// The longest timeout configured (`--request-timeout`, `--send-timeout`).
pub const LONGEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the directories of these servers live; each is named after its
/// process, so one left by a dead process is found and removed.
const DIR_PREFIX: &str = "fastgate-fuzz-connection-";

/// The running server: its socket's path and its counters.
pub struct Harness {
    /// The listener's socket file.
    pub socket: PathBuf,
    /// The server's counters, for the message of a failed check.
    pub stats: StatsHandle,
}

impl Harness {
    /// The counters that say why a request could be refused.
    pub fn describe(&self) -> String {
        let s = &self.stats;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "queue {} (max {}), threads {} ({} idle), conns {}, requests {}, aborted {}, \
             503s {}, 504s {}, 408s {}",
            s.queue_len(),
            load(&s.max_queue_len),
            load(&s.threads_total),
            load(&s.threads_idle),
            load(&s.active_conns),
            load(&s.requests),
            load(&s.aborted_requests),
            load(&s.refused_503),
            load(&s.refused_504),
            load(&s.refused_408),
        )
    }
}

static HARNESS: OnceLock<Harness> = OnceLock::new();

/// The server of this process, started on the first call.
pub fn harness() -> &'static Harness {
    HARNESS.get_or_init(start)
}

fn options(dir: &Path, socket: &Path) -> Options {
    let spec: ListenSpec = format!("unix:{}", socket.display()).parse().unwrap();
    let mut o = Options::default();
    o.listen = vec![spec];
    (o.min_threads, o.max_threads, o.queue) = (2, 4, 16);
    (o.max_reqs, o.max_params_bytes, o.max_body_bytes) = (MAX_REQS, MAX_PARAMS, MAX_BODY);
    o.header_timeout = Duration::from_secs(1);
    o.idle_timeout = Duration::from_secs(1);
    o.body_timeout = Some(Duration::from_secs(1));
    o.request_timeout = Some(LONGEST_TIMEOUT);
    o.send_timeout = Some(LONGEST_TIMEOUT);
    o.shutdown_timeout = Duration::from_secs(1);
    (o.temp_dir, o.max_temp_bytes) = (Some(dir.to_path_buf()), 16 << 20);
    o
}

fn start() -> Harness {
    ignore_sigpipe();
    remove_stale_dirs();
    let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("the server's directory");
    let socket = dir.join("fg.sock");
    let mut builder = Server::builder();
    builder.options(options(&dir, &socket));
    let stats = builder.stats();
    for (prefix, app) in [("/", "hello"), ("/echo", "echo")] {
        builder.mount_route(prefix, apps::build(app, prefix, &stats).unwrap());
    }
    let server = builder.build().expect("the fuzzing server starts");
    std::thread::spawn(move || server.run().expect("the fuzzing server runs"));
    Harness { socket, stats }
}

/// A write to a socket its peer closed must fail with EPIPE, not kill the
/// process: what Rust's runtime sets up for a program's `main`, which a
/// libFuzzer binary does not have.
fn ignore_sigpipe() {
    // SAFETY: setting a signal's disposition to SIG_IGN has no
    // precondition; no handler runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// Removes the directories of servers whose process is gone (a fuzzer
/// stops with `exit`, so nothing of ours runs at its end).
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX));
        let Some(pid) = pid.and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Bytes written to `stream` that its peer has not read yet.
fn unread(stream: &UnixStream) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ) on a socket writes one c_int through the
    // pointer, which points to a live c_int; the fd is open for the call.
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Writes `chunk`, then waits (until `deadline`) for the server to read
/// it all, so that the next chunk arrives as a read of its own. False
/// once the server stopped reading (closed, or not reading for now): the
/// caller writes the rest without waiting.
pub fn send_and_wait(stream: &mut UnixStream, chunk: &[u8], deadline: Instant) -> bool {
    if stream.write_all(chunk).is_err() {
        return false;
    }
    let mut spins = 0u32;
    while Instant::now() < deadline {
        match unread(stream) {
            Ok(0) => return true,
            Ok(_) if spins < 200 => std::thread::yield_now(),
            Ok(_) => std::thread::sleep(Duration::from_micros(50)),
            Err(_) => return false,
        }
        spins += 1;
    }
    false
}
