//! The faults the soak injects while the load runs, one every tick, in a
//! fixed rotation: clients that vanish (mid-params, mid-body,
//! mid-response), slowloris clients (a byte every 300 ms, on threads of
//! their own, bounded in time), malformed bytes on every listener, bursts
//! past `--queue` and `--max-conns`, kill -9 of a child; and once each, at
//! set times, a HUP and a USR2 (see `Plan`). The refusals a burst earns
//! are booked as refusals; every fault is counted by kind.

use std::io::{Read, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::client::*;
use crate::common::*;
use crate::fleet::Fleet;
use crate::load::{nap, Env, Rng};

/// When the faults come, in seconds from the start of the load.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub tick: Duration,
    pub usr2_at: f64,
    pub hup_at: f64,
    /// No kill -9 in the `settle` seconds before a quiet sample, so the
    /// children sampled at the baseline and at the end have both served
    /// at least that long: a child a few seconds old has not yet grown
    /// its arenas and buffers to their working size, and comparing one
    /// with an older one would measure its age, not a leak.
    pub settle: f64,
    pub end: f64,
    /// The windows of the quiet samples: no burst in them.
    pub quiet: [f64; 2],
    /// `--max-conns` per process, for the connection burst.
    pub max_conns: usize,
}

/// Runs the rotation until `plan.end`; returns the slowloris threads.
pub fn run(env: &Arc<Env>, fleet: &Fleet, plan: Plan, t0: Instant) -> Vec<thread::JoinHandle<()>> {
    let mut rng = Rng::new(7 + u64::from(std::process::id()));
    let mut slow = Vec::new();
    let (mut usr2_done, mut hup_done) = (false, false);
    let t = &env.tally;
    for n in 0u64..100_000 {
        thread::sleep(plan.tick);
        if !t.go_on() {
            break;
        }
        let now = t0.elapsed().as_secs_f64();
        if now >= plan.end {
            break;
        }
        t.busy.fetch_add(1, Ordering::SeqCst);
        if !usr2_done && now >= plan.usr2_at {
            usr2_done = true;
            upgrade(env, fleet);
        } else if !hup_done && now >= plan.hup_at {
            hup_done = true;
            hup(env, fleet);
        } else {
            one(env, fleet, &plan, n, now, &mut rng, &mut slow);
        }
        t.busy.fetch_sub(1, Ordering::SeqCst);
    }
    slow
}

/// The `n`-th fault of the rotation.
fn one(
    env: &Arc<Env>,
    fleet: &Fleet,
    plan: &Plan,
    n: u64,
    now: f64,
    rng: &mut Rng,
    slow: &mut Vec<thread::JoinHandle<()>>,
) {
    let near_quiet = plan
        .quiet
        .iter()
        .any(|&q| (q - 6.0..q + 2.0).contains(&now));
    let settling = plan
        .quiet
        .iter()
        .any(|&q| (q - plan.settle..q + 2.0).contains(&now));
    match n % 9 {
        0 => vanish_params(env),
        1 => slow.push(slowloris(env, n)),
        2 => vanish_body(env, rng),
        3 => malformed(env, rng),
        4 if !near_quiet => burst_queue(env),
        5 => vanish_response(env, rng),
        6 if !settling => kill_child(env, fleet, n),
        7 if !near_quiet => burst_conns(env, plan.max_conns * 3),
        8 => malformed(env, rng),
        _ => vanish_params(env),
    }
}

/// USR2, followed to the new master; the window of the handover lasts
/// until the old master and its children are gone.
fn upgrade(env: &Env, fleet: &Fleet) {
    env.tally.fault("usr2");
    let from = Instant::now();
    let old_children = fleet.children();
    match fleet.upgrade() {
        Ok((old, new)) => env.tally.event(format!("USR2: master {old} -> {new}")),
        Err(e) => panic!("soak: USR2 failed: {e}"),
    }
    fleet.wait_all_gone(&old_children, Duration::from_secs(30));
    env.tally.graceful(from);
    env.tally
        .event(format!("USR2: old children {old_children:?} gone"));
}

/// HUP; its window lasts until every child of before is replaced.
fn hup(env: &Env, fleet: &Fleet) {
    env.tally.fault("hup");
    let from = Instant::now();
    let before = fleet.children();
    fleet.signal(Signal::SIGHUP);
    env.tally.event(format!("HUP: children {before:?}"));
    fleet.wait_all_gone(&before, Duration::from_secs(30));
    env.tally.graceful(from);
    env.tally.event(format!("HUP: now {:?}", fleet.children()));
}

