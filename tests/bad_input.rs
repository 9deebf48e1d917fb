//! Bad input against the real binary: wrong versions, truncated records,
//! absurd lengths, records for request ids never begun, seeded random
//! bytes and slowloris clients. Each case runs while another client keeps
//! getting answers, and afterwards the server's fd count must come back to
//! where it was: the offending connection is refused or closed, nothing
//! else is disturbed, nothing leaks.

mod common;

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// How long a refused connection may take to be closed.
const CLOSE_WITHIN: Duration = Duration::from_secs(10);

/// A well-behaved client on its own kept-alive connection.
struct Witness {
    conn: FcgiConn,
    next_id: u16,
}

impl Witness {
    fn new(spec: &str) -> Witness {
        let mut w = Witness {
            conn: FcgiConn::connect(spec),
            next_id: 1,
        };
        w.check("warm-up");
        w
    }

    /// One ping on the kept-alive connection must still be answered.
    fn check(&mut self, after: &str) {
        let id = self.next_id;
        self.next_id = self.next_id % 1000 + 1;
        self.conn
            .request(id, true, &nginx_params("GET", "/ping", None), b"");
        let reply = self
            .conn
            .try_read_until_end(id)
            .unwrap_or_else(|e| panic!("witness after {after}: {e}"));
        let r = complete(&reply, after);
        assert_eq!(r.body_str(), "pong\n", "witness after {after}");
    }
}

fn start(extra: &[&str]) -> Server {
    Server::start(&[&["--listen", "fastcgi://127.0.0.1:0"][..], ALL_APPS, extra].concat())
}

/// Asserts the fd count comes back to `base` once bad clients are gone.
fn assert_fds_back(server: &Server, base: usize, what: &str) {
    let n = server.settle_fd_count(base, Duration::from_secs(5));
    assert!(n <= base, "{what}: {base} fds before, {n} after");
}

/// Reads until the server closes; fails the test if it does not within
/// [`CLOSE_WITHIN`]. Returns what came before the close.
fn read_until_closed(conn: &mut Conn, what: &str) -> Vec<u8> {
    conn.set_timeout(CLOSE_WITHIN);
    let start = Instant::now();
    let mut got = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        match std::io::Read::read(conn, &mut chunk) {
            Ok(0) => return got,
            Ok(n) if got.len() < (1 << 20) => got.extend_from_slice(&chunk[..n]),
            Ok(_) => panic!("{what}: more than 1 MiB in reply to bad input"),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!(
                "{what}: connection not closed ({e} after {:?}, {} bytes got)",
                start.elapsed(),
                got.len()
            ),
        }
    }
}

/// Sends `bytes` on a fresh connection, half-closes it and requires the
/// server to close its side, answering with anything but a 200 (if at all).
fn refused(spec: &str, bytes: &[u8], what: &str) {
    let mut c = Conn::connect(spec);
    let _ = c.write_all(bytes);
    c.shutdown_write();
    let got = read_until_closed(&mut c, what);
    assert!(
        !contains(&got, b"Status: 200"),
        "{what}: answered 200: {:?}",
        String::from_utf8_lossy(&got)
    );
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A record with any header fields, e.g. a bad version or a length that
/// does not match the content.
fn raw_record(version: u8, kind: u8, id: u16, len: u16, pad: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![version, kind];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[pad, 0]);
    out.extend_from_slice(content);
    out
}

fn begin_and_params(id: u16, uri: &str) -> Vec<u8> {
    let mut out = record(rec::BEGIN_REQUEST, id, &begin_body(RESPONDER, false));
    out.extend_from_slice(&stream_records(
        rec::PARAMS,
        id,
        &encode_pairs(&nginx_params("POST", uri, Some(10))),
        true,
    ));
    out
}

#[test]
fn wrong_version_closes_only_that_connection() {
    let server = start(&[]);
    let spec = server.spec(0);
    let mut witness = Witness::new(&spec);
    let base = server.quiet_fd_count();
    for version in [0u8, 2, 3, 255] {
        let mut bytes = raw_record(
            version,
            rec::BEGIN_REQUEST,
            1,
            8,
            0,
            &begin_body(RESPONDER, false),
        );
        bytes.extend_from_slice(&begin_and_params(1, "/ping"));
        let mut c = Conn::connect(&spec);
        c.write_all(&bytes).expect("write");
        // No half-close here: the server must close by itself.
        let got = read_until_closed(&mut c, &format!("version {version}"));
        assert!(
            !contains(&got, b"pong"),
            "version {version} record was served"
        );
        witness.check(&format!("version {version}"));
    }
    assert_fds_back(&server, base, "wrong versions");
}

