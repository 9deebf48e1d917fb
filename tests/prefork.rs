//! `--processes N`: a master that binds once, forks N children serving the
//! same socket, and supervises them with real signals: a killed child is
//! replaced, TERM lets requests in flight finish, HUP replaces every child
//! without a failed request, TTIN/TTOU change the count, a child that dies
//! at start makes the master back off instead of spinning, and
//! `--max-requests` recycles a child.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// The children of `master` that serve (its janitor left out).
fn children_of(master: i32) -> Vec<i32> {
    let mut kids = child_pids(master);
    kids.retain(|&pid| comm(pid) != JANITOR);
    kids
}

fn wait_children(master: i32, n: usize) -> Vec<i32> {
    wait_for_children(master, Duration::from_secs(10), |kids| kids.len() == n)
}

/// The children of `master` once `done` holds for them, or as they are at
/// `timeout`.
fn wait_for_children(master: i32, timeout: Duration, done: impl Fn(&[i32]) -> bool) -> Vec<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        let kids = children_of(master);
        if done(&kids) || Instant::now() > deadline {
            return kids;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// `n` children, none of them one of `gone`.
fn wait_replaced(master: i32, n: usize, gone: &[i32]) -> Vec<i32> {
    wait_for_children(master, Duration::from_secs(15), |kids| {
        kids.len() == n && !kids.iter().any(|p| gone.contains(p))
    })
}

fn prefork(n: &str, extra: &[&str]) -> Server {
    let args = [
        &[
            "--listen",
            "fastcgi:{dir}/f.sock",
            "--processes",
            n,
            "--mount",
            "/=ping",
            "--mount",
            "/sleep=sleep",
        ][..],
        extra,
    ]
    .concat();
    Server::start(&args)
}

/// Clients that ask `/` in a loop until told to stop; counts answers and
/// failures.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Load {
    fn start(spec: &str, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let threads = (0..clients)
            .map(|_| {
                let (spec, stop, ok, failed) =
                    (spec.to_string(), stop.clone(), ok.clone(), failed.clone());
                thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let got = std::panic::catch_unwind(|| fcgi_get(&spec, "/").body_str());
                        match got {
                            Ok(body) if body == "pong\n" => ok.fetch_add(1, Ordering::Relaxed),
                            _ => failed.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            threads,
        }
    }

    /// Stops the clients; (answered, failed).
    fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

#[test]
fn three_children_serve_and_a_killed_one_is_replaced() {
    let server = prefork("3", &[]);
    let kids = wait_children(server.pid(), 3);
    assert_eq!(kids.len(), 3, "children {kids:?}");
    let load = Load::start(&server.spec(0), 4);
    thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(kids[0]), Signal::SIGKILL).unwrap();
    let now = wait_replaced(server.pid(), 3, &kids[..1]);
    thread::sleep(Duration::from_millis(300));
    let (ok, failed) = load.finish();
    assert_eq!(now.len(), 3, "{now:?}");
    assert!(!now.contains(&kids[0]), "the killed child is still listed");
    assert!(ok > 50, "{ok} answers");
    // Only requests in flight in the killed child may fail: one per client.
    assert!(failed <= 4, "{failed} failed requests");
}

#[test]
fn term_lets_twenty_requests_in_flight_finish() {
    let mut server = prefork("2", &[]);
    wait_children(server.pid(), 2);
    let spec = server.spec(0);
    let waiting: Vec<_> = (0..20)
        .map(|_| {
            let spec = spec.clone();
            thread::spawn(move || fcgi_get(&spec, "/sleep?ms=1000").status)
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    server.signal(Signal::SIGTERM);
    for w in waiting {
        assert_eq!(w.join().expect("client"), 200);
    }
    let status = server.wait_exit(Duration::from_secs(15));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "{}",
        server.stderr()
    );
    assert!(
        !server.unix_path(0).exists(),
        "the socket file is left behind"
    );
}

#[test]
fn hup_replaces_every_child_without_a_failed_request() {
    let server = prefork("2", &[]);
    let before = wait_children(server.pid(), 2);
    let load = Load::start(&server.spec(0), 4);
    thread::sleep(Duration::from_millis(300));
    server.signal(Signal::SIGHUP);
    let after = wait_replaced(server.pid(), 2, &before);
    thread::sleep(Duration::from_millis(300));
    let (ok, failed) = load.finish();
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "{before:?} -> {after:?}"
    );
    assert!(ok > 50, "{ok} answers");
    assert_eq!(failed, 0, "failed requests during the rolling restart");
}

#[test]
fn ttin_and_ttou_change_the_count() {
    let server = prefork("2", &[]);
    assert_eq!(wait_children(server.pid(), 2).len(), 2);
    server.signal(Signal::SIGTTIN);
    assert_eq!(wait_children(server.pid(), 3).len(), 3);
    // One at a time: two signals sent at once may arrive as one.
    server.signal(Signal::SIGTTOU);
    assert!(server.wait_stderr("2 children from now on", Duration::from_secs(5)));
    assert_eq!(wait_children(server.pid(), 2).len(), 2);
    server.signal(Signal::SIGTTOU);
    assert_eq!(wait_children(server.pid(), 1).len(), 1);
    assert_eq!(fcgi_get(&server.spec(0), "/").body_str(), "pong\n");
}

/// Ticks of CPU (user + system) a process used so far.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

#[test]
fn children_that_die_at_start_make_the_master_back_off() {
    // The access log cannot be opened: each child fails as it starts.
    let server = prefork("2", &["--access-log", "/proc/no/such/dir/access.log"]);
    thread::sleep(Duration::from_millis(500));
    let before = cpu_ticks(server.pid());
    thread::sleep(Duration::from_secs(5));
    let spent = cpu_ticks(server.pid()) - before;
    assert!(spent < 50, "the master spent {spent} ticks in 5 s");
    let log = server.stderr();
    let starts = log.matches("ended at start").count();
    assert!(starts < 20, "{starts} failed starts in 5.5 s:\n{log}");
    assert!(log.contains("next start in"), "{log}");
}

#[test]
fn max_requests_recycles_a_child() {
    let server = prefork("2", &["--max-requests", "20"]);
    let before = wait_children(server.pid(), 2);
    for _ in 0..100 {
        assert_eq!(fcgi_get(&server.spec(0), "/").body_str(), "pong\n");
    }
    let now = wait_for_children(server.pid(), Duration::from_secs(10), |kids| {
        kids.iter().any(|p| !before.contains(p))
    });
    assert!(
        now.iter().any(|p| !before.contains(p)),
        "no child was recycled"
    );
    assert!(server.stderr().contains("recycling"), "{}", server.stderr());
}

#[test]
fn the_pidfile_holds_the_masters_pid() {
    let server = prefork("2", &["--pidfile", "{dir}/fg.pid"]);
    wait_children(server.pid(), 2);
    let pid = std::fs::read_to_string(server.dir().join("fg.pid")).unwrap();
    assert_eq!(pid.trim(), server.pid().to_string());
}

/// A master started from a copy of the binary (so a test may replace it).
fn prefork_from_copy(dir: TempDir) -> (Server, std::path::PathBuf) {
    let copy = dir.path().join("fastgate");
    std::fs::copy(bin(), &copy).expect("copy the binary");
    let d = dir.path().display().to_string();
    let mut cmd = std::process::Command::new(&copy);
    cmd.args([
        "serve",
        "--listen",
        &format!("fastcgi:{d}/f.sock"),
        "--processes",
        "2",
    ]);
    cmd.args(["--mount", "/=ping", "--pidfile", &format!("{d}/fg.pid")]);
    clean_env(&mut cmd);
    (Server::spawn(cmd, dir, 1), copy)
}

fn pidfile_pid(server: &Server) -> i32 {
    let text = std::fs::read_to_string(server.dir().join("fg.pid")).unwrap_or_default();
    text.trim().parse().unwrap_or(0)
}

#[test]
fn usr2_upgrades_the_binary_with_no_failed_request() {
    let (mut server, _copy) = prefork_from_copy(TempDir::new());
    let old = server.pid();
    wait_children(old, 2);
    let load = Load::start(&server.spec(0), 4);
    thread::sleep(Duration::from_millis(300));
    server.signal(Signal::SIGUSR2);
    let exited = server.wait_exit(Duration::from_secs(20));
    let new = pidfile_pid(&server);
    thread::sleep(Duration::from_millis(300));
    let (ok, failed) = load.finish();
    let served_after = fcgi_get(&server.spec(0), "/").body_str();
    let new_children = children_of(new);
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(new), Signal::SIGTERM);
    assert_eq!(
        exited.and_then(|s| s.code()),
        Some(0),
        "{}",
        server.stderr()
    );
    assert!(new != 0 && new != old, "pidfile still holds {new}");
    assert_eq!(
        new_children.len(),
        2,
        "new master's children {new_children:?}"
    );
    assert_eq!(served_after, "pong\n");
    assert!(ok > 50, "{ok} answers");
    assert_eq!(failed, 0, "failed requests during the upgrade");
}

#[test]
fn usr2_with_a_broken_binary_leaves_the_old_master_serving() {
    let (mut server, copy) = prefork_from_copy(TempDir::new());
    wait_children(server.pid(), 2);
    let broken = copy.with_extension("new");
    std::fs::write(&broken, "#!/bin/sh\necho broken build >&2\nexit 3\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&broken, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&broken, &copy).unwrap();
    server.signal(Signal::SIGUSR2);
    assert!(
        server.wait_stderr("still serving", Duration::from_secs(10)),
        "{}",
        server.stderr()
    );
    assert!(server.is_running());
    assert_eq!(fcgi_get(&server.spec(0), "/").body_str(), "pong\n");
    assert_eq!(pidfile_pid(&server), server.pid());
}

/// systemd's socket activation under prefork: the master takes the socket
/// from `LISTEN_FDS`, its children serve it, and it stays systemd's.
#[test]
fn listen_fds_under_prefork() {
    use std::os::fd::OwnedFd;
    let dir = TempDir::new();
    let path = dir.path().join("sd.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(r#"exec 3<&0 0</dev/null; export LISTEN_PID=$$ LISTEN_FDS=1; exec "$0" serve --processes 2 --mount /=ping"#)
        .arg(bin());
    clean_env(&mut cmd);
    cmd.stdin(std::process::Stdio::from(OwnedFd::from(listener)));
    let mut server = Server::spawn(cmd, dir, 1);
    assert_eq!(wait_children(server.pid(), 2).len(), 2);
    let spec = format!("fastcgi:{}", path.display());
    for _ in 0..10 {
        assert_eq!(fcgi_get(&spec, "/").body_str(), "pong\n");
    }
    server.signal(Signal::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(10));
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    assert!(path.exists(), "the socket file systemd gave was removed");
}

/// Any child answers `status` for all: every child is listed (the live
/// ones: a killed one's successor, never a ghost), with the totals.
#[test]
fn status_reports_every_child_and_no_ghost() {
    let server = prefork("3", &["--mount", "/status=status"]);
    let kids = wait_children(server.pid(), 3);
    let spec = server.spec(0);
    for _ in 0..30 {
        assert_eq!(fcgi_get(&spec, "/").body_str(), "pong\n");
    }
    let json = |spec: &str| -> serde_json::Value {
        serde_json::from_str(&fcgi_get(spec, "/status?json").body_str()).expect("JSON")
    };
    let pids = |v: &serde_json::Value| -> Vec<i32> {
        let mut p: Vec<i32> = v["children"]
            .as_array()
            .expect("children")
            .iter()
            .map(|c| c["pid"].as_i64().unwrap() as i32)
            .collect();
        p.sort();
        p
    };
    let page = json(&spec);
    assert_eq!(page["processes"], 3);
    assert_eq!(pids(&page), kids);
    assert!(page["requests"].as_u64().unwrap() >= 30, "{page}");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(kids[1]), Signal::SIGKILL).unwrap();
    let now = wait_replaced(server.pid(), 3, &kids[1..2]);
    thread::sleep(Duration::from_millis(200));
    let page = json(&spec);
    assert_eq!(pids(&page), now, "{page}");
    assert!(
        !pids(&page).contains(&kids[1]),
        "a ghost of the killed child"
    );
}

/// Sends `GET uri` and leaves the reply to be read later.
fn wait_on(spec: &str, uri: &str) -> FcgiConn {
    let mut c = FcgiConn::connect(spec);
    c.request(1, false, &nginx_params("GET", uri, None), b"");
    c
}

fn publish(spec: &str, uri: &str, message: &[u8]) -> Response {
    let mut c = FcgiConn::connect(spec);
    let params = nginx_params("POST", uri, Some(message.len()));
    c.request(1, false, &params, message);
    complete(&c.read_until_end(1), "POST")
}

/// Each child's `pending_async`, from the status page.
fn pending_per_child(spec: &str) -> Vec<u64> {
    let page = fcgi_get(spec, "/status?json").body_str();
    let json: serde_json::Value = serde_json::from_str(&page).expect("status JSON");
    json["children"]
        .as_array()
        .expect("children")
        .iter()
        .map(|c| c["pending_async"].as_u64().expect("pending_async"))
        .collect()
}

/// Waits until the children hold `want` waiters in all; each one's count.
fn wait_pending(spec: &str, want: u64) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = pending_per_child(spec);
        if now.iter().sum::<u64>() == want || Instant::now() > deadline {
            return now;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// `pubsub` under prefork: one POST, taken by one child, reaches the
/// waiters that every child holds, and `delivered N` counts them all; a
/// waiter that left is not counted; with no waiter anywhere the answer is
/// `delivered 0`, at once.
#[test]
fn pubsub_reaches_the_waiters_of_every_child() {
    let server = prefork(
        "3",
        &[
            "--max-threads",
            "1",
            "--mount",
            "/events=pubsub",
            "--mount",
            "/status=status",
        ],
    );
    let spec = server.spec(0);
    wait_children(server.pid(), 3);
    assert!(
        eventually(Duration::from_secs(10), || {
            pending_per_child(&spec).len() == 3
        }),
        "three children on the status page"
    );
    // An idle child takes every connection (EPOLLEXCLUSIVE wakes the
    // same one): open them in bursts from many threads, until at least
    // two children hold some.
    let mut waiters = Vec::new();
    let mut leavers = Vec::new();
    let mut held = Vec::new();
    for _ in 0..20 {
        let burst: Vec<thread::JoinHandle<FcgiConn>> = (0..10)
            .map(|_| {
                let spec = spec.clone();
                thread::spawn(move || wait_on(&spec, "/events/room?timeout=60"))
            })
            .collect();
        for (i, t) in burst.into_iter().enumerate() {
            let w = t.join().unwrap();
            if i == 3 {
                leavers.push(w);
            } else {
                waiters.push(w);
            }
        }
        held = wait_pending(&spec, (waiters.len() + leavers.len()) as u64);
        if held.iter().filter(|&&n| n > 0).count() >= 2 {
            break;
        }
    }
    let all = (waiters.len() + leavers.len()) as u64;
    eprintln!("waiters per child: {held:?}");
    assert_eq!(held.iter().sum::<u64>(), all, "{held:?}");
    let holders = held.iter().filter(|&&n| n > 0).count();
    assert!(holders >= 2, "the waiters are held by one child: {held:?}");
    drop(leavers);
    let stay = waiters.len();
    let held = wait_pending(&spec, stay as u64);
    assert_eq!(held.iter().sum::<u64>(), stay as u64, "{held:?}");

    let message: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let t = Instant::now();
    let r = publish(&spec, "/events/room", &message);
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (200, format!("delivered {stay}\n").as_str())
    );
    for (i, w) in waiters.iter_mut().enumerate() {
        let r = complete(&w.read_until_end(1), &format!("waiter {i}"));
        assert_eq!(r.status, 200, "waiter {i}");
        assert!(r.body == message, "waiter {i}: {} bytes", r.body.len());
    }
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    for _ in 0..5 {
        let t = Instant::now();
        let r = publish(&spec, "/events/room", b"again");
        assert_eq!(r.body_str(), "delivered 0\n");
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
    }
}

/// Whether the children's (pid, pending) satisfy a test.
type Holds<'a> = &'a dyn Fn(&[(i32, u64)]) -> bool;

/// Each child's (pid, `pending_async`), from the status page.
fn pending_by_pid(spec: &str) -> Vec<(i32, u64)> {
    let page = fcgi_get(spec, "/status?json").body_str();
    let json: serde_json::Value = serde_json::from_str(&page).expect("status JSON");
    json["children"]
        .as_array()
        .expect("children")
        .iter()
        .map(|c| {
            let pid = c["pid"].as_i64().expect("pid") as i32;
            (pid, c["pending_async"].as_u64().expect("pending_async"))
        })
        .collect()
}

/// A child killed while it holds waiters is counted no more, and the one
/// that replaces it takes part in the relay.
#[test]
fn pubsub_survives_a_killed_child_and_relays_to_its_successor() {
    let server = prefork(
        "2",
        &[
            "--max-threads",
            "1",
            "--mount",
            "/events=pubsub",
            "--mount",
            "/status=status",
        ],
    );
    let spec = server.spec(0);
    let kids = wait_children(server.pid(), 2);
    assert_eq!(kids.len(), 2, "{kids:?}");
    let mut waiters = Vec::new();
    // Bursts of waiters until `holds(pid)` says yes (or 20 bursts).
    let open_until = |waiters: &mut Vec<FcgiConn>, holds: Holds<'_>| {
        for _ in 0..20 {
            let burst: Vec<thread::JoinHandle<FcgiConn>> = (0..10)
                .map(|_| {
                    let spec = spec.clone();
                    thread::spawn(move || wait_on(&spec, "/events/k?timeout=60"))
                })
                .collect();
            waiters.extend(burst.into_iter().map(|t| t.join().unwrap()));
            thread::sleep(Duration::from_millis(100));
            if holds(&pending_by_pid(&spec)) {
                return;
            }
        }
    };
    open_until(&mut waiters, &|p| p.iter().all(|&(_, n)| n > 0));
    let before = pending_by_pid(&spec);
    assert!(before.iter().all(|&(_, n)| n > 0), "{before:?}");
    let victim = before[0].0;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim), Signal::SIGKILL).unwrap();
    let now = wait_replaced(server.pid(), 2, &[victim]);
    assert!(!now.contains(&victim) && now.len() == 2, "{now:?}");
    let successor = *now.iter().find(|p| !kids.contains(p)).expect("a successor");
    assert!(
        eventually(Duration::from_secs(10), || {
            pending_by_pid(&spec).iter().any(|&(p, _)| p == successor)
        }),
        "the successor on the status page"
    );
    open_until(&mut waiters, &|p| {
        p.iter().any(|&(pid, n)| pid == successor && n > 0)
    });
    let held = pending_by_pid(&spec);
    eprintln!("waiters per child after the kill: {held:?}");
    assert!(
        held.iter().any(|&(p, n)| p == successor && n > 0),
        "{held:?}"
    );
    let want: u64 = held.iter().map(|&(_, n)| n).sum();
    let t = Instant::now();
    let r = publish(&spec, "/events/k", b"after");
    assert_eq!(r.body_str(), format!("delivered {want}\n"));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

/// A child outlives nothing of its master: kill -9 of the master and every
/// child exits (PR_SET_PDEATHSIG), leaving no server behind.
#[test]
fn children_exit_when_their_master_dies() {
    let mut server = prefork("2", &[]);
    let kids = wait_children(server.pid(), 2);
    assert_eq!(kids.len(), 2);
    server.signal(Signal::SIGKILL);
    let _ = server.wait_exit(Duration::from_secs(5));
    let alive = |pid: i32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(") ").and_then(|(_, r)| r.chars().next());
        state.is_some_and(|s| s != 'Z')
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while kids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    let left: Vec<i32> = kids.iter().copied().filter(|&p| alive(p)).collect();
    assert!(left.is_empty(), "children {left:?} outlived their master");
}
