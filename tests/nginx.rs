//! A real nginx in front of the real fastgate binary: what production looks
//! like. nginx runs as Debian runs it: a master as root and a worker as
//! www-data (`user www-data;`), never root, in the foreground from a temp dir
//! (its pid file, logs and every *_temp_path inside it), killed by pid with
//! its worker when the test ends. So a Unix socket only root may use fails
//! here as it fails on a real machine: with a 502. (Not run as root, the
//! tests cannot switch users: nginx then runs as the current user and says
//! so, and the tests about the socket's owner skip loudly.)
//!
//! The server blocks come from `deploy/nginx/fastgate.conf` and
//! `deploy/nginx/fastgate-scgi.conf`, with only the socket address and the
//! listen port substituted, so the shipped snippets are what is proven here:
//! fastcgi_pass over a Unix socket and over TCP with upstream keepalive and
//! `fastcgi_keep_conn on`, scgi_pass, and `fastcgi_request_buffering off` with
//! a chunked upload (a body with no CONTENT_LENGTH). The fastgate command in
//! the snippet's comment is run as written too (socket path substituted).
//!
//! `deploy/nginx/fastgate-cluster.conf` runs with three fastgate processes
//! on 127.0.0.1 ports standing in for its three hosts: requests are spread
//! over them, and still succeed (a POST included) with one of them down.
//! The `status` and `ping` locations of fastgate.conf answer 127.0.0.1 and
//! refuse 127.0.0.2. Every snippet passes `nginx -t` first.

mod common;
mod frontend;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use common::{require_tool, Server};
use frontend::{
    assert_echo, assert_env, assert_hello, common_env, env_lines, env_value, pattern, replace_once,
    socket_owner_args, tcp_states, Body, Client, FrontProcess, TempDir, FRONT_USER,
};

const FASTCGI_SNIPPET: &str = include_str!("../deploy/nginx/fastgate.conf");
const SCGI_SNIPPET: &str = include_str!("../deploy/nginx/fastgate-scgi.conf");
const CLUSTER_SNIPPET: &str = include_str!("../deploy/nginx/fastgate-cluster.conf");

/// The three hosts the cluster snippet lists, replaced by local fastgates.
const CLUSTER_HOSTS: [&str; 3] = ["10.0.0.11:9000", "10.0.0.12:9000", "10.0.0.13:9000"];

/// The socket address the snippets name, replaced by the test's own.
const SNIPPET_SOCKET: &str = "unix:/run/fastgate.sock";
/// The socket path in the command the snippets' comments give.
const COMMAND_SOCKET: &str = "/run/fastgate.sock";
const SNIPPET_LISTEN: &str = "listen 80;";

/// 5 MB: far past nginx's in-memory body buffer and fastgate's output
/// bounds, so the response timing rule (no answer before the body ended) and
/// every buffer in between are exercised.
const BIG: usize = 5 * 1024 * 1024;

/// Used when the system has no /etc/nginx/fastcgi_params (non-Debian nginx
/// builds): the parameters the stock file sends that the tests look at.
const FALLBACK_FASTCGI_PARAMS: &str = "\
fastcgi_param QUERY_STRING $query_string;
fastcgi_param REQUEST_METHOD $request_method;
fastcgi_param CONTENT_TYPE $content_type;
fastcgi_param CONTENT_LENGTH $content_length;
fastcgi_param SCRIPT_NAME $fastcgi_script_name;
fastcgi_param REQUEST_URI $request_uri;
fastcgi_param DOCUMENT_URI $document_uri;
fastcgi_param SERVER_PROTOCOL $server_protocol;
fastcgi_param GATEWAY_INTERFACE CGI/1.1;
fastcgi_param SERVER_SOFTWARE nginx/$nginx_version;
fastcgi_param REMOTE_ADDR $remote_addr;
fastcgi_param REMOTE_PORT $remote_port;
fastcgi_param SERVER_ADDR $server_addr;
fastcgi_param SERVER_PORT $server_port;
fastcgi_param SERVER_NAME $server_name;
";

