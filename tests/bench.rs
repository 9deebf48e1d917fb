//! `fastgate bench` against the real server: counts, multiplexing, SCGI,
//! a body, and the failures that exit 1 (nothing listening, not a 200).

mod common;

use std::process::{Command, Output};

use common::Server;

fn bench(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fastgate"));
    cmd.arg("bench").args(args);
    // A stray FASTGATE_* or RUST_LOG must not change the outcome.
    for (key, _) in std::env::vars() {
        if key.starts_with("FASTGATE_") || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd.output().expect("the fastgate binary runs")
}

/// Runs with `--json`; the status and the parsed report.
fn bench_json(args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let mut argv = args.to_vec();
    argv.push("--json");
    let out = bench(&argv);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {err}"));
    (out.status.code(), report, err)
}

fn assert_clean(args: &[&str], requests: u64) {
    let (code, report, err) = bench_json(args);
    assert_eq!(code, Some(0), "{args:?}: {err}");
    assert_eq!(report["requests"], requests, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert!(report["req_per_sec"].as_f64().unwrap() > 0.0, "{report}");
    assert!(err.is_empty(), "nothing live when piped: {err}");
}

#[test]
fn fastcgi_counts_every_request() {
    let server = Server::start(&["--listen", "fastcgi://127.0.0.1:0"]);
    let spec = server.spec(0);
    assert_clean(&[&spec, "/", "-c", "4", "-n", "2000"], 2000);
    assert_clean(&[&spec, "/", "-c", "4", "-n", "2000", "--mux", "4"], 2000);
    assert_clean(
        &[
            &spec,
            "/",
            "-c",
            "4",
            "-t",
            "2",
            "-n",
            "300",
            "--no-keep-conn",
        ],
        300,
    );
}

#[test]
fn scgi_and_a_body() {
    let server = Server::start(&[
        "--listen",
        "scgi://127.0.0.1:0",
        "--listen",
        "fastcgi://127.0.0.1:0",
        "--mount",
        "/=hello",
        "--mount",
        "/echo=echo",
    ]);
    assert_clean(&[&server.spec(0), "/", "-c", "4", "-n", "500"], 500);
    let (code, report, err) =
        bench_json(&[&server.spec(1), "/echo", "--data", "ping", "-n", "100"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        (report["requests"].as_u64(), report["errors"].as_u64()),
        (Some(100), Some(0))
    );
    let received = report["bytes_received"].as_u64().unwrap();
    assert!(received >= 100 * 4, "the echo came back: {report}");
}

#[test]
fn nothing_listening_exits_1() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let spec = format!("fastcgi://127.0.0.1:{port}");
    let (code, report, err) = bench_json(&[&spec, "-n", "10"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(report["errors"].as_u64().unwrap() > 0, "{report}");
    assert!(err.contains("connection refused"), "{err}");
    assert!(err.starts_with("fastgate: bench: "), "{err}");
}

#[test]
fn a_non_200_answer_is_an_error() {
    let server = Server::start(&[
        "--listen",
        "fastcgi://127.0.0.1:0",
        "--mount",
        "/hello=hello",
    ]);
    let (code, report, err) = bench_json(&[&server.spec(0), "/nope", "-c", "2", "-n", "20"]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(
        (report["requests"].as_u64(), report["errors"].as_u64()),
        (Some(20), Some(20))
    );
    assert!(err.contains("status 404"), "{err}");
}

#[test]
fn usage_errors_exit_2_naming_the_flag() {
    for (args, flag) in [
        (&["127.0.0.1:1", "-c", "0"][..], "-c"),
        (&["127.0.0.1:1", "--mux", "x"], "--mux"),
        (&["127.0.0.1:1", "-d", "soon"], "-d"),
        (&["127.0.0.1:1", "--timeout", "0s"], "--timeout"),
        (&["127.0.0.1:1", "--param", "NOVALUE"], "--param"),
    ] {
        let out = bench(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.starts_with(&format!("fastgate: {flag} ")), "{err}");
    }
}

#[test]
fn a_backend_that_never_answers_fails_after_the_timeout() {
    let server = Server::start(&[
        "--listen",
        "fastcgi://127.0.0.1:0",
        "--mount",
        "/sleep=sleep",
    ]);
    let args = [&server.spec(0), "/sleep?ms=20000", "-c", "2", "-n", "2"];
    let (code, report, err) = bench_json(&[&args[..], &["--timeout", "500ms"]].concat());
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(report["errors"], 2, "{report}");
    assert!(err.contains("no response within 500ms"), "{err}");
}

/// On a terminal the run shows a live line (requests so far, the rate),
/// rewritten in place and wiped before the report; piped it shows none
/// (`assert_clean`). Python's pty module gives the run a terminal.
#[test]
fn a_terminal_gets_a_live_progress_line() {
    if !common::require_tool("python3") {
        return;
    }
    let server = Server::start(&["--listen", "fastcgi://127.0.0.1:0"]);
    let script = "import pty, sys; pty.spawn(sys.argv[1:])";
    let out = Command::new("python3")
        .args(["-c", script, env!("CARGO_BIN_EXE_fastgate"), "bench"])
        .args([&server.spec(0), "/", "-c", "2", "-d", "3500ms"])
        .output()
        .expect("python3 runs");
    let seen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{seen}");
    let live = seen.matches("\r\x1b[K").count();
    assert!(live >= 3, "two progress lines and the wipe: {seen:?}");
    assert!(seen.contains(" requests, 0 errors, "), "{seen:?}");
    assert!(seen.contains("req/s"), "{seen:?}");
}

/// `--param` replaces what bench sends like nginx (here SCRIPT_NAME, which
/// routes: `/x` alone is a 404).
#[test]
fn a_param_replaces_the_one_sent_like_nginx() {
    let server = Server::start(&[
        "--listen",
        "fastcgi://127.0.0.1:0",
        "--mount",
        "/hello=hello",
    ]);
    let spec = server.spec(0);
    let (code, report, _) = bench_json(&[&spec, "/x", "-c", "1", "-n", "3"]);
    assert_eq!((code, &report["errors"]), (Some(1), &3.into()), "{report}");
    assert_clean(
        &[
            &spec,
            "/x",
            "-c",
            "1",
            "-n",
            "3",
            "--param",
            "SCRIPT_NAME=/hello",
        ],
        3,
    );
}

/// A backend that serves some connections and leaves the others waiting
/// (here one kept-alive connection at a time, `--max-conns 1`) starves
/// them: no request fails, yet the run says so and exits 1.
#[test]
fn starved_connections_are_reported_and_exit_1() {
    let server = Server::start(&["--listen", "fastcgi://127.0.0.1:0", "--max-conns", "1"]);
    let (code, report, err) = bench_json(&[&server.spec(0), "/", "-c", "3", "-d", "1s"]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(report["unserved_connections"], 2, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert!(
        err.contains("2 of 3 connections never got an answer"),
        "{err}"
    );
}
