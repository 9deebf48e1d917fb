//! The HTTP/1.1 side of a connection: one request at a time, kept alive
//! between them. The head (bounded by `--max-params-bytes`) becomes the
//! params nginx's `fastcgi_params` would give, the body (Content-Length or
//! chunked, after a `100 Continue` if asked) streams to the handler, and
//! the CGI-style response goes back as HTTP: `Content-Length` when the
//! whole body came with the head, else chunked. A request pipelined behind
//! another waits in the connection's input until the answer before it is
//! out, so answers keep their order.

use std::fmt::Display;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::access_log::{note_output, set_status, Entry};
use super::conn::{CloseReason, ConnIo};
use super::context::Ctx;
use super::hold::{hold, Chunk, Held, Kept, RELEASE_ROOM};
use super::limits::Limits;
use super::listener::{Local, Peer};
use super::machine::{abort_running, expired, observe_end, request_deadline, BodyClock, Machine};
use super::message::{End, ReqRef};
use super::shared::{Input, Pushed, Shared};
use super::stats::bump;
use crate::protocol::cgi_response::Head;
use crate::protocol::fastcgi::Role;
use crate::protocol::http::params::{to_params, Endpoint};
use crate::protocol::http::response::{self, Body, Reply, CONTINUE};
use crate::protocol::http::{self as http, Decoder, Event, Framing, Version};

/// What the request in hand needs to be answered right.
struct Answer {
    keep_alive: bool,
    head_request: bool,
    version: Version,
}

enum Phase {
    /// Between requests, or reading a head.
    Head,
    /// Handed to a handler.
    Running {
        shared: Arc<Shared>,
        answer: Answer,
        /// The request's body has all arrived.
        body_done: bool,
        /// Body bytes so far (for `--max-body-bytes` on a chunked body).
        body_bytes: u64,
        dispatched: Instant,
        /// How the body goes out, once the head has.
        sending: Option<Body>,
        /// Output that came before the body ended, or that waits for room
        /// in the connection's buffer.
        held: Option<Box<Held>>,
    },
    /// Answered for the last time: input is ignored, the connection closes
    /// once written.
    Done,
}

pub struct HttpConn {
    decoder: Decoder,
    phase: Phase,
    log: Option<Box<Entry>>,
    /// The listening socket's end (`SERVER_ADDR`, `SERVER_PORT`).
    local: Local,
    /// Since when a head has been arriving (`--header-timeout`).
    head_since: Option<Instant>,
    /// Bytes of a head in progress, counted in `Ctx::params_held`.
    held: usize,
    /// The request in hand is a `HEAD`: a refusal of it has no body.
    head_request: bool,
}

impl HttpConn {
    pub fn new(limits: &Limits, local: Local) -> HttpConn {
        HttpConn {
            decoder: Decoder::new(limits.max_params_bytes),
            phase: Phase::Head,
            log: None,
            local,
            head_since: None,
            held: 0,
            head_request: false,
        }
    }

    /// Decodes until the input is used up, or a request waits for its
    /// answer (what follows it stays with the connection).
    fn decode(&mut self, ctx: &mut Ctx, io: &mut ConnIo, input: &[u8]) -> usize {
        let mut used = 0;
        loop {
            match self.phase {
                Phase::Done => return input.len(),
                Phase::Running {
                    body_done: true, ..
                } => return used,
                _ => {}
            }
            let (n, event) = match self.decoder.decode(&input[used..]) {
                Ok(step) => step,
                Err(e) => return self.bad(ctx, io, &e, input.len()),
            };
            used += n;
            match event {
                Some(Event::Head(head)) => self.begin(ctx, io, head),
                Some(Event::Body(bytes)) => self.body(ctx, io, bytes),
                Some(Event::End) => self.end_body(ctx, io),
                None => return self.partial(ctx, io, input.len()),
            }
        }
    }

