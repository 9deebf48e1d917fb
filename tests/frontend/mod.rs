//! What the front-server tests (`tests/nginx.rs`, `tests/haproxy.rs`,
//! `tests/caddy.rs`, `tests/h2o.rs`) share beyond `tests/common`: a small
//! HTTP/1.1 client over `std::net::TcpStream` (keep-alive, Content-Length and
//! chunked bodies both ways), a temporary directory, a free port, a
//! front-server process stopped by pid on drop (with every process it
//! started), the unprivileged user front servers run as on Debian
//! (`www-data`), and the checks of the built-in apps' answers.
//!
//! The client is ours rather than curl so the tests need no extra tool and
//! can send exactly what they mean (a chunked upload, 100 requests on one
//! connection), and so a failure names the byte that went wrong.

#![allow(dead_code)] // each test crate uses a different part of this module

use std::collections::HashMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// The largest response body the client accepts: bounded, so a runaway
/// server fails the test instead of filling memory.
const MAX_BODY: usize = 64 << 20;
/// How long one read or write may block before the test fails.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a front server gets to stop on SIGTERM before it and its
/// children are killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A request body and how it is framed on the wire.
pub enum Body<'a> {
    None,
    /// Sent with `Content-Length`.
    Fixed(&'a [u8]),
    /// Sent with `Transfer-Encoding: chunked`, in chunks of at most this size.
    Chunked(&'a [u8], usize),
    /// Chunked, with a pause after each chunk: the front server sees the body
    /// arrive over time rather than whole with the head.
    ChunkedPaused(&'a [u8], usize, Duration),
}

/// One HTTP response as the client read it.
#[derive(Debug)]
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
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text, for messages and line checks.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A keep-alive HTTP/1.1 connection to 127.0.0.1:port.
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    pub fn connect(port: u16) -> io::Result<Client> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let writer = stream.try_clone()?;
        Ok(Client {
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// `GET path`.
    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        self.request("GET", path, &[], Body::None)
    }

    /// `POST path` with `body` sent with a Content-Length.
    pub fn post(&mut self, path: &str, body: &[u8]) -> io::Result<Response> {
        let headers = [("Content-Type", "application/octet-stream")];
        self.request("POST", path, &headers, Body::Fixed(body))
    }

    /// Sends one request and reads its response; the connection stays open
    /// for the next one unless the server said otherwise.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
    ) -> io::Result<Response> {
        self.send_head(method, path, headers, &body)?;
        self.send_body(&body)?;
        self.writer.flush()?;
        read_response(&mut self.reader, method == "HEAD")
    }

    fn send_head(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &Body<'_>,
    ) -> io::Result<()> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        match body {
            Body::None => {}
            Body::Fixed(b) => head.push_str(&format!("Content-Length: {}\r\n", b.len())),
            Body::Chunked(..) | Body::ChunkedPaused(..) => {
                head.push_str("Transfer-Encoding: chunked\r\n")
            }
        }
        head.push_str("\r\n");
        self.writer.write_all(head.as_bytes())
    }

    fn send_body(&mut self, body: &Body<'_>) -> io::Result<()> {
        match body {
            Body::None => Ok(()),
            Body::Fixed(b) => self.writer.write_all(b),
            Body::Chunked(b, size) => self.send_chunked(b, *size, Duration::ZERO),
            Body::ChunkedPaused(b, size, pause) => self.send_chunked(b, *size, *pause),
        }
    }

    fn send_chunked(&mut self, body: &[u8], size: usize, pause: Duration) -> io::Result<()> {
        for chunk in body.chunks(size.max(1)) {
            let head = format!("{:x}\r\n", chunk.len());
            self.writer.write_all(head.as_bytes())?;
            self.writer.write_all(chunk)?;
            self.writer.write_all(b"\r\n")?;
            if !pause.is_zero() {
                self.writer.flush()?;
                thread::sleep(pause);
            }
        }
        self.writer.write_all(b"0\r\n\r\n")
    }
}

fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// One CRLF-terminated line, without the CRLF; bounded in length.
fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    r.take(16 * 1024).read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\n") {
        return Err(bad(format!(
            "unterminated line {:?}",
            String::from_utf8_lossy(&line)
        )));
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|e| bad(format!("non-utf8 line: {e}")))
}

