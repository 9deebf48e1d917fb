//! The engine of `fastgate bench`: a load generator that plays the front
//! server, speaking FastCGI (several requests in flight per connection,
//! each with its own request id) or SCGI (one request per connection).
//!
//! Each thread runs its own non-blocking poll(2) loop over its share of
//! the connections; the requests are encoded once, as
//! [`request_params`] and the client's framing make
//! them, and replayed. A request counts as an error when the answer is not
//! a 200, when the connection fails, or when the backend breaks the
//! protocol. The threads share only counters; their latencies are merged
//! at the end.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::{encode_fastcgi_as, encode_scgi, request_params, RequestOptions};
use crate::protocol::cgi_response::{parse_head, Parsed};
use crate::protocol::fastcgi::{Decoder, Event, Stream};
use crate::spec::{Address, Protocol};

/// The longest response head looked at for its status.
const MAX_HEAD_BYTES: usize = 64 << 10;

/// When a run stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// After this long; requests still in flight then are not counted.
    Duration(Duration),
    /// After this many requests (answered or failed).
    Requests(u64),
}

/// What to send, how hard and for how long.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// The request replayed (its `keep_conn` applies to FastCGI; its
    /// `timeout` bounds a wait with nothing answered).
    pub request: RequestOptions,
    /// Connections kept busy.
    pub connections: usize,
    /// Threads the connections are split over.
    pub threads: usize,
    /// FastCGI requests in flight per connection (1 for SCGI).
    pub mux: u16,
    /// When to stop.
    pub limit: Limit,
}

/// Counters shared while a run goes, for a live progress line.
#[derive(Debug, Default)]
pub struct Progress {
    /// Requests finished so far (errors included).
    pub requests: AtomicU64,
    /// Of which failed.
    pub errors: AtomicU64,
}

/// The outcome of a run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Requests finished (errors included).
    pub requests: u64,
    /// Requests failed: not a 200, connection failures, protocol errors.
    pub errors: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// The latency of each answered request, in microseconds, sorted.
    pub latencies_us: Vec<u32>,
    /// Bytes read from the backend.
    pub bytes_received: u64,
    /// Bytes written to the backend.
    pub bytes_sent: u64,
    /// The first failure, described.
    pub first_error: Option<String>,
    /// Connections (of `-c`) that got no answer at all during the run: a
    /// backend that serves only some of its clients starves the rest, and
    /// they show here rather than as errors.
    pub unserved_connections: u64,
}

impl Report {
    /// Requests per second over the run.
    pub fn per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.requests as f64 / secs
        } else {
            0.0
        }
    }

    /// The latency below which `p` percent of answers came (0 with none).
    pub fn percentile(&self, p: f64) -> Duration {
        let n = self.latencies_us.len();
        if n == 0 {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        let us = self.latencies_us[rank.clamp(1, n) - 1];
        Duration::from_micros(u64::from(us))
    }

    fn merge(&mut self, stats: Stats) {
        self.requests += stats.requests;
        self.errors += stats.errors;
        self.latencies_us.extend(stats.latencies_us);
        self.bytes_received += stats.received;
        self.bytes_sent += stats.sent;
        if self.first_error.is_none() {
            self.first_error = stats.first_error;
        }
        self.unserved_connections += stats.unserved;
    }
}

/// Runs the load; `tick` is called about once a second meanwhile.
pub fn run(opts: &BenchOptions, progress: &Progress, tick: &mut dyn FnMut(Duration)) -> Report {
    let shared = Shared::new(opts, progress);
    let threads = opts.threads.clamp(1, opts.connections.max(1));
    let start = Instant::now();
    let mut report = Report::default();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let share = split(opts.connections, threads, t);
                let shared = &shared;
                scope.spawn(move || Worker::new(shared, share).run())
            })
            .collect();
        let mut next_tick = start + Duration::from_secs(1);
        while shared.running.load(Ordering::Relaxed) < threads {
            std::thread::sleep(Duration::from_millis(20));
            if Instant::now() >= next_tick {
                tick(start.elapsed());
                next_tick += Duration::from_secs(1);
            }
        }
        for handle in handles {
            if let Ok(stats) = handle.join() {
                report.merge(stats);
            }
        }
    });
    report.elapsed = start.elapsed();
    report.latencies_us.sort_unstable();
    report
}

