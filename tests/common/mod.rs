//! Shared helpers of the integration tests: they drive the real `fastgate`
//! binary over real sockets, with no mocks.
//!
//! - [`Server`] starts `fastgate serve` on port 0 or a socket in a fresh temp
//!   dir, learns the bound addresses from its `listening on SPEC` log lines,
//!   drains its stderr so the pipe never fills, counts its fds and kills it by
//!   pid on drop.
//! - [`FcgiConn`] is a raw FastCGI client on a blocking socket: it writes any
//!   record (well-formed or not) and collects the replies of several request
//!   ids at once. Its framing is written here from the FastCGI 1.0 spec on
//!   purpose, independent of the server's codec, so a bug shared by both
//!   halves of one codec cannot hide.
//! - [`scgi_request`] is a one-shot SCGI client; [`parse_response`] splits a
//!   CGI-style answer into status, headers and body.
//!
//! Every read has a timeout, so a server that hangs fails a test instead of
//! blocking CI.

#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub use fastgate::spec::Address;
pub use nix::sys::signal::Signal;

/// How long a read waits before the test fails as a hang.
pub const READ_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the server gets to print its `listening on` lines.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// The most stderr kept per server; past it lines are drained and dropped.
const STDERR_CAP: usize = 8 << 20;

/// A running example of `examples/`, killed (by pid) and reaped on drop.
pub struct Example(Child);

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Builds (if needed) and starts `cargo run --example NAME -- SPEC`, and
/// waits for its `listening on` line.
pub fn start_example(name: &str, spec: &str) -> Example {
    let example = Path::new(bin())
        .parent()
        .expect("target dir")
        .join("examples")
        .join(name);
    if !example.exists() {
        let built = Command::new(env!("CARGO"))
            .args(["build", "--example", name])
            .status()
            .expect("cargo build --example");
        assert!(built.success(), "cargo build --example {name}");
    }
    let mut child = Command::new(&example)
        .arg(spec)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", example.display()));
    let mut err = child.stderr.take().expect("stderr");
    let mut seen = String::new();
    let deadline = Instant::now() + START_TIMEOUT;
    while !seen.contains("listening on") && Instant::now() < deadline {
        let mut b = [0u8; 256];
        let n = err.read(&mut b).unwrap_or(0);
        seen.push_str(&String::from_utf8_lossy(&b[..n]));
    }
    assert!(seen.contains("listening on"), "example {name}: {seen}");
    // Keep draining, so the example never blocks on a full pipe.
    thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    Example(child)
}

/// Polls `cond` every 20 ms for up to `timeout`.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// The `fastgate` binary cargo built for these tests.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_fastgate")
}

/// Whether `name` is an executable on PATH. When it is not: under `CI=true`
/// the test fails (CI must have every tool), else a loud SKIPPED line is
/// printed and `false` returned so the caller returns early.
pub fn require_tool(name: &str) -> bool {
    find_on_path(name).is_some() || missing(name)
}

/// A Python 3 that imports `module`: `python3` on PATH, else Debian's
/// `/usr/bin/python3` (Debian's `python3-*` packages install for that one,
/// which a python3 from pyenv does not see). None: as [`require_tool`],
/// fails under `CI=true`, else skips loudly.
pub fn require_python_module(module: &str) -> Option<PathBuf> {
    let imports = |py: &PathBuf| {
        let status = Command::new(py)
            .args(["-c", &format!("import {module}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        status.is_ok_and(|s| s.success())
    };
    let candidates = [find_on_path("python3"), Some("/usr/bin/python3".into())];
    let found = candidates.into_iter().flatten().find(imports);
    if found.is_none() {
        missing(&format!("python3 module {module}"));
    }
    found
}

/// A tool the tests need is missing: a panic under `CI=true`, else a loud
/// SKIPPED line and `false`.
fn missing(what: &str) -> bool {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what} is not installed, and CI=true requires every tool the tests use");
    }
    eprintln!("SKIPPED: {what} not installed");
    false
}

/// The full path of executable `name` on PATH.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

// ---------------------------------------------------------------- temp dirs

static TEMP_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system temp dir, removed on drop. Its path is
/// short so Unix socket paths inside stay under the 107-byte limit.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new() -> TempDir {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("fg-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("create temp dir {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `name` inside this dir, as a string (for `--listen` specs).
    pub fn join(&self, name: &str) -> String {
        self.path.join(name).display().to_string()
    }
}

