//! Asynchronous handlers, through the library as a Rust user writes them,
//! over real sockets: an answer at once, an answer completed later from
//! another thread through `post()`, a reply dropped unanswered (502), a
//! timer cancelled before it fires, a waiter told at once when its client
//! leaves, and a body read by an async handler. None of them holds a
//! worker: the server runs with one thread, busy on a long sync request.

mod common;

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use fastgate::{Reply, Request, Server};

/// Replies kept by `/wait`, removed again by their abort hook.
type Waiters = Arc<Mutex<Vec<(u64, Reply)>>>;

struct Running {
    spec: String,
    stats: fastgate::server::StatsHandle,
    waiters: Waiters,
    fired: Arc<AtomicBool>,
}

fn start() -> Running {
    let waiters: Waiters = Arc::default();
    let fired = Arc::new(AtomicBool::new(false));
    let mut b = Server::builder();
    b.listen("fastcgi://127.0.0.1:0".parse().unwrap());
    b.mount_async("/now", |_req: Request, mut reply: Reply| {
        let _ = reply.write(b"now\n");
        reply.finish();
    });
    b.mount_async("/later", |_req: Request, reply: Reply| {
        let handle = reply.loop_handle().clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            handle.post(move || {
                let mut reply = reply;
                let _ = reply.write(b"later\n");
                reply.finish();
            });
        });
    });
    b.mount_async("/drop", |_req: Request, reply: Reply| drop(reply));
    b.mount_async("/slow", |_req: Request, reply: Reply| {
        // What an async handler must never do: block the loop.
        thread::sleep(Duration::from_millis(80));
        reply.finish();
    });
    let flag = Arc::clone(&fired);
    b.mount_async("/cancel", move |_req: Request, reply: Reply| {
        let flag = Arc::clone(&flag);
        let timer = reply
            .loop_handle()
            .after(Duration::from_millis(100), move || {
                flag.store(true, Ordering::SeqCst)
            });
        timer.cancel();
        let handle = reply.loop_handle().clone();
        handle.after(Duration::from_millis(300), move || reply.finish());
    });
    let kept = Arc::clone(&waiters);
    b.mount_async("/wait", move |_req: Request, reply: Reply| {
        let id = next_id();
        let list = Arc::clone(&kept);
        reply.on_abort(move || list.lock().unwrap().retain(|(i, _)| *i != id));
        kept.lock().unwrap().push((id, reply));
    });
    b.mount_async("/upper", |mut req: Request, mut reply: Reply| {
        let mut body = Vec::new();
        let _ = req.body().read_to_end(&mut body);
        let _ = reply.write(&body.to_ascii_uppercase());
        reply.finish();
    });
    b.mount_async("/big", |_req: Request, reply: Reply| stream(reply, 0));
    b.mount(
        "/block",
        |_req: &mut Request, resp: &mut fastgate::Response| {
            thread::sleep(Duration::from_secs(3));
            std::io::Write::write_all(resp, b"done\n")
        },
    );
    let mut options = fastgate::Options::default();
    options.min_threads = 1;
    options.max_threads = 1;
    b.options(options);
    let server = b.build().expect("build");
    let spec = server.listen_specs()[0].to_string();
    let stats = server.stats();
    thread::spawn(move || server.run());
    Running {
        spec,
        stats,
        waiters,
        fired,
    }
}

/// Bytes `/big` answers: many times the 256 KiB a request may have in
/// flight, so the writer must wait for `on_writable` again and again.
const BIG: usize = 8 << 20;

/// How often `/big` had to wait for the client.
static RESUMES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Writes `/big` from `sent` on, 64 KiB at a time, until the client has
/// taken too little; then goes on when the loop says it may.
fn stream(mut reply: Reply, mut sent: usize) {
    let chunk = [b'z'; 64 * 1024];
    while sent < BIG {
        match reply.write(&chunk[..(BIG - sent).min(chunk.len())]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                RESUMES.fetch_add(1, Ordering::Relaxed);
                return reply.on_writable(move |reply| stream(reply, sent));
            }
            Err(_) => return,
        }
    }
    reply.finish();
}

