//! The `cgi` app through the real binary over a real socket: shell scripts
//! written into a temp dir (mode 755) and run as fcgiwrap runs them. The
//! tests run as root, so most pass `--cgi-allow-root`; one checks that
//! without it (or `--user`) the app refuses to start.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::{
    eventually, nginx_params, run_serve_to_exit, set_param, FcgiConn, FcgiReply, Server, TempDir,
};

/// A script `name` in `root`: `#!/bin/sh` and `body`, mode 755.
fn script(root: &TempDir, name: &str, body: &str) -> String {
    let path = root.join(name);
    fs::write(&path, format!("#!/bin/sh\n{body}")).expect("write script");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod script");
    path
}

/// fastgate serving `root` as the cgi app, on a Unix socket.
fn start(root: &TempDir, extra: &[&str]) -> Server {
    let mut args = vec![
        "--listen",
        "fastcgi:{dir}/cgi.sock",
        "--mount",
        "/=cgi",
        "--cgi-root",
        root.path().to_str().expect("utf-8 temp dir"),
        "--cgi-allow-root",
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// nginx's params for `METHOD /NAME`, pointing at `root/NAME`.
fn params(root: &TempDir, method: &str, uri: &str, body: usize) -> Vec<(String, String)> {
    let mut p = nginx_params(method, uri, Some(body));
    let path = uri.split('?').next().unwrap_or(uri);
    let root = root.path().to_str().expect("utf-8 temp dir");
    set_param(&mut p, "DOCUMENT_ROOT", Some(root));
    set_param(&mut p, "SCRIPT_FILENAME", Some(&format!("{root}{path}")));
    p
}

fn send(server: &Server, params: &[(String, String)], body: &[u8]) -> FcgiReply {
    let mut c = FcgiConn::connect(&server.spec(0));
    c.request(1, false, params, body);
    c.read_until_end(1)
}

fn post(server: &Server, root: &TempDir, uri: &str, body: &[u8]) -> FcgiReply {
    send(server, &params(root, "POST", uri, body.len()), body)
}

/// Whether process `pid` is gone (a zombie counts: it runs no more).
fn gone(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[test]
fn headers_environment_and_the_body_echoed() {
    let root = TempDir::new();
    script(
        &root,
        "echo.sh",
        "printf 'Content-Type: text/x-test\\r\\nX-Script: %s\\r\\n\\r\\n' \"$SCRIPT_NAME\"\n\
         echo \"path=$PATH pwd=$(pwd) info=$PATH_INFO method=$REQUEST_METHOD\"\n\
         cat\n",
    );
    let server = start(&root, &[]);
    let fds = server.quiet_fd_count();
    let mut p = params(&root, "POST", "/echo.sh", 5);
    set_param(&mut p, "PATH_INFO", Some("/extra/path"));
    let reply = send(&server, &p, b"hello");
    let resp = reply.response();
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    assert_eq!(resp.header("content-type"), Some("text/x-test"));
    assert_eq!(resp.header("x-script"), Some("/echo.sh"));
    let want = format!(
        "path=/usr/local/bin:/usr/bin:/bin pwd={} info=/extra/path method=POST\nhello",
        root.path().display()
    );
    assert_eq!(resp.body_str(), want);
    // Nothing left behind: every pipe and eventfd closed, the child reaped.
    for _ in 0..20 {
        assert_eq!(
            post(&server, &root, "/echo.sh", b"x").response().status,
            200
        );
    }
    assert_eq!(server.settle_fd_count(fds, Duration::from_secs(5)), fds);
    assert_eq!(children(server.pid()), "", "every script reaped");
}

/// The child processes of `pid` (zombies included), space-separated.
fn children(pid: i32) -> String {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).expect("the server's threads");
    let mut all = String::new();
    for task in tasks.flatten() {
        let list = fs::read_to_string(task.path().join("children")).unwrap_or_default();
        all.push_str(list.trim());
    }
    all
}

#[test]
fn a_script_that_answers_before_reading_its_body_works() {
    let root = TempDir::new();
    // 200 KB out (more than a pipe holds) before a byte of the 1 MB body
    // is read: fcgiwrap deadlocks on this.
    script(
        &root,
        "early.sh",
        "echo 'Content-Type: text/plain'\necho\n\
         head -c 200000 /dev/zero | tr '\\0' a\n\
         echo\nwc -c | tr -d ' '\n",
    );
    let server = start(&root, &[]);
    let body = common::pattern(1 << 20, 7);
    let resp = post(&server, &root, "/early.sh", &body).response();
    assert_eq!(resp.status, 200);
    let text = resp.body_str();
    assert!(text.starts_with(&"a".repeat(200_000)), "early output");
    assert_eq!(text[200_000..].trim(), (1 << 20).to_string());
}

#[test]
fn paths_outside_the_root_are_refused_and_never_run() {
    let root = TempDir::new();
    let outside = TempDir::new();
    let marker = outside.join("ran");
    let evil = script(
        &outside,
        "evil.sh",
        &format!("touch {marker}\necho 'Content-Type: text/plain'\necho\n"),
    );
    std::os::unix::fs::symlink(&evil, root.join("link.sh")).expect("symlink");
    let server = start(&root, &[]);
    let root_s = root.path().to_str().expect("utf-8");
    let outside_name = outside
        .path()
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name");
    let dotdot = format!("{root_s}/../{outside_name}/evil.sh");
    for (file, status) in [
        (dotdot.as_str(), 403),
        (&root.join("link.sh"), 403),
        (&root.join("missing.sh"), 404),
        (root_s, 403),
    ] {
        let mut p = params(&root, "GET", "/x", 0);
        set_param(&mut p, "SCRIPT_FILENAME", Some(file));
        let resp = send(&server, &p, b"").response();
        assert_eq!(resp.status, status, "SCRIPT_FILENAME {file}");
    }
    // DOCUMENT_ROOT + SCRIPT_NAME when SCRIPT_FILENAME is absent.
    let mut p = params(&root, "GET", "/x", 0);
    set_param(&mut p, "SCRIPT_FILENAME", None);
    set_param(
        &mut p,
        "SCRIPT_NAME",
        Some(&format!("/../{outside_name}/evil.sh")),
    );
    assert_eq!(send(&server, &p, b"").response().status, 403);
    assert!(!Path::new(&marker).exists(), "a refused script ran");
    assert!(server.stderr().contains("outside every --cgi-root"));
}

#[test]
fn stderr_goes_to_the_log_by_default() {
    let root = TempDir::new();
    script(
        &root,
        "err.sh",
        "echo oops-one >&2\necho 'Content-Type: text/plain'\necho\necho ok\nprintf oops-two >&2\n",
    );
    let server = start(&root, &[]);
    let reply = post(&server, &root, "/err.sh?q=1", b"");
    assert_eq!(reply.response().body_str(), "ok\n");
    assert!(
        reply.stderr.is_empty(),
        "no FCGI_STDERR with --cgi-stderr log"
    );
    let path = root.join("err.sh");
    for line in ["stderr: oops-one", "stderr: oops-two"] {
        assert!(
            server.wait_stderr(line, Duration::from_secs(5)),
            "{line} logged"
        );
    }
    let log = server.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("oops-one"))
        .unwrap_or_default();
    assert!(
        line.contains(&path) && line.contains("/err.sh?q=1"),
        "{line}"
    );
}

#[test]
fn stderr_goes_to_fastcgi_when_asked() {
    let root = TempDir::new();
    script(
        &root,
        "err.sh",
        "echo oops-fcgi >&2\necho 'Content-Type: text/plain'\necho\necho ok\n",
    );
    let server = start(&root, &["--cgi-stderr", "fastcgi"]);
    let reply = post(&server, &root, "/err.sh", b"");
    assert_eq!(reply.response().body_str(), "ok\n");
    assert_eq!(String::from_utf8_lossy(&reply.stderr), "oops-fcgi\n");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !server.stderr().contains("oops-fcgi"),
        "not logged with fastcgi"
    );
}