#[test]
fn truncated_records_then_close() {
    let server = start(&[]);
    let spec = server.spec(0);
    let mut witness = Witness::new(&spec);
    let base = server.quiet_fd_count();
    let whole = {
        let mut b = begin_and_params(1, "/echo");
        b.extend_from_slice(&record(rec::STDIN, 1, b"0123456789"));
        b.extend_from_slice(&record(rec::STDIN, 1, &[]));
        b
    };
    // Every prefix up to a few records in, at odd places.
    let mut cuts: Vec<usize> = (1..24).collect();
    cuts.extend([
        whole.len() / 3,
        whole.len() / 2,
        whole.len() - 9,
        whole.len() - 1,
    ]);
    for cut in cuts {
        let mut c = Conn::connect(&spec);
        c.write_all(&whole[..cut]).expect("write");
        drop(c);
    }
    // A header that promises more than ever comes.
    let mut c = Conn::connect(&spec);
    c.write_all(&raw_record(1, rec::STDIN, 1, 65535, 255, b"short"))
        .expect("write");
    drop(c);
    witness.check("truncated records");
    assert_fds_back(&server, base, "truncated records");
}

#[test]
fn absurd_lengths_are_refused_without_buffering() {
    let server = start(&[]);
    let spec = server.spec(0);
    let mut witness = Witness::new(&spec);
    let base = server.quiet_fd_count();

    // A name-value pair claiming a 2 GiB name inside a 10-byte stream.
    let mut bytes = record(rec::BEGIN_REQUEST, 1, &begin_body(RESPONDER, false));
    bytes.extend_from_slice(&record(
        rec::PARAMS,
        1,
        &[0xff, 0xff, 0xff, 0xff, 1, b'A', b'B'],
    ));
    bytes.extend_from_slice(&record(rec::PARAMS, 1, &[]));
    bytes.extend_from_slice(&record(rec::STDIN, 1, &[]));
    refused(&spec, &bytes, "2 GiB name length");
    witness.check("2 GiB name length");

    // A value claiming 1 GiB, fed 400 KB (past --max-params-bytes) then cut.
    let mut c = Conn::connect(&spec);
    c.write_all(&record(
        rec::BEGIN_REQUEST,
        1,
        &begin_body(RESPONDER, false),
    ))
    .expect("write");
    let mut first = vec![4, 0xC0, 0, 0, 0];
    first.extend_from_slice(b"HUGE");
    c.write_all(&record(rec::PARAMS, 1, &first)).expect("write");
    let filler = vec![b'v'; 60_000];
    for _ in 0..7 {
        if c.write_all(&record(rec::PARAMS, 1, &filler)).is_err() {
            break; // the server may already have given up on us
        }
    }
    witness.check("1 GiB value in flight");
    let _ = c.write_all(&record(rec::PARAMS, 1, &[]));
    let _ = c.write_all(&record(rec::STDIN, 1, &[]));
    c.shutdown_write();
    let got = read_until_closed(&mut c, "1 GiB value");
    assert!(!contains(&got, b"Status: 200"), "1 GiB value answered 200");
    witness.check("1 GiB value");

    // BEGIN_REQUEST with a 3-byte body; END_REQUEST-sized garbage.
    refused(
        &spec,
        &raw_record(1, rec::BEGIN_REQUEST, 1, 3, 0, &[0, 1, 0]),
        "short BEGIN_REQUEST",
    );
    witness.check("short BEGIN_REQUEST");

    // CONTENT_LENGTH that is not a number a body could have.
    for len in ["99999999999999999999999", "-5", "12abc"] {
        let mut p = nginx_params("POST", "/echo", None);
        set_param(&mut p, "CONTENT_LENGTH", Some(len));
        let mut c = FcgiConn::connect(&spec);
        c.begin(1, RESPONDER, false);
        c.params(1, &p);
        c.stdin(1, b"abc");
        c.end_stdin(1);
        c.conn.shutdown_write();
        // An answer or a close, not silence.
        let got = match c.try_read_until_end(1) {
            Ok(reply) => reply.stdout,
            Err(e) if e.contains("closed by fastgate") || e.contains("reset") => Vec::new(),
            Err(e) => panic!("CONTENT_LENGTH {len:?}: {e}"),
        };
        assert!(
            !contains(&got, b"Status: 200"),
            "CONTENT_LENGTH {len:?} answered 200"
        );
        witness.check(&format!("CONTENT_LENGTH {len}"));
    }
    assert_fds_back(&server, base, "absurd lengths");
}

