//! `make install` and `make uninstall` into a DESTDIR, as a packager runs
//! them: the binary (the one cargo built for the tests, passed as `BIN=`, so
//! no release build is needed), the man page and every file of deploy/ land
//! where they should; the installed binary runs and serves; uninstall
//! leaves none of our files behind.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{bin, clean_env, fcgi_get, require_tool, Server, TempDir};
use nix::sys::signal::Signal;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `make ARGS` in the repository, with no make state inherited from a
/// `make test` that runs this test.
fn make(args: &[&str]) -> Output {
    let out = Command::new("make")
        .arg("-C")
        .arg(repo())
        .args(args)
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL")
        .output()
        .expect("run make");
    assert!(
        out.status.success(),
        "make {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every file under `dir`, as paths relative to it.
fn files_under(dir: &Path) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(path) = todo.pop() {
        if path.is_dir() {
            let entries = std::fs::read_dir(&path).expect("read dir");
            todo.extend(entries.map(|e| e.expect("dir entry").path()));
        } else if path.symlink_metadata().is_ok() {
            let rel = path.strip_prefix(dir).expect("under dir").to_path_buf();
            found.insert(rel);
        }
    }
    found
}

/// What `make install PREFIX=/usr` must install, relative to DESTDIR.
fn expected_files() -> BTreeSet<PathBuf> {
    let mut want: BTreeSet<PathBuf> = files_under(&repo().join("deploy"))
        .into_iter()
        .map(|f| Path::new("usr/share/fastgate").join(f))
        .collect();
    want.insert("usr/bin/fastgate".into());
    want.insert("usr/share/man/man1/fastgate.1".into());
    want
}

fn mode(path: &Path) -> u32 {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    meta.permissions().mode() & 0o777
}

#[test]
fn install_into_destdir_then_uninstall() {
    if !require_tool("make") {
        return;
    }
    let tmp = TempDir::new();
    let destdir = format!("DESTDIR={}", tmp.join("root"));
    let root = tmp.path().join("root");
    let args = |target| [target, destdir.as_str(), "PREFIX=/usr"];
    let binary = format!("BIN={}", bin());

    make(&[&args("install")[..], &[binary.as_str()]].concat());
    assert_eq!(files_under(&root), expected_files());
    for file in files_under(&repo().join("deploy")) {
        let installed = root.join("usr/share/fastgate").join(&file);
        let shipped = repo().join("deploy").join(&file);
        assert_eq!(
            std::fs::read(&installed).expect("read installed"),
            std::fs::read(&shipped).expect("read shipped"),
            "{}",
            file.display()
        );
        let exec = mode(&shipped) & 0o111 != 0;
        let want = if exec { 0o755 } else { 0o644 };
        assert_eq!(mode(&installed), want, "mode of {}", file.display());
    }
    assert_eq!(
        std::fs::read(root.join("usr/share/man/man1/fastgate.1")).expect("man page"),
        std::fs::read(repo().join("man/fastgate.1")).expect("shipped man page")
    );
    let installed = root.join("usr/bin/fastgate");
    assert_eq!(mode(&installed), 0o755);
    check_installed_binary(&installed);

    make(&args("uninstall"));
    let left = files_under(&root);
    assert!(left.is_empty(), "left after uninstall: {left:?}");
    assert!(
        !root.join("usr/share/fastgate").exists(),
        "share/fastgate/ left behind"
    );
}

/// `fastgate --version`, and one request served by `fastgate serve`.
fn check_installed_binary(installed: &Path) {
    let out = Command::new(installed)
        .arg("--version")
        .output()
        .expect("run the installed fastgate");
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "--version: {version}");
    assert_eq!(
        version.trim(),
        format!("fastgate {}", env!("CARGO_PKG_VERSION"))
    );

    let dir = TempDir::new();
    let sock = dir.join("installed.sock");
    let mut cmd = Command::new(installed);
    cmd.args(["serve", "--listen", &sock, "--mount", "/=hello"]);
    clean_env(&mut cmd);
    let mut server = Server::spawn(cmd, dir, 1);
    assert_eq!(fcgi_get(&sock, "/").body_str(), "Hello, world!\n");
    server.signal(Signal::SIGTERM);
    let status = server.wait_exit(std::time::Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "stop: {status:?}");
}

#[test]
fn install_builds_the_release_binary_unless_given_one() {
    if !require_tool("make") {
        return;
    }
    let plan = |args: &[&str]| String::from_utf8_lossy(&make(args).stdout).into_owned();
    let default = plan(&["-n", "install", "DESTDIR=/nonexistent"]);
    assert!(default.contains("cargo build --release"), "{default}");
    assert!(default.contains("target/release/fastgate /nonexistent/usr/local/bin/fastgate"));
    let given = plan(&["-n", "install", "DESTDIR=/nonexistent", "BIN=/x/fastgate"]);
    assert!(!given.contains("cargo build"), "{given}");
    assert!(given.contains("/x/fastgate /nonexistent/usr/local/bin/fastgate"));
}