#[test]
fn a_script_past_the_request_timeout_dies_with_its_children() {
    let root = TempDir::new();
    let pids = root.join("pids");
    script(
        &root,
        "slow.sh",
        &format!("sleep 300 &\necho $$ $! > {pids}.tmp\nmv {pids}.tmp {pids}\nsleep 300\n"),
    );
    let server = start(&root, &["--request-timeout", "1s"]);
    let resp = post(&server, &root, "/slow.sh", b"").response();
    assert_eq!(resp.status, 504);
    let text = fs::read_to_string(&pids).expect("the script wrote its pids");
    let pids: Vec<i32> = text
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    assert_eq!(pids.len(), 2, "{text}");
    for pid in pids {
        assert!(
            eventually(Duration::from_secs(10), || gone(pid)),
            "pid {pid} still runs"
        );
    }
}

#[test]
fn a_client_that_leaves_kills_its_script_promptly() {
    let root = TempDir::new();
    let pid_file = root.join("pid");
    script(
        &root,
        "wait.sh",
        &format!("echo $$ > {pid_file}.tmp\nmv {pid_file}.tmp {pid_file}\nsleep 300\n"),
    );
    let server = start(&root, &[]);
    let mut c = FcgiConn::connect(&server.spec(0));
    c.request(1, true, &params(&root, "GET", "/wait.sh", 0), b"");
    let pid_path = Path::new(&pid_file);
    assert!(
        eventually(Duration::from_secs(10), || pid_path.exists()),
        "script started"
    );
    let pid = read_pid(pid_path).expect("a pid");
    assert!(!gone(pid));
    drop(c);
    assert!(
        eventually(Duration::from_secs(5), || gone(pid)),
        "script {pid} still runs"
    );
}