fn next_id() -> u64 {
    use std::sync::atomic::AtomicU64;
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Takes the only worker for 3 s, so every answer below comes from the loop.
fn occupy_the_worker(spec: &str) -> FcgiConn {
    let mut c = FcgiConn::connect(spec);
    c.request(1, false, &nginx_params("GET", "/block", None), b"");
    thread::sleep(Duration::from_millis(100));
    c
}

fn pending(r: &Running) -> u64 {
    r.stats.pending_async.load(Ordering::Relaxed)
}

#[test]
fn async_answers_need_no_worker() {
    let r = start();
    let _busy = occupy_the_worker(&r.spec);
    let t = Instant::now();
    assert_eq!(fcgi_get(&r.spec, "/now").body_str(), "now\n");
    assert_eq!(fcgi_get(&r.spec, "/later").body_str(), "later\n");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let dropped = fcgi_get(&r.spec, "/drop");
    assert_eq!(dropped.status, 502, "{}", dropped.body_str());
    let body = b"shout this".to_vec();
    let mut c = FcgiConn::connect(&r.spec);
    c.request(
        1,
        false,
        &nginx_params("POST", "/upper", Some(body.len())),
        &body,
    );
    assert_eq!(
        complete(&c.read_until_end(1), "upper").body_str(),
        "SHOUT THIS"
    );
    assert!(eventually(Duration::from_secs(2), || pending(&r) == 0));
}

#[test]
fn a_cancelled_timer_never_fires() {
    let r = start();
    assert_eq!(fcgi_get(&r.spec, "/cancel").status, 200);
    thread::sleep(Duration::from_millis(100));
    assert!(!r.fired.load(Ordering::SeqCst), "the cancelled timer ran");
}

#[test]
fn a_waiter_whose_client_leaves_is_dropped_at_once() {
    let r = start();
    let mut clients = Vec::new();
    for _ in 0..20 {
        let mut c = FcgiConn::connect(&r.spec);
        c.request(1, true, &nginx_params("GET", "/wait", None), b"");
        clients.push(c);
    }
    assert!(
        eventually(Duration::from_secs(5), || r.waiters.lock().unwrap().len()
            == 20),
        "{} waiters",
        r.waiters.lock().unwrap().len()
    );
    assert_eq!(pending(&r), 20);
    drop(clients);
    assert!(
        eventually(Duration::from_secs(5), || r
            .waiters
            .lock()
            .unwrap()
            .is_empty()),
        "{} waiters left after their clients closed",
        r.waiters.lock().unwrap().len()
    );
    assert!(eventually(Duration::from_secs(2), || pending(&r) == 0));
}

/// `examples/feed.rs`: a reader waits with no thread held, a POST wakes
/// it, and the clock thread's events arrive through `post()`.
#[test]
fn the_feed_example_delivers_posts_and_ticks() {
    let dir = TempDir::new();
    let sock = format!("fastcgi:{}/feed.sock", dir.path().display());
    let _example = start_example("feed", &sock);
    let mut reader = FcgiConn::connect(&sock);
    reader.request(1, false, &nginx_params("GET", "/feed?after=0", None), b"");
    thread::sleep(Duration::from_millis(200));
    let mut c = FcgiConn::connect(&sock);
    c.request(1, false, &nginx_params("POST", "/feed", Some(5)), b"hello");
    assert_eq!(complete(&c.read_until_end(1), "POST").body_str(), "ok\n");
    let first = complete(&reader.read_until_end(1), "reader").body_str();
    assert!(first.starts_with("1 "), "{first:?}");
    let t = Instant::now();
    let mut c = FcgiConn::connect(&sock);
    c.request(1, false, &nginx_params("GET", "/feed?after=1", None), b"");
    let next = complete(&c.read_until_end(1), "next").body_str();
    assert!(next.contains("tick"), "{next:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

/// An async writer of 8 MB never waits and never buffers it all: `write`
/// says `WouldBlock` past the bound and `on_writable` resumes it; the
/// client gets every byte.
#[test]
fn a_big_async_answer_follows_the_clients_pace() {
    let r = start();
    let mut c = FcgiConn::connect(&r.spec);
    c.reply_limit = BIG + 4096;
    c.request(1, false, &nginx_params("GET", "/big", None), b"");
    thread::sleep(Duration::from_millis(300));
    let body = complete(&c.read_until_end(1), "big").body;
    assert_eq!(
        body.len(),
        BIG,
        "{:?}",
        String::from_utf8_lossy(&body[..body.len().min(200)])
    );
    assert!(body.iter().all(|&b| b == b'z'));
    assert!(
        RESUMES.load(Ordering::Relaxed) > 0,
        "the writer never had to wait"
    );
}

/// Log lines of this test process, for the warning below.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogSink;

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An async handler that blocks the loop is named in a warning.
#[test]
fn a_blocking_async_handler_is_named_in_a_warning() {
    let _ = env_logger::Builder::new()
        .filter_level(log::LevelFilter::Warn)
        .target(env_logger::Target::Pipe(Box::new(LogSink)))
        .try_init();
    let r = start();
    assert_eq!(fcgi_get(&r.spec, "/slow").status, 200);
    let found = eventually(Duration::from_secs(2), || {
        String::from_utf8_lossy(&LOG.lock().unwrap()).contains("the async handler of /slow ran")
    });
    assert!(found, "{}", String::from_utf8_lossy(&LOG.lock().unwrap()));
}
