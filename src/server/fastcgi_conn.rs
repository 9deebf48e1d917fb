//! The FastCGI side of a connection: records demultiplexed by request id
//! into request contexts, each in a [`Phase`], with every transition in
//! `on_event`. Many requests may be in flight on one connection (HAProxy
//! multiplexes); nginx, lighttpd and Apache use id 1, one at a time.

use std::sync::Arc;
use std::time::Instant;

use super::access_log::{note_output, set_status, Entry};
use super::conn::{CloseReason, ConnIo};
use super::context::Ctx;
use super::hold::{hold, Chunk, Held, Kept, RELEASE_ROOM};
use super::id_map::Requests;
use super::limits::Limits;
use super::listener::Peer;
use super::machine::{abort_running, BodyClock, Machine, CLIENT_GONE};
use super::message::{End, ReqRef};
use super::refusal::Refusal;
use super::shared::{Input, Pushed, Shared};
use super::stats::bump;
use crate::protocol::cgi_response::{write_reply_head, Head};
use crate::protocol::fastcgi::{
    self as fcgi, Decoder, Event, ProtocolStatus, RecordType, Role, Stream,
};
use crate::protocol::params::ParamsBuffer;

/// Where one request is.
enum Phase {
    /// PARAMS still arriving.
    Params { role: Role, params: ParamsBuffer },
    /// Handed to a worker; body streaming in, response streaming out.
    Running {
        shared: Arc<Shared>,
        dispatched: Instant,
        body_bytes: u64,
        head_sent: bool,
        /// When a piece of its body last arrived (`--body-timeout`).
        last_input: Instant,
        /// Its input has ended: output may leave.
        input_ended: bool,
        /// Output that came before the input ended, or that waits for
        /// room in the connection's buffer.
        held: Option<Box<Held>>,
    },
}

struct FcgiReq {
    keep_conn: bool,
    begun: Instant,
    phase: Phase,
    log: Option<Box<Entry>>,
}

/// The status logged for a request whose client left first (as nginx).

#[derive(Default)]
pub struct FcgiConn {
    decoder: Decoder,
    reqs: Requests<FcgiReq>,
    /// Bytes held by the params of requests still in `Phase::Params`,
    /// also counted in `Ctx::params_held`.
    params_held: usize,
}

fn protocol_error(what: String) -> CloseReason {
    CloseReason::Protocol(what)
}

impl FcgiConn {
    pub fn new() -> FcgiConn {
        FcgiConn::default()
    }

    /// Whether a request in flight asked FCGI_KEEP_CONN.
    pub fn keeps_conn(&self) -> bool {
        self.reqs.values().any(|r| r.keep_conn)
    }

    fn on_event(
        &mut self,
        ctx: &mut Ctx,
        io: &mut ConnIo,
        event: Event<'_>,
    ) -> Result<(), CloseReason> {
        match event {
            Event::BeginRequest {
                request_id,
                role,
                flags,
            } => return self.begin(ctx, io, request_id, role, flags),
            Event::Stream {
                stream: Stream::Params,
                request_id,
                data,
            } => return self.params(ctx, io, request_id, data),
            Event::Stream {
                stream: Stream::Stdin,
                request_id,
                data,
            } => {
                self.note_input(ctx.now, request_id);
                self.input(ctx, io, request_id, Input::Stdin, data)
            }
            Event::Stream {
                stream: Stream::Data,
                request_id,
                data,
            } => {
                self.note_input(ctx.now, request_id);
                self.input(ctx, io, request_id, Input::Data, data)
            }
            Event::AbortRequest { request_id } => self.abort(ctx, io, request_id),
            Event::GetValues { names } => get_values(ctx, io, &names),
            Event::Unknown { record_type, .. } => {
                fcgi::encode_unknown_type(&mut io.out.buf, record_type)
            }
            other => {
                return Err(protocol_error(format!(
                    "unexpected record from the client: {other}"
                )))
            }
        }
        Ok(())
    }

