//! The `status` app against the real binary (DESIGN.md, "Status fields"):
//! the JSON parses and has every field with its type; the counters move by
//! exactly what was served; refusals, aborts and slow requests are counted;
//! under 64 concurrent clients no gauge reads negative, wrapped or out of
//! bounds, and they all come back to rest afterwards; the OpenMetrics page
//! passes prometheus_client's own parser.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// DESIGN.md's fields that are plain numbers.
const DESIGN_NUMBERS: [&str; 15] = [
    "pid",
    "start_time",
    "uptime_seconds",
    "accepted_conns",
    "active_conns",
    "requests",
    "queue_len",
    "max_queue_len",
    "threads_busy",
    "threads_idle",
    "threads_total",
    "slow_requests",
    "aborted_requests",
    "protocol_errors",
    "processes",
];

/// The plain numbers fastgate adds to DESIGN.md's.
const MORE_NUMBERS: [&str; 4] = [
    "max_threads_reached",
    "pending_async",
    "wakeups",
    "accept_wakeups",
];

const REFUSALS: [&str; 7] = ["400", "404", "408", "413", "431", "503", "504"];

/// A value no counter of a test run reaches: past it, a gauge went below
/// zero and wrapped.
const ABSURD: u64 = 1_000_000_000_000_000;

