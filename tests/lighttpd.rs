//! A real lighttpd starting fastgate itself (mod_fastcgi `bin-path`), with
//! `deploy/lighttpd/fastgate.conf` as shipped but for the socket path, the
//! binary's path, the mounts and `max-procs`.
//!
//! What lighttpd 1.4 does, as seen here: it binds `socket` + "-N" for each
//! of `max-procs` copies and starts each copy with that socket on fd 0 (and
//! no `--listen`), after dropping to `server.username`, so the copies run
//! as that user and the socket's directory must be theirs to write. It
//! stops them with TERM when it stops, starts again a copy that died, and
//! removes the sockets. As root the test runs it the Debian way,
//! `server.username = "www-data"` (checked: the copies run as www-data);
//! not as root, those lines are left out and everything runs as the
//! current user.
//!
//! `deploy/lighttpd/fastgate-socket.conf` (mod_fastcgi) and
//! `fastgate-scgi.conf` (mod_scgi) connect to a fastgate the test starts,
//! which gives its socket to www-data with `--socket-owner`. Every
//! configuration passes `lighttpd -tt` first.

mod common;
mod frontend;

use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::Duration;

use common::{bin, clean_env, eventually, fcgi_get, require_tool};
use frontend::{
    assert_echo, assert_env, assert_hello, common_env, env_value, pattern, replace_once, Client,
    FrontProcess, TempDir,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const CONF: &str = include_str!("../deploy/lighttpd/fastgate.conf");
const SOCKET_CONF: &str = include_str!("../deploy/lighttpd/fastgate-socket.conf");
const SCGI_CONF: &str = include_str!("../deploy/lighttpd/fastgate-scgi.conf");
/// The socket the snippets for a running fastgate connect to.
const RUNNING_SOCKET: &str = "\"/run/fastgate.sock\"";
/// What the test replaces in the shipped file (each occurs once).
const SNIPPET_SOCKET: &str = "\"/run/lighttpd/fastgate.sock\"";
const SNIPPET_BIN: &str = "\"/usr/local/bin/fastgate serve\"";
const SNIPPET_MOUNT: &str = "\"/=hello,/status=status\"";
const SNIPPET_PROCS: &str = "\"max-procs\" => 1,";
/// The mounts the tests use.
const MOUNTS: &str = "/hello=hello,/echo=echo,/env=env,/status=status,/sleep=sleep";

/// A running lighttpd with fastgate behind it.
struct Lighttpd {
    // Field order: the process goes before the dir holding its files.
    proc: Option<FrontProcess>,
    port: u16,
    dir: TempDir,
}

impl Lighttpd {
    /// lighttpd with the shipped snippet, starting `procs` copies.
    fn start(procs: usize) -> Lighttpd {
        Lighttpd::start_with(procs, "")
    }

    /// As [`Lighttpd::start`], with `args` after `serve` on bin-path.
    fn start_with(procs: usize, args: &str) -> Lighttpd {
        let dir = TempDir::new("lighttpd");
        let site = snippet(dir.path(), procs, args);
        Lighttpd::start_site(dir, &site)
    }

    /// lighttpd in `dir` with `site` (a rendered snippet) included, after
    /// `lighttpd -tt` accepted the whole configuration.
    fn start_site(dir: TempDir, site: &str) -> Lighttpd {
        let port = frontend::free_port();
        let user = frontend::front_user();
        let conf = dir.path().join("lighttpd.conf");
        let log = dir.path().join("lighttpd.log");
        std::fs::write(&conf, main_conf(dir.path(), port, &log, user.is_some()))
            .expect("write lighttpd.conf");
        std::fs::write(dir.path().join("fastgate.conf"), site).expect("write fastgate.conf");
        if let Some((uid, gid)) = user {
            // The copies, run as www-data, have their sockets made here,
            // and lighttpd opens its error log once it is www-data.
            std::fs::write(&log, "").expect("create lighttpd.log");
            frontend::give_dir(&log, uid, gid);
            frontend::give_dir(dir.path(), uid, gid);
        }
        let lighttpd = common::find_on_path("lighttpd").expect("lighttpd on PATH");
        let check = Command::new(&lighttpd)
            .arg("-tt")
            .arg("-f")
            .arg(&conf)
            .output()
            .expect("run lighttpd -tt");
        assert!(
            check.status.success(),
            "lighttpd -tt: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let mut cmd = Command::new(lighttpd);
        cmd.arg("-D").arg("-f").arg(&conf);
        // lighttpd hands its environment to the copies: no stray
        // FASTGATE_* option, and info logs for the `listening on` lines.
        clean_env(&mut cmd);
        let proc = FrontProcess::start_command(cmd, log, port);
        Lighttpd {
            proc: Some(proc),
            port,
            dir,
        }
    }

    fn client(&self) -> Client {
        Client::connect(self.port).expect("connect to lighttpd")
    }

    fn proc(&self) -> &FrontProcess {
        self.proc.as_ref().expect("lighttpd is running")
    }

    /// The fastgate copies lighttpd started, waiting (10 s) for `n`.
    fn copies(&self, n: usize) -> Vec<u32> {
        let mut found = Vec::new();
        eventually(Duration::from_secs(10), || {
            found = self
                .proc()
                .descendants(n)
                .into_iter()
                .filter(|&p| is_live_fastgate(p))
                .collect();
            found.len() >= n
        });
        found.sort_unstable();
        found
    }

    /// Each copy's log says it serves its socket (they log after fd 0 is
    /// taken and before their loop runs): wait for it, so that a request
    /// does not find a copy still starting.
    fn wait_listening(&self, procs: usize) {
        let served = eventually(Duration::from_secs(10), || {
            let log = self.proc().log_text();
            (0..procs).all(|i| log.contains(&format!("listening on {}", self.socket(i))))
        });
        assert!(served, "copies not listening:\n{}", self.proc().log_text());
    }

    /// The socket of copy `i`, as lighttpd names it.
    fn socket(&self, i: usize) -> String {
        format!("{}/fastgate.sock-{i}", self.dir.path().display())
    }

    /// Stops lighttpd (TERM, as FrontProcess does) and returns its log.
    /// Stops lighttpd; the log once `until` holds for it (the copies it
    /// started may log their stop after lighttpd itself has exited), or
    /// as it is after 10 s.
    fn stop_until(&mut self, until: impl Fn(&str) -> bool) -> String {
        let proc = self.proc.take().expect("running");
        drop(proc);
        let path = self.dir.path().join("lighttpd.log");
        let read = || std::fs::read_to_string(&path).unwrap_or_default();
        eventually(Duration::from_secs(10), || until(&read()));
        read()
    }
}

/// A minimal lighttpd.conf (what Debian's has, reduced) that includes the
/// snippet.
fn main_conf(dir: &Path, port: u16, log: &Path, as_user: bool) -> String {
    let mut conf = format!(
        "server.document-root = \"{d}\"\n\
         server.bind = \"127.0.0.1\"\n\
         server.port = {port}\n\
         server.errorlog = \"{log}\"\n\
         include \"fastgate.conf\"\n",
        d = dir.display(),
        log = log.display(),
    );
    if as_user {
        conf.push_str(&format!(
            "server.username = \"{u}\"\nserver.groupname = \"{u}\"\n",
            u = frontend::FRONT_USER
        ));
    }
    conf
}

/// The shipped snippet with this test's paths, mounts and copies.
fn snippet(dir: &Path, procs: usize, args: &str) -> String {
    let sock = format!("\"{}/fastgate.sock\"", dir.display());
    let conf = replace_once(CONF, SNIPPET_SOCKET, &sock);
    let bin_path = format!("\"{} serve{args}\"", bin());
    let conf = replace_once(&conf, SNIPPET_BIN, &bin_path);
    let conf = replace_once(&conf, SNIPPET_MOUNT, &format!("\"{MOUNTS}\""));
    replace_once(&conf, SNIPPET_PROCS, &format!("\"max-procs\" => {procs},"))
}

/// Whether `pid` is a fastgate still running (not a zombie lighttpd has
/// yet to reap).
fn is_live_fastgate(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // "PID (COMM) STATE ...".
    let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
    comm(pid).as_deref() == Some("fastgate") && state != Some(Some('Z'))
}

/// The command name of process `pid`.
fn comm(pid: u32) -> Option<String> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(comm.trim_end().to_string())
}

/// The path of the Unix socket on fd 0 of `pid`, and whether it listens,
/// from /proc/PID/fd/0 and /proc/net/unix.
fn fd0_socket(pid: u32) -> Option<(String, bool)> {
    let link = std::fs::read_link(format!("/proc/{pid}/fd/0")).ok()?;
    let link = link.to_string_lossy();
    let inode = link
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .to_string();
    let table = std::fs::read_to_string("/proc/net/unix").ok()?;
    table.lines().skip(1).find_map(|line| {
        // Num RefCount Protocol Flags Type St Inode Path
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.get(6) != Some(&inode.as_str()) {
            return None;
        }
        let listening = cols.get(3).is_some_and(|f| f.ends_with("10000"));
        Some((cols.get(7)?.to_string(), listening))
    })
}

/// The `status` app's JSON, straight from one copy's socket.
fn copy_status(socket: &str) -> serde_json::Value {
    let resp = fcgi_get(&format!("fastcgi:{socket}"), "/status?json");
    assert_eq!(resp.status, 200, "status of {socket}");
    serde_json::from_slice(&resp.body).expect("status JSON")
}

/// One copy: hello, a 1 MB echo, the params lighttpd sends, a 404 from
/// fastgate; the copy serves the socket on its fd 0, as www-data when the
/// test is root.
#[test]
fn one_copy_serves_through_lighttpd() {
    if !require_tool("lighttpd") {
        return;
    }
    let lighttpd = Lighttpd::start(1);
    lighttpd.wait_listening(1);
    let mut client = lighttpd.client();

    assert_hello(&client.get("/hello").expect("GET /hello"));
    let body = pattern(1_000_000, 3);
    assert_echo(&client.post("/echo", &body).expect("POST /echo"), &body);
    let resp = client.get("/nope").expect("GET /nope");
    assert_eq!(resp.status, 404, "unmounted; body {}", resp.text());

    let env = common_env(&mut client, "/env/sub?x=1");
    assert_env(&env, "GATEWAY_INTERFACE", "CGI/1.1");
    let software = env_value(&env, "SERVER_SOFTWARE").unwrap_or("");
    assert!(
        software.starts_with("lighttpd/"),
        "SERVER_SOFTWARE {software:?}"
    );

    let copies = lighttpd.copies(1);
    assert_eq!(copies.len(), 1, "max-procs 1: copies {copies:?}");
    let (path, listening) = fd0_socket(copies[0]).expect("a Unix socket on fd 0");
    assert_eq!(path, lighttpd.socket(0));
    assert!(listening, "fd 0 of the copy is a listening socket");
    if let Some((uid, _)) = frontend::front_user() {
        assert_eq!(frontend::uid_of(copies[0]), Some(uid), "the copy's user");
    }
}

/// Two copies, each with its own socket on fd 0; with one copy busy,
/// lighttpd sends the next requests to the other, so both serve; when
/// lighttpd stops, both stop gracefully.
#[test]
fn two_copies_each_serve_their_own_socket() {
    if !require_tool("lighttpd") {
        return;
    }
    let mut lighttpd = Lighttpd::start(2);
    lighttpd.wait_listening(2);
    let copies = lighttpd.copies(2);
    assert_eq!(copies.len(), 2, "max-procs 2: copies {copies:?}");
    let mut sockets: Vec<String> = copies
        .iter()
        .map(|&p| fd0_socket(p).expect("a socket on fd 0").0)
        .collect();
    sockets.sort();
    assert_eq!(sockets, [lighttpd.socket(0), lighttpd.socket(1)]);
    // Each socket is served by the copy that holds it.
    for (i, socket) in sockets.iter().enumerate() {
        let pid = copy_status(socket)["pid"].as_u64().expect("pid");
        let holder = copies
            .iter()
            .find(|&&p| fd0_socket(p).unwrap().0 == *socket);
        assert_eq!(Some(pid), holder.map(|&p| u64::from(p)), "socket {i}");
    }

    let port = lighttpd.port;
    let sleeper = thread::spawn(move || {
        let mut c = Client::connect(port).expect("connect");
        c.get("/sleep?ms=2000").expect("GET /sleep")
    });
    thread::sleep(Duration::from_millis(500));
    let mut client = lighttpd.client();
    for _ in 0..10 {
        assert_hello(&client.get("/hello").expect("GET /hello"));
    }
    let slept = sleeper.join().expect("sleeper");
    assert_eq!(slept.status, 200, "{}", slept.text());
    let served: Vec<u64> = sockets
        .iter()
        .map(|s| copy_status(s)["requests"].as_u64().expect("requests"))
        .collect();
    // The two direct status requests above, the sleep and ten hellos.
    assert!(
        served.iter().sum::<u64>() >= 13,
        "requests per copy {served:?}"
    );
    assert!(
        served.iter().all(|&n| n >= 2),
        "each copy served a request through lighttpd: {served:?}"
    );

    let stopped = |log: &str| {
        copies
            .iter()
            .all(|pid| log.contains(&format!("fastgate[{pid}]: INFO stopped")))
    };
    let log = lighttpd.stop_until(stopped);
    for pid in &copies {
        let stopped = format!("fastgate[{pid}]: INFO stopped");
        assert!(log.contains(&stopped), "no {stopped:?} in:\n{log}");
    }
    for &pid in &copies {
        let gone = eventually(Duration::from_secs(10), || comm(pid).is_none());
        assert!(gone, "copy {pid} still running after lighttpd stopped");
    }
}

/// A copy killed outright is started again by lighttpd, on the same
/// socket, and the requests go on.
#[test]
fn a_copy_that_dies_is_started_again() {
    if !require_tool("lighttpd") {
        return;
    }
    let lighttpd = Lighttpd::start(1);
    lighttpd.wait_listening(1);
    let old = lighttpd.copies(1)[0];
    let pid = Pid::from_raw(i32::try_from(old).expect("pid fits in i32"));
    kill(pid, Signal::SIGKILL).expect("kill the copy");
    let answered = eventually(Duration::from_secs(10), || {
        lighttpd
            .client()
            .get("/hello")
            .is_ok_and(|r| r.status == 200)
    });
    assert!(answered, "no answer after the copy died");
    let now = lighttpd.copies(1);
    assert_eq!(now.len(), 1, "copies {now:?}");
    assert_ne!(now[0], old, "a new copy");
    assert_eq!(fd0_socket(now[0]).map(|s| s.0), Some(lighttpd.socket(0)));
}

/// `max-procs = 1` with `--processes 2` on bin-path: the copy lighttpd
/// starts is a master, its two children serve the socket on its fd 0.
#[test]
fn one_copy_may_prefork_on_its_socket() {
    if !require_tool("lighttpd") {
        return;
    }
    let mut lighttpd = Lighttpd::start_with(1, " --processes 2");
    let mut client = lighttpd.client();
    for _ in 0..10 {
        assert_hello(&client.get("/hello").expect("GET /hello"));
    }
    let status = client.get("/status?json").expect("GET /status");
    let page: serde_json::Value = serde_json::from_slice(&status.body).expect("JSON");
    assert_eq!(page["processes"], 2, "{page}");
    let master = lighttpd.copies(1)[0];
    let stopped = |log: &str| {
        log.contains(&format!(
            "fastgate[{master}]: INFO master {master}: stopped"
        ))
    };
    let log = lighttpd.stop_until(stopped);
    assert!(
        stopped(&log),
        "the master did not stop with lighttpd:\n{log}"
    );
}

/// lighttpd with `conf` (a snippet for a fastgate it does not start)
/// pointed at a fastgate serving the front-server test apps; the answers
/// every front server gives, and the params.
fn serve_through(conf: &str) -> Vec<(String, String)> {
    let server = common::Server::start(&frontend::socket_app_args());
    let dir = TempDir::new("lighttpd");
    let sock = format!("\"{}\"", server.unix_path(0).display());
    let lighttpd = Lighttpd::start_site(dir, &replace_once(conf, RUNNING_SOCKET, &sock));
    if let Some((uid, _)) = frontend::front_user() {
        // lighttpd itself connects, as server.username: the socket's owner.
        let seen = frontend::wait_uid(lighttpd.proc().pid(), uid);
        assert_eq!(seen, Some(uid), "lighttpd runs as {seen:?}");
    }
    let mut client = lighttpd.client();
    assert_hello(&client.get("/hello").expect("GET /hello"));
    let body = pattern(1_000_000, 4);
    assert_echo(&client.post("/echo", &body).expect("POST /echo"), &body);
    let resp = client.get("/nope").expect("GET /nope");
    assert_eq!(resp.status, 404, "unmounted; body {}", resp.text());
    let env = common_env(&mut client, "/env?y=2");
    let software = env_value(&env, "SERVER_SOFTWARE").unwrap_or("");
    assert!(software.starts_with("lighttpd/"), "{software:?}");
    env
}

#[test]
fn fastcgi_to_a_socket_fastgate_listens_on() {
    if !require_tool("lighttpd") {
        return;
    }
    let env = serve_through(SOCKET_CONF);
    assert_env(&env, "GATEWAY_INTERFACE", "CGI/1.1");
}

#[test]
fn scgi_to_a_socket_fastgate_listens_on() {
    if !require_tool("lighttpd") {
        return;
    }
    let env = serve_through(SCGI_CONF);
    assert_env(&env, "SCGI", "1");
}