fn read_response(r: &mut impl BufRead, head_only: bool) -> io::Result<Response> {
    let status_line = read_line(r)?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let headers = read_headers(r)?;
    let mut resp = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if head_only || status / 100 == 1 || status == 204 || status == 304 {
        return Ok(resp);
    }
    resp.body = read_body(r, &resp)?;
    Ok(resp)
}

fn read_headers(r: &mut impl BufRead) -> io::Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            return Ok(headers);
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header line {line:?}")))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
        if headers.len() > 200 {
            return Err(bad("more than 200 response headers"));
        }
    }
}

fn read_body(r: &mut impl BufRead, resp: &Response) -> io::Result<Vec<u8>> {
    let chunked = resp
        .header("Transfer-Encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    if chunked {
        return read_chunked(r);
    }
    match resp.header("Content-Length") {
        Some(v) => {
            let len: usize = v
                .parse()
                .map_err(|_| bad(format!("content-length {v:?}")))?;
            if len > MAX_BODY {
                return Err(bad(format!("content-length {len} past the test bound")));
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body)?;
            Ok(body)
        }
        None => {
            let mut body = Vec::new();
            r.take(MAX_BODY as u64 + 1).read_to_end(&mut body)?;
            Ok(body)
        }
    }
}

fn read_chunked(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(r)?;
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| bad(format!("bad chunk size line {line:?}")))?;
        if size == 0 {
            // Trailers, if any, end with an empty line.
            while !read_line(r)?.is_empty() {}
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(bad("chunked body past the test bound"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        if !read_line(r)?.is_empty() {
            return Err(bad("chunk not followed by CRLF"));
        }
    }
}

/// A directory removed on drop, unless the test failed (then it is kept and
/// named, so its logs can be read).
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "fastgate-{tag}-{}-{n}-{}",
            std::process::id(),
            unix_millis()
        ));
        fs::create_dir_all(&path).expect("create a test temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("test files kept in {}", self.0.display());
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

fn unix_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// A port that was free a moment ago. The front server binds it next; if
/// another process won the race the server fails to start and says so.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// A front server (nginx, haproxy, caddy, h2o) running in the foreground,
/// stopped by pid when dropped, together with every process it started
/// (nginx's workers). Its output goes to `log`, printed when the test fails.
pub struct FrontProcess {
    name: String,
    child: Child,
    log: PathBuf,
}

impl FrontProcess {
    /// Starts `program args`, then waits (at most 10 s) until `port` accepts
    /// connections. Panics with the server's own log if it exits or never
    /// listens.
    pub fn start(program: &str, args: &[&str], log: PathBuf, port: u16) -> FrontProcess {
        let mut cmd = Command::new(program);
        cmd.args(args);
        FrontProcess::start_command(cmd, log, port)
    }

    /// As [`FrontProcess::start`], for a command the caller prepared (its
    /// user, environment, working directory).
    pub fn start_command(mut cmd: Command, log: PathBuf, port: u16) -> FrontProcess {
        let name = cmd.get_program().to_string_lossy().into_owned();
        // Append mode: nginx writes its error_log to the same file itself.
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("create the front server log");
        let err = out.try_clone().expect("clone log handle");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let mut proc = FrontProcess { name, child, log };
        proc.wait_listening(port);
        proc
    }

    fn wait_listening(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited at start ({status}):\n{}",
                    self.name,
                    self.log_text()
                );
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "{} never listened on port {port}:\n{}",
            self.name,
            self.log_text()
        );
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's own output so far (and, for nginx, its error log when
    /// it is pointed at the same file).
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The processes this one started (and those they started), e.g. nginx's
    /// workers, waiting up to 10 s for at least `at_least` of them.
    pub fn descendants(&self, at_least: usize) -> Vec<u32> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = descendants(self.pid());
            if found.len() >= at_least || Instant::now() > deadline {
                return found;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops this process and everything it started, by pid. First SIGTERM:
    /// nginx's master, haproxy, caddy and h2o then stop their own children
    /// and reap them (a child killed from here, once its parent is gone, is
    /// left a zombie where pid 1 does not reap). If it is still running
    /// after [`STOP_TIMEOUT`], SIGKILL for it and each process below it; it
    /// is stopped (SIGSTOP) first, so it neither respawns a killed worker
    /// nor reaps one, and the pids listed stay its own until it dies.
    fn stop_tree(&mut self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        let pid = Pid::from_raw(i32::try_from(self.pid()).expect("pid fits in i32"));
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = kill(pid, Signal::SIGSTOP);
        for child in descendants(self.pid()) {
            if let Ok(child) = i32::try_from(child) {
                let _ = kill(Pid::from_raw(child), Signal::SIGKILL);
            }
        }
        // Child::kill sends SIGKILL to this pid only: the process we started.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for FrontProcess {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("--- {} log ---\n{}", self.name, self.log_text());
        }
        self.stop_tree();
    }
}

