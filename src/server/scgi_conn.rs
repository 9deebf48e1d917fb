//! The SCGI side of a connection: one request per connection. The
//! netstring header is gathered (bounded by `--max-params-bytes`), the body
//! of CONTENT_LENGTH bytes streams to the handler, the CGI-style response
//! streams back, and the connection closes after it.

use std::fmt::Display;
use std::sync::Arc;
use std::time::Instant;

use super::access_log::{note_output, set_status, Entry};
use super::conn::{CloseReason, ConnIo};
use super::context::Ctx;
use super::hold::{hold, Chunk, Held, Kept, RELEASE_ROOM};
use super::limits::Limits;
use super::listener::Peer;
use super::machine::{abort_running, expired, observe_end, request_deadline, BodyClock, Machine};
use super::message::{End, ReqRef};
use super::refusal::Refusal;
use super::shared::{Input, Pushed, Shared};
use super::stats::bump;
use crate::protocol::cgi_response::{write_reply_head, Head};
use crate::protocol::fastcgi::Role;
use crate::protocol::scgi::{self, Header};
use crate::protocol::Error;

enum Phase {
    /// Gathering the netstring header.
    Header,
    /// Handed to a worker; `remaining` body bytes still to come.
    Running {
        shared: Arc<Shared>,
        remaining: u64,
        dispatched: Instant,
        head_sent: bool,
        /// Output that came before the body ended, or that waits for room
        /// in the connection's buffer.
        held: Option<Box<Held>>,
    },
    /// Answered: input is ignored, the connection closes once written.
    Done,
}

pub struct ScgiConn {
    phase: Phase,
    log: Option<Box<Entry>>,
    /// Bytes of a header still arriving (kept by the connection), also
    /// counted in `Ctx::params_held`.
    held: usize,
}

impl ScgiConn {
    pub fn new() -> ScgiConn {
        ScgiConn {
            phase: Phase::Header,
            log: None,
            held: 0,
        }
    }

    /// Body bytes for the running request; all of `input` is used (past
    /// CONTENT_LENGTH it is ignored). One request per connection: it
    /// pauses the connection, and spools only what is read after a FIN to
    /// learn whether the request is whole, or the body of an async handler
    /// (which is called once it has all arrived).
    fn body(&mut self, ctx: &mut Ctx, io: &mut ConnIo, input: &[u8]) -> usize {
        let Phase::Running {
            shared, remaining, ..
        } = &mut self.phase
        else {
            return input.len();
        };
        let take = (*remaining).min(input.len() as u64) as usize;
        *remaining -= take as u64;
        let spill = io.spill_to(ctx, shared.is_async());
        let mut pushed = [Pushed::Queued; 2];
        if take > 0 {
            pushed[0] = shared.push(Input::Stdin, &input[..take], spill.as_ref());
        }
        if *remaining == 0 && !matches!(pushed[0], Pushed::Refuse(_)) {
            pushed[1] = shared.push(Input::Stdin, &[], spill.as_ref());
            // The end of the body: an async handler may start now, held
            // output may leave.
            ctx.start_if_ready(shared);
        }
        let ended = *remaining == 0;
        for p in pushed {
            match p {
                Pushed::Queued => {}
                Pushed::Pause => io.paused_by += 1,
                Pushed::Refuse(status) => return self.refused(ctx, io, status, input.len()),
            }
        }
        if ended {
            self.release_all(ctx, io);
        }
        input.len()
    }

    fn refused(&mut self, ctx: &mut Ctx, io: &mut ConnIo, status: u16, used: usize) -> usize {
        self.refuse(ctx, io, Refusal::new(status));
        used
    }

