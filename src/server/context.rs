//! What every connection needs from the loop while it handles an event:
//! limits, the mount table, the pool, the sender for responses, counters,
//! and the dispatch of a complete request head to a worker.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::access_log::{AccessLog, Entry};
use super::event_loop::SLOW_ON_LOOP;
use super::limits::Limits;
use super::message::{ConnId, LoopHandle, LoopSender, ReqRef};
use super::pool::{Job, Pool};
use super::refusal::Refusal;
use super::reply::Reply;
use super::request::{routing_path, Request};
use super::response::Response;
use super::router::{AsyncHandler, Route, Router};
use super::shared::Shared;
use super::spool::TempSpace;
use super::stats::{bump, Stats};
use super::warnings::Warnings;
use crate::protocol::fastcgi::Role;
use crate::protocol::params::Params;

pub struct Ctx {
    pub limits: Limits,
    pub router: Arc<Router>,
    pub pool: Pool,
    pub sender: LoopSender,
    pub stats: Arc<Stats>,
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
}

impl Ctx {
    pub fn new(limits: Limits, router: Arc<Router>, pool: Pool, sender: LoopSender) -> Ctx {
        Ctx {
            limits,
            router,
            pool,
            sender,
            stats: Arc::default(),
            now: Instant::now(),
            draining: false,
            next_key: 0,
            warnings: Warnings::default(),
            access_log: None,
            slow_threshold: None,
            temp: TempSpace::new(std::env::temp_dir(), u64::MAX),
            params_held: 0,
        }
    }

    /// A log entry for a request, when anything will read it.
    pub fn entry(
        &self,
        params: Option<&Params>,
        fcgi_id: u16,
        begun: Instant,
    ) -> Option<Box<Entry>> {
        if self.access_log.is_none() && self.slow_threshold.is_none() {
            return None;
        }
        Some(Entry::new(params, fcgi_id, begun))
    }

    /// A request ended: its access log line, and the slow count.
    pub fn log_end(&mut self, entry: Option<Box<Entry>>, peer: &str, queue: Option<Duration>) {
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

    /// Routes a complete request head and hands it to a worker, or says
    /// why the loop must answer it itself.
    pub fn dispatch(
        &mut self,
        conn: ConnId,
        fcgi_id: u16,
        role: Role,
        params: Params,
    ) -> Result<Arc<Shared>, Refusal> {
        let path = routing_path(&params);
        let (prefix, route) = self.router.route(&path).ok_or(Refusal::new(404))?;
        let declared = declared_length(&params).ok_or(Refusal::new(400))?;
        if self.limits.max_body_bytes > 0
            && declared.is_some_and(|n| n > self.limits.max_body_bytes)
        {
            return Err(Refusal::new(413));
        }
        let handler = match route {
            Route::Pool(h) => Arc::clone(h),
            Route::Loop(h) => {
                let async_route = (prefix.to_string(), Arc::clone(h));
                return Ok(self.dispatch_async(conn, fcgi_id, role, params, path, async_route));
            }
        };
        let shared = self.new_shared(conn, fcgi_id, role);
        let job = Job {
            handler,
            req: Request::new(params, path, role, shared.clone()),
            resp: Response::new(shared.clone()),
        };
        if let Err(job) = self.pool.submit(job, self.now) {
            // Abort first: dropping the unrun response must not wait.
            shared.abort();
            drop(job);
            return Err(Refusal {
                status: 503,
                retry_after: true,
            });
        }
        Ok(shared)
    }

    /// The per-request state shared with whoever answers it.
    fn new_shared(&mut self, conn: ConnId, fcgi_id: u16, role: Role) -> Arc<Shared> {
        self.next_key += 1;
        let req = ReqRef {
            conn,
            fcgi_id,
            key: self.next_key,
        };
        Arc::new(Shared::new(
            req,
            role,
            self.sender.clone(),
            Arc::clone(&self.temp),
        ))
    }

    /// An async route: the call waits in the request's state until the
    /// input has ended (at once for a request with none).
    fn dispatch_async(
        &mut self,
        conn: ConnId,
        fcgi_id: u16,
        role: Role,
        params: Params,
        path: String,
        (prefix, handler): (String, Arc<dyn AsyncHandler>),
    ) -> Arc<Shared> {
        let shared = self.new_shared(conn, fcgi_id, role);
        let req = Request::new(params, path, role, shared.clone());
        let handle = LoopHandle::new(self.sender.clone());
        let reply = Reply::new(shared.clone(), handle, self.stats.clone());
        shared.set_start(prefix, Box::new(move || handler.call(req, reply)));
        self.start_if_ready(&shared);
        shared
    }

    /// Calls a request's async handler once its input has ended; a call
    /// that holds the loop too long is logged with its route.
    pub fn start_if_ready(&mut self, shared: &Shared) {
        let Some((route, call)) = shared.take_start_if_ready() else {
            return;
        };
        let started = Instant::now();
        if catch_unwind(AssertUnwindSafe(call)).is_err() {
            log::error!("the async handler of {route} panicked");
        }
        let took = started.elapsed();
        if took > SLOW_ON_LOOP {
            let what = format_args!("the async handler of {route} ran {} ms", took.as_millis());
            self.warn_slow_on_loop(&what);
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
    pub fn warn_client(&mut self, peer: &str, what: &dyn std::fmt::Display) {
        bump(&self.stats.protocol_errors);
        self.warnings.client(self.now, peer, what);
    }
}

/// `CONTENT_LENGTH` as a number: `Some(None)` when absent or empty (nginx
/// sends it empty for no body) or negative (Caddy sends `-1` for a chunked
/// body: unknown, read STDIN to its end), `None` when it is no length a
/// body could have (not decimal, or past u64), which is a bad request.
fn declared_length(params: &Params) -> Option<Option<u64>> {
    let Some(v) = params.get("CONTENT_LENGTH") else {
        return Some(None);
    };
    let v = v.trim_ascii();
    let negative = v
        .strip_prefix(b"-")
        .is_some_and(|n| !n.is_empty() && n.iter().all(u8::is_ascii_digit));
    if v.is_empty() || negative {
        return Some(None);
    }
    if !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok().map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_must_be_a_length() {
        let with = |v: &str| Params::from_pairs([(&b"CONTENT_LENGTH"[..], v.as_bytes())]);
        assert_eq!(declared_length(&Params::default()), Some(None));
        assert_eq!(declared_length(&with("")), Some(None));
        assert_eq!(declared_length(&with(" 42 ")), Some(Some(42)));
        assert_eq!(declared_length(&with("-1")), Some(None), "Caddy, chunked");
        assert_eq!(declared_length(&with("-5")), Some(None));
        for bad in [
            "-",
            "--1",
            "-x",
            "12abc",
            "99999999999999999999999",
            "+1",
            "0x10",
        ] {
            assert_eq!(declared_length(&with(bad)), None, "{bad}");
        }
    }
}
