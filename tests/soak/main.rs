//! The soak under faults: the real `fastgate serve --processes 2` on four
//! listeners (FastCGI TCP and Unix, SCGI, HTTP) with hello, echo, sleep,
//! pubsub and cgi, a small `--queue` and `--max-conns`, a pidfile and a
//! temp dir of its own, kept under a mixed load (`load.rs`, `pubsub.rs`)
//! while faults come on a schedule (`faults.rs`): kill -9 of children,
//! clients that vanish or crawl, malformed bytes, bursts past the limits,
//! a HUP and a USR2 upgrade (the new master is followed through the
//! pidfile, `fleet.rs`). Every answer is checked; at the end the books
//! (`tally.rs`) and the samples of the process tree are judged
//! (`report.rs`).
//!
//! `cargo test --test soak` runs 60 s (`FASTGATE_SOAK_SECONDS` changes
//! it; `bench/soak` runs 600 s in release mode). `FASTGATE_SOAK_JSON=PATH`
//! writes the JSON report there. The report is printed on stderr.

#[path = "../common/mod.rs"]
mod common;

mod client;
mod faults;
mod fleet;
mod http;
mod load;
mod procs;
mod pubsub;
mod report;
mod tally;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use faults::Plan;
use fleet::{Fleet, Sample};
use load::Env;
use report::{Quiet, Report};

const PROCESSES: usize = 2;
const MAX_THREADS: u64 = 6;
const MAX_CONNS: usize = 40;
const CLIENTS: usize = 6;

/// A setting from the environment, else `default`.
fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The CGI script every cgi request runs: `cgi QUERY_STRING`, then stdin.
const SCRIPT: &str = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\ncgi %s\\n' \"$QUERY_STRING\"\nexec cat\n";

fn start_server() -> Server {
    let dir = TempDir::new();
    let cgi = dir.path().join("cgi");
    std::fs::create_dir_all(&cgi).expect("cgi dir");
    std::fs::create_dir_all(dir.path().join("spool")).expect("spool dir");
    let script = cgi.join("soak.sh");
    std::fs::write(&script, SCRIPT).expect("cgi script");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let (threads, conns) = (MAX_THREADS.to_string(), MAX_CONNS.to_string());
    let mut args = vec![
        "--listen",
        "fastcgi://127.0.0.1:0",
        "--listen",
        "fastcgi:{dir}/f.sock",
        "--listen",
        "scgi://127.0.0.1:0",
        "--listen",
        "http://127.0.0.1:0",
        "--processes",
        "2",
        "--max-threads",
        &threads,
        "--queue",
        "16",
        "--max-conns",
        &conns,
        "--pidfile",
        "{dir}/fg.pid",
        "--temp-dir",
        "{dir}/spool",
        "--cgi-root",
        "{dir}/cgi",
        "--cgi-allow-root",
        "--header-timeout",
        "4s",
        "--shutdown-timeout",
        "20s",
        "--mount",
        "/echo=echo",
        "--mount",
        "/sleep=sleep",
        "--mount",
        "/events=pubsub",
        "--mount",
        "/cgi=cgi",
        "--mount",
        "/status=status",
    ];
    args.extend(["--mount", "/=hello"]);
    Server::start_in(dir, &args)
}

/// The plan of a run of `d` seconds: the baseline at minute 2 (a third
/// of the run when shorter than 5 minutes), the USR2 halfway to it (so
/// the baseline and the end both sample the new master's tree: like
/// with like), the HUP halfway from the baseline to the end, and no
/// child killed in the minute before each quiet sample (half the time to
/// the baseline in a short run: 10 s of 60), so that the children sampled
/// at the end are at least as old as the baseline's, born of the USR2.
fn plan(d: f64) -> Plan {
    let base = if d >= 300.0 { 120.0 } else { d / 3.0 };
    Plan {
        tick: Duration::from_millis(if d >= 300.0 { 1500 } else { 1000 }),
        usr2_at: base / 2.0,
        hup_at: (base + d) / 2.0,
        settle: (base / 2.0).min(60.0),
        end: d,
        quiet: [base, d],
        max_conns: MAX_CONNS,
    }
}

/// Samples the tree every `every` until the stop flag.
fn sampler(
    env: Arc<Env>,
    fleet: Arc<Fleet>,
    every: Duration,
    t0: Instant,
) -> (Arc<Mutex<Vec<Sample>>>, thread::JoinHandle<()>) {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let out = Arc::clone(&samples);
    let thread = thread::spawn(move || {
        while !env.tally.stopping() {
            let s = fleet.sample(t0);
            samples.lock().unwrap_or_else(|e| e.into_inner()).push(s);
            let next = Instant::now() + every;
            while Instant::now() < next && !env.tally.stopping() {
                thread::sleep(Duration::from_millis(50));
            }
        }
    });
    (out, thread)
}

/// Stops every loop and kills what is left of the server on the way
/// out, also when the test fails: the threads that hold the fleet may
/// never let it drop, and a USR2 leaves a master that is not our child.
struct Guard(Arc<Env>, Arc<Fleet>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.tally.stop.store(true, Ordering::SeqCst);
        self.1.kill_all();
    }
}

