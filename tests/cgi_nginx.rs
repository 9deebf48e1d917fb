//! The cgi app behind a real nginx (master as root, worker as www-data,
//! as Debian runs it), with the shipped snippets: `deploy/nginx/cgi.conf`
//! (the fcgiwrap location, a shell script), `deploy/nginx/git-http-backend.conf`
//! (git's smart HTTP: a push and a clone of a repository holding a 50 MB
//! file), and gitweb rendering a page. Each snippet is used as written,
//! with only its socket, listen port and paths substituted.

mod common;
mod frontend;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{require_tool, Server};
use frontend::{
    free_port, replace_once, socket_owner_args, Client, FrontProcess, TempDir, FRONT_USER,
};

const CGI_SNIPPET: &str = include_str!("../deploy/nginx/cgi.conf");
const GIT_SNIPPET: &str = include_str!("../deploy/nginx/git-http-backend.conf");
const SNIPPET_SOCKET: &str = "unix:/run/fastgate-cgi.sock";
const SNIPPET_LISTEN: &str = "listen 80;";
const GIT_HTTP_BACKEND: &str = "/usr/lib/git-core/git-http-backend";
const GITWEB: &str = "/usr/share/gitweb/gitweb.cgi";
/// The time a git command may take (a 50 MB push on a busy machine).
const GIT_TIMEOUT: Duration = Duration::from_secs(180);

