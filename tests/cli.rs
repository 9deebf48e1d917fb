//! The `fastgate` binary's command line, driven for real: bad options exit 2
//! naming the flag, help works, and `fastgate request` reports a backend it
//! cannot reach. Server round trips live in the per-capability test files.

use std::process::{Command, Output};

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
    let err = assert_refused(&["--listen", "http://127.0.0.1:1"], &[], "--listen");
    assert!(err.contains("not available in this build"), "{err}");
}

#[test]
fn bad_environment_values_exit_2_naming_flag_and_variable() {
    let err = assert_refused(&[], &[("FASTGATE_MAX_REQS", "0")], "--max-reqs");
    assert!(err.contains("FASTGATE_MAX_REQS"), "{err}");
    let mounts = [("FASTGATE_MOUNT", "/=hello,/status=nope")];
    let err = assert_refused(&[], &mounts, "--mount");
    assert!(err.contains("\"/status=nope\""), "{err}");
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
    for argv in [&["--help"][..], &["serve", "--help"]] {
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
