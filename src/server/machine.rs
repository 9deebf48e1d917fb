//! The interface between a connection and the protocol it speaks. `Conn`
//! owns the socket, the buffers, the connection's own deadlines and its
//! close; a protocol's state machine (`FcgiConn`, `ScgiConn`) turns input
//! into requests and responses into output behind this trait, so another
//! protocol is one more implementation and one more arm where `Conn`
//! picks the machine, with no change to the others.

use std::time::{Duration, Instant};

use super::access_log::{set_status, Entry};
use super::conn::{CloseReason, ConnIo};
use super::context::Ctx;
use super::limits::Limits;
use super::listener::Peer;
use super::message::{End, ReqRef};
use super::shared::Shared;
use super::stats::bump;
use crate::protocol::cgi_response::Head;

/// What a machine's body deadlines are measured from.
#[derive(Clone, Copy, Debug)]
pub struct BodyClock {
    /// Since when the connection has been read without a pause (None: it
    /// is not being read, so a stalled body is not the client's fault).
    pub reading_since: Option<Instant>,
    /// When the last read brought bytes.
    pub last_read: Instant,
}

/// One protocol's per-connection state machine.
pub trait Machine {
    /// Consumes input; returns how many bytes it used (the rest is kept
    /// and offered again with more).
    fn process(
        &mut self,
        ctx: &mut Ctx,
        io: &mut ConnIo,
        input: &[u8],
    ) -> Result<usize, CloseReason>;

    /// Applies a handler's output for request `req`.
    fn on_output(
        &mut self,
        ctx: &mut Ctx,
        io: &mut ConnIo,
        req: ReqRef,
        head: Option<Head>,
        body: Vec<u8>,
        end: End,
    );

    /// Writes a handler's error output on the protocol's own stream; false
    /// when it has none (the caller logs it) or the request is gone.
    fn on_stderr(&mut self, _io: &mut ConnIo, _req: ReqRef, _bytes: &[u8]) -> bool {
        false
    }

    /// Moves more held output into the connection's buffer, which drained.
    fn release_all(&mut self, ctx: &mut Ctx, io: &mut ConnIo);

    /// Requests begun and not yet ended.
    fn in_flight(&self) -> usize;

    /// Whether every request in flight has all its input and no unit of
    /// the protocol is cut in half.
    fn input_complete(&self) -> bool;

    /// Whether a peer that shuts its sending side now still wants its
    /// answers (a half-close), rather than leaving.
    fn answers_half_close(&self) -> bool {
        self.input_complete()
    }

    /// The connection is going away: every handler learns it.
    fn abort_all(&mut self, ctx: &mut Ctx, peer: &Peer);

    /// The earliest deadline among the requests in flight.
    fn next_deadline(&self, l: &Limits, clock: BodyClock) -> Option<Instant>;

    /// Handles requests past their deadline at `ctx.now`.
    fn on_timer(
        &mut self,
        ctx: &mut Ctx,
        io: &mut ConnIo,
        clock: BodyClock,
    ) -> Result<(), CloseReason>;
}

/// The deadline of a request that has the connection to itself (SCGI,
/// HTTP): `--request-timeout` from its dispatch, and `--body-timeout`
/// while body bytes are still to come, from the body clock or the last
/// read, whichever is later (such protocols have no records to time).
pub fn request_deadline(
    l: &Limits,
    dispatched: Instant,
    body_pending: bool,
    clock: BodyClock,
) -> Option<Instant> {
    let clock = clock.reading_since.map(|c| c.max(clock.last_read));
    let request = l.request_timeout.map(|t| dispatched + t);
    let body = match (body_pending, clock, l.body_timeout) {
        (true, Some(c), Some(t)) => Some(c + t),
        _ => None,
    };
    request.into_iter().chain(body).min()
}

/// Which deadline of [`request_deadline`] passed: 504 past
/// `--request-timeout`, else 408 for a body that stalled. Logged and
/// counted as an aborted request.
pub fn expired(ctx: &mut Ctx, io: &ConnIo, dispatched: Instant) -> (u16, &'static str) {
    bump(&ctx.stats.aborted_requests);
    let past_request = ctx
        .limits
        .request_timeout
        .is_some_and(|t| dispatched + t <= ctx.now);
    if past_request {
        log::warn!("client {}: request past --request-timeout", io.peer);
        return (504, "request past --request-timeout");
    }
    let what = "no body bytes within --body-timeout";
    ctx.warn_client(&io.peer, &format_args!("{what}; request aborted"));
    (408, what)
}

/// The status logged for a request whose client left (nginx's 499).
pub const CLIENT_GONE: u16 = 499;

/// A running request whose connection goes away: its handler learns it,
/// it counts as aborted, and it is logged as the client's leaving unless
/// a head already gave it a status.
pub fn abort_running(ctx: &mut Ctx, shared: &Shared, mut log: Option<Box<Entry>>, peer: &Peer) {
    shared.abort();
    bump(&ctx.stats.aborted_requests);
    set_status(&mut log, CLIENT_GONE, false);
    ctx.log_end(log, peer, shared.queue_time());
}

/// The request dispatched at `dispatched` has ended: its latency is
/// observed; returns how long it queued, for its log line.
pub fn observe_end(ctx: &Ctx, shared: &Shared, dispatched: Instant) -> Option<Duration> {
    let took = ctx.now.saturating_duration_since(dispatched);
    ctx.stats.latency.observe(took);
    shared.queue_time()
}