    fn begin(
        &mut self,
        ctx: &mut Ctx,
        io: &mut ConnIo,
        id: u16,
        role: u16,
        flags: u8,
    ) -> Result<(), CloseReason> {
        if id == fcgi::FCGI_NULL_REQUEST_ID {
            return Err(protocol_error("BEGIN_REQUEST with request id 0".into()));
        }
        if self.reqs.contains_key(&id) {
            return Err(protocol_error(format!(
                "BEGIN_REQUEST for request id {id}, already active"
            )));
        }
        let keep_conn = flags & fcgi::FCGI_KEEP_CONN != 0;
        let Some(role) = Role::from_u16(role) else {
            end_early(io, id, keep_conn, ProtocolStatus::UnknownRole);
            return Ok(());
        };
        if self.reqs.len() >= ctx.limits.max_reqs {
            end_early(io, id, keep_conn, ProtocolStatus::Overloaded);
            return Ok(());
        }
        if self.params_held >= ctx.limits.params_per_conn || !ctx.params_room() {
            let why = "params in progress at their budget";
            ctx.warn_client(&io.peer, &format_args!("request {id} refused: {why}"));
            end_early(io, id, keep_conn, ProtocolStatus::Overloaded);
            return Ok(());
        }
        io.begun += 1;
        let params = ctx.params_buffer();
        let req = FcgiReq {
            keep_conn,
            begun: ctx.now,
            phase: Phase::Params { role, params },
            log: None,
        };
        // Stopping: the first request of a connection accepted before the
        // stop is served; a kept-alive one takes no new request.
        if ctx.draining && io.begun > 1 {
            refuse(ctx, io, id, req, Refusal::new(503));
        } else {
            self.reqs.insert(id, req);
        }
        Ok(())
    }

    fn params(
        &mut self,
        ctx: &mut Ctx,
        io: &mut ConnIo,
        id: u16,
        data: &[u8],
    ) -> Result<(), CloseReason> {
        // FastCGI 1.0 §3.3: records for an inactive request id are ignored.
        let Some(req) = self.reqs.get_mut(&id) else {
            return Ok(());
        };
        let Phase::Params { params, .. } = &mut req.phase else {
            return Err(protocol_error(format!(
                "PARAMS for request id {id} after its end"
            )));
        };
        if data.is_empty() {
            self.dispatch(ctx, io, id);
            return Ok(());
        }
        let before = params.held();
        params.push(data);
        let after = params.held();
        self.params_held = self.params_held.saturating_sub(before) + after;
        let within_process = ctx.hold_params(before, after);
        if !within_process || self.params_held > ctx.limits.params_per_conn {
            let whose = if within_process {
                "connection"
            } else {
                "process"
            };
            let why = format_args!("request {id}: params in progress past the {whose}'s budget");
            ctx.warn_client(&io.peer, &why);
            self.refuse_any(ctx, io, id, Refusal::new(431));
        }
        Ok(())
    }

    /// Takes a request out, giving back what its params held.
    fn remove(&mut self, ctx: &mut Ctx, id: u16) -> Option<FcgiReq> {
        let req = self.reqs.remove(&id)?;
        if let Phase::Params { params, .. } = &req.phase {
            self.params_held = self.params_held.saturating_sub(params.held());
            ctx.hold_params(params.held(), 0);
        }
        Some(req)
    }

    /// PARAMS ended: route and hand the request to a worker.
    fn dispatch(&mut self, ctx: &mut Ctx, io: &mut ConnIo, id: u16) {
        let Some(mut req) = self.remove(ctx, id) else {
            return;
        };
        let Phase::Params { role, params } = std::mem::replace(&mut req.phase, placeholder())
        else {
            return;
        };
        let params = match params.finish() {
            Ok(p) => p,
            Err(e) => {
                ctx.warn_client(&io.peer, &format_args!("request {id}: {e}"));
                req.log = ctx.entry(None, id, req.begun);
                return refuse(ctx, io, id, req, Refusal::new(e.http_status()));
            }
        };
        req.log = ctx.entry(Some(&params), id, req.begun);
        match ctx.dispatch(io.id, id, role, params) {
            Ok(shared) => {
                req.phase = Phase::Running {
                    input_ended: shared.input_complete(),
                    shared,
                    dispatched: ctx.now,
                    body_bytes: 0,
                    head_sent: false,
                    last_input: ctx.now,
                    held: None,
                };
                self.reqs.insert(id, req);
            }
            Err(refusal) => refuse(ctx, io, id, req, refusal),
        }
    }

