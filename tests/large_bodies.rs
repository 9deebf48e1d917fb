//! A 1 GB body through `echo` over FastCGI, both ways at once, with the
//! server's peak memory checked: bodies stream with backpressure, and the
//! response held until STDIN ends spills to a temporary file, not to RAM.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::*;

const GIB: u64 = 1 << 30;
/// Peak RSS allowed for the whole server while 1 GiB passes through.
const PEAK_RSS_LIMIT_KB: u64 = 64 * 1024;

/// The body is a cycle of 251 bytes (prime, so it never lines up with
/// record sizes); records carry a whole number of cycles.
const CYCLE: usize = 251;
const RECORD: usize = CYCLE * 261;

fn cycle(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % CYCLE) as u8).collect()
}

fn record(kind: u8, content: &[u8]) -> Vec<u8> {
    let mut r = vec![
        1,
        kind,
        0,
        1,
        (content.len() >> 8) as u8,
        content.len() as u8,
        0,
        0,
    ];
    r.extend_from_slice(content);
    r
}

fn send_request(mut w: UnixStream, len: u64) {
    let params = encode_pairs(&nginx_params("POST", "/", Some(len as usize)));
    w.write_all(&record(1, &[0, 1, 0, 0, 0, 0, 0, 0])).unwrap();
    w.write_all(&record(4, &params)).unwrap();
    w.write_all(&record(4, &[])).unwrap();
    let block = record(5, &cycle(RECORD));
    let mut sent = 0u64;
    while sent + RECORD as u64 <= len {
        w.write_all(&block).unwrap();
        sent += RECORD as u64;
    }
    if sent < len {
        let rest = &cycle(RECORD)[..(len - sent) as usize];
        w.write_all(&record(5, rest)).unwrap();
    }
    w.write_all(&record(5, &[])).unwrap();
}

/// Reads records to END_REQUEST; checks the echoed body byte by byte
/// without keeping it. Returns the body length.
fn read_echo(mut r: UnixStream) -> u64 {
    let mut head = Vec::new();
    let mut body = 0u64;
    let mut hdr = [0u8; 8];
    let mut content = vec![0u8; 65_535 + 255];
    // Twice the longest record plus a cycle: any offset's expected bytes
    // are one slice of it.
    let expected = cycle(2 * 65_535 + CYCLE);
    loop {
        r.read_exact(&mut hdr).unwrap();
        let len = usize::from(hdr[4]) << 8 | usize::from(hdr[5]);
        let total = len + usize::from(hdr[6]);
        r.read_exact(&mut content[..total]).unwrap();
        match hdr[1] {
            3 => return body,
            6 => {
                let mut data = &content[..len];
                if !head.ends_with(b"\r\n\r\n") {
                    let need = data.len().min(head_end(&head, data));
                    head.extend_from_slice(&data[..need]);
                    data = &data[need..];
                }
                let at = (body % CYCLE as u64) as usize;
                assert!(
                    data == &expected[at..at + data.len()],
                    "echoed bytes differ after {body}"
                );
                body += data.len() as u64;
            }
            _ => {}
        }
    }
}

/// How many bytes of `data` still belong to the response head.
fn head_end(head: &[u8], data: &[u8]) -> usize {
    let mut h = head.to_vec();
    for (i, &b) in data.iter().enumerate() {
        h.push(b);
        if h.ends_with(b"\r\n\r\n") {
            return i + 1;
        }
    }
    data.len()
}

#[test]
fn one_gib_echo_streams_with_bounded_memory() {
    let s = Server::start(&["--listen", "fastcgi:{dir}/big.sock", "--mount", "/=echo"]);
    let conn = UnixStream::connect(s.unix_path(0)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let writer = conn.try_clone().unwrap();
    let sender = std::thread::spawn(move || send_request(writer, GIB));
    let echoed = read_echo(conn);
    sender.join().unwrap();
    assert_eq!(echoed, GIB);
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
    let peak_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    eprintln!("peak RSS of the server while 1 GiB was echoed: {peak_kb} kB");
    assert!(peak_kb < PEAK_RSS_LIMIT_KB, "peak RSS {peak_kb} kB");
}