/// Every process below `root` in the process tree, read from /proc.
fn descendants(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (pid, ppid) in process_parents() {
        children.entry(ppid).or_default().push(pid);
    }
    let mut found = Vec::new();
    let mut next = vec![root];
    // The tree is finite and a pid has one parent: this ends.
    while let Some(pid) = next.pop() {
        let below = children.remove(&pid).unwrap_or_default();
        found.extend_from_slice(&below);
        next.extend(below);
    }
    found
}

/// (pid, parent pid) of every process, from /proc/PID/stat.
fn process_parents() -> Vec<(u32, u32)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // "PID (COMM) STATE PPID ...": COMM may hold spaces and parens.
            let rest = &stat[stat.rfind(')')? + 1..];
            let ppid = rest.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect()
}

/// The real uid of process `pid` (the first field of `Uid:` in
/// /proc/PID/status), `None` once it is gone.
pub fn uid_of(pid: u32) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// Waits (up to 10 s) for process `pid` to run as `uid` (a server that
/// binds as root and then switches); returns the last uid seen.
pub fn wait_uid(pid: u32, uid: u32) -> Option<u32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = uid_of(pid);
        if seen == Some(uid) || Instant::now() > deadline {
            return seen;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------- www-data

/// The user Debian's front servers run as (nginx's workers, Apache; the
/// deploy snippets name it).
pub const FRONT_USER: &str = "www-data";

/// `--socket-owner` as the deploy snippets give it.
pub const SOCKET_OWNER: &str = "www-data:www-data";

/// [`FRONT_USER`]'s uid and gid when the tests can run a front server as
/// it: they run as root and the user exists. Otherwise `None`, after a loud
/// note: the front server then runs as the current user, and the socket
/// needs no owner.
pub fn front_user() -> Option<(u32, u32)> {
    let found = switchable_front_user();
    if let Err(why) = &found {
        eprintln!("NOTE: {why}: front servers run as the current user, not {FRONT_USER}");
    }
    found.ok()
}

/// As [`front_user`], for a test whose point is the user switch: without
/// it the test is SKIPPED loudly (the caller returns), and under `CI=true`
/// it fails, as a missing tool does.
pub fn require_front_user() -> Option<(u32, u32)> {
    match switchable_front_user() {
        Ok(ids) => Some(ids),
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{why}, and CI=true requires running front servers as {FRONT_USER}")
        }
        Err(why) => {
            eprintln!("SKIPPED: {why}: cannot run a front server as {FRONT_USER}");
            None
        }
    }
}

fn switchable_front_user() -> Result<(u32, u32), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("the tests do not run as root".into());
    }
    match nix::unistd::User::from_name(FRONT_USER) {
        Ok(Some(u)) => Ok((u.uid.as_raw(), u.gid.as_raw())),
        _ => Err(format!("no user {FRONT_USER}")),
    }
}

/// The `--socket-owner` arguments a fastgate behind a front server run as
/// [`FRONT_USER`] needs (none when the front server runs as the current
/// user).
pub fn socket_owner_args() -> Vec<&'static str> {
    match front_user() {
        Some(_) => vec!["--socket-owner", SOCKET_OWNER],
        None => Vec::new(),
    }
}

/// `fastgate serve` arguments for the front-server tests: a Unix socket in
/// the server's dir that the front server's user may use, and hello, echo
/// and env mounted (`/nope` left unmounted).
pub fn socket_app_args() -> Vec<&'static str> {
    let mut args = vec!["--listen", "{dir}/fg.sock"];
    args.extend(socket_owner_args());
    args.extend([
        "--mount",
        "/hello=hello",
        "--mount",
        "/echo=echo",
        "--mount",
        "/env=env",
    ]);
    args
}