    fn header(&mut self, ctx: &mut Ctx, io: &mut ConnIo, input: &[u8]) -> usize {
        let parsed = scgi::parse_header(input, ctx.limits.max_params_bytes);
        if let Ok(Header::Partial) = parsed {
            return self.partial(ctx, io, input.len());
        }
        self.release_header(ctx);
        let (consumed, params, content_length) = match parsed {
            Ok(Header::Complete {
                consumed,
                params,
                content_length,
            }) => (consumed, params, content_length),
            Ok(Header::Partial) => return 0,
            Err(e) => return self.bad_header(ctx, io, input.len(), &e),
        };
        io.begun += 1;
        self.log = ctx.entry(Some(&params), 0, ctx.now);
        let limit = ctx.limits.max_body_bytes;
        if limit > 0 && content_length > limit {
            self.refuse(ctx, io, Refusal::new(413));
            return input.len();
        }
        match ctx.dispatch(io.id, 0, Role::Responder, params) {
            Ok(shared) => {
                self.phase = Phase::Running {
                    shared,
                    remaining: content_length,
                    dispatched: ctx.now,
                    head_sent: false,
                    held: None,
                };
                // Running consumes everything it is given.
                let _ = self.process(ctx, io, &input[consumed..]);
                input.len()
            }
            Err(refusal) => {
                self.refuse(ctx, io, refusal);
                input.len()
            }
        }
    }

    /// A header still arriving: the connection keeps its `len` bytes,
    /// counted against the process's budget of params in progress; past
    /// that budget it is answered 431.
    fn partial(&mut self, ctx: &mut Ctx, io: &mut ConnIo, len: usize) -> usize {
        let before = std::mem::replace(&mut self.held, len);
        if ctx.hold_params(before, len) {
            return 0;
        }
        self.release_header(ctx);
        let why = "scgi: header in progress past the process's budget of params";
        self.refuse_header(ctx, io, &why, 431);
        len
    }

    fn release_header(&mut self, ctx: &mut Ctx) {
        ctx.hold_params(std::mem::take(&mut self.held), 0);
    }

    /// A malformed or oversized header: answered (400/431), then closed.
    fn bad_header(&mut self, ctx: &mut Ctx, io: &mut ConnIo, len: usize, e: &Error) -> usize {
        self.refuse_header(ctx, io, &format_args!("scgi: {e}"), e.http_status());
        len
    }

    fn refuse_header(&mut self, ctx: &mut Ctx, io: &mut ConnIo, why: &dyn Display, status: u16) {
        ctx.warn_client(&io.peer, why);
        io.begun += 1;
        self.log = ctx.entry(None, 0, ctx.now);
        self.refuse(ctx, io, Refusal::new(status));
    }

    fn refuse(&mut self, ctx: &mut Ctx, io: &mut ConnIo, refusal: Refusal) {
        if let Phase::Running { shared, .. } = &self.phase {
            io.abort(shared);
        }
        io.out.buf.extend_from_slice(&refusal.encode());
        io.refused = true;
        ctx.stats.count_refusal(refusal.status);
        set_status(&mut self.log, refusal.status, true);
        self.finish(ctx, io);
    }

    fn finish(&mut self, ctx: &mut Ctx, io: &mut ConnIo) {
        let queue = match &self.phase {
            Phase::Running {
                shared, dispatched, ..
            } => observe_end(ctx, shared, *dispatched),
            _ => None,
        };
        self.phase = Phase::Done;
        io.ended += 1;
        io.out.close_after = true;
        bump(&ctx.stats.requests);
        ctx.log_end(self.log.take(), &io.peer, queue);
    }

    /// Writes one piece of the response; `credit`: the writer waits for
    /// these bytes (held ones gave theirs back).
    fn emit(&mut self, ctx: &mut Ctx, io: &mut ConnIo, c: Chunk, credit: bool) {
        let Phase::Running {
            shared, head_sent, ..
        } = &mut self.phase
        else {
            return;
        };
        let status = c.head.as_ref().map(|h| h.status);
        if let Some(h) = c.head {
            write_reply_head(&mut io.out.buf, h.status, &h.reason, &h.headers);
            *head_sent = true;
        }
        io.out.buf.extend_from_slice(&c.body);
        if credit {
            io.out.credit(shared, c.body.len());
            note_output(&mut self.log, status, c.body.len());
        }
        ctx.recycle_body(c.body);
        if c.end != End::No {
            set_status(&mut self.log, 500, false);
            self.finish(ctx, io);
        }
    }

