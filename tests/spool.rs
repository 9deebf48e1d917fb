//! Request bodies on a multiplexed connection never deadlock the server:
//! a request that shares its connection spools its body to a temporary
//! file instead of pausing the connection, so a request still queued cannot
//! keep the running ones (and the workers they hold) from their own bodies.
//! And temporary files have a bound: `--max-temp-bytes` refuses past it
//! (413 for a body, 503 for held output), the files live in `--temp-dir`,
//! and the disk they take comes back to 0 once the clients are gone.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// The STDIN of `bodies` (id, body) interleaved 64 KiB at a time, each
/// stream ended, as HAProxy multiplexes uploads.
fn interleaved_stdin(bodies: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let longest = bodies.iter().map(|(_, b)| b.len()).max().unwrap_or(0);
    for start in (0..longest).step_by(65_535) {
        for (id, body) in bodies {
            if let Some(chunk) = body.get(start..(start + 65_535).min(body.len())) {
                out.extend_from_slice(&record(rec::STDIN, *id, chunk));
            }
        }
    }
    for (id, _) in bodies {
        out.extend_from_slice(&record(rec::STDIN, *id, &[]));
    }
    out
}

/// BEGIN_REQUEST (keep-conn) and PARAMS of a POST of `len` bytes to `uri`.
fn head(id: u16, uri: &str, len: usize) -> Vec<u8> {
    let mut out = record(rec::BEGIN_REQUEST, id, &begin_body(RESPONDER, true));
    let params = encode_pairs(&nginx_params("POST", uri, Some(len)));
    out.extend_from_slice(&stream_records(rec::PARAMS, id, &params, true));
    out
}

/// Sends `bytes` from another thread (the replies are read meanwhile, as a
/// multiplexing front server does).
fn send_in_background(c: &FcgiConn, bytes: Vec<u8>) -> thread::JoinHandle<()> {
    let Conn::Tcp(stream) = &c.conn else {
        panic!("TCP expected")
    };
    let mut writer: TcpStream = stream.try_clone().expect("clone");
    thread::spawn(move || {
        let _ = writer.write_all(&bytes);
    })
}

/// Uploads `n` bodies of `size` bytes multiplexed on one connection to
/// `/echo` and checks every echo byte for byte.
fn multiplexed_echoes(spec: &str, n: u16, size: usize) {
    let bodies: Vec<(u16, Vec<u8>)> = (1..=n)
        .map(|id| (id, pattern(size, u64::from(id))))
        .collect();
    let mut wire: Vec<u8> = bodies
        .iter()
        .flat_map(|(id, b)| head(*id, "/echo", b.len()))
        .collect();
    wire.extend_from_slice(&interleaved_stdin(&bodies));
    let mut c = FcgiConn::connect(spec);
    c.reply_limit = size + 4096;
    let writer = send_in_background(&c, wire);
    for (id, body) in &bodies {
        let r = complete(&c.read_until_end(*id), &format!("id {id}"));
        assert_eq!(r.status, 200, "id {id}: {}", r.body_str());
        assert!(r.body == *body, "id {id}: echo differs");
    }
    writer.join().expect("writer");
}

#[test]
fn three_multiplexed_uploads_with_two_workers_do_not_deadlock() {
    let server = Server::start(&[
        "--listen",
        "fastcgi://127.0.0.1:0",
        "--mount",
        "/echo=echo",
        "--mount",
        "/=ping",
        "--max-threads",
        "2",
        "--min-threads",
        "2",
    ]);
    let spec = server.spec(0);
    let done = {
        let spec = spec.clone();
        thread::spawn(move || multiplexed_echoes(&spec, 3, 512 * 1024))
    };
    let t = Instant::now();
    assert_eq!(fcgi_get(&spec, "/").body_str(), "pong\n");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "ping took {:?}",
        t.elapsed()
    );
    done.join().expect("the three uploads were all echoed");
}

#[test]
fn a_hundred_multiplexed_megabyte_uploads_are_all_echoed() {
    let server = Server::start(&[
        "--listen",
        "fastcgi://127.0.0.1:0",
        "--mount",
        "/echo=echo",
        "--temp-dir",
        "{dir}",
    ]);
    multiplexed_echoes(&server.spec(0), 100, 1 << 20);
    assert!(
        eventually(Duration::from_secs(5), || temp_bytes(
            server.pid(),
            server.dir()
        ) == 0),
        "temporary files left: {} bytes",
        temp_bytes(server.pid(), server.dir())
    );
}