    fn input(&mut self, ctx: &mut Ctx, io: &mut ConnIo, id: u16, which: Input, data: &[u8]) {
        let alone = self.reqs.len() == 1;
        let Some(req) = self.reqs.get_mut(&id) else {
            return;
        };
        let Phase::Running {
            shared,
            body_bytes,
            input_ended,
            ..
        } = &mut req.phase
        else {
            ctx.warn_client(
                &io.peer,
                &format_args!("request {id}: body before the end of PARAMS"),
            );
            return self.refuse_any(ctx, io, id, Refusal::new(400));
        };
        *body_bytes += data.len() as u64;
        let limit = ctx.limits.max_body_bytes;
        if limit > 0 && *body_bytes > limit {
            return self.refuse_any(ctx, io, id, Refusal::new(413));
        }
        // Alone on the connection, a request may pause it; sharing it, its
        // body spools rather than hold up its siblings.
        let never_pause = !alone || shared.is_async();
        let pushed = shared.push(which, data, io.spill_to(ctx, never_pause).as_ref());
        if let Pushed::Refuse(status) = pushed {
            return self.refuse_any(ctx, io, id, Refusal::new(status));
        }
        io.paused_by += usize::from(pushed == Pushed::Pause);
        if !data.is_empty() {
            return;
        }
        // The end of a stream: held output may leave, an async handler
        // may start.
        *input_ended = shared.input_complete();
        let release = *input_ended;
        ctx.start_if_ready(shared);
        if release {
            self.release_held(ctx, io, id);
        }
    }

    /// A piece of a request's body arrived: its body clock starts again.
    fn note_input(&mut self, now: Instant, id: u16) {
        if let Some(FcgiReq {
            phase: Phase::Running { last_input, .. },
            ..
        }) = self.reqs.get_mut(&id)
        {
            *last_input = now;
        }
    }

    /// Ends a request the loop answers itself, whatever phase it is in.
    fn refuse_any(&mut self, ctx: &mut Ctx, io: &mut ConnIo, id: u16, refusal: Refusal) {
        if let Some(req) = self.remove(ctx, id) {
            release(io, &req.phase);
            refuse(ctx, io, id, req, refusal);
        }
    }

    fn abort(&mut self, ctx: &mut Ctx, io: &mut ConnIo, id: u16) {
        let Some(req) = self.remove(ctx, id) else {
            return;
        };
        release(io, &req.phase);
        bump(&ctx.stats.aborted_requests);
        end_request(ctx, io, id, req, 0, CLIENT_GONE);
    }

    /// Encodes one piece of a request's output; `credit`: the writer waits
    /// for these bytes (held ones gave theirs back).
    fn emit(&mut self, ctx: &mut Ctx, io: &mut ConnIo, id: u16, c: Chunk, credit: bool) {
        let Some(req) = self.reqs.get_mut(&id) else {
            return;
        };
        let Phase::Running {
            shared, head_sent, ..
        } = &mut req.phase
        else {
            return;
        };
        let status = c.head.as_ref().map(|h| h.status);
        match c.head {
            Some(h) => {
                fcgi::encode_stream_with(&mut io.out.buf, RecordType::Stdout, id, |out| {
                    write_reply_head(out, h.status, &h.reason, &h.headers);
                    out.extend_from_slice(&c.body);
                });
                *head_sent = true;
            }
            None => fcgi::encode_stream(&mut io.out.buf, RecordType::Stdout, id, &c.body),
        }
        if credit {
            io.out.credit(shared, c.body.len());
            note_output(&mut req.log, status, c.body.len());
        }
        ctx.recycle_body(c.body);
        let app_status = match c.end {
            End::No => return,
            End::Complete => 0,
            End::Failed => 1,
        };
        if let Some(req) = self.reqs.remove(&id) {
            end_request(ctx, io, id, req, app_status, 500);
        }
    }

