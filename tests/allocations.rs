//! Heap allocations per request on the hot path (`hello` through the pool,
//! FastCGI keep-conn), counted by a global allocator in this test process,
//! which runs the server in-process (the library) and a client that
//! allocates nothing per request (one request encoded once, a fixed read
//! buffer).
//!
//! The ceiling is today's figure: the test fails if a change makes the
//! count grow. Lower it when a change cuts allocations.
//! `cargo test --test allocations -- --nocapture` prints the figure.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fastgate::{Options, Request, Response, Server};

/// Allocations per `hello` request: 10.03 when the test was written, 4.03
/// after the hot-path cuts (BENCHMARKS.md lists them), rounded up.
const CEILING: u64 = 5;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

struct Counting;

// SAFETY: every call goes to the system allocator unchanged; only a
// counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn record(kind: u8, content: &[u8]) -> Vec<u8> {
    let mut r = vec![1, kind, 0, 1];
    r.extend_from_slice(&(content.len() as u16).to_be_bytes());
    r.extend_from_slice(&[0, 0]);
    r.extend_from_slice(content);
    r
}

/// A GET of `/` as nginx sends it, with FCGI_KEEP_CONN.
fn request() -> Vec<u8> {
    let mut params = Vec::new();
    for (k, v) in [
        ("REQUEST_METHOD", "GET"),
        ("REQUEST_URI", "/"),
        ("SCRIPT_NAME", "/"),
        ("QUERY_STRING", ""),
        ("CONTENT_LENGTH", ""),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REMOTE_ADDR", "127.0.0.1"),
    ] {
        params.extend_from_slice(&[k.len() as u8, v.len() as u8]);
        params.extend_from_slice(k.as_bytes());
        params.extend_from_slice(v.as_bytes());
    }
    let mut out = record(1, &[0, 1, 1, 0, 0, 0, 0, 0]);
    out.extend(record(4, &params));
    out.extend(record(4, &[]));
    out.extend(record(5, &[]));
    out
}

/// Sends one request and reads until its END_REQUEST (type 3), with no
/// allocation: the answer of `hello` fits the buffer.
fn exchange(conn: &mut TcpStream, req: &[u8], buf: &mut [u8]) {
    conn.write_all(req).expect("write");
    let mut have = 0;
    loop {
        let n = conn.read(&mut buf[have..]).expect("read");
        assert!(n > 0, "server closed");
        have += n;
        if ends_request(&buf[..have]) {
            return;
        }
    }
}

fn ends_request(bytes: &[u8]) -> bool {
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let len = u16::from_be_bytes([bytes[at + 4], bytes[at + 5]]) as usize;
        let pad = bytes[at + 6] as usize;
        if bytes[at + 1] == 3 && at + 8 + len + pad <= bytes.len() {
            return true;
        }
        at += 8 + len + pad;
    }
    false
}

#[test]
fn hello_allocates_no_more_than_today() {
    let mut options = Options::default();
    options.min_threads = 1;
    options.max_threads = 1;
    let mut b = Server::builder();
    b.listen("fastcgi://127.0.0.1:0".parse().unwrap())
        .options(options)
        .mount("/", |_req: &mut Request, resp: &mut Response| {
            resp.set_header("Content-Type", "text/plain");
            resp.write_all(b"Hello, world!\n")
        });
    let server = b.build().expect("build");
    let addr = match &server.listen_specs()[0].address {
        fastgate::Address::Tcp(a) => *a,
        other => panic!("{other:?}"),
    };
    let stop = server.stop_handle();
    let running = std::thread::spawn(move || server.run());
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let req = request();
    let mut buf = vec![0u8; 64 * 1024];
    for _ in 0..200 {
        exchange(&mut conn, &req, &mut buf);
    }
    let n = 2_000;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..n {
        exchange(&mut conn, &req, &mut buf);
    }
    let per_request = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / n as f64;
    println!("heap allocations per hello request: {per_request:.2}");
    stop.stop();
    drop(conn);
    running.join().unwrap().unwrap();
    assert!(
        per_request <= CEILING as f64,
        "{per_request:.2} allocations per request, past the ceiling of {CEILING}"
    );
}