impl Default for TempDir {
    fn default() -> Self {
        TempDir::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------- server

/// A running `fastgate serve`, killed (SIGKILL, by pid) and reaped on drop.
pub struct Server {
    child: Child,
    stderr: Arc<Mutex<String>>,
    specs: Vec<String>,
    exited: Option<ExitStatus>,
    // Last: the dir goes after the process that uses it is gone.
    dir: TempDir,
}

impl Server {
    /// Runs `fastgate serve ARGS...` and waits until it has printed one
    /// `listening on SPEC` line per `--listen`. In ARGS, `{dir}` stands for
    /// the server's fresh temp dir: `&["--listen", "fastcgi:{dir}/a.sock"]`.
    pub fn start(args: &[&str]) -> Server {
        Server::start_in(TempDir::new(), args)
    }

    /// As [`Server::start`], in a dir the caller prepared (e.g. with a stale
    /// socket file in it).
    pub fn start_in(dir: TempDir, args: &[&str]) -> Server {
        let args = expand_args(&dir, args);
        let listeners = count_listens(&args);
        let cmd = serve_command(&args);
        Server::spawn(cmd, dir, listeners)
    }

    /// Spawns a prepared command (see [`serve_command`]) and waits for
    /// `listeners` `listening on` lines. Used when stdin must be a socket.
    pub fn spawn(mut cmd: Command, dir: TempDir, listeners: usize) -> Server {
        cmd.stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin()));
        let stderr = drain_stderr(&mut child);
        let mut server = Server {
            child,
            stderr,
            specs: Vec::new(),
            exited: None,
            dir,
        };
        server.wait_listening(listeners);
        server
    }

    fn wait_listening(&mut self, listeners: usize) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.specs = listening_specs(&self.stderr());
            if self.specs.len() >= listeners {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exited = Some(status);
                thread::sleep(Duration::from_millis(50));
                panic!(
                    "fastgate serve exited ({status}) before listening; stderr:\n{}",
                    self.stderr()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "fastgate serve printed {} of {listeners} `listening on` lines in {:?}; stderr:\n{}",
                    self.specs.len(),
                    START_TIMEOUT,
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The `i`-th listen spec as the server printed it, with the real port.
    pub fn spec(&self, i: usize) -> String {
        self.specs[i].clone()
    }

    /// Every listen spec the server printed, in order.
    pub fn specs(&self) -> &[String] {
        &self.specs
    }

    /// The `i`-th listener's address.
    pub fn addr(&self, i: usize) -> Address {
        parse_spec(&self.specs[i]).address
    }

    /// The `i`-th listener's TCP address; panics on a Unix socket.
    pub fn tcp_addr(&self, i: usize) -> SocketAddr {
        match self.addr(i) {
            Address::Tcp(a) => a,
            Address::Unix(p) => panic!("listener {i} is a unix socket: {}", p.display()),
        }
    }

    /// The `i`-th listener's socket path; panics on TCP.
    pub fn unix_path(&self, i: usize) -> PathBuf {
        match self.addr(i) {
            Address::Unix(p) => p,
            Address::Tcp(a) => panic!("listener {i} is tcp: {a}"),
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> i32 {
        // Invariant: a pid always fits in pid_t.
        i32::try_from(self.child.id()).expect("pid fits in i32")
    }

    /// The fd count once the server has had a moment to finish closing
    /// what earlier requests used: the baseline of a leak check.
    pub fn quiet_fd_count(&self) -> usize {
        thread::sleep(Duration::from_millis(150));
        self.fd_count()
    }

    /// Resident memory of the server now, in bytes (VmRSS).
    pub fn rss_bytes(&self) -> u64 {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or_else(|| panic!("no VmRSS in {path}"))
    }

    /// Open file descriptors of the server now (entries of /proc/PID/fd).
    pub fn fd_count(&self) -> usize {
        let dir = format!("/proc/{}/fd", self.pid());
        std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read {dir}: {e}"))
            .count()
    }

    /// Waits (up to `timeout`) for the fd count to come down to `target`;
    /// returns the last count seen. Closing is asynchronous on the server
    /// side, so a test gives it a moment before comparing.
    pub fn settle_fd_count(&self, target: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let n = self.fd_count();
            if n <= target || Instant::now() > deadline {
                return n;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        lock(&self.stderr).clone()
    }

    /// Waits (up to `timeout`) for stderr to contain `needle`.
    pub fn wait_stderr(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.stderr().contains(needle) {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.stderr().contains(needle)
    }

    pub fn signal(&self, sig: Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig)
            .unwrap_or_else(|e| panic!("kill -{sig} {}: {e}", self.pid()));
    }

    /// Waits up to `timeout` for the server to exit; `None` if still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exited.is_some() {
            return self.exited;
        }
        self.exited = wait_child(&mut self.child, timeout);
        self.exited
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.wait_exit(Duration::ZERO).is_none()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let pid = nix::unistd::Pid::from_raw(self.pid());
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            let _ = self.child.wait();
        }
        // The contract says the process never panics, whatever it was
        // sent: every test checks that on the way out (unless it already
        // failed, when a second panic would only hide the first).
        let log = self.stderr();
        if !thread::panicking() && log.contains("panicked") {
            panic!("fastgate panicked during the test; stderr:\n{log}");
        }
    }
}

/// The outcome of a `fastgate serve` expected to stop by itself.
pub struct Exited {
    /// `None`: it was still running at the timeout and was killed.
    pub status: Option<ExitStatus>,
    pub stderr: String,
}

/// Runs `fastgate serve ARGS...` (with `{dir}` expanded) and waits up to
/// `timeout` for it to exit, e.g. on a usage error or a busy socket.
pub fn run_serve_to_exit(dir: &TempDir, args: &[&str], timeout: Duration) -> Exited {
    let args = expand_args(dir, args);
    let mut cmd = serve_command(&args);
    cmd.stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin()));
    let stderr = drain_stderr(&mut child);
    let status = wait_child(&mut child, timeout);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    // The drain thread ends at EOF, just after the exit; give it a moment.
    thread::sleep(Duration::from_millis(100));
    let stderr = lock(&stderr).clone();
    Exited { status, stderr }
}