fn start(extra: &[&str]) -> Server {
    let mut args = vec!["--listen", "127.0.0.1:0", "--mount", "/status=status"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// `/status?json`, parsed.
fn status_json(spec: &str) -> Value {
    let r = fcgi_get(spec, "/status?json");
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("status JSON does not parse: {e}: {}", r.body_str()))
}

/// A field that must be a non-negative integer.
fn num(v: &Value, path: &[&str]) -> u64 {
    let field = path.iter().fold(v, |v, k| &v[k]);
    field
        .as_u64()
        .unwrap_or_else(|| panic!("{path:?} is not a u64: {field} in {v}"))
}

/// `count` of histogram `name`.
fn observed(v: &Value, name: &str) -> u64 {
    num(v, &[name, "count"])
}

#[test]
fn json_has_every_field_with_its_type() {
    let server = start(&["--mount", "/=hello"]);
    let v = status_json(&server.spec(0));
    for field in DESIGN_NUMBERS.iter().chain(&MORE_NUMBERS) {
        num(&v, &[field]);
    }
    assert_eq!(num(&v, &["pid"]), server.pid() as u64);
    assert_eq!(num(&v, &["processes"]), 1);
    assert_eq!(v["children"], Value::Array(vec![]), "no prefork: no child");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let started = num(&v, &["start_time"]);
    assert!(
        started <= now && now - started < 600,
        "start_time {started}, now {now}"
    );
    for status in REFUSALS {
        assert_eq!(num(&v, &["refused", status]), 0, "{status}");
    }
    for name in ["queue_wait", "latency"] {
        check_histogram(&v[name], name);
    }
}

/// Buckets with rising bounds and cumulative counts, up to `count`.
fn check_histogram(h: &Value, name: &str) {
    let buckets = h["buckets"]
        .as_array()
        .unwrap_or_else(|| panic!("{name}: {h}"));
    assert_eq!(buckets.len(), 16, "{name}: {h}");
    let bound = |b: &Value| b["le"].as_f64().unwrap_or_else(|| panic!("{name}: {b}"));
    let count = |b: &Value| b["count"].as_u64().unwrap_or_else(|| panic!("{name}: {b}"));
    assert!(
        buckets.windows(2).all(|w| bound(&w[0]) < bound(&w[1])),
        "{name}: {h}"
    );
    assert!(
        buckets.windows(2).all(|w| count(&w[0]) <= count(&w[1])),
        "{name}: {h}"
    );
    assert_eq!(
        (bound(&buckets[0]), bound(&buckets[15])),
        (0.0001, 10.0),
        "{name}"
    );
    assert!(count(&buckets[15]) <= num(h, &["count"]), "{name}: {h}");
    assert!(h["sum"].as_f64().is_some_and(|s| s >= 0.0), "{name}: {h}");
}

#[test]
fn counters_move_by_what_was_served() {
    let server = start(&["--mount", "/=hello"]);
    let spec = server.spec(0);
    let before = status_json(&spec);
    const N: u64 = 10;
    for _ in 0..N {
        assert_eq!(fcgi_get(&spec, "/").status, 200);
    }
    // Four more on one kept connection: requests, not connections.
    let mut conn = FcgiConn::connect(&spec);
    for id in 1..=4 {
        conn.request(id, true, &nginx_params("GET", "/", None), b"");
        assert_eq!(complete(&conn.read_until_end(id), "kept").status, 200);
    }
    drop(conn);
    let after = status_json(&spec);
    // The first status request ended in between; the second one, running,
    // is not counted yet, but its connection and its wait for a worker are.
    let moved = |path: &[&str]| num(&after, path) - num(&before, path);
    assert_eq!(moved(&["requests"]), N + 4 + 1);
    assert_eq!(moved(&["accepted_conns"]), N + 2);
    assert_eq!(
        observed(&after, "latency") - observed(&before, "latency"),
        N + 4 + 1
    );
    assert_eq!(
        observed(&after, "queue_wait") - observed(&before, "queue_wait"),
        N + 4 + 1
    );
    assert!(num(&after, &["uptime_seconds"]) >= num(&before, &["uptime_seconds"]));
}

#[test]
fn refusals_are_counted_by_status() {
    // No `/` mount, so an unmounted path is a 404.
    let server = start(&["--mount", "/hello=hello", "--max-body-bytes", "16"]);
    let spec = server.spec(0);
    assert_eq!(fcgi_get(&spec, "/nowhere").status, 404);
    let reply = fcgi_request(&spec, "POST", "/hello", &[b'x'; 100]);
    assert_eq!(reply.response().status, 413);
    let v = status_json(&spec);
    for status in REFUSALS {
        let want = u64::from(status == "404" || status == "413");
        assert_eq!(num(&v, &["refused", status]), want, "refused {status}: {v}");
    }
    let text = fcgi_get(&spec, "/status").body_str();
    assert!(text.contains("\nrefused_413:            1\n"), "{text}");
    let metrics = fcgi_get(&spec, "/status?openmetrics").body_str();
    assert!(
        metrics.contains("\nfastgate_refused_total{status=\"404\"} 1\n"),
        "{metrics}"
    );
}

#[test]
fn aborts_and_slow_requests_are_counted() {
    let server = start(&["--mount", "/sleep=sleep", "--slow-threshold", "100ms"]);
    let spec = server.spec(0);
    assert_eq!(fcgi_get(&spec, "/sleep?ms=300").status, 200);
    assert_eq!(fcgi_get(&spec, "/sleep?ms=0").status, 200);
    assert_eq!(num(&status_json(&spec), &["slow_requests"]), 1);
    let mut conn = FcgiConn::connect(&spec);
    conn.request(1, true, &nginx_params("GET", "/sleep?ms=20000", None), b"");
    // Running: the sleeper and this status request hold a worker each.
    let busy = || num(&status_json(&spec), &["threads_busy"]);
    assert!(eventually(Duration::from_secs(10), || busy() == 2));
    drop(conn);
    let aborted = || num(&status_json(&spec), &["aborted_requests"]);
    assert!(eventually(Duration::from_secs(10), || aborted() == 1));
    assert!(
        eventually(Duration::from_secs(10), || busy() == 1),
        "the sleeper's worker is free"
    );
}

#[test]
fn each_format_has_its_content_type() {
    let server = start(&[]);
    let spec = server.spec(0);
    let cases = [
        ("/status", "text/plain", "\nprocesses:              1\n"),
        ("/status?json", "application/json", "\"processes\":1,"),
        (
            "/status?openmetrics",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            "\nfastgate_processes 1\n",
        ),
        (
            "/status?html",
            "text/html; charset=utf-8",
            "<tr><th>processes</th><td>1</td></tr>",
        ),
    ];
    for (uri, content_type, line) in cases {
        let r = fcgi_get(&spec, uri);
        assert_eq!(
            (r.status, r.header("Content-Type")),
            (200, Some(content_type)),
            "{uri}"
        );
        assert!(r.body_str().contains(line), "{uri}: {}", r.body_str());
    }
    let html = fcgi_get(&spec, "/status?html").body_str();
    assert!(
        html.contains("<meta http-equiv=\"refresh\" content=\"5\">"),
        "{html}"
    );
}

#[test]
fn openmetrics_passes_the_prometheus_parser() {
    let Some(python) = require_python_module("prometheus_client") else {
        return;
    };
    let server = start(&["--mount", "/=hello"]);
    let spec = server.spec(0);
    for _ in 0..3 {
        fcgi_get(&spec, "/");
    }
    let page = fcgi_get(&spec, "/status?openmetrics").body;
    let families = parse_openmetrics(&python, &page);
    let has = |line: &str| families.lines().any(|l| l == line);
    assert!(
        has("counter fastgate_requests fastgate_requests_total 3.0"),
        "{families}"
    );
    assert!(
        has("gauge fastgate_processes fastgate_processes 1.0"),
        "{families}"
    );
    assert!(
        has("histogram fastgate_latency fastgate_latency_count 3.0"),
        "{families}"
    );
    let inf = "histogram fastgate_queue_wait fastgate_queue_wait_bucket +Inf 4.0";
    assert!(has(inf), "{families}");
    let buckets = families
        .lines()
        .filter(|l| l.contains(" fastgate_latency_bucket "));
    assert_eq!(buckets.count(), 17, "{families}");
}

#[test]
fn openmetrics_of_a_prefork_child_passes_the_prometheus_parser() {
    use fastgate::server::Scoreboard;
    let Some(python) = require_python_module("prometheus_client") else {
        return;
    };
    // A child of a prefork master, in this process: a sibling in slot 0,
    // this server in slot 1.
    let board = Arc::new(Scoreboard::new(2).unwrap());
    board.claim(0, 4_000_001);
    board.stats(0).requests.store(5, Ordering::Relaxed);
    let mut builder = fastgate::Server::builder();
    builder.listen("fastcgi://127.0.0.1:0".parse().unwrap());
    let status = fastgate::apps::build("status", "/status", &builder.stats()).unwrap();
    builder.mount_route("/status", status);
    builder.use_scoreboard_slot(Arc::clone(&board), 1).unwrap();
    let server = builder.build().unwrap();
    let spec = server.listen_specs()[0].to_string();
    let stop = server.stop_handle();
    let running = thread::spawn(move || server.run());

    let page = fcgi_get(&spec, "/status?openmetrics").body;
    let families = parse_openmetrics(&python, &page);
    stop.stop();
    running.join().unwrap().unwrap();
    let has = |line: &str| families.lines().any(|l| l == line);
    assert!(
        has("gauge fastgate_processes fastgate_processes 2.0"),
        "{families}"
    );
    assert!(
        has("counter fastgate_requests fastgate_requests_total 5.0"),
        "{families}"
    );
    let children = families.lines().filter(|l| {
        l.starts_with("counter fastgate_child_requests fastgate_child_requests_total ")
    });
    assert_eq!(children.count(), 2, "{families}");
    assert!(
        has("info fastgate_child fastgate_child_info 1.0"),
        "{families}"
    );
}

/// Python's OpenMetrics parser over `page`: one line per sample, `type
/// family sample [le] value`; a page it rejects fails the test.
fn parse_openmetrics(python: &std::path::Path, page: &[u8]) -> String {
    const SCRIPT: &str = "
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for f in text_string_to_metric_families(sys.stdin.read()):
    for s in f.samples:
        le = [s.labels['le']] if 'le' in s.labels else []
        print(' '.join([f.type, f.name, s.name] + le + [repr(float(s.value))]))
";
    let mut child = Command::new(python)
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", python.display()));
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(page).expect("write the page to python");
    drop(stdin);
    let out = child.wait_with_output().expect("python's output");
    let page = String::from_utf8_lossy(page);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the parser rejects the page: {err}\n{page}"
    );
    String::from_utf8(out.stdout).expect("utf-8 from python")
}