/// Hands `dir` to `uid`:`gid`, for a front server that writes its pid file,
/// logs or state there after switching to that user.
pub fn give_dir(dir: &Path, uid: u32, gid: u32) {
    use nix::unistd::{chown, Gid, Uid};
    chown(dir, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
        .unwrap_or_else(|e| panic!("chown {} to {uid}:{gid}: {e}", dir.display()));
}

// ---------------------------------------------------------------- answers

/// `text` with `from` replaced by `to`; `from` must occur exactly once, so an
/// edit of a deploy snippet cannot silently leave a test checking something
/// else.
pub fn replace_once(text: &str, from: &str, to: &str) -> String {
    let count = text.matches(from).count();
    assert_eq!(
        count, 1,
        "{from:?} should occur once in the snippet, found {count}"
    );
    text.replacen(from, to, 1)
}

/// An echo answer: 200 and the body sent, byte for byte.
pub fn assert_echo(resp: &Response, sent: &[u8]) {
    assert_eq!(resp.status, 200, "echo status; body: {}", resp.text());
    assert!(
        resp.body == sent,
        "echo body differs: {}",
        first_difference(&resp.body, sent)
    );
}

/// The `hello` app's answer.
pub fn assert_hello(resp: &Response) {
    assert_eq!(resp.status, 200, "hello status; body: {}", resp.text());
    assert_eq!(resp.body, b"Hello, world!\n");
    let ctype = resp.header("Content-Type").unwrap_or("");
    assert!(
        ctype.starts_with("text/plain"),
        "hello Content-Type {ctype:?}"
    );
}

/// The `env` app's lines as (name, value).
/// GETs `uri` (an `env` mount, with a query) sending `X-Test: yes`, checks
/// the params every front server sends alike, and returns them all.
pub fn common_env(client: &mut Client, uri: &str) -> Vec<(String, String)> {
    let headers = [("X-Test", "yes")];
    let resp = client
        .request("GET", uri, &headers, Body::None)
        .unwrap_or_else(|e| panic!("GET {uri}: {e}"));
    let env = env_lines(&resp);
    let query = uri.split_once('?').map_or("", |(_, q)| q);
    assert_env(&env, "REQUEST_METHOD", "GET");
    assert_env(&env, "REQUEST_URI", uri);
    assert_env(&env, "QUERY_STRING", query);
    assert_env(&env, "SERVER_PROTOCOL", "HTTP/1.1");
    assert_env(&env, "REMOTE_ADDR", "127.0.0.1");
    assert_env(&env, "HTTP_X_TEST", "yes");
    env
}

pub fn env_lines(resp: &Response) -> Vec<(String, String)> {
    assert_eq!(resp.status, 200, "env status; body: {}", resp.text());
    resp.text()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

pub fn env_value<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

pub fn assert_env(env: &[(String, String)], name: &str, want: &str) {
    assert_eq!(env_value(env, name), Some(want), "{name} in env: {env:?}");
}

/// `n` bytes that are not a repetition of a short pattern, so a dropped,
/// duplicated or reordered block of the echoed body is caught.
pub fn pattern(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            // xorshift32: cheap, and no period a body this size could hit.
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// Where two byte strings first differ, for a message that says more than
/// "not equal" about five megabytes.
pub fn first_difference(a: &[u8], b: &[u8]) -> String {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => format!(
            "first difference at byte {i} (lengths {} and {})",
            a.len(),
            b.len()
        ),
        None => format!("lengths {} and {}", a.len(), b.len()),
    }
}

/// Connections to TCP port `port` on this machine, by state, read from
/// /proc/net/tcp: (established, time_wait). Used to prove upstream
/// keep-alive: reused connections stay established and none are closed.
pub fn tcp_states(port: u16) -> (usize, usize) {
    let table = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let port_hex = format!("{port:04X}");
    let (mut established, mut time_wait) = (0, 0);
    for line in table.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 4 {
            continue;
        }
        let on_port = |addr: &str| addr.rsplit(':').next() == Some(port_hex.as_str());
        let (local, remote) = (on_port(cols[1]), on_port(cols[2]));
        match cols[3] {
            // Counted from the client side (peer = port): once per connection.
            "01" if remote => established += 1,
            // A closed connection waits on the side that closed first.
            "06" if local || remote => time_wait += 1,
            _ => {}
        }
    }
    (established, time_wait)
}