/// The bytes of the (unlinked) temporary files `pid` holds open in `dir`.
fn temp_bytes(pid: i32, dir: &Path) -> u64 {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    // A spool file has no name (O_TMPFILE: `DIR/#INODE (deleted)`; else
    // an unlinked `DIR/fastgate-XXXXXX (deleted)`).
    let prefix = format!("{}/", dir.display());
    fds.flatten()
        .filter(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|t| {
                let t = t.display().to_string();
                t.starts_with(&prefix) && t.ends_with(" (deleted)")
            })
        })
        .filter_map(|fd| std::fs::metadata(fd.path()).ok())
        .map(|m| m.len())
        .sum()
}

fn temp_bound_server() -> Server {
    Server::start(&[
        "--listen",
        "fastcgi://127.0.0.1:0",
        "--mount",
        "/echo=echo",
        "--mount",
        "/sleep=sleep",
        "--mount",
        "/=ping",
        "--max-temp-bytes",
        "10m",
        "--temp-dir",
        "{dir}",
        "--max-threads",
        "1",
        "--min-threads",
        "1",
    ])
}

#[test]
fn spooled_bodies_past_max_temp_bytes_get_413_and_the_disk_comes_back() {
    let server = temp_bound_server();
    let spec = server.spec(0);
    // The only worker sleeps on request 1 without reading, so the bodies
    // of 2 and 3 (6 MB each) spool: 12 MB past a 10 MiB bound.
    let size = 6 << 20;
    let bodies: Vec<(u16, Vec<u8>)> = (1..=3).map(|id| (id, pattern(size, 3))).collect();
    let mut wire = head(1, "/sleep?ms=1500", size);
    wire.extend_from_slice(&head(2, "/echo", size));
    wire.extend_from_slice(&head(3, "/echo", size));
    wire.extend_from_slice(&interleaved_stdin(&bodies));
    let mut c = FcgiConn::connect(&spec);
    c.reply_limit = size + 4096;
    let writer = send_in_background(&c, wire);
    let mut peak = 0;
    let watch_until = Instant::now() + Duration::from_millis(1200);
    while Instant::now() < watch_until {
        peak = peak.max(temp_bytes(server.pid(), server.dir()));
        thread::sleep(Duration::from_millis(10));
    }
    let replies = c.read_all_until(&[1, 2, 3]);
    writer.join().expect("writer");
    let statuses: Vec<u16> = (1..=3).map(|id| replies[&id].response().status).collect();
    assert!(statuses.contains(&413), "statuses {statuses:?}");
    assert!(peak > 0, "nothing was spooled to --temp-dir");
    assert!(
        peak <= 10 << 20,
        "{peak} bytes of temporary files, past 10m"
    );
    drop(c);
    assert!(
        eventually(Duration::from_secs(5), || temp_bytes(
            server.pid(),
            server.dir()
        ) == 0),
        "temporary files left: {} bytes",
        temp_bytes(server.pid(), server.dir())
    );
    assert_eq!(fcgi_get(&spec, "/").body_str(), "pong\n");
}

#[test]
fn held_output_past_max_temp_bytes_gets_503() {
    let server = temp_bound_server();
    let spec = server.spec(0);
    // echo writes as it reads; its output is held until the body ends:
    // 12 MB held cannot fit in 10 MiB.
    let body = pattern(12 << 20, 4);
    let mut c = FcgiConn::connect(&spec);
    c.reply_limit = 1 << 20;
    c.request(
        1,
        false,
        &nginx_params("POST", "/echo", Some(body.len())),
        &body,
    );
    let r = complete(&c.read_until_end(1), "echo");
    assert_eq!(r.status, 503, "{}", r.body_str());
    assert_eq!(r.header("Retry-After"), Some("1"));
    assert!(
        eventually(Duration::from_secs(5), || temp_bytes(
            server.pid(),
            server.dir()
        ) == 0),
        "temporary files left"
    );
    let small = pattern(100_000, 5);
    let mut c = FcgiConn::connect(&spec);
    c.request(
        1,
        false,
        &nginx_params("POST", "/echo", Some(small.len())),
        &small,
    );
    assert!(complete(&c.read_until_end(1), "small echo").body == small);
}