/// What the clients of [`gauges_stay_sane_under_64_clients`] run.
const CLIENTS: usize = 64;
const PER_CLIENT: usize = 60;
const MAX_THREADS: u64 = 8;

#[test]
fn gauges_stay_sane_under_64_clients() {
    let threads = MAX_THREADS.to_string();
    let server = start(&["--mount", "/=hello", "--max-threads", &threads]);
    let spec = server.spec(0);
    let first = status_json(&spec);
    let done = Arc::new(AtomicBool::new(false));
    let poller = {
        let (spec, done) = (spec.clone(), done.clone());
        thread::spawn(move || poll_while_busy(&spec, &done))
    };
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let spec = spec.clone();
            thread::spawn(move || hammer(&spec, i))
        })
        .collect();
    for c in clients {
        c.join().expect("a client panicked");
    }
    done.store(true, Ordering::Relaxed);
    let polls = poller.join().expect("the poller panicked");
    assert!(polls > 0, "no status read during the run");
    let last = status_json(&spec);
    check_sane(&last, &first);
    let served = (CLIENTS * PER_CLIENT) as u64;
    let moved = num(&last, &["requests"]) - num(&first, &["requests"]);
    assert_eq!(
        moved,
        served + polls + 1,
        "hello, the polls and the first status"
    );
    at_rest(&spec);
}