/// A `fastgate serve ARGS...` command with a clean environment for the
/// server: no inherited `FASTGATE_*` options (but `FASTGATE_POLLER`, the
/// test switch CI uses to run everything on poll(2) too), info logs on (for
/// the `listening on` lines), stdin/stdout null.
pub fn serve_command(args: &[String]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg("serve").args(args);
    clean_env(&mut cmd);
    cmd
}

/// The environment changes of [`serve_command`], for a command that runs
/// fastgate some other way (e.g. through `sh -c ... exec`).
pub fn clean_env(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        let name = k.to_string_lossy();
        let option = name.starts_with("FASTGATE_") && name != "FASTGATE_POLLER";
        if option || name == "LISTEN_FDS" || name == "LISTEN_PID" {
            cmd.env_remove(k);
        }
    }
    cmd.env("RUST_LOG", "info");
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
}

fn expand_args(dir: &TempDir, args: &[&str]) -> Vec<String> {
    let d = dir.path().display().to_string();
    args.iter().map(|a| a.replace("{dir}", &d)).collect()
}

fn count_listens(args: &[String]) -> usize {
    args.iter()
        .filter(|a| *a == "--listen" || *a == "-l" || a.starts_with("--listen="))
        .count()
}

fn drain_stderr(child: &mut Child) -> Arc<Mutex<String>> {
    let buf = Arc::new(Mutex::new(String::new()));
    let Some(mut pipe) = child.stderr.take() else {
        return buf;
    };
    let sink = Arc::clone(&buf);
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            let mut s = lock(&sink);
            if s.len() < STDERR_CAP {
                s.push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        }
    });
    buf
}

fn lock(m: &Mutex<String>) -> std::sync::MutexGuard<'_, String> {
    // A poisoned buffer is still a readable string.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// The specs of every `listening on SPEC` line in `log`, in order.
pub fn listening_specs(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|line| line.split_once("listening on ").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|s| {
            s.trim_matches(|c| c == '"' || c == '\'' || c == '`')
                .to_string()
        })
        .collect()
}

/// Parses a listen spec; panics naming it when it does not parse.
pub fn parse_spec(spec: &str) -> fastgate::ListenSpec {
    spec.parse()
        .unwrap_or_else(|e| panic!("listen spec {spec:?}: {e}"))
}

// ---------------------------------------------------------------- processes

/// The name of the janitor process a server forks to remove its socket
/// files at exit (`/proc/PID/comm`).
pub const JANITOR: &str = "fastgate-unlink";

/// The live (not zombie) processes whose parent is `parent`, the janitor
/// included, sorted.
pub fn child_pids(parent: i32) -> Vec<i32> {
    let mut kids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let after = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
        let ppid = after
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<i32>().ok());
        let state = after.chars().next().unwrap_or('?');
        if ppid == Some(parent) && state != 'Z' {
            kids.push(pid);
        }
    }
    kids.sort();
    kids
}

/// A process's name (`/proc/PID/comm`), empty once it is gone.
pub fn comm(pid: i32) -> String {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    comm.trim().to_string()
}

// ---------------------------------------------------------------- sockets

