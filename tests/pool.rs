//! How the worker pool grows, seen through the library: it adds threads
//! for jobs stuck behind workers that are blocked (asleep in the kernel),
//! and none for jobs waiting behind workers that are running (a CPU-bound
//! handler: more threads than cores only add switches).

use std::io::Write;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use fastgate::client::{self, RequestOptions};
use fastgate::{Options, Request, Response, Server};

/// Burns CPU on the worker for `ms` milliseconds of wall time.
fn spin(req: &mut Request, resp: &mut Response) -> std::io::Result<()> {
    let ms: u64 = req
        .query_param("ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let until = Instant::now() + Duration::from_millis(ms);
    let mut x = 0u64;
    while Instant::now() < until {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
    }
    writeln!(resp, "spun {x}")
}

/// Sleeps on the worker: blocked, not running.
fn nap(req: &mut Request, resp: &mut Response) -> std::io::Result<()> {
    let ms: u64 = req
        .query_param("ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    thread::sleep(Duration::from_millis(ms));
    writeln!(resp, "slept")
}

/// Serves `n` concurrent requests for `uri` on a pool of 1 to 16
/// threads; returns the most threads the pool had.
fn most_threads(uri: &'static str, n: usize) -> u64 {
    let mut options = Options::default();
    options.listen = vec!["fastcgi://127.0.0.1:0".parse().unwrap()];
    options.min_threads = 1;
    options.max_threads = 16;
    let mut builder = Server::builder();
    builder
        .options(options)
        .mount("/spin", spin)
        .mount("/nap", nap);
    let server = builder.build().unwrap();
    let spec = server.listen_specs()[0].clone();
    let (stop, stats) = (server.stop_handle(), server.stats());
    let running = thread::spawn(move || server.run());
    let clients: Vec<_> = (0..n)
        .map(|_| {
            let mut opts = RequestOptions::new(spec.clone(), uri);
            opts.timeout = Duration::from_secs(30);
            thread::spawn(move || client::send(&opts).map(|r| r.head.status))
        })
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap().unwrap(), 200);
    }
    stop.stop();
    running.join().unwrap().unwrap();
    stats.threads_max_reached.load(Ordering::Relaxed)
}

#[test]
fn jobs_behind_running_workers_add_no_thread() {
    // 16 × 25 ms of CPU on one worker: the last waits 375 ms, 75 times
    // the wait after which a pool that grew on waiting alone added one.
    let most = most_threads("/spin?ms=25", 16);
    assert!(most <= 2, "{most} threads for CPU-bound handlers");
}

#[test]
fn jobs_behind_blocked_workers_get_threads() {
    let most = most_threads("/nap?ms=300", 8);
    assert!(most >= 4, "only {most} threads for 8 sleeping handlers");
}