const FALLBACK_SCGI_PARAMS: &str = "\
scgi_param REQUEST_METHOD $request_method;
scgi_param REQUEST_URI $request_uri;
scgi_param QUERY_STRING $query_string;
scgi_param CONTENT_TYPE $content_type;
scgi_param DOCUMENT_URI $document_uri;
scgi_param SCGI 1;
scgi_param SERVER_PROTOCOL $server_protocol;
scgi_param REMOTE_ADDR $remote_addr;
scgi_param REMOTE_PORT $remote_port;
scgi_param SERVER_PORT $server_port;
scgi_param SERVER_NAME $server_name;
";

/// The mounts every test serves; `/nope` is left unmounted on purpose.
const MOUNTS: &[&str] = &[
    "--mount",
    "/hello=hello",
    "--mount",
    "/echo=echo",
    "--mount",
    "/env=env",
];

/// fastgate with the test mounts on one listener; a Unix socket it creates
/// belongs to the user nginx's workers run as, as the snippets say.
fn fastgate(listen: &str) -> Server {
    let mut args = vec!["--listen", listen];
    if !listen.contains("://") {
        args.extend(socket_owner_args());
    }
    args.extend_from_slice(MOUNTS);
    Server::start(&args)
}

/// A running nginx and the port it answers on.
struct Nginx {
    // Field order: the process goes before the dir holding its files.
    proc: FrontProcess,
    port: u16,
    _dir: TempDir,
}

impl Nginx {
    /// Starts nginx with `site` (a server block, rendered for `port`)
    /// included in its http {} block; as root, its worker runs as www-data,
    /// which is checked.
    fn start(site: &str, port: u16) -> Nginx {
        let worker = frontend::front_user();
        let dir = TempDir::new("nginx");
        write_config(dir.path(), site, worker.is_some());
        let d = dir.path().display().to_string();
        let nginx = common::find_on_path("nginx").expect("nginx on PATH");
        let log = dir.path().join("nginx.log");
        let conf = format!("{d}/nginx.conf");
        let args = ["-p", &d, "-c", &conf, "-e", &format!("{d}/nginx.log")];
        let proc = FrontProcess::start(nginx.to_str().unwrap_or("nginx"), &args, log, port);
        let nginx = Nginx {
            proc,
            port,
            _dir: dir,
        };
        if let Some((uid, _)) = worker {
            nginx.assert_workers_run_as(uid);
        }
        nginx
    }

    /// Every process the master started runs as `uid`: none as root.
    fn assert_workers_run_as(&self, uid: u32) {
        let workers = self.proc.descendants(1);
        assert!(!workers.is_empty(), "nginx started no worker");
        for pid in workers {
            let seen = frontend::wait_uid(pid, uid);
            assert_eq!(seen, Some(uid), "nginx worker {pid} runs as uid {seen:?}");
        }
    }

    fn client(&self) -> Client {
        Client::connect(self.port).expect("connect to nginx")
    }

    fn log_text(&self) -> String {
        self.proc.log_text()
    }
}

/// nginx.conf for a foreground master with one worker, every path inside
/// `dir`, plus the params files the snippets include (relative to the conf
/// dir). With `as_www_data`, the worker runs as www-data, as Debian's
/// nginx.conf says; nginx's master makes the temp dirs it creates the
/// worker's, and `dir` (0755 under /tmp) lets the worker through to them.
fn write_config(dir: &Path, site: &str, as_www_data: bool) {
    let d = dir.display();
    let user = if as_www_data {
        format!("user {FRONT_USER};\n")
    } else {
        String::new()
    };
    // The master stays in the foreground: the test kills it by pid, and
    // FrontProcess kills its worker by pid too.
    let conf = format!(
        "daemon off;
master_process on;
worker_processes 1;
{user}pid {d}/nginx.pid;
error_log {d}/nginx.log info;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    fastcgi_temp_path {d}/fastcgi;
    scgi_temp_path {d}/scgi;
    proxy_temp_path {d}/proxy;
    uwsgi_temp_path {d}/uwsgi;
    include site.conf;
}}
"
    );
    fs::write(dir.join("nginx.conf"), conf).expect("write nginx.conf");
    fs::write(dir.join("site.conf"), site).expect("write site.conf");
    copy_params(dir, "fastcgi_params", FALLBACK_FASTCGI_PARAMS);
    copy_params(dir, "scgi_params", FALLBACK_SCGI_PARAMS);
}