/// A client socket to a listen spec: TCP or Unix.
pub enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    /// Connects to `spec` (any scheme; the address is what matters), with
    /// [`READ_TIMEOUT`] on reads and writes.
    pub fn connect(spec: &str) -> Conn {
        let conn = match parse_spec(spec).address {
            Address::Tcp(a) => {
                Conn::Tcp(TcpStream::connect(a).unwrap_or_else(|e| panic!("connect {spec}: {e}")))
            }
            Address::Unix(p) => Conn::Unix(
                UnixStream::connect(&p).unwrap_or_else(|e| panic!("connect {spec}: {e}")),
            ),
        };
        conn.set_timeout(READ_TIMEOUT);
        conn
    }

    /// As [`Conn::connect`], returning the error instead of panicking
    /// (for clients that expect a server to refuse or vanish).
    pub fn try_connect(spec: &str) -> io::Result<Conn> {
        let conn = match parse_spec(spec).address {
            Address::Tcp(a) => Conn::Tcp(TcpStream::connect(a)?),
            Address::Unix(p) => Conn::Unix(UnixStream::connect(&p)?),
        };
        conn.set_timeout(READ_TIMEOUT);
        Ok(conn)
    }

    pub fn set_timeout(&self, t: Duration) {
        let r = match self {
            Conn::Tcp(s) => s
                .set_read_timeout(Some(t))
                .and_then(|()| s.set_write_timeout(Some(t))),
            Conn::Unix(s) => s
                .set_read_timeout(Some(t))
                .and_then(|()| s.set_write_timeout(Some(t))),
        };
        r.unwrap_or_else(|e| panic!("set socket timeout: {e}"));
    }

    pub fn shutdown_write(&self) {
        let _ = match self {
            Conn::Tcp(s) => s.shutdown(Shutdown::Write),
            Conn::Unix(s) => s.shutdown(Shutdown::Write),
        };
    }

    /// Reads to EOF or reset (bounded by `limit` bytes and the read
    /// timeout).
    pub fn read_to_eof(&mut self, limit: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut chunk = [0u8; 65536];
        loop {
            let n = match self.read(&mut chunk) {
                // A peer that closes with our bytes unread resets the
                // connection: that is its end too.
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => 0,
                r => r?,
            };
            if n == 0 {
                return Ok(out);
            }
            if out.len() + n > limit {
                return Err(io::Error::other(format!("response past {limit} bytes")));
            }
            out.extend_from_slice(&chunk[..n]);
        }
    }

    /// Waits up to `timeout` for the peer to close. Bytes that arrive first
    /// are returned in `Err`; a timeout is `Err(empty)`.
    pub fn expect_closed(&mut self, timeout: Duration) -> Result<(), Vec<u8>> {
        self.set_timeout(timeout);
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        let r = loop {
            match self.read(&mut chunk) {
                Ok(0) => break if got.is_empty() { Ok(()) } else { Err(got) },
                Ok(n) if got.len() < 65536 => got.extend_from_slice(&chunk[..n]),
                Ok(_) => break Err(got),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break Ok(()),
                Err(_) => break Err(got),
            }
        };
        self.set_timeout(READ_TIMEOUT);
        r
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------- FastCGI

/// FastCGI 1.0 record types (§8).
pub mod rec {
    pub const BEGIN_REQUEST: u8 = 1;
    pub const ABORT_REQUEST: u8 = 2;
    pub const END_REQUEST: u8 = 3;
    pub const PARAMS: u8 = 4;
    pub const STDIN: u8 = 5;
    pub const STDOUT: u8 = 6;
    pub const STDERR: u8 = 7;
    pub const DATA: u8 = 8;
    pub const GET_VALUES: u8 = 9;
    pub const GET_VALUES_RESULT: u8 = 10;
    pub const UNKNOWN_TYPE: u8 = 11;
}

/// FastCGI roles.
pub const RESPONDER: u16 = 1;
pub const AUTHORIZER: u16 = 2;
pub const FILTER: u16 = 3;

/// END_REQUEST protocolStatus values.
pub const REQUEST_COMPLETE: u8 = 0;
pub const CANT_MPX_CONN: u8 = 1;
pub const OVERLOADED: u8 = 2;
pub const UNKNOWN_ROLE: u8 = 3;

/// One record as read off the wire (padding dropped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub version: u8,
    pub kind: u8,
    pub id: u16,
    pub content: Vec<u8>,
}

/// Encodes one record, padded to a multiple of 8 as the spec recommends.
/// Panics if `content` is over 65535 bytes (use the stream helpers).
pub fn record(kind: u8, id: u16, content: &[u8]) -> Vec<u8> {
    let len = u16::try_from(content.len()).expect("record content at most 65535 bytes");
    let pad = (8 - content.len() % 8) % 8;
    let mut out = Vec::with_capacity(8 + content.len() + pad);
    out.extend_from_slice(&[1, kind]);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[pad as u8, 0]);
    out.extend_from_slice(content);
    out.resize(out.len() + pad, 0);
    out
}