/// Pauses clients and faults, waits for the tree to settle (every child
/// up, no zombie, fds steady), and takes the median of three samples.
fn quiet(env: &Env, fleet: &Fleet, t0: Instant) -> Quiet {
    env.tally.paused.store(true, Ordering::SeqCst);
    eventually(Duration::from_secs(60), || {
        env.tally.busy.load(Ordering::SeqCst) == 0
    });
    let mut last = fleet.sample(t0);
    eventually(Duration::from_secs(15), || {
        thread::sleep(Duration::from_millis(300));
        let now = fleet.sample(t0);
        let steady = now.fds == last.fds && now.children == PROCESSES && now.zombies == 0;
        last = now;
        steady
    });
    let samples: Vec<Sample> = (0..3)
        .map(|_| {
            thread::sleep(Duration::from_millis(400));
            fleet.sample(t0)
        })
        .collect();
    env.tally.paused.store(false, Ordering::SeqCst);
    Quiet::of(&samples)
}

/// hello on every listener after the run.
fn final_answers(env: &Env) -> Vec<(String, bool)> {
    let ask = client::Ask::hello();
    let fcgi = |spec: &str| {
        client::fcgi_connect(spec)
            .map(|(mut c, _)| {
                matches!(
                    client::fcgi_round(&mut c, &ask, 1, false),
                    client::Outcome::Answered
                )
            })
            .unwrap_or(false)
    };
    let scgi = matches!(
        client::scgi_round(&env.scgi, &ask).0,
        client::Outcome::Answered
    );
    let http = Conn::try_connect(&env.http)
        .ok()
        .and_then(|c| http::HttpConn::new(c).round(&ask).ok());
    let http = http.is_some_and(|a| a.status == 200 && a.body == ask.want_body);
    vec![
        (env.fcgi_tcp.clone(), fcgi(&env.fcgi_tcp)),
        (env.fcgi_unix.clone(), fcgi(&env.fcgi_unix)),
        (env.scgi.clone(), scgi),
        (env.http.clone(), http),
    ]
}

fn env_of(server: &Server) -> Env {
    let noise = pattern(2 << 20, 0x50a6);
    Env {
        fcgi_tcp: server.spec(0),
        fcgi_unix: server.spec(1),
        scgi: server.spec(2),
        http: server.spec(3),
        cgi_script: server.dir().join("cgi/soak.sh").display().to_string(),
        noise,
        tally: tally::Tally::new(),
    }
}

#[test]
fn soak_under_faults() {
    let seconds = setting("FASTGATE_SOAK_SECONDS", 60) as f64;
    let clients = setting("FASTGATE_SOAK_CLIENTS", CLIENTS as u64) as usize;
    let server = start_server();
    let env = Arc::new(env_of(&server));
    let (pidfile, spool) = (server.dir().join("fg.pid"), server.dir().join("spool"));
    let fleet = Arc::new(Fleet::new(server, pidfile, spool.clone()));
    assert!(eventually(Duration::from_secs(10), || fleet
        .children()
        .len()
        == PROCESSES));
    let plan = plan(seconds);
    let t0 = Instant::now();
    env.tally.set_start(t0);
    let every = Duration::from_secs(if seconds >= 300.0 { 5 } else { 2 });
    let _guard = Guard(Arc::clone(&env), Arc::clone(&fleet));
    let (samples, sampling) = sampler(Arc::clone(&env), Arc::clone(&fleet), every, t0);
    let loaders = load::start(&env, clients, t0 + Duration::from_secs_f64(seconds));
    let faulter = {
        let (env, fleet) = (Arc::clone(&env), Arc::clone(&fleet));
        thread::spawn(move || faults::run(&env, &fleet, plan, t0))
    };
    thread::sleep(Duration::from_secs_f64(plan.quiet[0]).saturating_sub(t0.elapsed()));
    let base = quiet(&env, &fleet, t0);
    let slow = faulter.join().expect("fault thread");
    for t in loaders.into_iter().chain(slow) {
        t.join().expect("client thread");
    }
    let end = quiet(&env, &fleet, t0);
    env.tally.stop.store(true, Ordering::SeqCst);
    let final_answers = final_answers(&env);
    let stop = fleet.stop();
    sampling.join().expect("sampler thread");
    let samples = samples.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let report = Report {
        seconds: t0.elapsed().as_secs_f64(),
        clients,
        totals: env.tally.totals(),
        samples,
        base,
        end,
        temp_files_left: std::fs::read_dir(&spool).map_or(0, |d| d.count()),
        thread_bound: 4 + PROCESSES as u64 * (MAX_THREADS + 6),
        final_answers,
        stop,
        pids_seen: fleet.seen(),
    };
    eprintln!("{}", report.text());
    if let Ok(path) = std::env::var("FASTGATE_SOAK_JSON") {
        std::fs::write(&path, format!("{:#}\n", report.json())).expect("write the JSON report");
    }
    assert!(report.passed(), "the soak failed a check; report above");
}