/// The system's own params file when there is one: that is what a deployed
/// snippet includes.
fn copy_params(dir: &Path, name: &str, fallback: &str) {
    let text = fs::read_to_string(Path::new("/etc/nginx").join(name))
        .unwrap_or_else(|_| fallback.to_string());
    fs::write(dir.join(name), text).expect("write params file");
}

/// A snippet with its socket address and listen port replaced; each must
/// occur exactly once, so an edit of the snippet cannot silently leave the
/// test checking something else.
fn render(snippet: &str, upstream: &str, port: u16) -> String {
    let listen = format!("listen 127.0.0.1:{port};");
    let site = replace_once(snippet, SNIPPET_SOCKET, upstream);
    replace_once(&site, SNIPPET_LISTEN, &listen)
}

/// Checks hello, the 5 MB echo, 404 and env through one client; `scgi`
/// selects the parameters only SCGI carries.
fn check_routes(client: &mut Client, scgi: bool) {
    assert_hello(&client.get("/hello").expect("GET /hello"));

    let body = pattern(BIG, 7);
    assert_echo(
        &client.post("/echo", &body).expect("POST /echo 5 MB"),
        &body,
    );

    let resp = client.get("/nope").expect("GET /nope");
    assert_eq!(resp.status, 404, "unmounted path; body: {}", resp.text());

    let env = common_env(client, "/env?x=1");
    if scgi {
        assert_env(&env, "SCGI", "1");
        assert_env(&env, "CONTENT_LENGTH", "0");
    } else {
        assert_env(&env, "GATEWAY_INTERFACE", "CGI/1.1");
        assert_env(&env, "SCRIPT_NAME", "/env");
        let software = env_value(&env, "SERVER_SOFTWARE").unwrap_or("");
        assert!(
            software.starts_with("nginx/"),
            "SERVER_SOFTWARE {software:?}"
        );
    }
}

#[test]
fn fastcgi_over_unix_socket() {
    if !require_tool("nginx") {
        return;
    }
    // A bare path: the auto listener the snippet's comment recommends.
    let server = fastgate("{dir}/fg.sock");
    let upstream = format!("unix:{}", server.unix_path(0).display());
    let port = frontend::free_port();
    let nginx = Nginx::start(&render(FASTCGI_SNIPPET, &upstream, port), port);
    check_routes(&mut nginx.client(), false);
}

#[test]
fn fastcgi_over_tcp_keeps_upstream_connections() {
    if !require_tool("nginx") {
        return;
    }
    let server = fastgate("fastcgi://127.0.0.1:0");
    let backend = server.tcp_addr(0);
    let port = frontend::free_port();
    let nginx = Nginx::start(&render(FASTCGI_SNIPPET, &backend.to_string(), port), port);
    check_routes(&mut nginx.client(), false);

    let mut client = nginx.client();
    for i in 0..100 {
        let resp = client
            .get("/hello")
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_hello(&resp);
    }
    // Upstream keepalive + fastcgi_keep_conn: the requests above rode one
    // kept connection; none was opened and closed per request.
    let (established, time_wait) = tcp_states(backend.port());
    assert!(
        (1..=2).contains(&established),
        "{established} connections nginx→fastgate established"
    );
    assert!(
        time_wait <= 2,
        "{time_wait} connections to fastgate closed: keepalive unused"
    );
}

#[test]
fn scgi_over_auto_unix_socket() {
    if !require_tool("nginx") {
        return;
    }
    let server = fastgate("{dir}/fg.sock");
    let upstream = format!("unix:{}", server.unix_path(0).display());
    let port = frontend::free_port();
    let nginx = Nginx::start(&render(SCGI_SNIPPET, &upstream, port), port);
    check_routes(&mut nginx.client(), true);
}

