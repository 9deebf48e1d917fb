//! The loop's context: the state the loop lends every connection while
//! it handles an event (limits, the mount table, the pool, the sender for
//! responses, the counters, this turn's clock, the access log, the
//! temporary space), and the bookkeeping only the loop thread does:
//! request keys and the params held over all connections. What the
//! context does with a complete request head is in `dispatch.rs`, its
//! rate-limited warnings in `warnings.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::access_log::{AccessLog, Entry};
use super::limits::Limits;
use super::listener::Peer;
use super::message::{ConnId, LoopSender, ReqRef};
use super::pool::Pool;
use super::router::Router;
use super::spool::TempSpace;
use super::stats::{bump, StatsHandle};
use super::warnings::Warnings;
use crate::protocol::params::{Params, ParamsBuffer, SpareBuffers};

/// The loop's state, lent to one connection at a time.
pub struct Ctx {
    pub limits: Limits,
    pub router: Arc<Router>,
    pub pool: Pool,
    pub sender: LoopSender,
    pub stats: StatsHandle,
    pub now: Instant,
    /// A graceful stop is under way: no new requests.
    pub draining: bool,
    next_key: u64,
    warnings: Warnings,
    pub access_log: Option<AccessLog>,
    pub slow_threshold: Option<Duration>,
    /// Temporary files: where, and the process-wide byte budget.
    pub temp: Arc<TempSpace>,
    /// Bytes held by params not yet complete, over every connection
    /// (loop-owned: only the loop thread touches it).
    pub params_held: usize,
    /// Params vectors of finished requests, handed back by the workers to
    /// be filled by the next requests read (see `Params::into_buffers`).
    spare_params: Vec<SpareBuffers>,
    /// Response body buffers the loop has written out, lent to the next
    /// responses: made on a worker and dropped here, each was a foreign
    /// free for the allocator.
    spare_bodies: Vec<Vec<u8>>,
}

/// Spare params vectors kept, and the largest kept: enough for a turn's
/// batch of requests, and no memory a burst of huge heads would pin.
const SPARE_PARAMS: usize = 64;
const SPARE_PARAMS_BYTES: usize = 4096;
/// The same for response bodies.
const SPARE_BODIES: usize = 64;
const SPARE_BODY_BYTES: usize = 16 * 1024;

impl Ctx {
    /// Keeps a finished request's params vectors for a next request.
    pub fn recycle_params(&mut self, params: Params) {
        let spare = params.into_buffers();
        if self.spare_params.len() < SPARE_PARAMS && spare.capacity() <= SPARE_PARAMS_BYTES {
            self.spare_params.push(spare);
        }
    }

    /// Keeps a response body buffer, written out, for a next response.
    pub fn recycle_body(&mut self, mut body: Vec<u8>) {
        let fits = (1..=SPARE_BODY_BYTES).contains(&body.capacity());
        if fits && self.spare_bodies.len() < SPARE_BODIES {
            body.clear();
            self.spare_bodies.push(body);
        }
    }

    /// An empty body buffer for a new response (recycled if one is kept).
    pub fn spare_body(&mut self) -> Vec<u8> {
        self.spare_bodies.pop().unwrap_or_default()
    }

    /// A buffer for a new request's params, in recycled vectors if any.
    pub fn params_buffer(&mut self) -> ParamsBuffer {
        let spare = self.spare_params.pop().unwrap_or_default();
        ParamsBuffer::reusing(self.limits.max_params_bytes, spare)
    }

    pub fn new(limits: Limits, router: Arc<Router>, pool: Pool, sender: LoopSender) -> Ctx {
        Ctx {
            limits,
            router,
            pool,
            sender,
            stats: StatsHandle::default(),
            now: Instant::now(),
            draining: false,
            next_key: 0,
            warnings: Warnings::default(),
            access_log: None,
            slow_threshold: None,
            temp: TempSpace::new(std::env::temp_dir(), u64::MAX),
            spare_params: Vec::new(),
            spare_bodies: Vec::new(),
            params_held: 0,
        }
    }

    /// A log entry for a request, when anything will read it.
    pub fn entry(
        &self,
        params: Option<&Params>,
        stream_id: u16,
        begun: Instant,
    ) -> Option<Box<Entry>> {
        if self.access_log.is_none() && self.slow_threshold.is_none() {
            return None;
        }
        Some(Entry::new(params, stream_id, begun))
    }

    /// A request ended: its access log line, and the slow count.
    pub fn log_end(&mut self, entry: Option<Box<Entry>>, peer: &Peer, queue: Option<Duration>) {
        let Some(e) = entry else { return };
        let took = self.now.saturating_duration_since(e.begun);
        if self.slow_threshold.is_some_and(|t| took > t) {
            bump(&self.stats.slow_requests);
            log::info!(
                "slow request: {} {} took {} ms (status {})",
                e.method,
                e.uri,
                took.as_millis(),
                e.status
            );
        }
        if let Some(log) = self.access_log.as_mut() {
            log.record(&e, peer, took, queue);
        }
    }

    /// A reference to a new request, with a key unique in the process:
    /// a reused FastCGI id never receives a predecessor's bytes.
    pub fn new_req(&mut self, conn: ConnId, stream_id: u16) -> ReqRef {
        self.next_key += 1;
        ReqRef {
            conn,
            stream_id,
            key: self.next_key,
        }
    }

    /// Moves the process's count of params in progress from `before` to
    /// `after` bytes held by one request; true while within the budget.
    pub fn hold_params(&mut self, before: usize, after: usize) -> bool {
        self.params_held = self.params_held.saturating_sub(before) + after;
        self.params_held <= self.limits.params_per_process
    }

    /// Whether a new request's params could be gathered at all.
    pub fn params_room(&self) -> bool {
        self.params_held < self.limits.params_per_process
    }

    /// Logs that code on the loop thread blocked it (not counted as a
    /// protocol error).
    pub fn warn_slow_on_loop(&mut self, what: &dyn std::fmt::Display) {
        self.warnings.slow_on_loop(self.now, what);
    }

    /// Logs one line about a misbehaving client (at most a few a second)
    /// and counts it as a protocol error.
    pub fn warn_client(&mut self, peer: &dyn std::fmt::Display, what: &dyn std::fmt::Display) {
        bump(&self.stats.protocol_errors);
        self.warnings.client(self.now, peer, what);
    }
}