fn kill_child(env: &Env, fleet: &Fleet, n: u64) {
    if let Some((pid, at)) = fleet.kill_child(n as usize / 9) {
        env.tally.killed_at(at, format!("kill -9 {pid}"));
        env.tally.fault("kill -9 child");
    }
}

/// BEGIN_REQUEST and part of a PARAMS record, then gone.
fn vanish_params(env: &Env) {
    env.tally.fault("vanish mid-params");
    let Ok((mut c, _)) = fcgi_connect(&env.fcgi_unix) else {
        return;
    };
    let mut out = fcgi_head(&Ask::hello(), 1, false);
    let cut = out.len() - 40;
    out.truncate(cut);
    let _ = c.try_send_raw(&out);
}

/// Half of a body (FastCGI or HTTP), then gone.
fn vanish_body(env: &Env, rng: &mut Rng) {
    env.tally.fault("vanish mid-body");
    let ask = Ask::echo(
        env.body(rng, 1 << 20)
            .into_iter()
            .chain(vec![7; 200_000])
            .collect(),
    );
    let half = ask.body.len() / 2;
    if rng.next() % 2 == 0 {
        let Ok((mut c, _)) = fcgi_connect(&env.fcgi_tcp) else {
            return;
        };
        let mut out = fcgi_head(&ask, 1, true);
        out.extend(stream_records(rec::STDIN, 1, &ask.body[..half], false));
        let _ = c.try_send_raw(&out);
    } else if let Ok(mut c) = Conn::try_connect(&env.http) {
        let head = format!(
            "POST /echo HTTP/1.1\r\nHost: s\r\nContent-Length: {}\r\n\r\n",
            ask.body.len()
        );
        let _ = c.write_all(head.as_bytes());
        let _ = c.write_all(&ask.body[..half]);
    }
}

/// A whole request, then gone before (or while) the answer comes: a
/// 1 MB echo read a little, a sleep, a CGI script.
fn vanish_response(env: &Env, rng: &mut Rng) {
    env.tally.fault("vanish mid-response");
    let ask = match rng.range(0, 3) {
        0 => Ask::echo(env.noise[..1 << 20].to_vec()),
        1 => Ask::sleep(300),
        _ => Ask::cgi(&env.cgi_script, 1, env.noise[..200_000].to_vec()),
    };
    let Ok((mut c, _)) = fcgi_connect(&env.fcgi_tcp) else {
        return;
    };
    if c.try_send_raw(&fcgi_bytes(&ask, 1, false)).is_ok() && ask.kind == "echo" {
        let mut some = [0u8; 1000];
        let _ = c.conn.read(&mut some);
    }
}

/// A request written a byte every 300 ms, for at most 8 s, on its own
/// thread (counted busy, so the quiet samples wait for it).
fn slowloris(env: &Arc<Env>, n: u64) -> thread::JoinHandle<()> {
    env.tally.fault("slowloris");
    env.tally.busy.fetch_add(1, Ordering::SeqCst);
    let env = Arc::clone(env);
    thread::spawn(move || {
        let (spec, bytes) = if n % 2 == 0 {
            (&env.fcgi_unix, fcgi_bytes(&Ask::hello(), 1, false))
        } else {
            (
                &env.http,
                b"GET / HTTP/1.1\r\nHost: slow\r\nX-Slow: 1\r\n\r\n".to_vec(),
            )
        };
        if let Ok(mut c) = Conn::try_connect(spec) {
            let until = Instant::now() + Duration::from_secs(8);
            for b in bytes
                .iter()
                .take_while(|_| Instant::now() < until && !env.tally.stopping())
            {
                if c.write_all(&[*b]).is_err() {
                    break;
                }
                nap(300);
            }
        }
        env.tally.busy.fetch_sub(1, Ordering::SeqCst);
    })
}