#[test]
fn scgi_over_named_tcp_listener() {
    if !require_tool("nginx") {
        return;
    }
    let server = fastgate("scgi://127.0.0.1:0");
    let backend = server.tcp_addr(0).to_string();
    let port = frontend::free_port();
    let nginx = Nginx::start(&render(SCGI_SNIPPET, &backend, port), port);
    let mut client = nginx.client();
    assert_hello(&client.get("/hello").expect("GET /hello"));
    let body = pattern(300_000, 3);
    assert_echo(&client.post("/echo", &body).expect("POST /echo"), &body);
}

#[test]
fn unbuffered_chunked_upload_has_no_content_length() {
    if !require_tool("nginx") {
        return;
    }
    let server = fastgate("fastcgi:{dir}/fg.sock");
    let upstream = format!("unix:{}", server.unix_path(0).display());
    let port = frontend::free_port();
    let site = render(FASTCGI_SNIPPET, &upstream, port);
    // The snippet's own commented-out suggestion, switched on.
    let site = replace_once(
        &site,
        "# fastcgi_request_buffering off;",
        "fastcgi_request_buffering off;",
    );
    let nginx = Nginx::start(&site, port);
    let mut client = nginx.client();

    // nginx passes the body on as it arrives, with an empty CONTENT_LENGTH:
    // fastgate reads it until the empty STDIN record. (A body that arrives
    // whole with the head is measured by nginx first, hence the pause.)
    let chunked = [("Content-Type", "application/x-test")];
    let slow = Body::ChunkedPaused(b"abcdef", 3, Duration::from_millis(300));
    let resp = client
        .request("POST", "/env", &chunked, slow)
        .expect("chunked POST /env");
    let env = env_lines(&resp);
    let length = env_value(&env, "CONTENT_LENGTH").unwrap_or("");
    assert!(
        length.is_empty(),
        "CONTENT_LENGTH {length:?}: the body was not streamed"
    );

    let body = pattern(BIG, 11);
    let resp = client
        .request("POST", "/echo", &chunked, Body::Chunked(&body, 100_003))
        .expect("chunked POST /echo 5 MB");
    assert_echo(&resp, &body);
    assert_eq!(resp.header("Content-Type"), Some("application/x-test"));

    // And a Content-Length body through the same unbuffered location.
    let small = pattern(70_000, 5);
    assert_echo(&client.post("/echo", &small).expect("POST /echo"), &small);
}

/// nginx's defaults (no upstream keepalive, `fastcgi_keep_conn` off): a
/// refusal (413 past `--max-body-bytes`) is answered while nginx is still
/// sending the body, and the connection then closes. Closing with the body
/// unread would reset the connection and nginx would answer 502; fastgate
/// lingers, so every client gets the 413, over FastCGI and SCGI.
#[test]
fn refusals_survive_the_close_that_follows_them() {
    if !require_tool("nginx") {
        return;
    }
    let mut args = vec!["--listen", "{dir}/fg.sock"];
    args.extend(socket_owner_args());
    args.extend(["--mount", "/=echo", "--max-body-bytes", "1000"]);
    let server = Server::start(&args);
    let sock = server.unix_path(0).display().to_string();
    let port = frontend::free_port();
    let site = format!(
        "server {{
    listen 127.0.0.1:{port};
    client_max_body_size 64m;
    location / {{ include fastcgi_params; fastcgi_pass unix:{sock}; }}
    location /s {{ include scgi_params; scgi_pass unix:{sock}; }}
}}
"
    );
    let nginx = Nginx::start(&site, port);
    let body = pattern(BIG, 11);
    for path in ["/", "/s"] {
        for round in 0..6 {
            let resp = nginx
                .client()
                .post(path, &body)
                .expect("POST through nginx");
            assert_eq!(resp.status, 413, "{path} round {round}: {}", resp.text());
        }
    }
}