/// Thread `t`'s share of `total` connections.
fn split(total: usize, threads: usize, t: usize) -> usize {
    total / threads + usize::from(t < total % threads)
}

/// What every thread reads: the encoded requests and the budget.
struct Shared<'a> {
    opts: &'a BenchOptions,
    progress: &'a Progress,
    scgi: bool,
    /// The request bytes, by request id - 1 (one for SCGI).
    templates: Vec<Vec<u8>>,
    deadline: Option<Instant>,
    claimed: AtomicU64,
    stop: AtomicBool,
    /// Threads finished.
    running: AtomicUsize,
}

impl<'a> Shared<'a> {
    fn new(opts: &'a BenchOptions, progress: &'a Progress) -> Shared<'a> {
        let scgi = opts.request.spec.protocol == Protocol::Scgi;
        let params = request_params(&opts.request, None);
        let templates = if scgi {
            vec![encode_scgi(&opts.request, params)]
        } else {
            (1..=opts.mux.max(1))
                .map(|id| encode_fastcgi_as(&opts.request, &params, id))
                .collect()
        };
        let deadline = match opts.limit {
            Limit::Duration(d) => Some(Instant::now() + d),
            Limit::Requests(_) => None,
        };
        Shared {
            opts,
            progress,
            scgi,
            templates,
            deadline,
            claimed: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            running: AtomicUsize::new(0),
        }
    }

    /// Takes one request from the budget; false once it is spent.
    fn claim(&self) -> bool {
        if self.stop.load(Ordering::Relaxed) || self.past_deadline() {
            return false;
        }
        match self.opts.limit {
            Limit::Duration(_) => true,
            Limit::Requests(n) => self.claimed.fetch_add(1, Ordering::Relaxed) < n,
        }
    }

    fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    fn slots(&self) -> usize {
        if self.scgi {
            1
        } else {
            usize::from(self.opts.mux.max(1))
        }
    }
}

/// A connected non-blocking socket.
enum Sock {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Sock {
    fn connect(address: &Address) -> io::Result<Sock> {
        let sock = match address {
            Address::Tcp(addr) => {
                let s = TcpStream::connect(addr)?;
                s.set_nodelay(true)?;
                Sock::Tcp(s)
            }
            Address::Unix(path) => Sock::Unix(UnixStream::connect(path)?),
        };
        match &sock {
            Sock::Tcp(s) => s.set_nonblocking(true)?,
            Sock::Unix(s) => s.set_nonblocking(true)?,
        }
        Ok(sock)
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Sock::Tcp(s) => s.as_fd(),
            Sock::Unix(s) => s.as_fd(),
        }
    }
}

impl Read for Sock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.read(buf),
            Sock::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Sock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.write(buf),
            Sock::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One request in flight: when it left, and its head until the status is known.
struct InFlight {
    started: Instant,
    head: Vec<u8>,
    status: Option<u16>,
}

impl InFlight {
    fn new() -> InFlight {
        InFlight {
            started: Instant::now(),
            head: Vec::new(),
            status: None,
        }
    }

    /// Takes response bytes; reads the status once the head is whole.
    fn feed(&mut self, data: &[u8]) -> Result<(), String> {
        if self.status.is_some() {
            return Ok(());
        }
        let input = if self.head.is_empty() {
            data
        } else {
            self.head.extend_from_slice(data);
            &self.head[..]
        };
        match parse_head(input, MAX_HEAD_BYTES) {
            Ok(Parsed::Complete { head, .. }) => self.status = Some(head.status),
            Ok(Parsed::Partial) if self.head.is_empty() => self.head.extend_from_slice(data),
            Ok(Parsed::Partial) => {}
            Err(e) => return Err(format!("bad response head: {e}")),
        }
        Ok(())
    }
}