#[test]
fn records_for_request_ids_never_begun_are_ignored() {
    let server = start(&[]);
    let spec = server.spec(0);
    let mut c = FcgiConn::connect(&spec);
    // FastCGI 1.0 §3.3: records for an inactive request id are ignored.
    c.stdin(77, b"stray body");
    c.end_stdin(77);
    c.send_raw(&stream_records(
        rec::PARAMS,
        78,
        &encode_pairs(&[("A", "B")]),
        true,
    ));
    c.abort(79);
    c.data(80, b"stray data");
    c.request(1, true, &nginx_params("GET", "/ping", None), b"");
    assert_eq!(complete(&c.read_until_end(1), "ping").body_str(), "pong\n");
    // The stray ids got nothing; the next request is fine too.
    c.request(2, true, &nginx_params("GET", "/", None), b"");
    complete(&c.read_until_end(2), "hello");
    let stray = c.ids_seen();
    assert!(
        stray.iter().all(|id| !(77..=80).contains(id)),
        "replies for stray ids {stray:?}"
    );
    // An id that has ended is inactive again: its records are ignored too.
    c.stdin(1, b"late");
    c.end_stdin(1);
    c.request(3, true, &nginx_params("GET", "/ping", None), b"");
    complete(&c.read_until_end(3), "ping after late STDIN");
}

/// xorshift64: a fixed seed gives the same bytes on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next() >> 32) as u8).collect()
    }
}