/// The `fastgate serve` command the FastCGI snippet's comment gives, as
/// arguments after `serve`, with the socket in the server's temp dir.
fn documented_command() -> Vec<String> {
    let line = FASTCGI_SNIPPET
        .lines()
        .find_map(|l| {
            l.trim_start_matches('#')
                .trim()
                .strip_prefix("fastgate serve ")
        })
        .expect("a `fastgate serve` command in deploy/nginx/fastgate.conf");
    let line = replace_once(line, COMMAND_SOCKET, "{dir}/fg.sock");
    line.split_whitespace().map(str::to_string).collect()
}

/// fastgate run with `args` (as root) answers `/` through nginx's www-data
/// worker over the Unix socket it created, and that socket belongs to
/// www-data (its user, or its group).
fn assert_served_to_www_data(args: &[&str]) {
    let Some((uid, gid)) = frontend::require_front_user() else {
        return;
    };
    if !require_tool("nginx") {
        return;
    }
    let server = Server::start(args);
    let sock = server.unix_path(0);
    let meta = fs::metadata(&sock).expect("stat the socket");
    assert!(
        meta.uid() == uid || meta.gid() == gid,
        "socket {} is {}:{}, not www-data's ({uid}:{gid})",
        sock.display(),
        meta.uid(),
        meta.gid()
    );
    let upstream = format!("unix:{}", sock.display());
    let port = frontend::free_port();
    let nginx = Nginx::start(&render(FASTCGI_SNIPPET, &upstream, port), port);
    let resp = nginx.client().get("/").expect("GET / through nginx");
    assert_hello(&resp);
}