    /// Moves a request's held output into the connection's buffer while
    /// the buffer has room; the rest waits for [`FcgiConn::release_all`].
    fn release_held(&mut self, ctx: &mut Ctx, io: &mut ConnIo, id: u16) {
        while io.out.pending() < RELEASE_ROOM {
            let next = match self.held_of(id).map(Held::next_chunk) {
                Some(Ok(Some(chunk))) => chunk,
                Some(Err(e)) => {
                    log::warn!("request {id}: reading its held output: {e}");
                    return self.cut(ctx, io, id, 500);
                }
                _ => return self.drop_held(id),
            };
            self.emit(ctx, io, id, next, false);
        }
        io.held_waiting = true;
    }

    /// The held output of a request whose input has ended.
    fn held_of(&mut self, id: u16) -> Option<&mut Held> {
        match &mut self.reqs.get_mut(&id)?.phase {
            Phase::Running {
                input_ended: true,
                held: Some(h),
                ..
            } => Some(h),
            _ => None,
        }
    }

    fn drop_held(&mut self, id: u16) {
        if let Some(Phase::Running { held, .. }) = self.reqs.get_mut(&id).map(|r| &mut r.phase) {
            *held = None;
        }
    }

    /// Aborts a running request past a deadline: answered with `status`
    /// if nothing went out yet, else cut short.
    fn cut(&mut self, ctx: &mut Ctx, io: &mut ConnIo, id: u16, status: u16) {
        bump(&ctx.stats.aborted_requests);
        let head_sent = self.reqs.get(&id).is_some_and(|r| {
            matches!(
                r.phase,
                Phase::Running {
                    head_sent: true,
                    ..
                }
            )
        });
        if !head_sent {
            self.refuse_any(ctx, io, id, Refusal::new(status));
        } else if let Some(req) = self.reqs.remove(&id) {
            release(io, &req.phase);
            end_request(ctx, io, id, req, 1, status);
        }
    }
}

impl Machine for FcgiConn {
    /// A FIN after complete requests is a half-close, unless they asked
    /// FCGI_KEEP_CONN: a connection meant to live on that ends is nginx's
    /// abort.
    fn answers_half_close(&self) -> bool {
        self.input_complete() && !self.keeps_conn()
    }

    fn in_flight(&self) -> usize {
        self.reqs.len()
    }

    /// Whether every request in flight has all its input (PARAMS, STDIN,
    /// and DATA for a FILTER) and no record is cut in half.
    fn input_complete(&self) -> bool {
        self.decoder.is_between_records()
            && self.reqs.values().all(|r| match &r.phase {
                Phase::Params { .. } => false,
                Phase::Running { shared, .. } => shared.input_complete(),
            })
    }

    /// Decodes and handles records until the input is used up or a
    /// request's unread body pauses the connection. Returns bytes used.
    fn process(
        &mut self,
        ctx: &mut Ctx,
        io: &mut ConnIo,
        input: &[u8],
    ) -> Result<usize, CloseReason> {
        let mut pos = 0;
        while pos < input.len() && !io.paused() {
            let (n, event) = self
                .decoder
                .decode(&input[pos..])
                .map_err(|e| protocol_error(e.to_string()))?;
            pos += n;
            match event {
                Some(event) => self.on_event(ctx, io, event)?,
                None if n == 0 => break,
                None => {}
            }
        }
        Ok(pos)
    }

    /// A worker's (or a `Reply`'s) output for one of this connection's
    /// requests: written now, or held until the input has ended (and any
    /// output held before it has gone).
    fn on_output(
        &mut self,
        ctx: &mut Ctx,
        io: &mut ConnIo,
        r: ReqRef,
        head: Option<Head>,
        body: Vec<u8>,
        end: End,
    ) {
        let id = r.stream_id;
        let Some(req) = self.reqs.get_mut(&id) else {
            return;
        };
        let Phase::Running {
            shared,
            input_ended,
            held,
            head_sent,
            ..
        } = &mut req.phase
        else {
            return;
        };
        if shared.req.key != r.key {
            return;
        }
        if *input_ended && held.is_none() {
            return self.emit(ctx, io, id, Chunk { head, body, end }, true);
        }
        let out = Chunk { head, body, end };
        match hold(held, shared, &mut req.log, out, *head_sent, &ctx.temp) {
            Kept::Held => {}
            Kept::FailedUnseen => self.refuse_any(ctx, io, id, Refusal::new(500)),
            Kept::NoRoom => self.cut(ctx, io, id, 503),
        }
    }

