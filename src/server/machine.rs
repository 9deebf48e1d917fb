//! The interface between a connection and the protocol it speaks. `Conn`
//! owns the socket, the buffers, the connection's own deadlines and its
//! close; a protocol's state machine (`FcgiConn`, `ScgiConn`) turns input
//! into requests and responses into output behind this trait, so another
//! protocol is one more implementation and one more arm where `Conn`
//! picks the machine, with no change to the others.

use std::time::Instant;

use super::conn::{CloseReason, ConnIo};
use super::context::Ctx;
use super::limits::Limits;
use super::listener::Peer;
use super::message::{End, ReqRef};
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