/// The first hour on Debian: fastgate started (as root) exactly as the
/// snippet's comment says, `--socket-owner www-data:www-data`, answers
/// through nginx whose worker runs as www-data.
#[test]
fn documented_command_serves_www_data_workers() {
    let args = documented_command();
    assert!(
        args.iter().any(|a| a == "--socket-owner"),
        "the documented command gives the socket an owner: {args:?}"
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_served_to_www_data(&args);
}

/// The other way the contract gives: fastgate drops to `-u nobody -g
/// www-data`, and the socket it created as root goes to them (mode 0660),
/// so www-data's group may connect.
#[test]
fn user_and_group_give_the_socket_to_www_data() {
    assert_served_to_www_data(&[
        "--listen",
        "{dir}/fg.sock",
        "-u",
        "nobody",
        "-g",
        FRONT_USER,
        "--mount",
        "/=hello",
    ]);
}

/// `--socket-owner` with numeric ids, for systems where names differ.
#[test]
fn numeric_socket_owner_serves_www_data_workers() {
    let Some((uid, gid)) = frontend::require_front_user() else {
        return;
    };
    let owner = format!("{uid}:{gid}");
    assert_served_to_www_data(&[
        "--listen",
        "{dir}/fg.sock",
        "--socket-owner",
        &owner,
        "--mount",
        "/=hello",
    ]);
}

/// The trap the snippet warns of: fastgate run as root with no
/// `--socket-owner`, `--user` or `--group` makes a socket only root may
/// use. nginx's www-data worker is refused (EACCES) and answers 502; and
/// fastgate said so at start, naming the option that fixes it.
#[test]
fn root_socket_without_owner_gets_502_and_a_warning() {
    if frontend::require_front_user().is_none() || !require_tool("nginx") {
        return;
    }
    let server = Server::start(&["--listen", "{dir}/fg.sock", "--mount", "/=hello"]);
    let upstream = format!("unix:{}", server.unix_path(0).display());
    let port = frontend::free_port();
    let nginx = Nginx::start(&render(FASTCGI_SNIPPET, &upstream, port), port);
    let resp = nginx.client().get("/").expect("GET / through nginx");
    assert_eq!(resp.status, 502, "body: {}", resp.text());
    let log = nginx.log_text();
    assert!(
        log.contains("(13: Permission denied)"),
        "nginx's 502 is not the permission refusal:\n{log}"
    );
    let stderr = server.stderr();
    assert!(
        stderr.contains("--socket-owner"),
        "fastgate, root with neither --socket-owner nor --user/--group, gave no warning naming --socket-owner; stderr:\n{stderr}"
    );
}

/// A long poll through nginx (the snippet's defaults: `fastcgi_read_timeout`
/// 60 s) is released by a POST through the same nginx, and neither needs a
/// worker thread: both are busy sleeping meanwhile.
#[test]
fn a_long_poll_is_released_by_a_post_through_nginx() {
    if !require_tool("nginx") {
        return;
    }
    let mut args = vec!["--listen", "{dir}/fg.sock"];
    args.extend(socket_owner_args());
    args.extend([
        "--mount",
        "/events=pubsub",
        "--mount",
        "/sleep=sleep",
        "--max-threads",
        "2",
        "--min-threads",
        "2",
    ]);
    let server = Server::start(&args);
    let upstream = format!("unix:{}", server.unix_path(0).display());
    let port = frontend::free_port();
    let nginx = Nginx::start(&render(FASTCGI_SNIPPET, &upstream, port), port);
    let sleepers: Vec<_> = (0..2)
        .map(|_| {
            let mut c = nginx.client();
            std::thread::spawn(move || c.get("/sleep?ms=4000").map(|r| r.status))
        })
        .collect();
    let mut waiter_client = nginx.client();
    let waiter = std::thread::spawn(move || waiter_client.get("/events/news?timeout=20"));
    let started = std::time::Instant::now();
    let mut delivered = String::new();
    while started.elapsed() < Duration::from_secs(10) {
        let r = nginx
            .client()
            .post("/events/news", b"extra!")
            .expect("POST");
        delivered = r.text();
        if delivered == "delivered 1\n" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(delivered, "delivered 1\n");
    let got = waiter.join().expect("waiter thread").expect("GET");
    assert_eq!((got.status, got.text().as_str()), (200, "extra!"));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    for s in sleepers {
        assert_eq!(s.join().expect("sleeper").expect("GET /sleep"), 200);
    }
}

/// `nginx -t` on the config that [`Nginx::start`] would run.
fn assert_nginx_t(site: &str) {
    let dir = TempDir::new("nginx-t");
    write_config(dir.path(), site, frontend::front_user().is_some());
    let d = dir.path().display().to_string();
    let nginx = common::find_on_path("nginx").expect("nginx on PATH");
    let conf = format!("{d}/nginx.conf");
    let out = std::process::Command::new(nginx)
        .args([
            "-t",
            "-p",
            &d,
            "-c",
            &conf,
            "-e",
            &format!("{d}/nginx-t.log"),
        ])
        .output()
        .expect("run nginx -t");
    assert!(
        out.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The cluster snippet with its hosts replaced by `backends`.
fn render_cluster(backends: &[String], port: u16) -> String {
    let mut site = CLUSTER_SNIPPET.to_string();
    for (host, backend) in CLUSTER_HOSTS.iter().zip(backends) {
        site = replace_once(
            &site,
            &format!("server {host} "),
            &format!("server {backend} "),
        );
    }
    replace_once(&site, SNIPPET_LISTEN, &format!("listen 127.0.0.1:{port};"))
}

#[test]
fn nginx_t_accepts_every_snippet() {
    if !require_tool("nginx") {
        return;
    }
    let port = frontend::free_port();
    assert_nginx_t(&render(FASTCGI_SNIPPET, "unix:/tmp/none.sock", port));
    assert_nginx_t(&render(SCGI_SNIPPET, "unix:/tmp/none.sock", port));
    let hosts: Vec<String> = (1..=3).map(|i| format!("127.0.0.1:{}", 9000 + i)).collect();
    assert_nginx_t(&render_cluster(&hosts, port));
}

/// `requests` counted by one fastgate's `status` app.
fn requests_served(server: &Server) -> u64 {
    let spec = format!("fastcgi://{}", server.tcp_addr(0));
    let status = common::fcgi_get(&spec, "/status?json");
    let json: serde_json::Value = serde_json::from_slice(&status.body).expect("status JSON");
    json["requests"].as_u64().expect("requests")
}

#[test]
fn several_hosts_share_the_load_and_cover_for_one_that_is_down() {
    if !require_tool("nginx") {
        return;
    }
    let start = || {
        let mut args = vec!["--listen", "fastcgi://127.0.0.1:0"];
        args.extend_from_slice(MOUNTS);
        args.extend(["--mount", "/status=status"]);
        Server::start(&args)
    };
    let mut hosts: Vec<Server> = (0..3).map(|_| start()).collect();
    let backends: Vec<String> = hosts.iter().map(|h| h.tcp_addr(0).to_string()).collect();
    let port = frontend::free_port();
    let nginx = Nginx::start(&render_cluster(&backends, port), port);
    let mut client = nginx.client();
    for _ in 0..9 {
        assert_hello(&client.get("/hello").expect("GET /hello"));
    }
    // Round robin: each host had its share (status requests are counted
    // after they are answered, so each count is of /hello alone).
    for (i, host) in hosts.iter().enumerate() {
        assert!(requests_served(host) >= 1, "host {i} served nothing");
    }

    // One host goes down (SIGKILL: its connections reset, its port
    // refuses). Every request still gets its answer from the others:
    // nginx passes a GET on after an error, and a POST too as long as it
    // never reached the dead host (a refused connect), which is all that
    // `fastcgi_next_upstream error timeout` allows.
    drop(hosts.remove(1));
    for i in 0..12 {
        assert_hello(
            &client
                .get("/hello")
                .unwrap_or_else(|e| panic!("GET {i}: {e}")),
        );
    }
    let body = pattern(300_000, 5);
    for i in 0..6 {
        let resp = nginx
            .client()
            .post("/echo", &body)
            .unwrap_or_else(|e| panic!("POST {i}: {e}"));
        assert_echo(&resp, &body);
    }
    let log = nginx.log_text();
    assert!(
        log.contains("Connection refused"),
        "nginx never met the dead host: {log}"
    );
}

/// One HTTP/1.0 GET to 127.0.0.1:`port` from source address `from`; the
/// status code.
fn status_from(from: std::net::Ipv4Addr, port: u16, path: &str) -> u16 {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    use std::io::{Read, Write};
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket");
    let [a, b, c, d] = from.octets();
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::new(a, b, c, d, 0),
    )
    .unwrap_or_else(|e| panic!("bind {from}: {e}"));
    connect(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::new(127, 0, 0, 1, port),
    )
    .expect("connect to nginx");
    let mut stream = std::net::TcpStream::from(fd);
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").expect("send");
    let mut head = Vec::new();
    stream.read_to_end(&mut head).expect("read the answer");
    let text = String::from_utf8_lossy(&head);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"))
}

#[test]
fn status_and_ping_answer_this_machine_only() {
    if !require_tool("nginx") {
        return;
    }
    let mut args = vec!["--listen", "{dir}/fg.sock"];
    args.extend(socket_owner_args());
    args.extend([
        "--mount",
        "/=hello",
        "--mount",
        "/status=status",
        "--mount",
        "/ping=ping",
    ]);
    let server = Server::start(&args);
    let upstream = format!("unix:{}", server.unix_path(0).display());
    let port = frontend::free_port();
    let nginx = Nginx::start(&render(FASTCGI_SNIPPET, &upstream, port), port);

    let mut client = nginx.client();
    let ping = client.get("/ping").expect("GET /ping");
    assert_eq!((ping.status, ping.text().as_str()), (200, "pong\n"));
    let status = client.get("/status?json").expect("GET /status");
    assert_eq!(status.status, 200, "{}", status.text());
    assert!(status.text().contains("\"requests\""), "{}", status.text());

    // Another address of this machine is not 127.0.0.1: refused by nginx.
    let other = std::net::Ipv4Addr::new(127, 0, 0, 2);
    assert_eq!(status_from(other, port, "/status"), 403);
    assert_eq!(status_from(other, port, "/ping"), 403);
    assert_eq!(status_from(other, port, "/"), 200, "the site stays open");
    let local = std::net::Ipv4Addr::LOCALHOST;
    assert_eq!(status_from(local, port, "/status"), 200);
}