/// Encodes a whole stream (PARAMS, STDIN, DATA): records of at most 65535
/// bytes, then the empty record that ends it when `end` is set.
pub fn stream_records(kind: u8, id: u16, bytes: &[u8], end: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in bytes.chunks(65535) {
        out.extend_from_slice(&record(kind, id, chunk));
    }
    if end {
        out.extend_from_slice(&record(kind, id, &[]));
    }
    out
}

/// The BEGIN_REQUEST body: role and the FCGI_KEEP_CONN flag.
pub fn begin_body(role: u16, keep_conn: bool) -> [u8; 8] {
    let r = role.to_be_bytes();
    [r[0], r[1], u8::from(keep_conn), 0, 0, 0, 0, 0]
}

/// Encodes name-value pairs (§3.4): 1-byte lengths below 128, else 4.
pub fn encode_pairs<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        let (k, v) = (k.as_ref(), v.as_ref());
        push_len(&mut out, k.len());
        push_len(&mut out, v.len());
        out.extend_from_slice(k);
        out.extend_from_slice(v);
    }
    out
}

fn push_len(out: &mut Vec<u8>, n: usize) {
    if n < 128 {
        out.push(n as u8);
    } else {
        let n = u32::try_from(n).expect("name-value length fits in 31 bits") | 0x8000_0000;
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Decodes name-value pairs; `None` on a malformed body.
pub fn decode_pairs(mut b: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let (kl, rest) = take_len(b)?;
        let (vl, rest) = take_len(rest)?;
        if rest.len() < kl + vl {
            return None;
        }
        out.push((rest[..kl].to_vec(), rest[kl..kl + vl].to_vec()));
        b = &rest[kl + vl..];
    }
    Some(out)
}

fn take_len(b: &[u8]) -> Option<(usize, &[u8])> {
    let first = *b.first()?;
    if first < 128 {
        return Some((usize::from(first), &b[1..]));
    }
    let four: [u8; 4] = b.get(..4)?.try_into().ok()?;
    Some(((u32::from_be_bytes(four) & 0x7fff_ffff) as usize, &b[4..]))
}

/// What one request got back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FcgiReply {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub app_status: u32,
    pub protocol_status: u8,
    /// Whether the STDOUT stream was closed by an empty record.
    pub stdout_closed: bool,
}

impl FcgiReply {
    /// The STDOUT stream parsed as a CGI response.
    pub fn response(&self) -> Response {
        parse_response(&self.stdout)
    }
}

/// Replies being collected, per request id.
#[derive(Default)]
struct Pending {
    reply: FcgiReply,
    ended: bool,
}

/// A raw FastCGI client connection.
pub struct FcgiConn {
    pub conn: Conn,
    buf: Vec<u8>,
    replies: HashMap<u16, Pending>,
    management: VecDeque<Record>,
    /// Every request id any record came back for.
    seen: BTreeSet<u16>,
    /// Bound on what one reply may hold before the test fails.
    pub reply_limit: usize,
}

impl FcgiConn {
    pub fn connect(spec: &str) -> FcgiConn {
        FcgiConn::over(Conn::connect(spec))
    }

    /// A FastCGI client on a connection made elsewhere (e.g. by
    /// [`Conn::try_connect`]).
    pub fn over(conn: Conn) -> FcgiConn {
        FcgiConn {
            conn,
            buf: Vec::new(),
            replies: HashMap::new(),
            management: VecDeque::new(),
            seen: BTreeSet::new(),
            reply_limit: 64 << 20,
        }
    }

