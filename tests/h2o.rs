//! A real h2o (`fastcgi.connect` to a Unix socket) in front of the real
//! fastgate binary.
//!
//! The configuration is `deploy/h2o/h2o.conf` with only the socket path, the
//! port, the pid file and the log paths substituted, so the shipped file is
//! what is proven here. As root, h2o binds its port and then runs as the
//! file's `user: www-data` (checked); not as root, that line is dropped.
//!
//! What h2o 2.2 sends (seen through the `env` app and a raw FastCGI
//! listener): the path below the mount (`/`) as PATH_INFO and an empty
//! SCRIPT_NAME; no CONTENT_LENGTH and no GATEWAY_INTERFACE for a GET; and a
//! chunked upload buffered whole first, then sent with its real
//! CONTENT_LENGTH. It keeps the backend's `Status:` header to itself, and
//! closes the client's connection after a 404.

mod common;
mod frontend;

use std::process::Command;

use common::{require_tool, Server};
use frontend::{
    assert_echo, assert_env, assert_hello, common_env, env_lines, env_value, pattern, replace_once,
    socket_app_args, Body, Client, FrontProcess, TempDir,
};

const CONF: &str = include_str!("../deploy/h2o/h2o.conf");
/// What the test replaces in the shipped file (each occurs once).
const SNIPPET_SOCKET: &str = "port: /run/fastgate.sock";
const SNIPPET_PORT: &str = "port: 80\n";
const SNIPPET_PID: &str = "pid-file: /run/h2o.pid";
const SNIPPET_ERROR_LOG: &str = "error-log: /var/log/h2o/error.log";
const SNIPPET_ACCESS_LOG: &str = "access-log: /var/log/h2o/access.log";
const SNIPPET_USER: &str = "user: www-data\n";

/// fastgate on a Unix socket h2o's user may use, `/nope` left unmounted.
fn fastgate() -> Server {
    Server::start(&socket_app_args())
}

/// A running h2o and the port it answers on.
struct H2o {
    // Field order: the process goes before the dir holding its files.
    _proc: FrontProcess,
    port: u16,
    _dir: TempDir,
}

impl H2o {
    /// h2o with the shipped configuration, in front of `server`.
    fn start(server: &Server) -> H2o {
        let dir = TempDir::new("h2o");
        let port = frontend::free_port();
        let user = frontend::front_user();
        let conf = render(dir.path(), &server.unix_path(0), port, user.is_some());
        let path = dir.path().join("h2o.conf");
        std::fs::write(&path, conf).expect("write h2o.conf");
        if let Some((uid, gid)) = user {
            // h2o writes its pid file after switching users.
            frontend::give_dir(dir.path(), uid, gid);
        }
        let h2o = common::find_on_path("h2o").expect("h2o on PATH");
        let mut cmd = Command::new(h2o);
        cmd.arg("-c").arg(&path);
        let log = dir.path().join("h2o.log");
        let proc = FrontProcess::start_command(cmd, log, port);
        if let Some((uid, _)) = user {
            let seen = frontend::wait_uid(proc.pid(), uid);
            assert_eq!(seen, Some(uid), "h2o runs as uid {seen:?}");
        }
        H2o {
            _proc: proc,
            port,
            _dir: dir,
        }
    }

    fn client(&self) -> Client {
        Client::connect(self.port).expect("connect to h2o")
    }
}

/// The shipped h2o.conf for this test: fastgate's socket, the port, and
/// the pid file and logs in `dir` (the error log is the file FrontProcess
/// shows when a test fails).
fn render(dir: &std::path::Path, sock: &std::path::Path, port: u16, as_user: bool) -> String {
    let d = dir.display();
    let conf = replace_once(CONF, SNIPPET_SOCKET, &format!("port: {}", sock.display()));
    let conf = replace_once(&conf, SNIPPET_PORT, &format!("port: {port}\n"));
    let conf = replace_once(&conf, SNIPPET_PID, &format!("pid-file: {d}/h2o.pid"));
    let conf = replace_once(&conf, SNIPPET_ERROR_LOG, &format!("error-log: {d}/h2o.log"));
    let conf = replace_once(
        &conf,
        SNIPPET_ACCESS_LOG,
        &format!("access-log: {d}/access.log"),
    );
    if as_user {
        conf
    } else {
        // Not root: h2o cannot switch users.
        replace_once(&conf, SNIPPET_USER, "")
    }
}

/// hello (with no `Status` header let through); an echo of a
/// Content-Length body, mounted below a prefix; 404 for an unmounted path
/// and for one that only shares a prefix with a mount; the params h2o sends.
#[test]
fn routes_and_params() {
    if !require_tool("h2o") {
        return;
    }
    let server = fastgate();
    let h2o = H2o::start(&server);
    let mut client = h2o.client();

    let resp = client.get("/hello").expect("GET /hello");
    assert_hello(&resp);
    assert_eq!(resp.header("Status"), None, "headers {:?}", resp.headers);

    let body = pattern(300_000, 5);
    let resp = client.post("/echo/x", &body).expect("POST /echo/x");
    assert_echo(&resp, &body);

    // h2o 2.2 closes the client's connection after any 404 from a FastCGI
    // backend (seen with a minimal responder too): a client per 404.
    for path in ["/nope", "/echoes"] {
        let resp = h2o.client().get(path).expect("GET an unmounted path");
        assert_eq!(resp.status, 404, "{path}; body: {}", resp.text());
    }

    let env = common_env(&mut client, "/env/sub?x=1");
    // Mounted at `/`: SCRIPT_NAME is empty and PATH_INFO the whole path,
    // which fastgate routes on.
    assert_env(&env, "SCRIPT_NAME", "");
    assert_env(&env, "PATH_INFO", "/env/sub");
    let software = env_value(&env, "SERVER_SOFTWARE").unwrap_or("");
    assert!(software.starts_with("h2o/"), "SERVER_SOFTWARE {software:?}");
}

/// A chunked upload is echoed byte for byte. h2o 2.2 buffers the whole
/// body before it talks to fastgate and sends its real length as
/// CONTENT_LENGTH; a later h2o that streamed it would send none. Either
/// way, no other value is right.
#[test]
fn chunked_upload_is_echoed() {
    if !require_tool("h2o") {
        return;
    }
    let server = fastgate();
    let h2o = H2o::start(&server);
    let mut client = h2o.client();
    let headers = [("Content-Type", "application/x-test")];

    let body = pattern(1_000_000, 9);
    let resp = client
        .request("POST", "/echo", &headers, Body::Chunked(&body, 65_537))
        .expect("chunked POST /echo");
    assert_echo(&resp, &body);
    assert_eq!(resp.header("Content-Type"), Some("application/x-test"));

    let resp = client
        .request("POST", "/env", &headers, Body::Chunked(b"abcdef", 4))
        .expect("chunked POST /env");
    let env = env_lines(&resp);
    let length = env_value(&env, "CONTENT_LENGTH");
    assert!(
        matches!(length, None | Some("") | Some("6")),
        "CONTENT_LENGTH {length:?} for a 6-byte chunked body"
    );
}
