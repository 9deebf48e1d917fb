//! Whole connections through the real server: an in-process
//! `fastgate::Server` (`fastgate_fuzz::server`: `auto` listener on a Unix
//! socket, small limits, `hello` at `/` and `echo` at `/echo`). The first
//! bytes of an input pick where its reads end (`split`, at most 8 reads);
//! each chunk is written and waited for until the server has read it, so
//! it arrives as a read of its own (once the server stops reading, the
//! rest is written at once). Then, for a clean input (complete,
//! well-formed requests within the limits, read with the project's own
//! decoders), the answers are awaited; then the client half-closes and
//! reads to the end.
//!
//! Checks (a panic is a finding): the server closes within the deadline
//! (else it hangs); its output is well-formed for the protocol of the
//! first byte (`output`), answers only requests that were begun, and stays
//! under 1 MiB; every request of a clean input is answered (an answer or
//! a refusal); and every 256 inputs a fresh FastCGI request to `hello` is
//! answered as it should be (within 3 s: a 503 is retried). A panic on a
//! server thread aborts too.
#![no_main]
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fastgate::client::{self, RequestOptions};
use fastgate_fuzz::output::{self, excerpt, ScgiAnswer};
use fastgate_fuzz::requests::Input;
use fastgate_fuzz::server::{harness, send_and_wait, LONGEST_TIMEOUT};
use fastgate_fuzz::split::Split;
use libfuzzer_sys::fuzz_target;

/// Reads per connection at most (each costs a round trip).
const MAX_READS: usize = 8;
/// The most output a connection of at most 4 KiB of input may get.
const MAX_OUTPUT: usize = 1 << 20;
/// How long all the chunks may take to be read.
const WRITE_BUDGET: Duration = Duration::from_secs(1);
/// How long the answers of a clean input may take.
const ANSWER_WAIT: Duration = Duration::from_secs(3);
/// How long after the half-close the server has to close: past every
/// timeout configured, and then some.
const CLOSE_WAIT: Duration = LONGEST_TIMEOUT.saturating_add(Duration::from_secs(3));

/// Reads what is there until `done` says so, the server closes, or the
/// deadline; true if the server closed.
fn read_until(
    stream: &mut UnixStream,
    out: &mut Vec<u8>,
    deadline: Instant,
    done: &dyn Fn(&[u8]) -> bool,
) -> bool {
    let mut buf = [0u8; 16 << 10];
    while !done(out) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            // A reset: the server cut the connection; it is closed.
            Err(_) => return true,
        }
        assert!(out.len() < MAX_OUTPUT, "{} bytes of output", out.len());
    }
    false
}

/// Whether every request of a clean input has its answer in `out`.
fn answered(input: &Input, out: &[u8]) -> bool {
    match input {
        Input::FastCgi(f) => {
            let Some(requests) = &f.clean else {
                return true;
            };
            let Ok(a) = output::fastcgi(out, f) else {
                return true;
            };
            let ended = |id: &u16| a.ended.contains_key(id);
            let keep = requests.iter().all(|(_, k)| *k);
            if keep {
                requests.iter().all(|(id, _)| ended(id))
            } else {
                // The server closes after the first request without
                // FCGI_KEEP_CONN: only its answer is certain.
                requests.iter().any(|(id, k)| !k && ended(id))
            }
        }
        Input::Http(h) => {
            let Some(expected) = h.expected else {
                return true;
            };
            let Ok(a) = output::http(out, h) else {
                return true;
            };
            a.responses >= expected || (a.responses > 0 && a.closing)
        }
        Input::Scgi { clean } => !clean || output::scgi(out) == Ok(ScgiAnswer::Answer),
        Input::Other => true,
    }
}

/// The output of the whole connection, which has ended.
fn check(input: &Input, out: &[u8]) {
    let fail = |why: String| panic!("{why}\noutput: {:?}", excerpt(out));
    match input {
        Input::FastCgi(f) => match output::fastcgi(out, f) {
            Err(why) => fail(why),
            Ok(a) if a.truncated => fail("the output stops inside a record".into()),
            Ok(_) => {}
        },
        Input::Http(h) => match output::http(out, h) {
            Err(why) => fail(why),
            Ok(a) if a.truncated => fail("the output stops inside a response".into()),
            Ok(_) => {}
        },
        Input::Scgi { .. } => match output::scgi(out) {
            Err(why) => fail(why),
            Ok(ScgiAnswer::Partial) => fail("the output stops inside a CGI head".into()),
            Ok(_) => {}
        },
        Input::Other => assert!(out.is_empty(), "an answer to an unknown protocol"),
    }
    assert!(
        answered(input, out),
        "a request of a clean input got no answer"
    );
}

/// One connection: the chunks written, the answers awaited, the close.
fn exchange(chunks: &[&[u8]], input: &Input) -> Vec<u8> {
    let mut stream = UnixStream::connect(&harness().socket).expect("connect");
    stream.set_write_timeout(Some(WRITE_BUDGET)).unwrap();
    let write_deadline = Instant::now() + WRITE_BUDGET;
    let mut waiting = true;
    for chunk in chunks {
        if waiting {
            waiting = send_and_wait(&mut stream, chunk, write_deadline);
        } else if stream.write_all(chunk).is_err() {
            // Closed by the server: the rest cannot be sent.
            break;
        }
    }
    let mut out = Vec::new();
    let closed = read_until(
        &mut stream,
        &mut out,
        Instant::now() + ANSWER_WAIT,
        &|out| answered(input, out),
    );
    if !closed {
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let closed = read_until(&mut stream, &mut out, Instant::now() + CLOSE_WAIT, &|_| {
            false
        });
        assert!(
            closed,
            "the server did not close {CLOSE_WAIT:?} after a half-close"
        );
    }
    out
}

/// A fresh request to `hello`, answered as always: a 503 (the queue
/// full, with `Retry-After`) is the server's answer to overload, and is
/// retried, with the counters on stderr; a 200 must come within 3 s.
fn hello_still_answers() {
    let path = harness().socket.display().to_string();
    let spec = format!("fastcgi:{path}").parse().unwrap();
    let mut opts = RequestOptions::new(spec, "/");
    opts.timeout = Duration::from_secs(5);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let resp = client::send(&opts).unwrap_or_else(|e| panic!("hello: {e}"));
        let state = harness().describe();
        if resp.head.status == 503 && Instant::now() < deadline {
            eprintln!("hello: 503, retried: {state}");
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        assert_eq!(resp.head.status, 200, "hello: {state}");
        assert_eq!(resp.body, b"Hello, world!\n");
        return;
    }
}

static INPUTS: AtomicUsize = AtomicUsize::new(0);

fuzz_target!(|data: &[u8]| {
    let Some(split) = Split::new(data) else {
        return;
    };
    let input = Input::read(split.payload);
    let out = exchange(&split.chunks_at_most(MAX_READS), &input);
    check(&input, &out);
    if INPUTS.fetch_add(1, Ordering::Relaxed).is_multiple_of(256) {
        hello_still_answers();
    }
});
