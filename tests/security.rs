//! Claims of docs/SECURITY.md that no other suite backs: which user each
//! process of a dropped-root server runs as (master, prefork children, CGI
//! scripts) and what the one process that keeps root (the janitor that
//! removes socket files at exit) holds. These need root to drop from; as
//! another user they say so and pass.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{
    child_pids, comm, eventually, nginx_params, set_param, FcgiConn, Server, TempDir, JANITOR,
};

/// www-data on Debian.
const WWW_DATA: &str = "33";

fn is_root() -> bool {
    let root = nix::unistd::Uid::effective().is_root();
    if !root {
        eprintln!("SKIP: dropping privileges needs root");
    }
    root
}

/// The `Key:` line of /proc/PID/status, its values only.
fn status_ids(pid: i32, key: &str) -> Vec<String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|rest| rest.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

/// Real, effective, saved and filesystem ids all `id`, and root's group
/// not among the supplementary ones.
fn assert_runs_as(pid: i32, id: &str) {
    for key in ["Uid:", "Gid:"] {
        let ids = status_ids(pid, key);
        assert!(
            ids.len() == 4 && ids.iter().all(|i| i == id),
            "pid {pid} ({}) {key} {ids:?}",
            comm(pid)
        );
    }
    let groups = status_ids(pid, "Groups:");
    assert!(
        !groups.iter().any(|g| g == "0"),
        "pid {pid} groups {groups:?}"
    );
}

#[test]
fn every_process_but_the_janitor_drops_to_the_user() {
    if !is_root() {
        return;
    }
    let server = Server::start(&[
        "--listen",
        "fastcgi:{dir}/a.sock",
        "--processes",
        "2",
        "--mount",
        "/=ping",
        "-u",
        WWW_DATA,
    ]);
    let master = server.pid();
    let mut kids = Vec::new();
    let found = eventually(Duration::from_secs(10), || {
        kids = child_pids(master)
            .into_iter()
            .map(|p| (p, comm(p)))
            .collect();
        kids.iter().filter(|(_, c)| c != JANITOR).count() == 2
    });
    assert!(found, "two children and the janitor: {kids:?}");
    assert_runs_as(master, WWW_DATA);
    for (pid, name) in &kids {
        if name == JANITOR {
            assert_janitor_holds_nothing(*pid);
        } else {
            assert_runs_as(*pid, WWW_DATA);
        }
    }
}

/// The janitor keeps root to unlink the socket file in a root-owned
/// directory at exit; it holds no socket, only its pipe from the server.
fn assert_janitor_holds_nothing(pid: i32) {
    let fds: Vec<_> = fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("janitor's fds")
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .collect();
    assert_eq!(fds.len(), 1, "the janitor holds only its pipe: {fds:?}");
    assert!(
        fds[0].to_string_lossy().starts_with("pipe:"),
        "the janitor's one fd is a pipe: {fds:?}"
    );
}

#[test]
fn cgi_scripts_run_as_the_user_with_its_groups_only() {
    if !is_root() {
        return;
    }
    let root = TempDir::new();
    // The dropped user must be able to reach the script.
    fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).expect("chmod root");
    let script = root.join("id.sh");
    let body = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\nid -u; id -g; id -G\n";
    fs::write(&script, body).expect("write script");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod script");
    let cgi_root = root.path().to_str().expect("utf-8 temp dir");
    let server = Server::start(&[
        "--listen",
        "fastcgi:{dir}/cgi.sock",
        "--mount",
        "/=cgi",
        "--cgi-root",
        cgi_root,
        "-u",
        WWW_DATA,
    ]);
    let mut params = nginx_params("GET", "/id.sh", None);
    set_param(&mut params, "SCRIPT_FILENAME", Some(&script));
    let mut conn = FcgiConn::connect(&server.spec(0));
    conn.request(1, false, &params, b"");
    let resp = conn.read_until_end(1).response();
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    let body = resp.body_str();
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines[..2], [WWW_DATA, WWW_DATA], "uid and gid");
    let groups: Vec<&str> = lines[2].split_whitespace().collect();
    assert!(!groups.contains(&"0"), "no root group: {groups:?}");
}