    /// A handler's error output as FCGI_STDERR records, at once: front
    /// servers log it (nginx: "FastCGI sent in stderr") and it is no part
    /// of the response, so the response-timing hold does not apply.
    /// False when the request is gone (its credit is the caller's).
    fn on_stderr(&mut self, io: &mut ConnIo, r: ReqRef, bytes: &[u8]) -> bool {
        let Some(FcgiReq {
            phase: Phase::Running { shared, .. },
            ..
        }) = self.reqs.get(&r.stream_id)
        else {
            return false;
        };
        if shared.req.key != r.key {
            return false;
        }
        fcgi::encode_stream(&mut io.out.buf, RecordType::Stderr, r.stream_id, bytes);
        io.out.credit(shared, bytes.len());
        true
    }

    /// Releases more held output once the connection's buffer drained.
    fn release_all(&mut self, ctx: &mut Ctx, io: &mut ConnIo) {
        io.held_waiting = false;
        let ids: Vec<u16> = self
            .reqs
            .iter()
            .filter(|(_, r)| {
                matches!(
                    r.phase,
                    Phase::Running {
                        input_ended: true,
                        held: Some(_),
                        ..
                    }
                )
            })
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            self.release_held(ctx, io, id);
        }
    }

    /// The connection is going away: every handler learns it.
    fn abort_all(&mut self, ctx: &mut Ctx, peer: &Peer) {
        ctx.hold_params(std::mem::take(&mut self.params_held), 0);
        for (_, req) in self.reqs.drain() {
            let Phase::Running { shared, .. } = &req.phase else {
                continue;
            };
            abort_running(ctx, shared, req.log, peer);
        }
    }

    /// The earliest deadline among this connection's requests; a body's
    /// clock runs while the connection is read.
    fn next_deadline(&self, l: &Limits, clock: BodyClock) -> Option<Instant> {
        self.reqs
            .values()
            .filter_map(|r| deadline(r, l, clock.reading_since))
            .min()
    }

    /// Handles requests past their deadline at `ctx.now`.
    fn on_timer(
        &mut self,
        ctx: &mut Ctx,
        io: &mut ConnIo,
        clock: BodyClock,
    ) -> Result<(), CloseReason> {
        let now = ctx.now;
        let expired: Vec<u16> = self
            .reqs
            .iter()
            .filter(|(_, r)| {
                deadline(r, &ctx.limits, clock.reading_since).is_some_and(|d| d <= now)
            })
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            let Some(req) = self.reqs.get(&id) else {
                continue;
            };
            if let Phase::Params { .. } = req.phase {
                return Err(CloseReason::SlowClient(
                    "params not complete within --header-timeout",
                ));
            }
            if request_deadline(req, &ctx.limits).is_some_and(|d| d <= now) {
                log::warn!("client {}: request {id} past --request-timeout", io.peer);
                self.cut(ctx, io, id, 504);
            } else {
                let why = "no body bytes within --body-timeout; aborted";
                ctx.warn_client(&io.peer, &format_args!("request {id}: {why}"));
                self.cut(ctx, io, id, 408);
            }
        }
        Ok(())
    }
}

fn placeholder() -> Phase {
    Phase::Params {
        role: Role::Responder,
        params: ParamsBuffer::new(0),
    }
}

fn deadline(r: &FcgiReq, l: &Limits, clock: Option<Instant>) -> Option<Instant> {
    match &r.phase {
        Phase::Params { .. } => Some(r.begun + l.header_timeout),
        Phase::Running { .. } => [request_deadline(r, l), body_deadline(r, l, clock)]
            .into_iter()
            .flatten()
            .min(),
    }
}