/// One connection and what is in flight on it.
struct Conn {
    sock: Sock,
    out: Vec<u8>,
    out_pos: usize,
    decoder: Decoder,
    /// By request id - 1 (index 0 for SCGI).
    inflight: Vec<Option<InFlight>>,
}

impl Conn {
    fn busy(&self) -> usize {
        self.inflight.iter().filter(|f| f.is_some()).count()
    }
}

/// One thread's tallies.
#[derive(Default)]
struct Stats {
    requests: u64,
    errors: u64,
    latencies_us: Vec<u32>,
    received: u64,
    sent: u64,
    first_error: Option<String>,
    /// Connection slots that never got an answer.
    unserved: u64,
}

/// What a connection should do after an event.
enum After {
    Keep,
    /// Closed by us or the backend: open another.
    Replace,
}

/// One thread's loop over its connections.
struct Worker<'s, 'a> {
    shared: &'s Shared<'a>,
    conns: Vec<Option<Conn>>,
    stats: Stats,
    buf: Vec<u8>,
    last_progress: Instant,
    /// Slots closed since the last look, to open again.
    reopen: Vec<usize>,
    /// Slots that sent a request, and slots that got at least one answer.
    asked: Vec<bool>,
    answered: Vec<bool>,
}

impl<'s, 'a> Worker<'s, 'a> {
    fn new(shared: &'s Shared<'a>, connections: usize) -> Worker<'s, 'a> {
        Worker {
            shared,
            conns: (0..connections).map(|_| None).collect(),
            stats: Stats::default(),
            buf: vec![0; 64 << 10],
            last_progress: Instant::now(),
            reopen: Vec::new(),
            asked: vec![false; connections],
            answered: vec![false; connections],
        }
    }

    fn run(mut self) -> Stats {
        for i in 0..self.conns.len() {
            self.open(i, false);
        }
        loop {
            for i in std::mem::take(&mut self.reopen) {
                // A slot may be listed twice; open it once.
                if self.conns[i].is_none() {
                    self.open(i, true);
                }
            }
            let busy = self.conns.iter().flatten().any(|c| c.busy() > 0);
            if !busy || self.shared.past_deadline() {
                break;
            }
            self.poll_once();
            self.check_stalled();
        }
        self.shared.running.fetch_add(1, Ordering::Relaxed);
        let unserved = self
            .asked
            .iter()
            .zip(&self.answered)
            .filter(|(q, a)| **q && !**a);
        self.stats.unserved = unserved.count() as u64;
        self.stats
    }

    /// Opens slot `i` with as many requests as the budget allows. A failed
    /// connect counts as a failed request; at the start it also gives up
    /// the slot, later (`retry`) it tries again while the budget lasts.
    fn open(&mut self, i: usize, retry: bool) {
        self.conns[i] = None;
        loop {
            if !self.shared.claim() {
                return;
            }
            match Sock::connect(&self.shared.opts.request.spec.address) {
                Ok(sock) => return self.start_conn(i, sock),
                Err(e) => {
                    let what = format!("{}: {}", self.shared.opts.request.spec, describe(&e));
                    self.fail(what);
                    if !retry {
                        return;
                    }
                }
            }
        }
    }

    fn start_conn(&mut self, i: usize, sock: Sock) {
        self.asked[i] = true;
        let mut conn = Conn {
            sock,
            out: Vec::new(),
            out_pos: 0,
            decoder: Decoder::new(),
            inflight: (0..self.shared.slots()).map(|_| None).collect(),
        };
        self.queue(&mut conn, 0);
        for slot in 1..self.shared.slots() {
            if !self.shared.claim() {
                break;
            }
            self.queue(&mut conn, slot);
        }
        self.conns[i] = Some(conn);
        self.flush(i);
    }

