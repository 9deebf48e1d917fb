//! A real Caddy (`reverse_proxy` with `transport fastcgi`, what `php_fastcgi`
//! uses underneath) in front of the real fastgate binary, over a Unix socket.
//!
//! The Caddyfile is `deploy/caddy/Caddyfile` with only the socket path and
//! the site address substituted, so the shipped file is what is proven here.
//! Caddy runs as www-data when the tests run as root (Caddy has no user
//! switch of its own: the test starts it as that user), with its admin
//! endpoint off and its state (`XDG_*`, HOME) in a temp dir; one test runs
//! it as Debian's package does, as user `caddy` in group www-data.
//!
//! What Caddy 2.6 sends (seen through the `env` app and a raw FastCGI
//! listener): an empty SCRIPT_NAME and the whole path as PATH_INFO (no
//! `split`), DOCUMENT_ROOT and SCRIPT_FILENAME from its working directory,
//! `CONTENT_LENGTH=-1` with a chunked request body, which it streams as
//! STDIN; and it passes a backend's `Status:` header on to the client.

mod common;
mod frontend;

use std::os::unix::process::CommandExt;
use std::process::Command;

use common::{require_tool, Server};
use frontend::{
    assert_echo, assert_env, assert_hello, common_env, env_value, pattern, replace_once,
    socket_app_args, Body, Client, FrontProcess, TempDir,
};

const CADDYFILE: &str = include_str!("../deploy/caddy/Caddyfile");
/// The socket and site address the Caddyfile names, replaced by the test's.
const SNIPPET_SOCKET: &str = "unix//run/fastgate.sock";
const SNIPPET_SITE: &str = "http://:80 {";

/// fastgate on a Unix socket Caddy's user may use, `/nope` left unmounted.
fn fastgate() -> Server {
    Server::start(&socket_app_args())
}

/// A running Caddy and the port it answers on.
struct Caddy {
    // Field order: the process goes before the dir holding its files.
    _proc: FrontProcess,
    port: u16,
    _dir: TempDir,
}

impl Caddy {
    /// Caddy with the shipped Caddyfile, in front of `server`; as www-data
    /// when the tests run as root.
    fn start(server: &Server) -> Caddy {
        Caddy::start_as(server, frontend::front_user().map(|ids| (ids, false)))
    }

    /// As [`Caddy::start`], as user `uid`:`gid`, with that user's
    /// supplementary groups too when `init_groups` (as systemd starts
    /// Debian's caddy service), or as the current user with `None`.
    fn start_as(server: &Server, user: Option<((u32, u32), bool)>) -> Caddy {
        let dir = TempDir::new("caddy");
        let port = frontend::free_port();
        let upstream = format!("unix/{}", server.unix_path(0).display());
        // Any host: the test client says `Host: localhost`, and a site
        // address naming a host would answer other hosts an empty 200.
        let site = format!("http://:{port} {{");
        let conf = replace_once(CADDYFILE, SNIPPET_SOCKET, &upstream);
        let conf = replace_once(&conf, SNIPPET_SITE, &site);
        let path = dir.path().join("Caddyfile");
        std::fs::write(&path, conf).expect("write Caddyfile");

        let caddy = common::find_on_path("caddy").expect("caddy on PATH");
        let mut cmd = Command::new(caddy);
        cmd.args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&path)
            // Caddy keeps state (autosaved config, certificate storage)
            // under these: the temp dir, not the real user's home.
            .env("HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .env("XDG_DATA_HOME", dir.path().join("data"))
            .current_dir(dir.path());
        if let Some(((uid, gid), init_groups)) = user {
            frontend::give_dir(dir.path(), uid, gid);
            if init_groups {
                run_with_groups(&mut cmd, uid, gid);
            } else {
                cmd.uid(uid).gid(gid);
            }
        }
        let log = dir.path().join("caddy.log");
        let proc = FrontProcess::start_command(cmd, log, port);
        if let Some(((uid, _), _)) = user {
            let seen = frontend::uid_of(proc.pid());
            assert_eq!(seen, Some(uid), "caddy runs as uid {seen:?}");
        }
        Caddy {
            _proc: proc,
            port,
            _dir: dir,
        }
    }

    fn client(&self) -> Client {
        Client::connect(self.port).expect("connect to caddy")
    }
}