/// Rounds of a random test: `default`, or `FASTGATE_TEST_ROUNDS` for a
/// longer run by hand (the seeds stay fixed, so a failure replays).
fn rounds(default: usize) -> usize {
    std::env::var("FASTGATE_TEST_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn seeded_random_bytes_are_survived() {
    let server = start(&[]);
    let spec = server.spec(0);
    let mut witness = Witness::new(&spec);
    let base = server.quiet_fd_count();
    let mut rng = Rng(0x5eed_f00d_1234_5678);
    for round in 0..rounds(40) {
        let len = 1 + rng.below(4096) as usize;
        let mut bytes = rng.bytes(len);
        if round % 2 == 0 {
            bytes[0] = 1; // past the version check, into the record parser
        }
        let mut c = Conn::connect(&spec);
        let _ = c.write_all(&bytes);
        c.shutdown_write();
        read_until_closed(&mut c, &format!("random round {round}"));
        if round % 8 == 0 {
            witness.check(&format!("random round {round}"));
        }
    }
    witness.check("random bytes");
    assert_fds_back(&server, base, "random bytes");
}

#[test]
fn seeded_random_records_are_survived() {
    let server = start(&[]);
    let spec = server.spec(0);
    let mut witness = Witness::new(&spec);
    let base = server.quiet_fd_count();
    let mut rng = Rng(0xdead_beef_0bad_cafe);
    for round in 0..rounds(30) {
        // Well-framed records of random types, ids and contents: the
        // request state machine, not the framing, meets the garbage.
        let mut bytes = Vec::new();
        for _ in 0..1 + rng.below(20) {
            let kind = 1 + rng.below(12) as u8;
            let id = rng.below(4) as u16;
            let len = rng.below(300) as usize;
            let content = match (kind, rng.below(3)) {
                (rec::BEGIN_REQUEST, 0) => {
                    begin_body(1 + rng.below(3) as u16, rng.below(2) == 0).to_vec()
                }
                (rec::PARAMS, 0) => encode_pairs(&nginx_params("GET", "/ping", None)),
                _ => rng.bytes(len),
            };
            bytes.extend_from_slice(&record(kind, id, &content));
        }
        let mut c = Conn::connect(&spec);
        let _ = c.write_all(&bytes);
        c.shutdown_write();
        read_until_closed(&mut c, &format!("random records round {round}"));
        if round % 5 == 0 {
            witness.check(&format!("random records round {round}"));
        }
    }
    witness.check("random records");
    assert_fds_back(&server, base, "random records");
}

#[test]
fn client_leaving_mid_request_is_cleaned_up() {
    let server = start(&[]);
    let spec = server.spec(0);
    let mut witness = Witness::new(&spec);
    let base = server.quiet_fd_count();
    for round in 0..10u64 {
        let mut c = FcgiConn::connect(&spec);
        c.begin(1, RESPONDER, true);
        c.params(1, &nginx_params("POST", "/echo", Some(1 << 20)));
        c.stdin(1, &pattern(300_000, round));
        drop(c);
        let mut c = FcgiConn::connect(&spec);
        c.request(1, true, &nginx_params("GET", "/sleep?ms=200", None), b"");
        drop(c);
    }
    witness.check("clients leaving");
    // The sleeps end within 200 ms; give the server a moment more.
    thread::sleep(Duration::from_millis(300));
    assert_fds_back(&server, base, "clients leaving mid-request");
}

#[test]
fn slowloris_is_closed_by_header_timeout() {
    let server = start(&["--header-timeout", "1s"]);
    let spec = server.spec(0);
    let ping = || assert_eq!(fcgi_get(&spec, "/ping").body_str(), "pong\n");
    ping();
    let base = server.quiet_fd_count();
    let start = Instant::now();

    // Silent after connecting.
    let mut silent = Conn::connect(&spec);
    // BEGIN_REQUEST and half the params, then nothing.
    let mut half = Conn::connect(&spec);
    let begun = begin_and_params(1, "/ping");
    half.write_all(&begun[..begun.len() - 20]).expect("write");
    // A byte every 200 ms: activity must not extend the header deadline.
    let mut dribble = Conn::connect(&spec);
    let mut dribbled_closed = false;
    for (i, b) in begun.iter().enumerate().take(30) {
        if dribble.write_all(&[*b]).is_err() {
            dribbled_closed = true;
            break;
        }
        if i % 2 == 0 {
            ping();
        }
        thread::sleep(Duration::from_millis(200));
    }
    for (c, what) in [(&mut silent, "silent"), (&mut half, "half params")] {
        let got = read_until_closed(c, what);
        assert!(got.is_empty() || !contains(&got, b"pong"), "{what}: served");
    }
    if !dribbled_closed {
        read_until_closed(&mut dribble, "dribbling params");
    }
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "slowloris closed after {:?}",
        start.elapsed()
    );
    ping();
    assert_fds_back(&server, base, "slowloris");
}

#[test]
fn slowloris_on_scgi_is_closed_by_header_timeout() {
    let server = Server::start(&["--listen", "scgi://127.0.0.1:0", "--header-timeout", "1s"]);
    let spec = server.spec(0);
    let base = server.quiet_fd_count();
    let mut c = Conn::connect(&spec);
    c.write_all(b"70:CONTENT_LEN").expect("write");
    read_until_closed(&mut c, "scgi half header");
    assert_eq!(scgi_get(&spec, "/").status, 200);
    assert_fds_back(&server, base, "scgi slowloris");
}

#[test]
fn clients_that_do_not_read_cost_bounded_memory() {
    let server = start(&[]);
    let spec = server.spec(0);
    let mut witness = Witness::new(&spec);
    let before = server.rss_bytes();
    // Four 16 MiB echoes whose clients never read the answer: the output
    // beyond a bound is held in a temporary file, not in memory.
    let body = pattern(16 << 20, 77);
    let mut idle = Vec::new();
    for _ in 0..4 {
        let mut c = FcgiConn::connect(&spec);
        c.request(
            1,
            false,
            &nginx_params("POST", "/echo", Some(body.len())),
            &body,
        );
        idle.push(c);
    }
    witness.check("four unread 16 MiB answers");
    thread::sleep(Duration::from_millis(300));
    let grown = server.rss_bytes().saturating_sub(before);
    assert!(
        grown < 32 << 20,
        "resident memory grew {} MiB holding 64 MiB of unread output",
        grown >> 20
    );
    // And the answers are all there for a client that reads at last.
    let reply = idle[0].read_until_end(1);
    assert_bytes_eq(&complete(&reply, "late reader").body, &body, "late reader");
}
