//! A real Apache httpd (Debian's apache2) in front of the real fastgate:
//! `deploy/apache/fastgate.conf` (mod_proxy_fcgi) and
//! `deploy/apache/fastgate-scgi.conf` (mod_proxy_scgi) as shipped, only the
//! socket path substituted. apache2 runs in the foreground from a temp dir
//! (its own ServerRoot, pid file, port and logs), loads the modules it
//! needs itself (no a2enmod), and, as root, serves from children running
//! as www-data, as Debian runs it: fastgate gives them the socket with
//! `--socket-owner`. Each config passes `apache2 -t` first.

mod common;
mod frontend;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{require_tool, Server};
use frontend::{
    assert_echo, assert_hello, common_env, env_value, pattern, replace_once, socket_app_args,
    Client, FrontProcess, TempDir, FRONT_USER,
};

const FASTCGI: &str = include_str!("../deploy/apache/fastgate.conf");
const SCGI: &str = include_str!("../deploy/apache/fastgate-scgi.conf");
const SNIPPET_SOCKET: &str = "unix:/run/fastgate.sock|";

/// Debian's module directory.
const MODULES: &str = "/usr/lib/apache2/modules";

/// apache2 is in /usr/sbin on Debian.
fn apache2() -> Option<PathBuf> {
    require_tool("apache2").then(|| common::find_on_path("apache2").expect("apache2"))
}

/// The snippet with its socket (each occurrence: the handler and the
/// `<Proxy>` block name the same one) replaced.
fn render(snippet: &str, sock: &Path) -> String {
    let count = snippet.matches(SNIPPET_SOCKET).count();
    assert!(count >= 1, "no {SNIPPET_SOCKET:?} in the snippet");
    snippet.replace(SNIPPET_SOCKET, &format!("unix:{}|", sock.display()))
}

/// A minimal httpd.conf around `site`, every path inside `dir`.
fn main_conf(dir: &Path, port: u16, as_user: bool) -> String {
    let d = dir.display();
    let mut conf = format!(
        "ServerRoot \"{d}\"
ServerName localhost
Listen 127.0.0.1:{port}
PidFile \"{d}/apache2.pid\"
ErrorLog \"{d}/error.log\"
LogLevel warn
DefaultRuntimeDir \"{d}\"
Mutex file:{d} default
DocumentRoot \"{d}\"
LoadModule mpm_event_module {MODULES}/mod_mpm_event.so
LoadModule authz_core_module {MODULES}/mod_authz_core.so
LoadModule proxy_module {MODULES}/mod_proxy.so
LoadModule proxy_fcgi_module {MODULES}/mod_proxy_fcgi.so
LoadModule proxy_scgi_module {MODULES}/mod_proxy_scgi.so
StartServers 1
ServerLimit 1
ThreadsPerChild 8
MaxRequestWorkers 8
Include site.conf
"
    );
    if as_user {
        conf.push_str(&format!("User {FRONT_USER}\nGroup {FRONT_USER}\n"));
    }
    conf
}

struct Apache {
    // Field order: the process goes before the dir holding its files.
    proc: FrontProcess,
    port: u16,
    _dir: TempDir,
}

impl Apache {
    /// `apache2 -t`, then apache2 in the foreground with `site`.
    fn start(apache2: &Path, site: &str) -> Apache {
        let user = frontend::front_user();
        let dir = TempDir::new("apache");
        let port = frontend::free_port();
        let conf = dir.path().join("apache2.conf");
        fs::write(&conf, main_conf(dir.path(), port, user.is_some())).expect("write conf");
        fs::write(dir.path().join("site.conf"), site).expect("write site.conf");
        let command = |extra: &str| {
            let mut cmd = Command::new(apache2);
            cmd.arg("-d")
                .arg(dir.path())
                .arg("-f")
                .arg(&conf)
                .arg(extra);
            cmd
        };
        let check = command("-t").output().expect("run apache2 -t");
        assert!(
            check.status.success(),
            "apache2 -t: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let log = dir.path().join("error.log");
        let proc = FrontProcess::start_command(command("-DFOREGROUND"), log, port);
        if let Some((uid, _)) = user {
            // The children serve; the parent stays root to bind and manage.
            let children = proc.descendants(1);
            assert!(!children.is_empty(), "apache2 started no child");
            for pid in children {
                let seen = frontend::wait_uid(pid, uid);
                assert_eq!(seen, Some(uid), "apache2 child {pid} runs as {seen:?}");
            }
        }
        Apache {
            proc,
            port,
            _dir: dir,
        }
    }

    fn client(&self) -> Client {
        Client::connect(self.port).expect("connect to apache2")
    }
}

/// hello, a 1 MB echo, the params, fastgate's 404, over one connection.
fn check_routes(apache: &Apache) -> Vec<(String, String)> {
    let mut client = apache.client();
    assert_hello(&client.get("/hello").expect("GET /hello"));
    let body = pattern(1 << 20, 3);
    assert_echo(&client.post("/echo", &body).expect("POST /echo"), &body);
    let nope = client.get("/nope").expect("GET /nope");
    assert_eq!(nope.status, 404, "{}", nope.text());
    let env = common_env(&mut client, "/env?a=1");
    let software = env_value(&env, "SERVER_SOFTWARE").unwrap_or("");
    assert!(
        software.starts_with("Apache"),
        "SERVER_SOFTWARE {software:?}"
    );
    env
}

#[test]
fn mod_proxy_fcgi_over_a_unix_socket() {
    let Some(apache2) = apache2() else {
        return;
    };
    let mut args = socket_app_args();
    args.extend(["--mount", "/status=status"]);
    let server = Server::start(&args);
    let site = render(FASTCGI, &server.unix_path(0));
    let apache = Apache::start(&apache2, &site);
    let env = check_routes(&apache);
    assert!(env_value(&env, "GATEWAY_INTERFACE").is_some(), "{env:?}");
    // enablereuse=on: request after request rides the connections Apache
    // keeps (at most one per thread), not a new one each.
    let mut client = apache.client();
    for _ in 0..50 {
        assert_hello(&client.get("/hello").expect("GET /hello"));
    }
    let spec = format!("fastcgi:{}", server.unix_path(0).display());
    let status = common::fcgi_get(&spec, "/status?json");
    let json: serde_json::Value = serde_json::from_slice(&status.body).expect("status JSON");
    let accepted = json["accepted_conns"].as_u64().expect("accepted_conns");
    assert!(
        accepted <= 10,
        "{accepted} connections for 54 requests: no reuse"
    );
    let log = apache.proc.log_text();
    assert!(!log.contains(":error]"), "apache2 error log: {log}");
}

#[test]
fn mod_proxy_scgi_over_a_unix_socket() {
    let Some(apache2) = apache2() else {
        return;
    };
    let server = Server::start(&socket_app_args());
    let site = render(SCGI, &server.unix_path(0));
    let apache = Apache::start(&apache2, &site);
    let env = check_routes(&apache);
    assert_eq!(env_value(&env, "SCGI"), Some("1"), "{env:?}");
}

#[test]
fn the_snippets_name_the_documented_socket() {
    // What the comments tell the reader to run is what the snippets use.
    for snippet in [FASTCGI, SCGI] {
        let line = snippet
            .lines()
            .find(|l| l.contains("fastgate serve"))
            .expect("a fastgate serve command");
        assert!(line.contains("--listen /run/fastgate.sock"), "{line}");
        assert!(line.contains("--socket-owner www-data:www-data"), "{line}");
        replace_once(snippet, "SetHandler \"proxy:unix:/run/fastgate.sock|", "");
    }
}
