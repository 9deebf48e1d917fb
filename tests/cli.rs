//! The `fastgate` binary's command line, driven for real: bad options exit 2
//! naming the flag, help works, and `fastgate request` reports a backend it
//! cannot reach. Server round trips live in the per-capability test files.

mod common;

use std::process::{Command, Output};

use common::Server;

fn fastgate(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fastgate"));
    cmd.args(args);
    // A stray FASTGATE_* in the developer's environment must not change the outcome.
    for (key, _) in std::env::vars() {
        if key.starts_with("FASTGATE_") {
            cmd.env_remove(key);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("the fastgate binary runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `fastgate serve ARGS`, wants status 2 and a `fastgate: FLAG` line.
fn assert_refused(args: &[&str], env: &[(&str, &str)], flag: &str) -> String {
    let mut argv = vec!["serve"];
    argv.extend_from_slice(args);
    let out = fastgate(&argv, env);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(
        err.starts_with(&format!("fastgate: {flag} ")),
        "{args:?}: {err}"
    );
    assert!(out.stdout.is_empty(), "{args:?}");
    err
}

#[test]
fn bad_values_exit_2_naming_the_flag() {
    assert_refused(&["--max-threads", "0"], &[], "--max-threads");
    let err = assert_refused(&["--idle-timeout", "5x"], &[], "--idle-timeout");
    assert!(
        err.contains("\"5x\": expected a duration like 500ms, 30s or 5m"),
        "{err}"
    );
    assert_refused(&["--listen", "ftp://x"], &[], "--listen");
    assert_refused(&["--mount", "nope=hello"], &[], "--mount");
    let err = assert_refused(&["--mount", "/=nope"], &[], "--mount");
    assert!(err.contains("hello"), "the known apps are listed: {err}");
}

#[test]
fn unix_prefix_is_the_bare_socket_path() {
    let server = Server::start(&["--listen", "unix:{dir}/a.sock"]);
    let spec = format!("unix:{}", server.unix_path(0).display());
    let out = fastgate(&["request", &spec, "/", "-o"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(out.stdout, b"Hello, world!\n");
    let err = assert_refused(&["--listen", "unix:a.sock"], &[], "--listen");
    assert!(err.contains("must be absolute"), "{err}");
}

#[test]
fn environment_lists_may_have_spaces_around_commas() {
    let dir = common::TempDir::new();
    let mut cmd = common::serve_command(&[]);
    let (a, b) = (dir.join("a.sock"), dir.join("b.sock"));
    cmd.env("FASTGATE_LISTEN", format!("{a}, unix:{b} ,"));
    cmd.env("FASTGATE_MOUNT", "/=hello, /echo=echo");
    let server = Server::spawn(cmd, dir, 2);
    assert_eq!(server.specs(), [a, b.clone()]);
    let out = fastgate(&["request", &b, "/echo", "-d", "hi", "-o"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(out.stdout, b"hi");
}

#[test]
fn a_set_but_empty_variable_is_an_error() {
    // The bad --max-threads makes a build that ignores the empty variable
    // fail at once (naming the wrong flag) instead of serving for good.
    let args = ["--max-threads", "0"];
    for value in ["", " , "] {
        let err = assert_refused(&args, &[("FASTGATE_LISTEN", value)], "--listen");
        assert!(
            err.contains("(from FASTGATE_LISTEN): set but empty"),
            "{err}"
        );
    }
    let err = assert_refused(&args, &[("FASTGATE_MAX_REQS", "")], "--max-reqs");
    assert!(err.contains("give FASTGATE_MAX_REQS a value"), "{err}");
}

#[test]
fn a_negative_number_is_the_flags_bad_value() {
    let err = assert_refused(&["--max-reqs", "-3"], &[], "--max-reqs");
    assert_eq!(
        err,
        "fastgate: --max-reqs \"-3\": expected a whole number\n"
    );
    assert_refused(&["--idle-timeout", "-1s"], &[], "--idle-timeout");
    let out = fastgate(&["request", "127.0.0.1:9", "--timeout", "-1s"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("fastgate: --timeout \"-1s\": "));
}

#[test]
fn bad_environment_values_exit_2_naming_flag_and_variable() {
    let err = assert_refused(&[], &[("FASTGATE_MAX_REQS", "0")], "--max-reqs");
    assert!(err.contains("FASTGATE_MAX_REQS"), "{err}");
    let env = [("FASTGATE_CGI_ALLOW_ROOT", "maybe")];
    let err = assert_refused(&[], &env, "--cgi-allow-root");
    assert!(
        err.contains("(from FASTGATE_CGI_ALLOW_ROOT): expected true or false"),
        "{err}"
    );
    let mounts = [("FASTGATE_MOUNT", "/=hello,/status=nope")];
    let err = assert_refused(&[], &mounts, "--mount");
    assert!(err.contains("\"/status=nope\""), "{err}");
}

#[test]
fn a_log_file_in_a_missing_directory_is_named_once_with_the_fix() {
    let dir = common::TempDir::new();
    let missing = dir.path().join("no-dir");
    let file = missing.join("x.log").display().to_string();
    for flag in ["--error-log", "--access-log"] {
        let argv = ["serve", "--listen", "127.0.0.1:0", flag, &file];
        let out = fastgate(&argv, &[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{flag}: {err}");
        assert_eq!(err.matches(&file).count(), 1, "{flag}: {err}");
        let fix = format!(
            "directory {} does not exist: create it first\n",
            missing.display()
        );
        assert!(err.starts_with(&format!("fastgate: {flag}")), "{err}");
        assert!(err.ends_with(&format!("{file}: {fix}")), "{err}");
    }
}

#[test]
fn unknown_flags_are_usage_errors() {
    let out = fastgate(&["serve", "--no-such-flag"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.starts_with("fastgate: ") && err.contains("--no-such-flag"),
        "{err}"
    );
}

#[test]
fn help_works() {
    for argv in [
        &["--help"][..],
        &["serve", "--help"],
        &["request", "--help"],
    ] {
        let out = fastgate(argv, &[]);
        assert_eq!(out.status.code(), Some(0), "{argv:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: fastgate"));
    }
    let out = fastgate(&["serve", "--help"], &[]);
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--mount",
        "--max-reqs",
        "--idle-timeout",
        "FASTGATE_QUEUE",
    ] {
        assert!(help.contains(flag), "{flag} missing from serve --help");
    }
    let out = fastgate(&["--version"], &[]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn help_fits_100_columns_without_a_terminal() {
    for argv in [
        &["--help"][..],
        &["serve", "--help"],
        &["request", "--help"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_fastgate"))
            .args(argv)
            .env_remove("COLUMNS")
            .output()
            .expect("the fastgate binary runs");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.lines().count() > 5, "{argv:?}: {help}");
        for line in help.lines() {
            assert!(line.chars().count() <= 100, "{argv:?}: {line}");
        }
    }
}

#[test]
fn help_no_longer_says_anything_is_not_built() {
    let out = fastgate(&["serve", "--help"], &[]);
    let help = String::from_utf8_lossy(&out.stdout).replace('\n', " ");
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(!help.contains("not built"), "{help}");
    // The cgi flags say what they do, and the app they serve.
    for flag in ["--cgi-root", "--cgi-allow-root", "--cgi-stderr"] {
        assert!(help.contains(flag), "{flag} in: {help}");
    }
    assert!(help.contains("required by --mount PREFIX=cgi"), "{help}");
}

// ---- `fastgate request` and `fastgate::client` against scripted peers ----
//
// Each peer is a thread that accepts one connection on 127.0.0.1 (or a Unix
// socket), reads one request with the crate's own decoders, answers with
// fixed bytes and closes: enough to check what the client sends and how it
// reads the answer, without the server.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixListener;
use std::thread::JoinHandle;
use std::time::Duration;

use fastgate::client::{self, RequestOptions, Role};
use fastgate::protocol::fastcgi::{self, Decoder, Event, ProtocolStatus, RecordType, Stream};
use fastgate::protocol::scgi;

/// How long a peer waits for the client before failing the test.
const PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// What a peer saw.
#[derive(Debug, Default)]
struct Seen {
    role: u16,
    flags: u8,
    params: Vec<(String, String)>,
    stdin: Vec<u8>,
    data: Vec<u8>,
}

impl Seen {
    fn param(&self, name: &str) -> Option<&str> {
        let found = self.params.iter().rev().find(|(n, _)| n == name);
        found.map(|(_, v)| v.as_str())
    }
}

/// The records of a FastCGI answer: `stdout` (CGI head and body), `stderr`.
fn fastcgi_answer(stdout: &[u8], stderr: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    fastcgi::encode_stream(&mut out, RecordType::Stdout, 1, stdout);
    fastcgi::encode_end_of_stream(&mut out, RecordType::Stdout, 1);
    fastcgi::encode_stream(&mut out, RecordType::Stderr, 1, stderr);
    fastcgi::encode_end_request(&mut out, 1, 0, ProtocolStatus::RequestComplete);
    out
}

fn fastcgi_peer(answer: Vec<u8>) -> (String, JoinHandle<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let peer = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let seen = read_fastcgi_request(&mut conn);
        conn.write_all(&answer).unwrap();
        seen
    });
    (addr, peer)
}

/// Reads records until STDIN (and, for a FILTER, DATA) has ended; a
/// client that stalls fails the test instead of hanging it.
fn read_fastcgi_request(conn: &mut TcpStream) -> Seen {
    conn.set_read_timeout(Some(PEER_TIMEOUT)).unwrap();
    let mut seen = Seen::default();
    let (mut params, mut stdin_done, mut data_done) = (Vec::new(), false, false);
    let mut decoder = Decoder::new();
    let mut buf = vec![0u8; 1 << 16];
    while !(stdin_done && (data_done || seen.role != 3)) {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "the client closed mid-request");
        let mut pos = 0;
        while pos < n {
            let (used, event) = decoder.decode(&buf[pos..n]).unwrap();
            pos += used;
            match event {
                Some(Event::BeginRequest { role, flags, .. }) => {
                    (seen.role, seen.flags) = (role, flags)
                }
                Some(Event::Stream { stream, data, .. }) => match stream {
                    Stream::Params => params.extend_from_slice(data),
                    Stream::Stdin if data.is_empty() => stdin_done = true,
                    Stream::Stdin => seen.stdin.extend_from_slice(data),
                    Stream::Data if data.is_empty() => data_done = true,
                    Stream::Data => seen.data.extend_from_slice(data),
                    _ => panic!("unexpected stream {stream:?}"),
                },
                Some(other) => panic!("unexpected record {other:?}"),
                None if used == 0 => break,
                None => {}
            }
        }
    }
    seen.params = pairs(&fastcgi::parse_pairs(&params).unwrap());
    seen
}

fn pairs(raw: &[(&[u8], &[u8])]) -> Vec<(String, String)> {
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
    raw.iter().map(|(n, v)| (text(n), text(v))).collect()
}

#[test]
fn client_sends_nginx_params_and_reads_the_answer() {
    let answer = fastcgi_answer(
        b"Status: 201 Created\r\nX-Peer: fake\r\n\r\nhello",
        b"warn\n",
    );
    let (addr, peer) = fastcgi_peer(answer);
    let mut opts = RequestOptions::new(addr.parse().unwrap(), "/echo/x?a=1&b=2");
    opts.headers = vec![
        ("X-Request-ID".into(), "r-1".into()),
        ("Content-Type".into(), "text/x".into()),
    ];
    opts.params = vec![
        ("SERVER_NAME".into(), "example.test".into()),
        ("EXTRA".into(), "1".into()),
    ];
    let resp = client::send(&opts).unwrap();
    let seen = peer.join().unwrap();

    assert_eq!((resp.head.status, &*resp.head.reason), (201, "Created"));
    assert_eq!(resp.head.header("x-peer"), Some("fake"));
    assert_eq!(resp.body, b"hello");
    assert_eq!(resp.stderr, b"warn\n");
    assert_eq!((resp.app_status, resp.protocol_status), (Some(0), Some(0)));

    assert_eq!((seen.role, seen.flags), (1, fastcgi::FCGI_KEEP_CONN));
    for (name, value) in [
        ("REQUEST_METHOD", "GET"),
        ("SCRIPT_NAME", "/echo/x"),
        ("DOCUMENT_URI", "/echo/x"),
        ("REQUEST_URI", "/echo/x?a=1&b=2"),
        ("QUERY_STRING", "a=1&b=2"),
        ("CONTENT_LENGTH", ""),
        ("CONTENT_TYPE", "text/x"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("HTTP_HOST", "localhost"),
        ("HTTP_X_REQUEST_ID", "r-1"),
        ("SERVER_NAME", "example.test"),
        ("EXTRA", "1"),
    ] {
        assert_eq!(seen.param(name), Some(value), "{name}");
    }
    assert_eq!(
        seen.param("PATH_INFO"),
        None,
        "nginx sends no PATH_INFO by default"
    );
    let names: Vec<&str> = seen.params.iter().map(|(n, _)| n.as_str()).collect();
    let mut unique = names.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "no param twice: {names:?}");
}

#[test]
fn request_command_posts_and_prints_the_response() {
    let answer = fastcgi_answer(
        b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nbody\n",
        b"note\n",
    );
    let (addr, peer) = fastcgi_peer(answer.clone());
    let out = fastgate(&["request", &addr, "/post", "-d", "hello"], &[]);
    let seen = peer.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        out.stdout,
        b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nbody\n"
    );
    assert!(stderr(&out).contains("note"), "backend stderr is copied");
    assert_eq!(seen.param("REQUEST_METHOD"), Some("POST"));
    assert_eq!(seen.param("CONTENT_LENGTH"), Some("5"));
    assert_eq!(seen.stdin, b"hello");

    let (addr, _peer) = fastcgi_peer(answer);
    let out = fastgate(
        &["request", &format!("fastcgi://{addr}"), "-o", "-X", "PUT"],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(out.stdout, b"body\n");
}

#[test]
fn request_command_exits_1_on_a_5xx_but_prints_it() {
    let answer = fastcgi_answer(
        b"Status: 503 Service Unavailable\r\nRetry-After: 1\r\n\r\nbusy\n",
        b"",
    );
    let (addr, _peer) = fastcgi_peer(answer);
    let out = fastgate(&["request", &addr], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Status: 503 Service Unavailable\r\n"));
}

#[test]
fn request_command_reports_an_unreachable_backend() {
    // Bind then drop: nobody listens on that port afterwards.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let spec = format!("fastcgi://127.0.0.1:{port}");
    let out = fastgate(&["request", &spec, "/status"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim_end(),
        format!("fastgate: {spec}: connection refused")
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn request_command_usage_errors_exit_2() {
    for (argv, flag) in [
        (&["request", "ftp://x"][..], "SPEC"),
        (&["request", "127.0.0.1:9", "--timeout", "5x"], "--timeout"),
        (&["request", "127.0.0.1:9", "--role", "boss"], "--role"),
        (&["request", "127.0.0.1:9", "-H", "bad header"], "--header"),
        (&["request", "127.0.0.1:9", "--param", "=x"], "--param"),
        (
            &["request", "127.0.0.1:9", "-d", "@/nonexistent/file"],
            "--data",
        ),
        (&["request", "127.0.0.1:9", "no-slash"], "URI"),
    ] {
        let out = fastgate(argv, &[]);
        assert_eq!(out.status.code(), Some(2), "{argv:?}");
        assert!(
            stderr(&out).starts_with(&format!("fastgate: {flag} ")),
            "{argv:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn request_command_names_a_listener_of_the_other_protocol() {
    let server = Server::start(&[
        "--listen",
        "fastcgi://127.0.0.1:0",
        "--listen",
        "scgi://127.0.0.1:0",
    ]);
    let (fcgi, scgi) = (server.tcp_addr(0), server.tcp_addr(1));
    for (spec, hint) in [
        (
            format!("scgi://{fcgi}"),
            "closed the connection without a response",
        ),
        (
            format!("fastcgi://{scgi}"),
            "answered \"Status: 400 Bad Request\"",
        ),
        (scgi.to_string(), "which is not FastCGI"),
    ] {
        let out = fastgate(&["request", &spec, "/"], &[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{spec}: {err}");
        assert!(out.stdout.is_empty(), "{spec}: nothing made up on stdout");
        assert!(
            err.starts_with(&format!("fastgate: {spec}: the backend ")),
            "{err}"
        );
        assert!(err.contains(hint), "{spec}: {err}");
        assert!(err.contains(": wrong protocol? (try "), "{err}");
    }
    let out = fastgate(&["request", &format!("scgi://{fcgi}"), "/"], &[]);
    assert!(stderr(&out).ends_with(&format!("(try fastcgi://{fcgi})\n")));
    let out = fastgate(&["request", &format!("fastcgi://{scgi}"), "/"], &[]);
    assert!(stderr(&out).ends_with(&format!("(try scgi://{scgi})\n")));
}

#[test]
fn request_command_says_spec_and_uri_are_two_arguments() {
    let out = fastgate(&["request", "127.0.0.1:9000/hello"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "fastgate: SPEC \"127.0.0.1:9000/hello\": SPEC and URI are separate arguments: \
         fastgate request 127.0.0.1:9000 /hello\n"
    );
}

#[test]
fn client_times_out_on_a_silent_backend() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let holder = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        std::thread::sleep(Duration::from_millis(800));
        drop(conn);
    });
    let mut opts = RequestOptions::new(addr.to_string().parse().unwrap(), "/");
    opts.timeout = Duration::from_millis(200);
    let err = client::send(&opts).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{addr}: no complete response within")),
        "{err}"
    );
    holder.join().unwrap();
}

#[test]
fn filter_role_sends_the_body_as_data() {
    let (addr, peer) = fastcgi_peer(fastcgi_answer(b"Status: 200\r\n\r\nok", b""));
    let mut opts = RequestOptions::new(addr.parse().unwrap(), "/f");
    opts.role = Role::Filter;
    opts.body = b"file content".to_vec();
    let resp = client::send(&opts).unwrap();
    let seen = peer.join().unwrap();
    assert_eq!((resp.head.status, resp.body.as_slice()), (200, &b"ok"[..]));
    assert_eq!(seen.role, 3);
    assert!(seen.stdin.is_empty());
    assert_eq!(seen.data, b"file content");
    assert_eq!(seen.param("FCGI_DATA_LENGTH"), Some("12"));
    assert!(seen.param("FCGI_DATA_LAST_MOD").is_some());
}

#[test]
fn without_keep_conn_the_backend_must_close() {
    // The peer closes after answering: fine.
    let (addr, peer) = fastcgi_peer(fastcgi_answer(b"Status: 200\r\n\r\n", b""));
    let mut opts = RequestOptions::new(addr.parse().unwrap(), "/");
    opts.keep_conn = false;
    client::send(&opts).unwrap();
    assert_eq!(peer.join().unwrap().flags, 0);

    // A peer that answers and keeps the connection open is caught.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let holder = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        read_fastcgi_request(&mut conn);
        conn.write_all(&fastcgi_answer(b"Status: 200\r\n\r\n", b""))
            .unwrap();
        std::thread::sleep(Duration::from_millis(800));
    });
    opts.spec = addr.parse().unwrap();
    opts.timeout = Duration::from_millis(300);
    let err = client::send(&opts).unwrap_err().to_string();
    assert!(err.contains("kept the connection open"), "{err}");
    holder.join().unwrap();
}

#[test]
fn an_empty_answer_reads_as_502() {
    let mut answer = Vec::new();
    fastcgi::encode_end_request(&mut answer, 1, 0, ProtocolStatus::Overloaded);
    let (addr, _peer) = fastcgi_peer(answer);
    let resp = client::send(&RequestOptions::new(addr.parse().unwrap(), "/")).unwrap();
    assert_eq!(resp.head.status, 502);
    assert_eq!(resp.protocol_status, Some(ProtocolStatus::Overloaded as u8));
}

#[test]
fn scgi_over_a_unix_socket() {
    let path = std::env::temp_dir().join(format!("fastgate-cli-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let peer = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(PEER_TIMEOUT)).unwrap();
        let mut wire = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = conn.read(&mut buf).unwrap();
            assert!(n > 0, "the client closed mid-request");
            wire.extend_from_slice(&buf[..n]);
            if let scgi::Header::Complete {
                consumed,
                params,
                content_length,
            } = scgi::parse_header(&wire, 1 << 16).unwrap()
            {
                if (wire.len() - consumed) as u64 >= content_length {
                    let uri = params.get_str("REQUEST_URI").unwrap_or("").to_string();
                    conn.write_all(b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n")
                        .unwrap();
                    conn.write_all(&wire[consumed..]).unwrap();
                    return uri;
                }
            }
        }
    });
    let spec = format!("scgi:{}", path.display());
    let out = fastgate(&["request", &spec, "/s?x=1", "-d", "ping", "-o"], &[]);
    let _ = std::fs::remove_file(&path);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(out.stdout, b"ping");
    assert_eq!(peer.join().unwrap(), "/s?x=1");
}