/// One client: a third on one kept FastCGI connection, a third on a fresh
/// FastCGI connection per request, a third over SCGI.
fn hammer(spec: &str, i: usize) {
    let mut kept = (i % 3 == 0).then(|| FcgiConn::connect(spec));
    for n in 0..PER_CLIENT {
        let status = match (&mut kept, i % 3) {
            (Some(conn), _) => {
                let id = n as u16 + 1;
                conn.request(id, true, &nginx_params("GET", "/", None), b"");
                complete(&conn.read_until_end(id), "kept").status
            }
            (None, 1) => fcgi_get(spec, "/").status,
            _ => scgi_get(spec, "/").status,
        };
        assert_eq!(status, 200, "client {i}, request {n}");
    }
}

/// Reads the status page until `done`, checking each read and that no
/// counter went back; returns how many it read.
fn poll_while_busy(spec: &str, done: &AtomicBool) -> u64 {
    let mut previous = status_json(spec);
    let mut polls = 1;
    while !done.load(Ordering::Relaxed) {
        let v = status_json(spec);
        check_sane(&v, &previous);
        previous = v;
        polls += 1;
    }
    polls
}

/// What every page must show, whatever the load: no number negative or
/// wrapped, gauges within their bounds, counters not below `earlier`'s.
fn check_sane(v: &Value, earlier: &Value) {
    for field in DESIGN_NUMBERS.iter().chain(&MORE_NUMBERS) {
        assert!(num(v, &[field]) < ABSURD, "{field}: {v}");
    }
    let n = |f: &str| num(v, &[f]);
    // This page's own request holds a worker while it renders.
    assert!(n("threads_busy") >= 1, "{v}");
    assert_eq!(
        n("threads_busy") + n("threads_idle"),
        n("threads_total"),
        "{v}"
    );
    assert!(n("threads_total") <= n("max_threads_reached"), "{v}");
    assert!(n("max_threads_reached") <= MAX_THREADS, "{v}");
    assert!(
        n("queue_len") <= n("max_queue_len") && n("max_queue_len") <= 1024,
        "{v}"
    );
    // A client's next connection may be open before its last one closed.
    let conns = 2 * (CLIENTS as u64 + 1);
    assert!((1..=conns).contains(&n("active_conns")), "{v}");
    for f in ["accepted_conns", "requests", "wakeups", "max_queue_len"] {
        assert!(n(f) >= num(earlier, &[f]), "{f} went back: {v}");
    }
    for h in ["queue_wait", "latency"] {
        assert!(observed(v, h) >= observed(earlier, h), "{h} went back: {v}");
    }
}

/// Once the clients are gone the gauges come back to what one status
/// request alone shows: they did not drift.
fn at_rest(spec: &str) {
    let mut last = Value::Null;
    let rested = eventually(Duration::from_secs(10), || {
        last = status_json(spec);
        let n = |f: &str| num(&last, &[f]);
        (
            n("active_conns"),
            n("threads_busy"),
            n("queue_len"),
            n("pending_async"),
        ) == (1, 1, 0, 0)
    });
    assert!(rested, "gauges still moved after the load: {last}");
}