    /// Writes raw bytes; panics on a write error.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.conn
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write {} bytes to fastgate: {e}", bytes.len()));
    }

    /// Writes raw bytes, returning the error (for peers that may have closed).
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.conn.write_all(bytes)
    }

    pub fn begin(&mut self, id: u16, role: u16, keep_conn: bool) {
        self.send_raw(&record(
            rec::BEGIN_REQUEST,
            id,
            &begin_body(role, keep_conn),
        ));
    }

    /// Sends every pair and the empty PARAMS record that ends the stream.
    pub fn params<K: AsRef<[u8]>, V: AsRef<[u8]>>(&mut self, id: u16, pairs: &[(K, V)]) {
        self.send_raw(&stream_records(rec::PARAMS, id, &encode_pairs(pairs), true));
    }

    /// Sends body bytes as STDIN records (nothing for an empty slice: an
    /// empty record would end the stream, which is [`FcgiConn::end_stdin`]).
    pub fn stdin(&mut self, id: u16, bytes: &[u8]) {
        self.send_raw(&stream_records(rec::STDIN, id, bytes, false));
    }

    pub fn end_stdin(&mut self, id: u16) {
        self.send_raw(&record(rec::STDIN, id, &[]));
    }

    pub fn data(&mut self, id: u16, bytes: &[u8]) {
        self.send_raw(&stream_records(rec::DATA, id, bytes, false));
    }

    pub fn end_data(&mut self, id: u16) {
        self.send_raw(&record(rec::DATA, id, &[]));
    }

    pub fn abort(&mut self, id: u16) {
        self.send_raw(&record(rec::ABORT_REQUEST, id, &[]));
    }

    /// Sends FCGI_GET_VALUES asking for `names`.
    pub fn get_values(&mut self, names: &[&str]) {
        let pairs: Vec<(&str, &str)> = names.iter().map(|n| (*n, "")).collect();
        self.send_raw(&record(rec::GET_VALUES, 0, &encode_pairs(&pairs)));
    }

    /// BEGIN_REQUEST, PARAMS, the whole body and the end of STDIN.
    pub fn request<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        id: u16,
        keep_conn: bool,
        params: &[(K, V)],
        body: &[u8],
    ) {
        let mut out = record(rec::BEGIN_REQUEST, id, &begin_body(RESPONDER, keep_conn));
        out.extend_from_slice(&stream_records(
            rec::PARAMS,
            id,
            &encode_pairs(params),
            true,
        ));
        out.extend_from_slice(&stream_records(rec::STDIN, id, body, true));
        self.send_raw(&out);
    }

    /// Reads one record; `Ok(None)` at EOF. The read timeout applies.
    pub fn read_record(&mut self) -> io::Result<Option<Record>> {
        loop {
            if let Some(r) = self.take_buffered() {
                return Ok(Some(r));
            }
            let mut chunk = [0u8; 65536];
            let n = self.conn.read(&mut chunk)?;
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("eof inside a record ({} bytes buffered)", self.buf.len()),
                    ))
                };
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn take_buffered(&mut self) -> Option<Record> {
        let b = &self.buf;
        if b.len() < 8 {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([b[4], b[5]]));
        let total = 8 + len + usize::from(b[6]);
        if b.len() < total {
            return None;
        }
        let r = Record {
            version: b[0],
            kind: b[1],
            id: u16::from_be_bytes([b[2], b[3]]),
            content: b[8..8 + len].to_vec(),
        };
        self.buf.drain(..total);
        Some(r)
    }

    /// Reads one record and files it: request streams by id, management
    /// records (id 0) in their own queue. `Err` on EOF, timeout or a record
    /// that breaks the spec.
    pub fn pump(&mut self) -> Result<(), String> {
        let r = match self.read_record() {
            Ok(Some(r)) => r,
            Ok(None) => return Err("connection closed by fastgate".into()),
            Err(e) => return Err(format!("read from fastgate: {e}")),
        };
        if r.version != 1 {
            return Err(format!("record with version {} from fastgate", r.version));
        }
        if r.id == 0 {
            self.management.push_back(r);
            return Ok(());
        }
        self.file(r)
    }

    fn file(&mut self, r: Record) -> Result<(), String> {
        let limit = self.reply_limit;
        self.seen.insert(r.id);
        let p = self.replies.entry(r.id).or_default();
        if p.ended {
            return Err(format!(
                "record type {} for id {} after its END_REQUEST",
                r.kind, r.id
            ));
        }
        match r.kind {
            rec::STDOUT if r.content.is_empty() => p.reply.stdout_closed = true,
            rec::STDOUT => p.reply.stdout.extend_from_slice(&r.content),
            rec::STDERR => p.reply.stderr.extend_from_slice(&r.content),
            rec::END_REQUEST if r.content.len() == 8 => {
                let c = &r.content;
                p.reply.app_status = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
                p.reply.protocol_status = c[4];
                p.ended = true;
            }
            k => {
                return Err(format!(
                    "unexpected record type {k} ({} bytes) for id {}",
                    r.content.len(),
                    r.id
                ))
            }
        }
        if p.reply.stdout.len() + p.reply.stderr.len() > limit {
            return Err(format!("reply to id {} past {limit} bytes", r.id));
        }
        Ok(())
    }

    /// Reads until `id` has its END_REQUEST (filing replies of other ids on
    /// the way), and returns its reply.
    pub fn try_read_until_end(&mut self, id: u16) -> Result<FcgiReply, String> {
        loop {
            if self.replies.get(&id).is_some_and(|p| p.ended) {
                // Invariant: just checked that the entry exists.
                return Ok(self.replies.remove(&id).expect("entry exists").reply);
            }
            self.pump()
                .map_err(|e| format!("waiting for END_REQUEST of id {id}: {e}"))?;
        }
    }

    /// As [`FcgiConn::try_read_until_end`], panicking on failure.
    pub fn read_until_end(&mut self, id: u16) -> FcgiReply {
        self.try_read_until_end(id)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Reads until every id in `ids` has ended; replies by id.
    pub fn read_all_until(&mut self, ids: &[u16]) -> HashMap<u16, FcgiReply> {
        ids.iter()
            .map(|&id| (id, self.read_until_end(id)))
            .collect()
    }

    /// Every request id a record came back for so far.
    pub fn ids_seen(&self) -> Vec<u16> {
        self.seen.iter().copied().collect()
    }

    /// The next management record (id 0), reading as needed.
    pub fn read_management(&mut self) -> Record {
        loop {
            if let Some(r) = self.management.pop_front() {
                return r;
            }
            self.pump()
                .unwrap_or_else(|e| panic!("waiting for a management record: {e}"));
        }
    }

    /// Whether anything arrives within `wait` (used to check that nothing
    /// is sent early). A record that arrives is filed as usual.
    pub fn anything_within(&mut self, wait: Duration) -> bool {
        if !self.buf.is_empty() {
            return true;
        }
        self.conn.set_timeout(wait);
        let mut chunk = [0u8; 65536];
        let got = match self.conn.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(_) => false,
        };
        self.conn.set_timeout(READ_TIMEOUT);
        got
    }

    /// Waits up to `timeout` for the server to close; bytes instead → Err.
    pub fn expect_closed(&mut self, timeout: Duration) -> Result<(), Vec<u8>> {
        if !self.buf.is_empty() {
            return Err(std::mem::take(&mut self.buf));
        }
        self.conn.expect_closed(timeout)
    }
}