fn request_deadline(r: &FcgiReq, l: &Limits) -> Option<Instant> {
    let Phase::Running { dispatched, .. } = &r.phase else {
        return None;
    };
    Some(*dispatched + l.request_timeout?)
}

/// While the connection is read (since `clock`), a body still arriving
/// may pause at most `--body-timeout`.
fn body_deadline(r: &FcgiReq, l: &Limits, clock: Option<Instant>) -> Option<Instant> {
    let Phase::Running {
        shared, last_input, ..
    } = &r.phase
    else {
        return None;
    };
    let (timeout, clock) = (l.body_timeout?, clock?);
    if shared.input_complete() {
        return None;
    }
    Some((*last_input).max(clock) + timeout)
}

/// Aborts a running request's handler, releasing any pause it holds.
fn release(io: &mut ConnIo, phase: &Phase) {
    if let Phase::Running { shared, .. } = phase {
        io.abort(shared);
    }
}

/// Sets the logged status unless a response head already did.
fn with_status(mut log: Option<Box<Entry>>, status: u16) -> Option<Box<Entry>> {
    set_status(&mut log, status, false);
    log
}

/// Ends STDOUT and the request, and logs it (with `status` when no head
/// went out).
fn end_request(
    ctx: &mut Ctx,
    io: &mut ConnIo,
    id: u16,
    req: FcgiReq,
    app_status: u32,
    status: u16,
) {
    fcgi::encode_end_of_stream(&mut io.out.buf, RecordType::Stdout, id);
    fcgi::encode_end_request(
        &mut io.out.buf,
        id,
        app_status,
        ProtocolStatus::RequestComplete,
    );
    io.ended += 1;
    bump(&ctx.stats.requests);
    ctx.stats
        .latency
        .observe(ctx.now.saturating_duration_since(req.begun));
    if !req.keep_conn {
        io.out.close_after = true;
    }
    let queue = match &req.phase {
        Phase::Running { shared, .. } => shared.queue_time(),
        Phase::Params { .. } => None,
    };
    ctx.log_end(with_status(req.log, status), &io.peer, queue);
}

/// A response from the loop itself (400, 404, 413, 431, 503, 504).
fn refuse(ctx: &mut Ctx, io: &mut ConnIo, id: u16, mut req: FcgiReq, refusal: Refusal) {
    if req.log.is_none() {
        req.log = ctx.entry(None, id, req.begun);
    }
    fcgi::encode_stream(&mut io.out.buf, RecordType::Stdout, id, &refusal.encode());
    io.refused = true;
    let status = refusal.status;
    ctx.stats.count_refusal(status);
    if let Some(e) = req.log.as_mut() {
        e.status = status;
    }
    end_request(ctx, io, id, req, 0, status);
}

/// END_REQUEST with a protocol status, for a request never begun.
fn end_early(io: &mut ConnIo, id: u16, keep_conn: bool, status: ProtocolStatus) {
    fcgi::encode_end_request(&mut io.out.buf, id, 0, status);
    if !keep_conn {
        io.out.close_after = true;
    }
}

/// FCGI_GET_VALUES_RESULT for the variables asked about that we know,
/// each once (a repeated name must not make the answer outgrow a record).
fn get_values(ctx: &Ctx, io: &mut ConnIo, names: &[Vec<u8>]) {
    let max_conns = ctx.limits.max_conns.to_string();
    let max_reqs = ctx.limits.max_reqs.to_string();
    let mut pairs: Vec<(&[u8], &[u8])> = Vec::with_capacity(3);
    let known = names.iter().filter_map(|n| {
        let value: &[u8] = match n.as_slice() {
            b"FCGI_MAX_CONNS" => max_conns.as_bytes(),
            b"FCGI_MAX_REQS" => max_reqs.as_bytes(),
            b"FCGI_MPXS_CONNS" => b"1",
            _ => return None,
        };
        Some((n.as_slice(), value))
    });
    for pair in known {
        if !pairs.contains(&pair) {
            pairs.push(pair);
        }
    }
    fcgi::encode_get_values_result(&mut io.out.buf, &pairs);
}