    /// Ends the request with `status` if nothing went out yet, else cuts
    /// the response short (the connection closes after what was written).
    fn fail(&mut self, ctx: &mut Ctx, io: &mut ConnIo, status: u16) {
        let Phase::Running {
            shared, head_sent, ..
        } = &self.phase
        else {
            return;
        };
        if !*head_sent {
            return self.refuse(ctx, io, Refusal::new(status));
        }
        io.abort(shared);
        set_status(&mut self.log, status, false);
        self.finish(ctx, io);
    }

    fn drop_held(&mut self) {
        if let Phase::Running { held, .. } = &mut self.phase {
            *held = None;
        }
    }
}

impl Machine for ScgiConn {
    fn in_flight(&self) -> usize {
        matches!(self.phase, Phase::Running { .. }) as usize
    }

    /// Whether the whole request (header and body) has arrived.
    fn input_complete(&self) -> bool {
        match self.phase {
            Phase::Header => false,
            Phase::Running { remaining, .. } => remaining == 0,
            Phase::Done => true,
        }
    }

    /// Handles input; returns the bytes used (a partial header uses none,
    /// and is kept by the connection until it is complete).
    fn process(
        &mut self,
        ctx: &mut Ctx,
        io: &mut ConnIo,
        input: &[u8],
    ) -> Result<usize, CloseReason> {
        match &mut self.phase {
            Phase::Header => Ok(self.header(ctx, io, input)),
            Phase::Running { .. } => Ok(self.body(ctx, io, input)),
            Phase::Done => Ok(input.len()),
        }
    }

    /// A worker's (or a `Reply`'s) output: written now, or held until
    /// the body has ended (and any output held before it has gone).
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
            remaining,
            held,
            head_sent,
            ..
        } = &mut self.phase
        else {
            return;
        };
        if shared.req.key != r.key {
            return;
        }
        if *remaining == 0 && held.is_none() {
            return self.emit(ctx, io, Chunk { head, body, end }, true);
        }
        let out = Chunk { head, body, end };
        match hold(held, shared, &mut self.log, out, *head_sent, &ctx.temp) {
            Kept::Held => {}
            Kept::FailedUnseen => self.refuse(ctx, io, Refusal::new(500)),
            Kept::NoRoom => self.fail(ctx, io, 503),
        }
    }

    /// Moves held output into the connection's buffer while it has room
    /// (the body must have ended); the rest waits for the next call.
    fn release_all(&mut self, ctx: &mut Ctx, io: &mut ConnIo) {
        io.held_waiting = false;
        while io.out.pending() < RELEASE_ROOM {
            let Phase::Running {
                remaining: 0,
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
        self.release_header(ctx);
        if let Phase::Running { shared, .. } = &self.phase {
            abort_running(ctx, shared, self.log.take(), peer);
        }
        self.phase = Phase::Done;
    }

    /// The request's deadline: `--request-timeout`, and `--body-timeout`
    /// from `clock` (the last read, None while the connection is not
    /// read) while body bytes are still to come.
    /// A body's clock runs while the connection is read, from its last
    /// read at the earliest (SCGI has no records to time).
    fn next_deadline(&self, l: &Limits, clock: BodyClock) -> Option<Instant> {
        let Phase::Running {
            dispatched,
            remaining,
            ..
        } = &self.phase
        else {
            return None;
        };
        request_deadline(l, *dispatched, *remaining > 0, clock)
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
            head_sent,
            dispatched,
            ..
        } = self.phase
        else {
            return Ok(());
        };
        let (status, what) = expired(ctx, io, dispatched);
        if head_sent {
            set_status(&mut self.log, status, false);
            return Err(CloseReason::Timeout(what));
        }
        self.refuse(ctx, io, Refusal::new(status));
        Ok(())
    }
}
