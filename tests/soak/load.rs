//! The soak's steady mixed load: each client thread runs operations picked
//! at random until the run ends (bounded in count and in time) — FastCGI
//! one request per connection (TCP and Unix), keep-conn, multiplexed;
//! SCGI; HTTP keep-alive; pubsub (a waiter and a publisher) — over hello,
//! echo (bodies up to 1 MB, compared byte for byte), sleep and cgi. Every
//! operation opens its own connections and closes them before the next,
//! so a pause between operations leaves the server with no client.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::client::*;
use crate::common::*;
use crate::http::HttpConn;
use crate::tally::{Failure, Tally};

/// Most operations one client thread runs (the time bound comes first).
const MAX_OPS: u64 = 1_000_000;

/// Where and what the clients reach.
pub struct Env {
    pub fcgi_tcp: String,
    pub fcgi_unix: String,
    pub scgi: String,
    pub http: String,
    pub cgi_script: String,
    /// Random bytes that bodies are cut from.
    pub noise: Vec<u8>,
    pub tally: Tally,
}

/// xorshift64*: reproducible per seed, no crate needed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % hi.saturating_sub(lo).max(1)
    }
}

impl Env {
    /// A body of a random size: mostly small, a quarter up to 128 KiB,
    /// one in twenty up to `max`.
    pub fn body(&self, rng: &mut Rng, max: u64) -> Vec<u8> {
        let roll = rng.range(0, 100);
        let (lo, hi) = match roll {
            0..70 => (0, 4096),
            70..95 => (4096, 128 << 10),
            _ => (128 << 10, max),
        };
        let len = rng.range(lo.min(max), hi.min(max)) as usize;
        let from = rng.range(0, (self.noise.len() - len) as u64) as usize;
        self.noise[from..from + len].to_vec()
    }

    /// A request for one of the pool's apps; cgi only when asked.
    fn ask(&self, rng: &mut Rng, max_body: u64, cgi: bool) -> Ask {
        match rng.range(0, if cgi { 10 } else { 9 }) {
            0..3 => Ask::hello(),
            3..7 => Ask::echo(self.body(rng, max_body)),
            7..9 => Ask::sleep(rng.range(1, 200)),
            _ => Ask::cgi(
                &self.cgi_script,
                rng.next() % 1000,
                self.body(rng, 64 << 10),
            ),
        }
    }
}

/// Starts `n` client threads that run until `until` or the stop flag.
pub fn start(env: &Arc<Env>, n: usize, until: Instant) -> Vec<thread::JoinHandle<()>> {
    (0..n)
        .map(|i| {
            let env = Arc::clone(env);
            thread::spawn(move || client(&env, i as u64, until))
        })
        .collect()
}