    /// All input used and no event: a head in progress is counted against
    /// the process's budget of params (431 past it) and timed.
    fn partial(&mut self, ctx: &mut Ctx, io: &mut ConnIo, len: usize) -> usize {
        if !matches!(self.phase, Phase::Head) {
            return len;
        }
        let buffered = self.decoder.buffered();
        if buffered > 0 && self.head_since.is_none() {
            self.head_since = Some(ctx.now);
        }
        let before = std::mem::replace(&mut self.held, buffered);
        if !ctx.hold_params(before, buffered) {
            self.release_head(ctx);
            let why = "http: head in progress past the process's budget of params";
            self.refuse_head(ctx, io, &why, 431);
        }
        len
    }

    fn release_head(&mut self, ctx: &mut Ctx) {
        ctx.hold_params(std::mem::take(&mut self.held), 0);
        self.head_since = None;
    }

    /// A complete head: refused, or handed to its handler.
    fn begin(&mut self, ctx: &mut Ctx, io: &mut ConnIo, head: http::Head) {
        self.release_head(ctx);
        io.begun += 1;
        let params = self.params(&head, io);
        self.log = ctx.entry(Some(&params), 0, ctx.now);
        self.head_request = head.method == "HEAD";
        let answer = Answer {
            keep_alive: head.keep_alive && !ctx.draining,
            head_request: self.head_request,
            version: head.version,
        };
        let limit = ctx.limits.max_body_bytes;
        if let Framing::Length(n) = head.framing {
            if limit > 0 && n > limit {
                return self.refuse(ctx, io, 413);
            }
        }
        let shared = match ctx.dispatch(io.id, 0, Role::Responder, params) {
            Ok(shared) => shared,
            Err(refusal) => return self.refuse(ctx, io, refusal.status),
        };
        if head.expect_continue {
            io.out.buf.extend_from_slice(CONTINUE);
        }
        self.phase = Phase::Running {
            shared,
            answer,
            body_done: false,
            body_bytes: 0,
            dispatched: ctx.now,
            sending: None,
            held: None,
        };
        if head.framing == Framing::None {
            self.end_body(ctx, io);
        }
    }

    /// The CGI params of a head, with this connection's two ends.
    fn params(&self, head: &http::Head, io: &ConnIo) -> crate::protocol::params::Params {
        let peer_ip = match io.peer {
            Peer::Tcp(addr) => addr.ip().to_string(),
            Peer::Unix => String::new(),
        };
        let peer = match io.peer {
            Peer::Tcp(addr) => Endpoint::Inet {
                ip: &peer_ip,
                port: addr.port(),
            },
            Peer::Unix => Endpoint::Unix(""),
        };
        let local_ip = match &self.local {
            Local::Tcp(addr) => addr.ip().to_string(),
            Local::Unix(_) => String::new(),
        };
        let server = match &self.local {
            Local::Tcp(addr) => Endpoint::Inet {
                ip: &local_ip,
                port: addr.port(),
            },
            Local::Unix(path) => Endpoint::Unix(path),
        };
        to_params(head, &peer, &server)
    }

    /// Body bytes for the running request.
    fn body(&mut self, ctx: &mut Ctx, io: &mut ConnIo, bytes: &[u8]) {
        let Phase::Running {
            shared, body_bytes, ..
        } = &mut self.phase
        else {
            return;
        };
        *body_bytes += bytes.len() as u64;
        let limit = ctx.limits.max_body_bytes;
        if limit > 0 && *body_bytes > limit {
            return self.refuse(ctx, io, 413);
        }
        let spill = io.spill_to(ctx, shared.is_async());
        match shared.push(Input::Stdin, bytes, spill.as_ref()) {
            Pushed::Queued => {}
            Pushed::Pause => io.paused_by += 1,
            Pushed::Refuse(status) => self.refuse(ctx, io, status),
        }
    }

    /// The body ended: the handler reads its end, an async handler may
    /// start, held output may leave.
    fn end_body(&mut self, ctx: &mut Ctx, io: &mut ConnIo) {
        let Phase::Running {
            shared, body_done, ..
        } = &mut self.phase
        else {
            return;
        };
        *body_done = true;
        let spill = io.spill_to(ctx, shared.is_async());
        if let Pushed::Refuse(status) = shared.push(Input::Stdin, &[], spill.as_ref()) {
            return self.refuse(ctx, io, status);
        }
        ctx.start_if_ready(shared);
        self.release_all(ctx, io);
    }

