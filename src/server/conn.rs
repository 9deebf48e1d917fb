//! One client connection: its socket and peer, what is buffered each way,
//! which protocol it speaks (decided by the listener or by its first byte),
//! and its own deadlines. The protocol state machines live in
//! `fastcgi_conn` and `scgi_conn` behind the `Machine` trait; this file
//! holds what they share.

use std::io::{self, Read};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::context::Ctx;
use super::fastcgi_conn::FcgiConn;
use super::http_conn::HttpConn;
use super::limits::Limits;
use super::listener::{Peer, Stream};
use super::machine::{BodyClock, Machine};
use super::message::{ConnId, End, ReqRef};
use super::output::Output;
use super::poller::Interest;
use super::scgi_conn::ScgiConn;
use super::shared::{Shared, SpillTo};
use crate::protocol::cgi_response::Head;
use crate::spec::Protocol;

/// Unprocessed input kept per connection (a partial SCGI header, or bytes
/// left while reading is paused) is bounded by the params limit plus this.
const RBUF_SLACK: usize = 64 * 1024;
/// How long a closing connection waits for its peer to close.
const LINGER: Duration = Duration::from_secs(2);
/// Unwritten output past which the connection is not read: what the loop
/// answers itself (UNKNOWN_TYPE, GET_VALUES, refusals, END_REQUEST) takes
/// no output credit, so a client that sends and never reads is stopped
/// here.
const OUT_HIGH: usize = 1024 * 1024;

/// What the connection is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// Serving.
    Open,
    /// Writing what is left, then closing.
    Closing,
    /// All written and our side shut down; what the peer still sends is
    /// read and discarded until it closes or `until`. Closing at once with
    /// unread input would send a reset, and the peer (nginx still sending
    /// the body of a refused request) could lose the answer with it.
    Lingering { until: Instant },
    /// Gone: the loop removes it.
    Closed,
}

pub enum Proto {
    /// Auto listener, first byte not seen yet.
    Detect,
    FastCgi(FcgiConn),
    Scgi(ScgiConn),
    Http(HttpConn),
}

impl Proto {
    /// The protocol's state machine (None until the first byte told it).
    fn machine(&mut self) -> Option<&mut dyn Machine> {
        match self {
            Proto::Detect => None,
            Proto::FastCgi(f) => Some(f),
            Proto::Scgi(s) => Some(s),
            Proto::Http(h) => Some(h),
        }
    }

    fn machine_ref(&self) -> Option<&dyn Machine> {
        match self {
            Proto::Detect => None,
            Proto::FastCgi(f) => Some(f),
            Proto::Scgi(s) => Some(s),
            Proto::Http(h) => Some(h),
        }
    }
}

/// Body bytes the requests of one connection may hold in spool files
/// before it pauses: room for a full `--max-reqs` of 128 uploads of 2 MiB
/// each waiting for workers, while `--max-temp-bytes` bounds the process.
pub const CONN_SPOOL: u64 = 256 << 20;