/// One request on a fresh connection (id 1, keep-conn off): the reply.
pub fn fcgi_request(spec: &str, method: &str, uri: &str, body: &[u8]) -> FcgiReply {
    let mut c = FcgiConn::connect(spec);
    let params = nginx_params(method, uri, Some(body.len()));
    c.request(1, false, &params, body);
    c.read_until_end(1)
}

/// GET `uri` on a fresh connection and parse the response.
pub fn fcgi_get(spec: &str, uri: &str) -> Response {
    let reply = fcgi_request(spec, "GET", uri, b"");
    assert_eq!(
        reply.protocol_status, REQUEST_COMPLETE,
        "GET {uri}: protocol status"
    );
    reply.response()
}

/// The params nginx's stock `fastcgi_params` (plus `SCRIPT_FILENAME`)
/// sends for `METHOD URI`. `body_len` None: no body, so CONTENT_LENGTH is
/// empty, as nginx sends it.
pub fn nginx_params(method: &str, uri: &str, body_len: Option<usize>) -> Vec<(String, String)> {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let len = body_len.map(|n| n.to_string()).unwrap_or_default();
    let content_type = if body_len.is_some_and(|n| n > 0) {
        "application/octet-stream"
    } else {
        ""
    };
    [
        ("QUERY_STRING", query),
        ("REQUEST_METHOD", method),
        ("CONTENT_TYPE", content_type),
        ("CONTENT_LENGTH", &len),
        ("SCRIPT_NAME", path),
        ("REQUEST_URI", uri),
        ("DOCUMENT_URI", path),
        ("DOCUMENT_ROOT", "/var/www/html"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REQUEST_SCHEME", "http"),
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("SERVER_SOFTWARE", "nginx/1.24.0"),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("REMOTE_PORT", "51234"),
        ("SERVER_ADDR", "127.0.0.1"),
        ("SERVER_PORT", "80"),
        ("SERVER_NAME", "localhost"),
        ("REDIRECT_STATUS", "200"),
        ("SCRIPT_FILENAME", &format!("/var/www/html{path}")),
        ("HTTP_HOST", "localhost"),
        ("HTTP_USER_AGENT", "fastgate-tests"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Sets (or adds) param `name`; `None` removes it.
pub fn set_param(params: &mut Vec<(String, String)>, name: &str, value: Option<&str>) {
    params.retain(|(k, _)| k != name);
    if let Some(v) = value {
        params.push((name.to_string(), v.to_string()));
    }
}

// ---------------------------------------------------------------- SCGI

/// The SCGI request bytes: a netstring of NUL-separated headers with
/// CONTENT_LENGTH first and SCGI=1, then the body. `params` must not hold
/// CONTENT_LENGTH or SCGI (they are added here).
pub fn scgi_encode<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)], body: &[u8]) -> Vec<u8> {
    let mut headers = Vec::new();
    let len = body.len().to_string();
    let mut push = |k: &str, v: &str| {
        headers.extend_from_slice(k.as_bytes());
        headers.push(0);
        headers.extend_from_slice(v.as_bytes());
        headers.push(0);
    };
    push("CONTENT_LENGTH", &len);
    push("SCGI", "1");
    for (k, v) in params {
        let k = k.as_ref();
        if k != "CONTENT_LENGTH" && k != "SCGI" {
            push(k, v.as_ref());
        }
    }
    let mut out = format!("{}:", headers.len()).into_bytes();
    out.extend_from_slice(&headers);
    out.push(b',');
    out.extend_from_slice(body);
    out
}

/// Sends one SCGI request on a fresh connection and reads the raw response
/// to EOF (the server closes after each SCGI request).
pub fn scgi_request<K: AsRef<str>, V: AsRef<str>>(
    spec: &str,
    params: &[(K, V)],
    body: &[u8],
) -> Vec<u8> {
    scgi_raw(spec, &scgi_encode(params, body))
}

/// Sends raw bytes on a fresh connection and reads to EOF.
pub fn scgi_raw(spec: &str, bytes: &[u8]) -> Vec<u8> {
    let mut c = Conn::connect(spec);
    c.write_all(bytes)
        .unwrap_or_else(|e| panic!("write scgi request to {spec}: {e}"));
    c.read_to_eof(64 << 20)
        .unwrap_or_else(|e| panic!("read scgi response from {spec}: {e}"))
}

/// The params nginx's stock `scgi_params` sends for `METHOD URI`.
pub fn scgi_params(method: &str, uri: &str) -> Vec<(String, String)> {
    let mut p = nginx_params(method, uri, None);
    set_param(&mut p, "CONTENT_LENGTH", None);
    p
}

/// GET `uri` over SCGI and parse the response.
pub fn scgi_get(spec: &str, uri: &str) -> Response {
    parse_response(&scgi_request(spec, &scgi_params("GET", uri), b""))
}

// ---------------------------------------------------------------- responses

/// A CGI-style response split into its parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Splits a CGI response (`Status: 200 OK`, headers, blank line, body).
/// No `Status` header means 200 (CGI/1.1 §6.3.3). Panics, showing the
/// bytes, when there is no end of headers or a header line is malformed.
pub fn parse_response(raw: &[u8]) -> Response {
    let show = || String::from_utf8_lossy(&raw[..raw.len().min(512)]).into_owned();
    let (head, body) =
        split_head(raw).unwrap_or_else(|| panic!("no end of headers in response: {:?}", show()));
    let head =
        std::str::from_utf8(head).unwrap_or_else(|_| panic!("non-utf8 headers: {:?}", show()));
    let mut headers = Vec::new();
    for line in head.split('\n').map(|l| l.trim_end_matches('\r')) {
        if line.is_empty() {
            continue;
        }
        let (k, v) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("bad header line {line:?} in {:?}", show()));
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let status = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("status"))
        .map(|(_, v)| {
            v.split_whitespace()
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or_else(|| panic!("bad Status header {v:?}"))
        })
        .unwrap_or(200);
    Response {
        status,
        headers,
        body: body.to_vec(),
    }
}