/// fastgate's cgi app on a Unix socket nginx's workers may use, scripts
/// run under `roots` (as root: the tests run as root).
fn fastgate(roots: &[&Path], extra: &[&str]) -> Server {
    let mut args = vec!["--listen", "{dir}/cgi.sock"];
    args.extend(socket_owner_args());
    args.extend(["--mount", "/=cgi", "--cgi-allow-root"]);
    for root in roots {
        args.extend(["--cgi-root", root.to_str().expect("utf-8 path")]);
    }
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// nginx in the foreground, one worker (as www-data when root), `site`
/// in its http {} block.
struct Nginx {
    proc: FrontProcess,
    port: u16,
    _dir: TempDir,
}

impl Nginx {
    fn start(site: &str, port: u16) -> Nginx {
        let dir = TempDir::new("cgi-nginx");
        let d = dir.path().display().to_string();
        let user = match frontend::front_user() {
            Some(_) => format!("user {FRONT_USER};"),
            None => String::new(),
        };
        let conf = format!(
            "daemon off;\nmaster_process on;\nworker_processes 1;\n{user}\npid {d}/nginx.pid;\n\
             error_log {d}/nginx.log info;\nevents {{ worker_connections 256; }}\n\
             http {{\n access_log off;\n client_body_temp_path {d}/body;\n\
             fastcgi_temp_path {d}/fastcgi;\n include site.conf;\n}}\n"
        );
        fs::write(dir.path().join("nginx.conf"), conf).expect("write nginx.conf");
        fs::write(dir.path().join("site.conf"), site).expect("write site.conf");
        let params = fs::read_to_string("/etc/nginx/fastcgi_params").unwrap_or_else(|_| {
            "fastcgi_param QUERY_STRING $query_string;\nfastcgi_param REQUEST_METHOD $request_method;\n\
             fastcgi_param CONTENT_TYPE $content_type;\nfastcgi_param CONTENT_LENGTH $content_length;\n\
             fastcgi_param SCRIPT_NAME $fastcgi_script_name;\nfastcgi_param REQUEST_URI $request_uri;\n\
             fastcgi_param GATEWAY_INTERFACE CGI/1.1;\nfastcgi_param SERVER_NAME $server_name;\n\
             fastcgi_param SERVER_PORT $server_port;\nfastcgi_param SERVER_PROTOCOL $server_protocol;\n"
                .to_string()
        });
        fs::write(dir.path().join("fastcgi_params"), params).expect("write fastcgi_params");
        let nginx = common::find_on_path("nginx").expect("nginx on PATH");
        let conf = format!("{d}/nginx.conf");
        let args = ["-p", &d, "-c", &conf, "-e", &format!("{d}/nginx.log")];
        let log = dir.path().join("nginx.log");
        let proc = FrontProcess::start(nginx.to_str().unwrap_or("nginx"), &args, log, port);
        Nginx {
            proc,
            port,
            _dir: dir,
        }
    }
}

/// A snippet with its socket, port and `extra` (from, to) pairs
/// substituted, each found exactly once.
fn render(snippet: &str, server: &Server, port: u16, extra: &[(&str, &str)]) -> String {
    let socket = format!("unix:{}", server.unix_path(0).display());
    let mut site = replace_once(snippet, SNIPPET_SOCKET, &socket);
    site = replace_once(&site, SNIPPET_LISTEN, &format!("listen 127.0.0.1:{port};"));
    for (from, to) in extra {
        site = replace_once(&site, from, to);
    }
    site
}

#[test]
fn the_fcgiwrap_location_runs_a_script() {
    if !require_tool("nginx") {
        return;
    }
    let root = TempDir::new("cgi-root");
    let bin = root.path().join("cgi-bin");
    fs::create_dir(&bin).expect("mkdir cgi-bin");
    let script = bin.join("hello.sh");
    let text = "#!/bin/sh\necho 'Content-Type: text/plain'\necho\n\
                echo \"script=$SCRIPT_FILENAME query=$QUERY_STRING\"\necho from-stderr >&2\ncat\n";
    fs::write(&script, text).expect("write script");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
    let server = fastgate(&[&bin], &["--cgi-stderr", "both"]);
    let port = free_port();
    let root_line = format!("root {};", root.path().display());
    let site = render(
        CGI_SNIPPET,
        &server,
        port,
        &[("root /usr/lib;", &root_line)],
    );
    let nginx = Nginx::start(&site, port);
    let mut client = Client::connect(nginx.port).expect("connect to nginx");
    let body = frontend::pattern(300_000, 3);
    let resp = client.post("/cgi-bin/hello.sh?a=1", &body).expect("POST");
    assert_eq!(resp.status, 200, "{}", nginx.proc.log_text());
    let head = format!("script={} query=a=1\n", script.display());
    assert_eq!(&resp.body[..head.len()], head.as_bytes());
    assert!(resp.body[head.len()..] == body[..], "the body echoed");
    let resp = client.get("/cgi-bin/../../etc/passwd").expect("GET");
    assert!(resp.status >= 400, "an escape got {}", resp.status);
    // FCGI_STDERR lands in nginx's error log.
    let logged = common::eventually(Duration::from_secs(5), || {
        nginx.proc.log_text().contains("from-stderr")
    });
    assert!(logged, "{}", nginx.proc.log_text());
}

/// Runs git with a clean configuration, bounded in time.
fn git(dir: &Path, args: &[&str]) {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .args([
            "-c",
            "user.name=fastgate",
            "-c",
            "user.email=fastgate@example.org",
        ])
        .args(["-c", "init.defaultBranch=main", "-c", "protocol.version=2"])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn git");
    let deadline = Instant::now() + GIT_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            assert!(status.success(), "git {args:?}: {status}\n{err}");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("git {args:?} took more than {GIT_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn git_push_and_clone_over_smart_http() {
    if !require_tool("nginx") || !require_tool("git") || !require_tool(GIT_HTTP_BACKEND) {
        return;
    }
    let work = TempDir::new("cgi-git");
    let (projects, src, copy) = (
        work.path().join("srv"),
        work.path().join("src"),
        work.path().join("copy"),
    );
    fs::create_dir(&projects).expect("mkdir");
    git(&projects, &["init", "-q", "--bare", "repo.git"]);
    git(
        &projects.join("repo.git"),
        &["config", "http.receivepack", "true"],
    );
    let server = fastgate(
        &[Path::new("/usr/lib/git-core")],
        &["--request-timeout", "5m"],
    );
    let port = free_port();
    let root = format!("GIT_PROJECT_ROOT {}", projects.display());
    let site = render(
        GIT_SNIPPET,
        &server,
        port,
        &[("GIT_PROJECT_ROOT /srv/git", &root)],
    );
    let _nginx = Nginx::start(&site, port);
    let url = format!("http://127.0.0.1:{port}/git/repo.git");

    fs::create_dir(&src).expect("mkdir");
    git(&src, &["init", "-q"]);
    let big = frontend::pattern(50 << 20, 11);
    fs::write(src.join("big.bin"), &big).expect("write 50 MB");
    git(&src, &["add", "big.bin"]);
    git(&src, &["commit", "-q", "-m", "50 MB"]);
    git(&src, &["push", "-q", &url, "HEAD:refs/heads/main"]);

    git(
        work.path(),
        &["clone", "-q", &url, copy.to_str().expect("utf-8")],
    );
    let got = fs::read(copy.join("big.bin")).expect("the clone has the file");
    assert!(got == big, "the 50 MB file came back different");
}

#[test]
fn gitweb_renders_its_project_list() {
    if !require_tool("nginx") || !require_tool("git") || !require_tool(GITWEB) {
        return;
    }
    let work = TempDir::new("cgi-gitweb");
    let projects = work.path().join("srv");
    fs::create_dir(&projects).expect("mkdir");
    git(&projects, &["init", "-q", "--bare", "shown-project.git"]);
    let conf = work.path().join("gitweb.conf");
    fs::write(
        &conf,
        format!("our $projectroot = \"{}\";\n", projects.display()),
    )
    .expect("conf");
    let server = fastgate(&[Path::new("/usr/share/gitweb")], &[]);
    let port = free_port();
    let site = format!(
        "server {{\n listen 127.0.0.1:{port};\n location /gitweb/ {{\n include fastcgi_params;\n\
         fastcgi_param SCRIPT_FILENAME {GITWEB};\n fastcgi_param GITWEB_CONFIG {};\n\
         fastcgi_pass unix:{};\n }}\n}}\n",
        conf.display(),
        server.unix_path(0).display()
    );
    let nginx = Nginx::start(&site, port);
    let mut client = Client::connect(nginx.port).expect("connect to nginx");
    let resp = client.get("/gitweb/").expect("GET /gitweb/");
    let page = resp.text();
    assert_eq!(resp.status, 200, "{page}\n{}", server.stderr());
    assert!(page.contains("shown-project.git"), "{page}");
    assert!(resp
        .header("content-type")
        .is_some_and(|t| t.contains("html")));
}