fn client(env: &Env, seed: u64, until: Instant) {
    let mut rng = Rng::new(seed + 1 + u64::from(std::process::id()));
    let t = &env.tally;
    for _ in 0..MAX_OPS {
        if !t.go_on() || Instant::now() >= until {
            return;
        }
        t.busy.fetch_add(1, Ordering::SeqCst);
        match rng.range(0, 100) {
            0..30 => fcgi_single(env, &mut rng),
            30..48 => fcgi_keep(env, &mut rng),
            48..62 => fcgi_mux(env, &mut rng),
            62..72 => scgi(env, &mut rng),
            72..88 => http(env, &mut rng),
            _ => crate::pubsub::round(env, &mut rng),
        }
        t.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// FastCGI, one request per connection, TCP or Unix.
fn fcgi_single(env: &Env, rng: &mut Rng) {
    let (proto, spec) = if rng.next() % 2 == 0 {
        ("fcgi-tcp", &env.fcgi_tcp)
    } else {
        ("fcgi-unix", &env.fcgi_unix)
    };
    let ask = env.ask(rng, 1 << 20, true);
    env.tally.sent(proto, ask.kind);
    let (o, opened) = match fcgi_connect(spec) {
        Ok((mut c, opened)) => (fcgi_round(&mut c, &ask, 1, false), opened),
        Err(e) => (Outcome::Broken(format!("connect: {e}")), Instant::now()),
    };
    book(&env.tally, proto, ask.kind, opened, o);
}

/// FastCGI keep-conn: 2 to 6 requests in turn on one connection (ids
/// 1, 2, ..., so the records of each are told apart).
fn fcgi_keep(env: &Env, rng: &mut Rng) {
    let spec = if rng.next() % 2 == 0 {
        &env.fcgi_tcp
    } else {
        &env.fcgi_unix
    };
    let Ok((mut c, opened)) = fcgi_connect(spec) else {
        return fcgi_single(env, rng);
    };
    for id in 1..=rng.range(2, 7) as u16 {
        let ask = env.ask(rng, 1 << 20, true);
        env.tally.sent("fcgi-keep", ask.kind);
        let o = fcgi_round(&mut c, &ask, id, true);
        if let Outcome::Broken(what) = &o {
            if id > 1 && !c.ids_seen().contains(&id) {
                return retry(env, "fcgi-keep", &ask, opened, what, || {
                    fcgi_once(spec, &ask)
                });
            }
        }
        let broken = matches!(o, Outcome::Broken(_));
        book(&env.tally, "fcgi-keep", ask.kind, opened, o);
        if broken {
            return;
        }
    }
}

/// One FastCGI request on a fresh connection: (outcome, when it opened).
fn fcgi_once(spec: &str, ask: &Ask) -> (Outcome, Instant) {
    match fcgi_connect(spec) {
        Ok((mut c, opened)) => (fcgi_round(&mut c, ask, 1, false), opened),
        Err(e) => (Outcome::Broken(format!("connect: {e}")), Instant::now()),
    }
}

/// A request whose kept-alive connection closed before any byte of its
/// answer is sent again on a fresh one, as nginx does with a cached
/// upstream connection; the retry is booked (and later judged, see
/// `Tally::retried`), and the second answer checked as any other.
fn retry(
    env: &Env,
    proto: &str,
    ask: &Ask,
    opened: Instant,
    what: &str,
    again: impl FnOnce() -> (Outcome, Instant),
) {
    env.tally.retried(Failure {
        opened,
        at: Instant::now(),
        what: format!("{proto} {}: {what} (retried)", ask.kind),
        wrong_answer: false,
    });
    let (o, opened) = again();
    book(&env.tally, proto, ask.kind, opened, o);
}

/// FastCGI multiplexed: 3 to 8 requests whose heads, then bodies (in
/// 16 KiB pieces, round robin), interleave on one connection; every STDIN
/// ends last, so no answer is due before everything is sent (the client
/// writes all before it reads, as a simple multiplexer may).
fn fcgi_mux(env: &Env, rng: &mut Rng) {
    let asks: Vec<Ask> = (0..rng.range(3, 9))
        .map(|_| env.ask(rng, 256 << 10, false))
        .collect();
    for a in &asks {
        env.tally.sent("fcgi-mux", a.kind);
    }
    let book_all = |from: usize, opened: Instant, what: &str| {
        for a in &asks[from..] {
            let o = Outcome::Broken(format!("{}: {what}", a.uri));
            book(&env.tally, "fcgi-mux", a.kind, opened, o);
        }
    };
    let (mut c, opened) = match fcgi_connect(&env.fcgi_tcp) {
        Ok(c) => c,
        Err(e) => return book_all(0, Instant::now(), &format!("connect: {e}")),
    };
    if let Err(e) = c.try_send_raw(&mux_bytes(&asks)) {
        return book_all(0, opened, &format!("write: {e}"));
    }
    for (i, a) in asks.iter().enumerate() {
        match c.try_read_until_end(i as u16 + 1) {
            Ok(reply) => book(
                &env.tally,
                "fcgi-mux",
                a.kind,
                opened,
                judge_fcgi(&reply, a),
            ),
            Err(e) => return book_all(i, opened, &e),
        }
    }
}

/// The bytes of a multiplexed batch: every head, the bodies interleaved,
/// then every end of STDIN.
fn mux_bytes(asks: &[Ask]) -> Vec<u8> {
    let ids = 1..=asks.len() as u16;
    let mut out: Vec<u8> = ids
        .clone()
        .zip(asks)
        .flat_map(|(id, a)| fcgi_head(a, id, true))
        .collect();
    let longest = asks.iter().map(|a| a.body.len()).max().unwrap_or(0);
    for at in (0..longest).step_by(16 << 10) {
        for (id, a) in ids.clone().zip(asks) {
            if let Some(piece) = a.body.get(at..(at + (16 << 10)).min(a.body.len())) {
                if !piece.is_empty() {
                    out.extend(record(rec::STDIN, id, piece));
                }
            }
        }
    }
    for id in ids {
        out.extend(record(rec::STDIN, id, &[]));
    }
    out
}

/// SCGI: hello or echo (one request per connection, by the protocol).
fn scgi(env: &Env, rng: &mut Rng) {
    let ask = if rng.next() % 3 == 0 {
        Ask::hello()
    } else {
        Ask::echo(env.body(rng, 1 << 20))
    };
    env.tally.sent("scgi", ask.kind);
    let (o, opened) = scgi_round(&env.scgi, &ask);
    book(&env.tally, "scgi", ask.kind, opened, o);
}

/// HTTP/1.1 keep-alive: 2 to 6 requests on one connection.
fn http(env: &Env, rng: &mut Rng) {
    let opened = Instant::now();
    let Ok(conn) = Conn::try_connect(&env.http) else {
        env.tally.sent("http", "connect");
        let o = Outcome::Broken("connect failed".into());
        return book(&env.tally, "http", "connect", opened, o);
    };
    let mut c = HttpConn::new(conn);
    for i in 0..rng.range(2, 7) {
        let ask = env.ask(rng, 1 << 20, false);
        env.tally.sent("http", ask.kind);
        let (o, go_on) = match c.round(&ask) {
            Ok(a) => (judge(a.status, a.retry_after, &a.body, &ask), !a.close),
            Err(e) if i > 0 && !c.got_any() => {
                let what = format!("{}: {e}", ask.uri);
                return retry(env, "http", &ask, opened, &what, || {
                    http_once(&env.http, &ask)
                });
            }
            Err(e) => (Outcome::Broken(format!("{}: {e}", ask.uri)), false),
        };
        book(&env.tally, "http", ask.kind, opened, o);
        if !go_on {
            return;
        }
    }
}

/// One HTTP request on a fresh connection: (outcome, when it opened).
fn http_once(spec: &str, ask: &Ask) -> (Outcome, Instant) {
    let opened = Instant::now();
    let answer = Conn::try_connect(spec).and_then(|c| HttpConn::new(c).round(ask));
    let o = match answer {
        Ok(a) => judge(a.status, a.retry_after, &a.body, ask),
        Err(e) => Outcome::Broken(format!("{}: {e}", ask.uri)),
    };
    (o, opened)
}

/// Lets an operation pause a little without outliving the run.
pub fn nap(ms: u64) {
    thread::sleep(Duration::from_millis(ms));
}