fn split_head(raw: &[u8]) -> Option<(&[u8], &[u8])> {
    for (i, w) in raw.windows(2).enumerate() {
        if w == b"\n\n" {
            return Some((&raw[..i], &raw[i + 2..]));
        }
        if w == b"\n\r" && raw.get(i + 2) == Some(&b'\n') {
            return Some((&raw[..i], &raw[i + 3..]));
        }
    }
    None
}

/// Deterministic pseudo-random bytes (xorshift64) for bodies: each seed
/// gives a different, reproducible pattern.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Asserts two byte strings are equal without printing megabytes: names
/// the lengths and the first differing offset.
pub fn assert_bytes_eq(got: &[u8], want: &[u8], what: &str) {
    if got == want {
        return;
    }
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    panic!(
        "{what}: got {} bytes, want {}; first difference at offset {first}",
        got.len(),
        want.len()
    );
}

/// Checks a reply completed normally (REQUEST_COMPLETE, STDOUT closed by
/// its empty record) and returns its parsed response.
pub fn complete(reply: &FcgiReply, what: &str) -> Response {
    assert_eq!(
        reply.protocol_status,
        REQUEST_COMPLETE,
        "{what}: protocolStatus (stderr {:?})",
        String::from_utf8_lossy(&reply.stderr)
    );
    assert!(
        reply.stdout_closed,
        "{what}: STDOUT not ended by an empty record"
    );
    reply.response()
}

/// Mounts of every built-in app the tests use, as `--mount` args.
pub const ALL_APPS: &[&str] = &[
    "--mount",
    "/=hello",
    "--mount",
    "/echo=echo",
    "--mount",
    "/env=env",
    "--mount",
    "/sleep=sleep",
    "--mount",
    "/ping=ping",
];