/// Bytes no protocol allows, on every listener; the server must answer
/// with an error or close, and serve everyone else.
fn malformed(env: &Env, rng: &mut Rng) {
    env.tally.fault("malformed");
    let garbage: Vec<u8> = (0..512).map(|_| rng.next() as u8).collect();
    let mut bad_version = record(rec::BEGIN_REQUEST, 1, &begin_body(RESPONDER, false));
    bad_version[0] = 2;
    let oversized = {
        let mut a = Ask::hello();
        a.uri = format!("/?pad={}", "p".repeat(200_000));
        fcgi_bytes(&a, 1, false)
    };
    let bad_http =
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
    let sends: [(&String, &[u8], &str); 6] = [
        (&env.fcgi_tcp, &garbage, ""),
        (&env.fcgi_unix, &bad_version, ""),
        (&env.fcgi_tcp, &oversized, "Status: 431"),
        (
            &env.scgi,
            b"99999999999999:CONTENT_LENGTH\x000\x00,",
            "Status: 400",
        ),
        (&env.http, bad_http, "HTTP/1.1 400"),
        (&env.http, &garbage, ""),
    ];
    for (spec, bytes, want) in sends {
        let got = send_and_read(spec, bytes);
        if !want.is_empty() && !String::from_utf8_lossy(&got).contains(want) {
            env.tally.note(&format!("malformed: no {want:?} answer"));
        }
    }
}

/// Sends `bytes` on a fresh connection and reads what comes until the
/// server closes (at most 64 KiB, 10 s).
fn send_and_read(spec: &str, bytes: &[u8]) -> Vec<u8> {
    let Ok(mut c) = Conn::try_connect(spec) else {
        return Vec::new();
    };
    c.set_timeout(Duration::from_secs(10));
    let _ = c.write_all(bytes);
    let mut got = Vec::new();
    let mut chunk = [0u8; 8192];
    while let Ok(n) = c.read(&mut chunk) {
        if n == 0 || got.len() > 65536 {
            break;
        }
        got.extend_from_slice(&chunk[..n]);
    }
    got
}

/// 40 sleeps of 300 ms multiplexed on one connection: past the workers
/// and `--queue`, the rest must be refused with 503 + Retry-After.
fn burst_queue(env: &Env) {
    env.tally.fault("burst past --queue");
    let from = Instant::now();
    let asks: Vec<Ask> = (0..40).map(|_| Ask::sleep(300)).collect();
    let Ok((mut c, opened)) = fcgi_connect(&env.fcgi_tcp) else {
        return;
    };
    let bytes: Vec<u8> = (1u16..)
        .zip(&asks)
        .flat_map(|(id, a)| fcgi_bytes(a, id, true))
        .collect();
    for a in &asks {
        env.tally.sent("fcgi-burst", a.kind);
    }
    env.tally.burst(from, from + Duration::from_secs(30));
    let sent = c.try_send_raw(&bytes);
    for (id, a) in (1u16..).zip(&asks) {
        let o = match (&sent, c.try_read_until_end(id)) {
            (Err(e), _) => Outcome::Broken(format!("burst write: {e}")),
            (_, Ok(reply)) => judge_fcgi(&reply, a),
            (_, Err(e)) => Outcome::Broken(e),
        };
        book(&env.tally, "fcgi-burst", a.kind, opened, o);
    }
    env.tally.burst(from, Instant::now());
}

/// `n` connections at once, each with a request, held for a second: past
/// `--max-conns` the server stops accepting until others close. Read in
/// order and closed one by one, every one must be answered in the end; a
/// connection that never got in is booked refused.
fn burst_conns(env: &Env, n: usize) {
    env.tally.fault("burst past --max-conns");
    let from = Instant::now();
    let ask = Ask::hello();
    let mut conns = Vec::new();
    for i in 0..n {
        let spec = if i % 2 == 0 {
            &env.fcgi_tcp
        } else {
            &env.fcgi_unix
        };
        env.tally.sent("fcgi-burst", "hello-conn");
        match fcgi_connect(spec) {
            Ok((mut c, opened)) => {
                let sent = c.try_send_raw(&fcgi_bytes(&ask, 1, false));
                conns.push((c, opened, sent));
            }
            Err(_) => env.tally.refused(),
        }
    }
    env.tally.burst(from, from + Duration::from_secs(60));
    nap(1000);
    for (mut c, opened, sent) in conns {
        c.conn.set_timeout(Duration::from_secs(15));
        let o = match (sent, c.try_read_until_end(1)) {
            (Err(e), _) => Outcome::Broken(format!("burst conn write: {e}")),
            (_, Ok(reply)) => judge_fcgi(&reply, &ask),
            (_, Err(e)) if e.contains("timed out") || e.contains("would block") => Outcome::Refused,
            (_, Err(e)) => Outcome::Broken(e),
        };
        book(&env.tally, "fcgi-burst", "hello-conn", opened, o);
    }
    env.tally.burst(from, Instant::now());
}