#[test]
fn http_proxy_never_reaches_the_script() {
    let root = TempDir::new();
    script(&root, "env.sh", "echo 'Content-Type: text/plain'\necho\necho \"proxy=${HTTP_PROXY-unset} home=${HOME-unset}\"\n");
    let server = start(&root, &[]);
    let mut p = params(&root, "GET", "/env.sh", 0);
    set_param(&mut p, "HTTP_PROXY", Some("http://evil.example:3128"));
    let resp = send(&server, &p, b"").response();
    // Neither the client's Proxy header nor fastgate's own environment.
    assert_eq!(resp.body_str(), "proxy=unset home=unset\n");
}

#[test]
fn output_without_a_header_block_is_a_bad_gateway() {
    let root = TempDir::new();
    script(&root, "nohead.sh", "echo just some text\n");
    script(&root, "garbage.sh", "printf 'not a header\\n\\nbody'\n");
    script(&root, "moved.sh", "echo 'Location: /elsewhere'\necho\n");
    let server = start(&root, &[]);
    for name in ["/nohead.sh", "/garbage.sh"] {
        let resp = post(&server, &root, name, b"").response();
        assert_eq!(resp.status, 502, "{name}");
        let path = root.join(&name[1..]);
        assert!(
            server.wait_stderr(&path, Duration::from_secs(5)),
            "502 logged naming {path}"
        );
    }
    // A local redirect (RFC 3875 §6.2.2) goes out as a 302.
    let resp = post(&server, &root, "/moved.sh", b"").response();
    assert_eq!(
        (resp.status, resp.header("location")),
        (302, Some("/elsewhere"))
    );
}