    /// Queues the (already claimed) request for slot `slot`.
    fn queue(&self, conn: &mut Conn, slot: usize) {
        conn.out.extend_from_slice(&self.shared.templates[slot]);
        conn.inflight[slot] = Some(InFlight::new());
    }

    fn poll_once(&mut self) {
        let ready = {
            let mut index = Vec::with_capacity(self.conns.len());
            let mut fds = Vec::with_capacity(self.conns.len());
            for (i, conn) in self.conns.iter().enumerate() {
                let Some(conn) = conn else { continue };
                let mut flags = PollFlags::POLLIN;
                if conn.out_pos < conn.out.len() {
                    flags |= PollFlags::POLLOUT;
                }
                fds.push(PollFd::new(conn.sock.fd(), flags));
                index.push(i);
            }
            if poll(&mut fds, PollTimeout::from(100u8)).unwrap_or(0) <= 0 {
                return;
            }
            let revents = fds
                .iter()
                .map(|fd| fd.revents().unwrap_or(PollFlags::empty()));
            index
                .into_iter()
                .zip(revents)
                .filter(|(_, r)| !r.is_empty())
                .collect::<Vec<_>>()
        };
        for (i, revents) in ready {
            if revents.contains(PollFlags::POLLOUT) {
                self.flush(i);
            }
            if revents.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
                self.read(i);
            }
        }
    }

    /// Writes what is queued on slot `i`, as far as the socket takes it.
    fn flush(&mut self, i: usize) {
        let Some(conn) = self.conns[i].as_mut() else {
            return;
        };
        while conn.out_pos < conn.out.len() {
            match conn.sock.write(&conn.out[conn.out_pos..]) {
                Ok(n) => {
                    conn.out_pos += n;
                    self.stats.sent += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.broken(i, describe(&e)),
            }
        }
        conn.out.clear();
        conn.out_pos = 0;
    }

    /// Reads what slot `i` has and acts on it.
    fn read(&mut self, i: usize) {
        let mut buf = std::mem::take(&mut self.buf);
        while let Some(conn) = self.conns[i].as_mut() {
            let n = match conn.sock.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.broken(i, describe(&e));
                    break;
                }
            };
            self.stats.received += n as u64;
            let after = if n == 0 {
                self.closed(i)
            } else if self.shared.scgi {
                self.take_scgi(i, &buf[..n])
            } else {
                self.take_fastcgi(i, &buf[..n])
            };
            if let After::Replace = after {
                self.conns[i] = None;
                self.reopen.push(i);
                break;
            }
        }
        self.buf = buf;
    }

    /// SCGI: the response runs to the close.
    fn take_scgi(&mut self, i: usize, data: &[u8]) -> After {
        let Some(conn) = self.conns[i].as_mut() else {
            return After::Keep;
        };
        let Some(flight) = conn.inflight[0].as_mut() else {
            return After::Keep;
        };
        if let Err(e) = flight.feed(data) {
            self.broken(i, e);
            return After::Replace;
        }
        After::Keep
    }

    /// FastCGI: records, up to each request's END_REQUEST.
    fn take_fastcgi(&mut self, i: usize, mut data: &[u8]) -> After {
        while !data.is_empty() {
            let Some(conn) = self.conns[i].as_mut() else {
                return After::Keep;
            };
            let (used, event) = match conn.decoder.decode(data) {
                Ok(decoded) => decoded,
                Err(e) => {
                    self.broken(i, e.to_string());
                    return After::Replace;
                }
            };
            data = &data[used..];
            let Some(event) = event else {
                continue;
            };
            match event {
                Event::Stream {
                    stream: Stream::Stdout,
                    request_id,
                    data: out,
                } => {
                    let slot = usize::from(request_id).wrapping_sub(1);
                    if let Some(Some(flight)) = conn.inflight.get_mut(slot) {
                        if let Err(e) = flight.feed(out) {
                            self.broken(i, e);
                            return After::Replace;
                        }
                    }
                }
                Event::EndRequest { request_id, .. } => {
                    let slot = usize::from(request_id).wrapping_sub(1);
                    let Some(flight) = conn.inflight.get_mut(slot).and_then(Option::take) else {
                        continue;
                    };
                    self.answered[i] = true;
                    self.finish(flight);
                    if let After::Replace = self.next(i, slot) {
                        return After::Replace;
                    }
                }
                _ => {}
            }
        }
        After::Keep
    }

    /// After a FastCGI request ended: the next on the same id, or a new
    /// connection without keep-conn.
    fn next(&mut self, i: usize, slot: usize) -> After {
        if !self.shared.opts.request.keep_conn {
            return After::Replace;
        }
        if !self.shared.claim() {
            return After::Keep;
        }
        if let Some(mut conn) = self.conns[i].take() {
            self.queue(&mut conn, slot);
            self.conns[i] = Some(conn);
            self.flush(i);
        }
        After::Keep
    }

    /// The backend closed slot `i`: the end of an SCGI answer, or of a
    /// FastCGI connection (an error with requests in flight).
    fn closed(&mut self, i: usize) -> After {
        let Some(mut conn) = self.conns[i].take() else {
            return After::Keep;
        };
        if self.shared.scgi {
            if let Some(flight) = conn.inflight[0].take() {
                self.answered[i] = true;
                self.finish(flight);
            }
            return After::Replace;
        }
        let lost = conn.busy();
        for _ in 0..lost {
            self.fail(format!(
                "{}: connection closed before END_REQUEST",
                self.shared.opts.request.spec
            ));
        }
        After::Replace
    }

    /// A failure on slot `i`: everything in flight on it fails, and it closes.
    fn broken(&mut self, i: usize, what: String) {
        let Some(conn) = self.conns[i].take() else {
            return;
        };
        self.reopen.push(i);
        let what = format!("{}: {what}", self.shared.opts.request.spec);
        for _ in 0..conn.busy().max(1) {
            self.fail(what.clone());
        }
    }

    /// A request answered: a 200 counts, anything else is an error.
    fn finish(&mut self, flight: InFlight) {
        self.last_progress = Instant::now();
        let us = u32::try_from(flight.started.elapsed().as_micros()).unwrap_or(u32::MAX);
        self.stats.latencies_us.push(us);
        match flight.status {
            Some(200) => {
                self.stats.requests += 1;
                self.shared
                    .progress
                    .requests
                    .fetch_add(1, Ordering::Relaxed);
            }
            Some(status) => self.fail(format!("{}: status {status}", self.shared.opts.request.uri)),
            None => self.fail(format!(
                "{}: no response head",
                self.shared.opts.request.uri
            )),
        }
    }

    fn fail(&mut self, what: String) {
        self.last_progress = Instant::now();
        self.stats.requests += 1;
        self.stats.errors += 1;
        self.shared
            .progress
            .requests
            .fetch_add(1, Ordering::Relaxed);
        self.shared.progress.errors.fetch_add(1, Ordering::Relaxed);
        if self.stats.first_error.is_none() {
            self.stats.first_error = Some(what);
        }
    }

    /// Nothing answered within the request timeout: every request in
    /// flight fails and the run stops.
    fn check_stalled(&mut self) {
        let timeout = self.shared.opts.request.timeout;
        if self.last_progress.elapsed() < timeout {
            return;
        }
        self.shared.stop.store(true, Ordering::Relaxed);
        for i in 0..self.conns.len() {
            if self.conns[i].is_some() {
                self.broken(i, format!("no response within {timeout:?}"));
            }
        }
    }
}

fn describe(e: &io::Error) -> String {
    super::describe(e)
}