    /// Malformed input: answered (400, 431, 505), then closed.
    fn bad(&mut self, ctx: &mut Ctx, io: &mut ConnIo, e: &http::Error, len: usize) -> usize {
        let why = format_args!("http: {e}");
        match self.phase {
            Phase::Running { .. } => {
                ctx.warn_client(&io.peer, &why);
                self.refuse(ctx, io, e.http_status());
            }
            _ => self.refuse_head(ctx, io, &why, e.http_status()),
        }
        len
    }

    fn refuse_head(&mut self, ctx: &mut Ctx, io: &mut ConnIo, why: &dyn Display, status: u16) {
        ctx.warn_client(&io.peer, why);
        io.begun += 1;
        self.head_request = false;
        self.log = ctx.entry(None, 0, ctx.now);
        self.refuse(ctx, io, status);
    }

    /// The loop's own answer; the connection closes after it (a body may
    /// still be on its way, and nothing after it is read).
    fn refuse(&mut self, ctx: &mut Ctx, io: &mut ConnIo, status: u16) {
        if let Phase::Running { shared, .. } = &self.phase {
            io.abort(shared);
        }
        let encode = match self.head_request {
            true => response::encode_head_refusal,
            false => response::encode_refusal,
        };
        encode(&mut io.out.buf, status, false, unix_now());
        io.refused = true;
        ctx.stats.count_refusal(status);
        set_status(&mut self.log, status, true);
        self.finish(ctx, io, false);
    }

    /// The request is answered: the connection waits for the next one, or
    /// closes once written.
    fn finish(&mut self, ctx: &mut Ctx, io: &mut ConnIo, keep: bool) {
        let queue = match &self.phase {
            Phase::Running {
                shared, dispatched, ..
            } => observe_end(ctx, shared, *dispatched),
            _ => None,
        };
        self.phase = if keep { Phase::Head } else { Phase::Done };
        if !keep {
            io.out.close_after = true;
        }
        io.ended += 1;
        bump(&ctx.stats.requests);
        ctx.log_end(self.log.take(), &io.peer, queue);
    }

    /// Writes one piece of the response; `credit`: the writer waits for
    /// these bytes (held ones gave theirs back).
    fn emit(&mut self, ctx: &mut Ctx, io: &mut ConnIo, c: Chunk, credit: bool) {
        let Phase::Running {
            shared,
            answer,
            sending,
            ..
        } = &mut self.phase
        else {
            return;
        };
        let status = c.head.as_ref().map(|h| h.status);
        if let Some(h) = &c.head {
            let reply = Reply {
                length: (c.end == End::Complete).then_some(c.body.len() as u64),
                head_request: answer.head_request,
                keep_alive: answer.keep_alive,
                version: answer.version,
                now: unix_now(),
            };
            *sending = Some(response::encode_head(&mut io.out.buf, h, &reply));
        }
        let mode = sending.unwrap_or(Body::None);
        match mode {
            Body::Identity | Body::UntilClose => io.out.buf.extend_from_slice(&c.body),
            Body::Chunked => response::encode_chunk(&mut io.out.buf, &c.body),
            Body::None => {}
        }
        if credit {
            io.out.credit(shared, c.body.len());
            note_output(&mut self.log, status, c.body.len());
        }
        ctx.recycle_body(c.body);
        let keep = answer.keep_alive && mode != Body::UntilClose;
        match c.end {
            End::No => {}
            End::Complete => {
                if mode == Body::Chunked {
                    response::encode_last_chunk(&mut io.out.buf);
                }
                self.finish(ctx, io, keep);
            }
            // Cut short: the client sees a body that does not end right.
            End::Failed => {
                set_status(&mut self.log, 500, false);
                self.finish(ctx, io, false);
            }
        }
    }

    /// Ends the request with `status` if nothing went out yet, else cuts
    /// the response short (the connection closes after what was written).
    fn fail(&mut self, ctx: &mut Ctx, io: &mut ConnIo, status: u16) {
        let Phase::Running {
            shared, sending, ..
        } = &self.phase
        else {
            return;
        };
        if sending.is_none() {
            return self.refuse(ctx, io, status);
        }
        io.abort(shared);
        set_status(&mut self.log, status, false);
        self.finish(ctx, io, false);
    }