/// Why a connection is closed (logged once when it is the client's fault).
pub enum CloseReason {
    PeerClosed,
    Io(io::Error),
    Protocol(String),
    /// An expected expiry (idle connection).
    Timeout(&'static str),
    /// A client too slow to send its request (slowloris).
    SlowClient(&'static str),
}

/// What a connection shares with its protocol state machine.
pub struct ConnIo {
    pub id: ConnId,
    pub out: Output,
    /// Requests whose unread body stopped the reading of this connection.
    pub paused_by: usize,
    /// The peer's FIN came while paused with input still unread: that
    /// input is bounded (nothing can follow a FIN), so it is read to the
    /// end, bodies spooling, to learn whether the requests were complete.
    pub reading_to_fin: bool,
    pub peer: Peer,
    /// Requests begun and ended on this connection.
    pub begun: u64,
    pub ended: u64,
    /// Held output waits for room in `out` (see `Conn::release_held`).
    pub held_waiting: bool,
    /// Bytes its requests' bodies hold in spool files (`CONN_SPOOL`).
    pub spooled: Arc<AtomicU64>,
    /// The peer shut its sending side after complete requests (a
    /// half-close): they are answered, then the connection closes.
    pub peer_shut: bool,
    /// The loop answered a request itself (a refusal), perhaps while its
    /// body was still on its way: the close lingers.
    pub refused: bool,
}

impl ConnIo {
    /// Whether input must wait (an unread body paused the connection).
    pub fn paused(&self) -> bool {
        self.paused_by > 0 && !self.reading_to_fin
    }

    /// Where a body goes that must not pause the connection, when it must
    /// not (`None`: this request may pause it).
    pub fn spill_to<'a>(&'a self, ctx: &'a Ctx, shared_conn: bool) -> Option<SpillTo<'a>> {
        (shared_conn || self.reading_to_fin).then_some(SpillTo {
            space: &ctx.temp,
            conn: &self.spooled,
            conn_limit: CONN_SPOOL,
        })
    }

    /// Aborts a request's handler and releases the pause it may hold on
    /// this connection's reading.
    pub fn abort(&mut self, shared: &Shared) {
        if shared.abort() {
            self.paused_by = self.paused_by.saturating_sub(1);
        }
    }
}

pub struct Conn {
    pub stream: Stream,
    pub io: ConnIo,
    pub proto: Proto,
    pub state: ConnState,
    rbuf: Vec<u8>,
    /// When the connection was accepted or last finished a request.
    pub last_active: Instant,
    /// `io.ended` when `last_active` was last moved.
    seen_ended: u64,
    /// A graceful stop began before its first request: it closes if none
    /// has come by then.
    pub grace_until: Option<Instant>,
    /// The deadline the timer heap holds for it, if any.
    pub armed: Option<Instant>,
    /// The interest registered in the poller.
    pub interest: Interest,
    /// When the last read brought bytes (an SCGI body's clock).
    last_read: Instant,
    /// Whether the connection was being read when last looked at, and
    /// since when: a body's pause counts only while we read (a handler
    /// that does not read its body is not the client's fault).
    reading: bool,
    reading_since: Instant,
    /// Output is pending and no byte of it was written since then.
    stuck_since: Option<Instant>,
    /// Queued for the end-of-turn flush.
    pub touched: bool,
}

impl Conn {
    pub fn new(stream: Stream, id: ConnId, protocol: Protocol, ctx: &Ctx) -> Conn {
        let now = ctx.now;
        let proto = match protocol {
            Protocol::FastCgi => Proto::FastCgi(FcgiConn::new()),
            Protocol::Scgi => Proto::Scgi(ScgiConn::new()),
            Protocol::Http => Proto::Http(HttpConn::new(&ctx.limits, stream.local())),
            Protocol::Auto => Proto::Detect,
        };
        let peer = stream.peer();
        Conn {
            stream,
            io: ConnIo {
                id,
                out: Output::default(),
                paused_by: 0,
                reading_to_fin: false,
                peer,
                begun: 0,
                ended: 0,
                peer_shut: false,
                refused: false,
                held_waiting: false,
                spooled: Arc::default(),
            },
            proto,
            state: ConnState::Open,
            rbuf: Vec::new(),
            last_active: now,
            seen_ended: 0,
            grace_until: None,
            armed: None,
            interest: Interest::READ,
            last_read: now,
            reading: true,
            reading_since: now,
            stuck_since: None,
            touched: false,
        }
    }

    /// The interest the connection needs now.
    pub fn wanted_interest(&self) -> Interest {
        if let ConnState::Lingering { .. } = self.state {
            return Interest::READ;
        }
        let read = self.may_read();
        // Not reading, but a client that leaves must still abort its
        // requests (a FIN alone would otherwise go unseen while paused).
        let hangup = !read && self.state == ConnState::Open && !self.io.peer_shut;
        let write = !self.io.out.is_empty() || self.io.held_waiting;
        Interest::new(read, write).with_hangup(hangup)
    }

    /// Open, not paused by an unread body, not behind on its output.
    fn may_read(&self) -> bool {
        self.state == ConnState::Open
            && !self.io.paused()
            && self.io.out.pending() < OUT_HIGH
            && !self.io.peer_shut
    }

    /// A hang-up reported while reading is paused. A Unix peer that
    /// closed for good is gone; otherwise, with input still unread, that
    /// input is read to its end (bounded: nothing follows a FIN) and the
    /// end of stream decides; with none, it decides now. A second report
    /// is an error: the peer is gone.
    pub fn on_hangup_while_paused(&mut self, ctx: &mut Ctx) -> Result<(), CloseReason> {
        if self.io.peer_shut || self.io.reading_to_fin || self.stream.peer_closed_for_good() {
            return Err(CloseReason::PeerClosed);
        }
        // Input still to process, in the socket or kept from before the
        // pause: read it all (bounded: nothing follows a FIN), then judge.
        if self.stream.unread_bytes() > 0 || !self.rbuf.is_empty() {
            self.io.reading_to_fin = true;
            return self.process_pending(ctx);
        }
        self.on_peer_shutdown(ctx)
    }

    /// The peer shut its sending side (a read gave 0, or a hang-up came
    /// while paused). After complete requests that is a half-close, as some
    /// clients and proxies send, and they are answered before the
    /// connection closes, unless the peer closed for good (a Unix socket
    /// tells) or asked FCGI_KEEP_CONN (a connection meant to live on that
    /// ends is nginx's abort). With nothing in flight it is an ordinary
    /// close; with a request still incomplete the client left, and its
    /// requests abort.
    pub fn on_peer_shutdown(&mut self, ctx: &mut Ctx) -> Result<(), CloseReason> {
        let half_close = self
            .proto
            .machine_ref()
            .is_some_and(|m| m.answers_half_close());
        let served = half_close && self.in_flight() > 0 && self.rbuf.is_empty();
        if !served || self.stream.peer_closed_for_good() {
            return Err(CloseReason::PeerClosed);
        }
        self.io.peer_shut = true;
        self.after_protocol_step(ctx);
        Ok(())
    }

    /// Reads what the socket has (a bounded number of times, for fairness)
    /// and processes it.
    pub fn on_readable(&mut self, ctx: &mut Ctx, scratch: &mut [u8]) -> Result<(), CloseReason> {
        for _ in 0..4 {
            if !self.may_read() {
                return Ok(());
            }
            let n = match self.stream.read(scratch) {
                Ok(0) => return self.on_peer_shutdown(ctx),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CloseReason::Io(e)),
            };
            self.last_read = ctx.now;
            self.feed(ctx, &scratch[..n])?;
            if n < scratch.len() {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Processes input, keeping what could not be processed yet.
    fn feed(&mut self, ctx: &mut Ctx, input: &[u8]) -> Result<(), CloseReason> {
        if self.rbuf.is_empty() {
            let used = self.process(ctx, input)?;
            self.rbuf.extend_from_slice(&input[used..]);
        } else {
            self.rbuf.extend_from_slice(input);
            self.process_pending(ctx)?;
        }
        if self.rbuf.len() > ctx.limits.max_params_bytes + RBUF_SLACK {
            return Err(CloseReason::Protocol(
                "unprocessed input past its bound".into(),
            ));
        }
        Ok(())
    }

    /// Processes input kept from earlier (after a pause ends).
    pub fn process_pending(&mut self, ctx: &mut Ctx) -> Result<(), CloseReason> {
        if self.rbuf.is_empty() || self.io.paused() || self.state != ConnState::Open {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.rbuf);
        let used = self.process(ctx, &pending)?;
        self.rbuf = pending;
        self.rbuf.drain(..used);
        Ok(())
    }

    /// Hands input to the protocol; returns the bytes it used.
    fn process(&mut self, ctx: &mut Ctx, input: &[u8]) -> Result<usize, CloseReason> {
        if matches!(self.proto, Proto::Detect) {
            let Some(&first) = input.first() else {
                return Ok(0);
            };
            self.proto = detect(first, &ctx.limits, &self.stream)?;
        }
        let used = match self.proto.machine() {
            Some(m) => m.process(ctx, &mut self.io, input)?,
            None => 0,
        };
        self.after_protocol_step(ctx);
        Ok(used)
    }

    /// Applies a worker's output for one of this connection's requests;
    /// a request it ended may let input kept behind it through (HTTP
    /// pipelining).
    pub fn on_output(
        &mut self,
        ctx: &mut Ctx,
        req: ReqRef,
        head: Option<Head>,
        body: Vec<u8>,
        end: End,
    ) -> Result<(), CloseReason> {
        if let Some(m) = self.proto.machine() {
            m.on_output(ctx, &mut self.io, req, head, body, end);
        }
        self.after_protocol_step(ctx);
        self.process_pending(ctx)
    }

    /// Writes a handler's error output as FCGI_STDERR; false when it was
    /// not (another protocol, which has no such stream: logged instead, or
    /// a request gone), and its credit is the caller's to give back.
    pub fn on_stderr(&mut self, shared: &Arc<Shared>, bytes: &[u8]) -> bool {
        let written = self
            .proto
            .machine()
            .is_some_and(|m| m.on_stderr(&mut self.io, shared.req, bytes));
        if !written {
            let text = String::from_utf8_lossy(bytes);
            log::warn!("request {}: stderr: {}", shared.req.key, text.trim_end());
        }
        written
    }

    /// Moves more held output into the buffer, once it has drained.
    pub fn release_held(&mut self, ctx: &mut Ctx) {
        if !self.io.held_waiting || !self.io.out.is_empty() {
            return;
        }
        if let Some(m) = self.proto.machine() {
            m.release_all(ctx, &mut self.io);
        }
        self.after_protocol_step(ctx);
    }

    /// A request read its body down: one pause fewer.
    pub fn on_resume(&mut self) {
        self.io.paused_by = self.io.paused_by.saturating_sub(1);
    }

    fn after_protocol_step(&mut self, ctx: &mut Ctx) {
        if self.io.ended != self.seen_ended {
            self.seen_ended = self.io.ended;
            self.last_active = ctx.now;
        }
        // Stopping, a connection closes once idle, except one still on
        // its first request (kept by `begin_drain`).
        let idle = self.in_flight() == 0;
        if idle && ((ctx.draining && !self.fresh()) || self.io.peer_shut) {
            self.io.out.close_after = true;
        }
        if self.io.out.close_after && self.state == ConnState::Open {
            self.state = ConnState::Closing;
        }
    }

    /// No request has begun on it yet.
    pub fn fresh(&self) -> bool {
        self.io.begun == 0
    }

    /// Requests begun and not yet ended.
    pub fn in_flight(&self) -> usize {
        self.proto.machine_ref().map_or(0, |m| m.in_flight())
    }

    /// Writes pending output; a closing connection that has written
    /// everything shuts its side down and lingers.
    pub fn flush(&mut self, now: Instant) -> Result<(), CloseReason> {
        let before = self.io.out.pending();
        let drained = self
            .io
            .out
            .flush(&mut self.stream)
            .map_err(CloseReason::Io)?;
        self.note_progress(before, now);
        if drained && self.state == ConnState::Closing && self.may_close_at_once() {
            self.state = ConnState::Closed;
        } else if drained && self.state == ConnState::Closing {
            self.state = match self.stream.shutdown_write() {
                Ok(()) => ConnState::Lingering {
                    until: now + LINGER,
                },
                Err(_) => ConnState::Closed,
            };
        }
        Ok(())
    }

    /// A Unix peer that has sent all its input loses nothing when the
    /// connection closes without lingering: a Unix socket delivers what
    /// was written before the close, unread input or not (only TCP resets
    /// it). A refusal sent while the body still arrives lingers, so the
    /// sender reads the refusal instead of a reset.
    fn may_close_at_once(&self) -> bool {
        let input_done = self.proto.machine_ref().is_some_and(|m| m.input_complete());
        let unix = matches!(self.stream, Stream::Unix(_));
        input_done && unix && self.rbuf.is_empty() && !self.io.refused
    }

    /// Notes whether output moved (for `--send-timeout`) and whether the
    /// connection is read (for `--body-timeout`).
    fn note_progress(&mut self, pending_before: usize, now: Instant) {
        let pending = self.io.out.pending();
        self.stuck_since = match pending {
            0 => None,
            _ if pending < pending_before => Some(now),
            _ => self.stuck_since.or(Some(now)),
        };
        self.note_reading(now);
    }

    fn note_reading(&mut self, now: Instant) {
        let reading = self.may_read();
        if reading && !self.reading {
            self.reading_since = now;
        }
        self.reading = reading;
    }

    /// Since when a pause in a body counts against the client (None while
    /// the connection is not read), and the last read.
    fn body_clock(&self) -> BodyClock {
        BodyClock {
            reading_since: self.may_read().then_some(self.reading_since),
            last_read: self.last_read,
        }
    }

    /// When unwritten output has waited too long for the client.
    fn send_deadline(&self, l: &super::limits::Limits) -> Option<Instant> {
        Some(self.stuck_since? + l.send_timeout?)
    }

    /// Reads and drops what a lingering peer still sends; its end (or an
    /// error) ends the connection.
    pub fn discard(&mut self, scratch: &mut [u8]) -> Result<(), CloseReason> {
        for _ in 0..16 {
            match self.stream.read(scratch) {
                Ok(0) => return Err(CloseReason::PeerClosed),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(CloseReason::Io(e)),
            }
        }
        Ok(())
    }

    /// Aborts every request in flight (the connection is going away).
    pub fn abort_all(&mut self, ctx: &mut Ctx) {
        if let Some(m) = self.proto.machine() {
            m.abort_all(ctx, &self.io.peer);
        }
    }

    /// The earliest instant something must happen to this connection.
    pub fn next_deadline(&self, ctx: &Ctx) -> Option<Instant> {
        if let ConnState::Lingering { until } = self.state {
            return Some(until);
        }
        let l = &ctx.limits;
        let own = match (self.in_flight(), self.fresh()) {
            (0, true) => Some(self.header_deadline(l)),
            (0, false) => Some(self.last_active + l.idle_timeout),
            _ => None,
        };
        let clock = self.body_clock();
        let reqs = self
            .proto
            .machine_ref()
            .and_then(|m| m.next_deadline(l, clock));
        [own, reqs, self.send_deadline(l)]
            .into_iter()
            .flatten()
            .min()
    }

    /// When a connection with no request yet must have one: the header
    /// timeout, or sooner at a graceful stop.
    fn header_deadline(&self, l: &Limits) -> Instant {
        let header = self.last_active + l.header_timeout;
        self.grace_until.map_or(header, |g| g.min(header))
    }

    /// Acts on expired deadlines at `ctx.now`.
    pub fn on_timer(&mut self, ctx: &mut Ctx) -> Result<(), CloseReason> {
        let l = ctx.limits.clone();
        let now = ctx.now;
        if let ConnState::Lingering { until } = self.state {
            if now >= until {
                return Err(CloseReason::Timeout("lingering close ended"));
            }
            return Ok(());
        }
        if self.send_deadline(&l).is_some_and(|d| now >= d) {
            return Err(CloseReason::SlowClient(
                "response not taken within --send-timeout",
            ));
        }
        self.note_reading(now);
        let clock = self.body_clock();
        match (self.in_flight(), self.fresh()) {
            (0, true) if self.grace_until.is_some_and(|g| now >= g) => {
                return Err(CloseReason::Timeout("no request before the stop"))
            }
            (0, true) if now >= self.last_active + l.header_timeout => {
                return Err(CloseReason::SlowClient(
                    "no request within --header-timeout",
                ))
            }
            (0, false) if now >= self.last_active + l.idle_timeout => {
                return Err(CloseReason::Timeout("idle past --idle-timeout"))
            }
            _ => {}
        }
        if let Some(m) = self.proto.machine() {
            m.on_timer(ctx, &mut self.io, clock)?;
        }
        self.after_protocol_step(ctx);
        // A request ended here may have held the pause under which input
        // was kept; no Resume will come for it, and the client may have
        // nothing more to send.
        self.process_pending(ctx)
    }
}

/// Tells the protocol from a connection's first byte: FastCGI's version
/// 1, an SCGI netstring's length, or an HTTP method's first letter.
fn detect(first: u8, limits: &Limits, stream: &Stream) -> Result<Proto, CloseReason> {
    match first {
        1 => Ok(Proto::FastCgi(FcgiConn::new())),
        b'0'..=b'9' => Ok(Proto::Scgi(ScgiConn::new())),
        b'A'..=b'Z' | b'a'..=b'z' => Ok(Proto::Http(HttpConn::new(limits, stream.local()))),
        other => Err(CloseReason::Protocol(format!(
            "unknown protocol: first byte 0x{other:02x}"
        ))),
    }
}