/// Makes `cmd` run as `uid`:`gid` with the user's supplementary groups, as
/// systemd's `User=` does (std's `uid()` drops them all).
fn run_with_groups(cmd: &mut Command, uid: u32, gid: u32) {
    use nix::unistd::{getgrouplist, setgid, setgroups, setuid, Gid, Uid, User};
    let user = User::from_uid(Uid::from_raw(uid))
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no user with uid {uid}"));
    let name = std::ffi::CString::new(user.name).expect("a user name has no NUL");
    let gid = Gid::from_raw(gid);
    let groups = getgrouplist(&name, gid).expect("the user's groups");
    // SAFETY: the closure runs in the child between fork and exec; it only
    // makes the setgroups, setgid and setuid system calls on data computed
    // before the fork (no allocation, no lock), which is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            setgroups(&groups)?;
            setgid(gid)?;
            setuid(Uid::from_raw(uid))?;
            Ok(())
        });
    }
}

/// hello; an echo of a Content-Length body, mounted below a prefix; 404 for
/// an unmounted path and for one that only shares a prefix with a mount; and
/// the params Caddy sends.
#[test]
fn routes_and_params() {
    if !require_tool("caddy") {
        return;
    }
    let server = fastgate();
    let caddy = Caddy::start(&server);
    let mut client = caddy.client();

    assert_hello(&client.get("/hello").expect("GET /hello"));

    let body = pattern(300_000, 5);
    let resp = client.post("/echo/x", &body).expect("POST /echo/x");
    assert_echo(&resp, &body);

    for path in ["/nope", "/echoes"] {
        let resp = client.get(path).expect("GET an unmounted path");
        assert_eq!(resp.status, 404, "{path}; body: {}", resp.text());
    }

    let env = common_env(&mut client, "/env/sub?x=1");
    // No `split`: the whole path is PATH_INFO, and fastgate routes on
    // SCRIPT_NAME + PATH_INFO.
    assert_env(&env, "SCRIPT_NAME", "");
    assert_env(&env, "PATH_INFO", "/env/sub");
    assert_env(&env, "GATEWAY_INTERFACE", "CGI/1.1");
    let software = env_value(&env, "SERVER_SOFTWARE").unwrap_or("");
    assert!(
        software.starts_with("Caddy/"),
        "SERVER_SOFTWARE {software:?}"
    );
}

/// Caddy copies a backend's `Status:` header into its response. PHP-FPM
/// sends none for a 200, and neither may fastgate: a client must not see a
/// CGI header leak through.
#[test]
fn a_200_carries_no_status_header() {
    if !require_tool("caddy") {
        return;
    }
    let server = fastgate();
    let caddy = Caddy::start(&server);
    let resp = caddy.client().get("/hello").expect("GET /hello");
    assert_hello(&resp);
    assert_eq!(
        resp.header("Status"),
        None,
        "a Status header reached the client: {:?}",
        resp.headers
    );
}

/// A chunked upload: Caddy streams it as STDIN with `CONTENT_LENGTH=-1`
/// (Go's "length unknown"). fastgate must take a negative CONTENT_LENGTH as
/// unknown and read STDIN to its end, as with no CONTENT_LENGTH at all.
#[test]
fn chunked_upload_is_echoed() {
    if !require_tool("caddy") {
        return;
    }
    let server = fastgate();
    let caddy = Caddy::start(&server);
    let mut client = caddy.client();
    let body = pattern(1_000_000, 9);
    let headers = [("Content-Type", "application/x-test")];
    let resp = client
        .request("POST", "/echo", &headers, Body::Chunked(&body, 65_537))
        .expect("chunked POST /echo");
    assert_echo(&resp, &body);
    assert_eq!(resp.header("Content-Type"), Some("application/x-test"));
}

/// Caddy as Debian's package runs it: user `caddy`, which the package puts
/// in group www-data. The Caddyfile's comment says that the documented
/// fastgate command (`--socket-owner www-data:www-data`, mode 0660 by
/// default) lets it in through the group.
#[test]
fn debian_caddy_user_connects_through_the_www_data_group() {
    if frontend::require_front_user().is_none() || !require_tool("caddy") {
        return;
    }
    let Some(ids) = debian_caddy_user() else {
        let why = "user caddy (made by Debian's caddy package) missing or not in group www-data";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{why}, and CI=true requires it");
        }
        eprintln!("SKIPPED: {why}");
        return;
    };
    let server = fastgate();
    let caddy = Caddy::start_as(&server, Some((ids, true)));
    let resp = caddy.client().get("/hello").expect("GET /hello");
    assert_hello(&resp);
}

/// The `caddy` user's uid and gid, if it exists and is in group www-data.
fn debian_caddy_user() -> Option<(u32, u32)> {
    use nix::unistd::{getgrouplist, Group, User};
    let user = User::from_name("caddy").ok().flatten()?;
    let www = Group::from_name(frontend::FRONT_USER).ok().flatten()?;
    let name = std::ffi::CString::new(user.name).ok()?;
    let groups = getgrouplist(&name, user.gid).ok()?;
    groups
        .contains(&www.gid)
        .then_some((user.uid.as_raw(), user.gid.as_raw()))
}