    fn drop_held(&mut self) {
        if let Phase::Running { held, .. } = &mut self.phase {
            *held = None;
        }
    }
}

/// Seconds since the epoch, for `Date`.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Machine for HttpConn {
    fn in_flight(&self) -> usize {
        matches!(self.phase, Phase::Running { .. }) as usize
    }

    /// No head half-read, and the body of the request in hand all here.
    fn input_complete(&self) -> bool {
        match self.phase {
            Phase::Head => self.decoder.is_idle(),
            Phase::Running { body_done, .. } => body_done,
            Phase::Done => true,
        }
    }

    fn process(
        &mut self,
        ctx: &mut Ctx,
        io: &mut ConnIo,
        input: &[u8],
    ) -> Result<usize, CloseReason> {
        Ok(self.decode(ctx, io, input))
    }

    /// A handler's output: written now, or held until the body has ended
    /// (and any output held before it has gone).
    fn on_output(
        &mut self,
        ctx: &mut Ctx,
        io: &mut ConnIo,
        r: ReqRef,
        head: Option<Head>,
        body: Vec<u8>,
        end: End,
    ) {
        let Phase::Running {
            shared,
            body_done,
            held,
            sending,
            ..
        } = &mut self.phase
        else {
            return;
        };
        if shared.req.key != r.key {
            return;
        }
        if *body_done && held.is_none() {
            return self.emit(ctx, io, Chunk { head, body, end }, true);
        }
        let out = Chunk { head, body, end };
        match hold(
            held,
            shared,
            &mut self.log,
            out,
            sending.is_some(),
            &ctx.temp,
        ) {
            Kept::Held => {}
            Kept::FailedUnseen => self.refuse(ctx, io, 500),
            Kept::NoRoom => self.fail(ctx, io, 503),
        }
    }

    /// Moves held output into the connection's buffer while it has room
    /// (the body must have ended); the rest waits for the next call.
    fn release_all(&mut self, ctx: &mut Ctx, io: &mut ConnIo) {
        io.held_waiting = false;
        while io.out.pending() < RELEASE_ROOM {
            let Phase::Running {
                body_done: true,
                held: Some(held),
                ..
            } = &mut self.phase
            else {
                return;
            };
            match held.next_chunk() {
                Ok(Some(chunk)) => self.emit(ctx, io, chunk, false),
                Ok(None) => return self.drop_held(),
                Err(e) => {
                    log::warn!("reading held output: {e}");
                    return self.fail(ctx, io, 500);
                }
            }
        }
        io.held_waiting = true;
    }

    fn abort_all(&mut self, ctx: &mut Ctx, peer: &Peer) {
        self.release_head(ctx);
        if let Phase::Running { shared, .. } = &self.phase {
            abort_running(ctx, shared, self.log.take(), peer);
        }
        self.phase = Phase::Done;
    }

    /// A head in progress: `--header-timeout` from its first byte (the
    /// connection times the first one). A request: `--request-timeout`,
    /// and `--body-timeout` while its body is read.
    fn next_deadline(&self, l: &Limits, clock: BodyClock) -> Option<Instant> {
        let Phase::Running {
            dispatched,
            body_done,
            ..
        } = &self.phase
        else {
            return self.head_since.map(|t| t + l.header_timeout);
        };
        request_deadline(l, *dispatched, !*body_done, clock)
    }

    fn on_timer(
        &mut self,
        ctx: &mut Ctx,
        io: &mut ConnIo,
        clock: BodyClock,
    ) -> Result<(), CloseReason> {
        if self
            .next_deadline(&ctx.limits, clock)
            .is_none_or(|d| d > ctx.now)
        {
            return Ok(());
        }
        let Phase::Running {
            sending,
            dispatched,
            ..
        } = &self.phase
        else {
            return Err(CloseReason::SlowClient(
                "http: head not complete within --header-timeout",
            ));
        };
        let (head_sent, dispatched) = (sending.is_some(), *dispatched);
        let (status, what) = expired(ctx, io, dispatched);
        if head_sent {
            set_status(&mut self.log, status, false);
            return Err(CloseReason::Timeout(what));
        }
        self.refuse(ctx, io, status);
        Ok(())
    }
}
