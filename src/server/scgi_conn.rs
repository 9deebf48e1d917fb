//! The SCGI side of a connection: one request per connection. The
//! netstring header is gathered (bounded by `--max-params-bytes`), the body
//! of CONTENT_LENGTH bytes streams to the handler, the CGI-style response
//! streams back, and the connection closes after it.

use std::sync::Arc;
use std::time::Instant;

use super::conn::{CloseReason, ConnIo};
use super::context::{Ctx, Limits, Refusal, Stats};
use super::message::{End, ReqRef};
use super::shared::{Input, Shared};
use crate::protocol::cgi_response::{write_head, Head};
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
    },
    /// Answered: input is ignored, the connection closes once written.
    Done,
}

pub struct ScgiConn {
    phase: Phase,
}

impl ScgiConn {
    pub fn new() -> ScgiConn {
        ScgiConn {
            phase: Phase::Header,
        }
    }

    pub fn in_flight(&self) -> usize {
        matches!(self.phase, Phase::Running { .. }) as usize
    }

    /// Handles input; returns the bytes used (a partial header uses none,
    /// and is kept by the connection until it is complete).
    pub fn process(
        &mut self,
        ctx: &mut Ctx,
        io: &mut ConnIo,
        input: &[u8],
    ) -> Result<usize, CloseReason> {
        match &mut self.phase {
            Phase::Header => self.header(ctx, io, input),
            Phase::Running {
                shared, remaining, ..
            } => {
                let take = (*remaining).min(input.len() as u64) as usize;
                *remaining -= take as u64;
                let mut paused = take > 0 && shared.push(Input::Stdin, &input[..take]);
                if *remaining == 0 {
                    paused |= shared.push(Input::Stdin, &[]);
                }
                io.paused_by += paused as usize;
                Ok(input.len())
            }
            Phase::Done => Ok(input.len()),
        }
    }

    fn header(
        &mut self,
        ctx: &mut Ctx,
        io: &mut ConnIo,
        input: &[u8],
    ) -> Result<usize, CloseReason> {
        let (consumed, params, content_length) =
            match scgi::parse_header(input, ctx.limits.max_params_bytes) {
                Ok(Header::Partial) => return Ok(0),
                Ok(Header::Complete {
                    consumed,
                    params,
                    content_length,
                }) => (consumed, params, content_length),
                Err(e) => return Ok(self.bad_header(ctx, io, input.len(), &e)),
            };
        io.begun += 1;
        let limit = ctx.limits.max_body_bytes;
        if limit > 0 && content_length > limit {
            self.refuse(ctx, io, Refusal::new(413));
            return Ok(input.len());
        }
        match ctx.dispatch(io.id, 0, Role::Responder, params) {
            Ok(shared) => {
                self.phase = Phase::Running {
                    shared,
                    remaining: content_length,
                    dispatched: ctx.now,
                    head_sent: false,
                };
                let rest = self.process(ctx, io, &input[consumed..])?;
                Ok(consumed + rest)
            }
            Err(refusal) => {
                self.refuse(ctx, io, refusal);
                Ok(input.len())
            }
        }
    }

    /// A malformed or oversized header: answered (400/431), then closed.
    fn bad_header(&mut self, ctx: &mut Ctx, io: &mut ConnIo, len: usize, e: &Error) -> usize {
        ctx.warn_client(&io.peer, &format_args!("scgi: {e}"));
        io.begun += 1;
        self.refuse(ctx, io, Refusal::new(e.http_status()));
        len
    }

    fn refuse(&mut self, ctx: &mut Ctx, io: &mut ConnIo, refusal: Refusal) {
        if let Phase::Running { shared, .. } = &self.phase {
            if shared.abort() {
                io.paused_by = io.paused_by.saturating_sub(1);
            }
        }
        io.out.buf.extend_from_slice(&refusal.encode());
        self.finish(ctx, io);
    }

    fn finish(&mut self, ctx: &mut Ctx, io: &mut ConnIo) {
        self.phase = Phase::Done;
        io.ended += 1;
        io.out.close_after = true;
        Stats::add(&ctx.stats.requests);
    }

    pub fn on_output(
        &mut self,
        ctx: &mut Ctx,
        io: &mut ConnIo,
        r: ReqRef,
        head: Option<Head>,
        body: Vec<u8>,
        end: End,
    ) {
        let Phase::Running {
            shared, head_sent, ..
        } = &mut self.phase
        else {
            return;
        };
        if shared.req.key != r.key {
            return;
        }
        if let Some(h) = head {
            write_head(&mut io.out.buf, h.status, &h.reason, &h.headers);
            *head_sent = true;
        }
        io.out.buf.extend_from_slice(&body);
        io.out.credit(shared, body.len());
        if end != End::No {
            self.finish(ctx, io);
        }
    }

    pub fn abort_all(&mut self, ctx: &mut Ctx) {
        if let Phase::Running { shared, .. } = &self.phase {
            shared.abort();
            Stats::add(&ctx.stats.aborted_requests);
        }
        self.phase = Phase::Done;
    }

    pub fn next_deadline(&self, l: &Limits) -> Option<Instant> {
        match &self.phase {
            Phase::Running { dispatched, .. } => l.request_timeout.map(|t| *dispatched + t),
            _ => None,
        }
    }

    pub fn on_timer(&mut self, ctx: &mut Ctx, io: &mut ConnIo) -> Result<(), CloseReason> {
        let Some(deadline) = self.next_deadline(&ctx.limits) else {
            return Ok(());
        };
        if deadline > ctx.now {
            return Ok(());
        }
        let Phase::Running { head_sent, .. } = self.phase else {
            return Ok(());
        };
        log::warn!("client {}: request past --request-timeout", io.peer);
        Stats::add(&ctx.stats.aborted_requests);
        if head_sent {
            return Err(CloseReason::Timeout("request past --request-timeout"));
        }
        self.refuse(ctx, io, Refusal::new(504));
        Ok(())
    }
}