#[test]
fn the_app_refuses_to_start_without_a_root_or_as_root() {
    let dir = TempDir::new();
    let base = ["--listen", "fastcgi:{dir}/cgi.sock", "--mount", "/=cgi"];
    let out = run_serve_to_exit(&dir, &base, Duration::from_secs(10));
    assert_eq!(out.status.and_then(|s| s.code()), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("--cgi-root"), "{}", out.stderr);
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: the refusal to run scripts as root needs the tests to run as root");
        return;
    }
    let root = dir.path().to_str().expect("utf-8").to_string();
    let args = [&base[..], &["--cgi-root", &root]].concat();
    let out = run_serve_to_exit(&dir, &args, Duration::from_secs(10));
    assert_eq!(out.status.and_then(|s| s.code()), Some(2), "{}", out.stderr);
    for flag in ["--user", "--cgi-allow-root"] {
        assert!(out.stderr.contains(flag), "{}", out.stderr);
    }
}

#[test]
fn spawn_fcgi_starts_it_in_place_of_fcgiwrap() {
    if !common::require_tool("spawn-fcgi") {
        return;
    }
    let root = TempDir::new();
    script(
        &root,
        "hi.sh",
        "echo 'Content-Type: text/plain'\necho\necho hi from cgi\n",
    );
    let dir = TempDir::new();
    let sock = dir.join("sf.sock");
    let mut cmd = std::process::Command::new("spawn-fcgi");
    let root_s = root.path().to_str().expect("utf-8");
    cmd.args(["-n", "-s", &sock, "--", common::bin(), "serve"])
        .args(["--mount", "/=cgi", "--cgi-root", root_s, "--cgi-allow-root"]);
    common::clean_env(&mut cmd);
    let server = Server::spawn(cmd, dir, 1);
    let resp = send(&server, &params(&root, "GET", "/hi.sh", 0), b"").response();
    assert_eq!(resp.body_str(), "hi from cgi\n");
}

const CGI_SERVICE: &str = include_str!("../deploy/systemd/fastgate-cgi.service");
const CGI_SOCKET: &str = include_str!("../deploy/systemd/fastgate-cgi.socket");

#[test]
fn the_cgi_units_pass_systemd_analyze_verify() {
    if !common::require_tool("systemd-analyze") {
        return;
    }
    let dir = TempDir::new();
    let service = CGI_SERVICE.replacen("/usr/local/bin/fastgate", common::bin(), 1);
    fs::write(dir.path().join("fastgate-cgi.service"), service).expect("write unit");
    fs::write(dir.path().join("fastgate-cgi.socket"), CGI_SOCKET).expect("write unit");
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.path().join("fastgate-cgi.socket"))
        .arg(dir.path().join("fastgate-cgi.service"))
        .output()
        .expect("run systemd-analyze");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("fastgate-cgi"))
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify: {said}"
    );
}

#[test]
fn the_cgi_service_command_serves_a_handed_over_socket() {
    // The unit's ExecStart as systemd runs it (its socket on fd 3 via
    // LISTEN_FDS is what `fastgate serve` with no --listen takes; here the
    // socket comes on fd 0, spawn-fcgi's way, which the same code path
    // serves), with the root the test owns in place of /usr/lib/cgi-bin.
    let exec = CGI_SERVICE
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart=");
    let root = TempDir::new();
    script(
        &root,
        "hi.sh",
        "echo 'Content-Type: text/plain'\necho\necho unit ok\n",
    );
    let args: Vec<String> = exec
        .split_whitespace()
        .skip(2) // the binary, `serve`
        .map(|a| a.replace("/usr/lib/cgi-bin", root.path().to_str().expect("utf-8")))
        .collect();
    assert!(
        !args.iter().any(|a| a == "--listen"),
        "the socket comes from systemd"
    );
    let dir = TempDir::new();
    let sock = dir.join("unit.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.push("--cgi-allow-root");
    let mut cmd = common::serve_command(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>());
    cmd.stdin(std::process::Stdio::from(std::os::fd::OwnedFd::from(
        listener,
    )));
    let server = Server::spawn(cmd, dir, 1);
    let resp = send(&server, &params(&root, "GET", "/hi.sh", 0), b"").response();
    assert_eq!(resp.body_str(), "unit ok\n");
}
