//! What every connection needs from the loop while it handles an event:
//! limits, the mount table, the pool, the sender for responses, counters,
//! and the dispatch of a complete request head to a worker.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::access_log::{AccessLog, Entry};
use super::message::{ConnId, LoopSender, ReqRef};
use super::pool::{Job, Pool};
use super::request::{routing_path, Request};
use super::response::Response;
use super::router::Router;
use super::shared::Shared;
use super::spool::TempSpace;
use crate::protocol::cgi_response::{reason_phrase, write_reply_head};
use crate::protocol::fastcgi::Role;
use crate::protocol::params::Params;

/// The limits of the configuration that connections enforce.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_conns: usize,
    pub max_reqs: usize,
    pub max_params_bytes: usize,
    /// Params not yet complete one connection may hold, all its requests
    /// together (see [`Limits::params_budgets`]).
    pub params_per_conn: usize,
    /// Params not yet complete the whole process may hold.
    pub params_per_process: usize,
    /// 0: none.
    pub max_body_bytes: u64,
    pub idle_timeout: Duration,
    pub header_timeout: Duration,
    pub request_timeout: Option<Duration>,
    /// The longest pause in a body while the connection is read.
    pub body_timeout: Option<Duration>,
    /// How long pending output may go without a byte written.
    pub send_timeout: Option<Duration>,
}

/// Params in progress across the process, at least enough for a whole
/// connection's worth. Fixed rather than a multiple of the params limit,
/// so raising that limit does not raise what the process may hold.
const PARAMS_PER_PROCESS: usize = 64 << 20;
/// How many requests' worth of params one connection may gather at once.
const PARAMS_PER_CONN: usize = 4;

impl Limits {
    /// The budgets of params in progress for a params limit of
    /// `max_params_bytes`: (per connection, per process).
    pub fn params_budgets(max_params_bytes: usize) -> (usize, usize) {
        let per_conn = max_params_bytes.saturating_mul(PARAMS_PER_CONN);
        (per_conn, per_conn.max(PARAMS_PER_PROCESS))
    }
}

/// Process-wide counters (atomics: read from any thread, never locked).
#[derive(Default)]
pub struct Stats {
    /// Connections accepted since the start.
    pub accepted_conns: AtomicU64,
    /// Connections open now.
    pub active_conns: AtomicU64,
    /// Requests dispatched to a handler.
    pub requests: AtomicU64,
    /// Requests aborted by the client or a timeout.
    pub aborted_requests: AtomicU64,
    /// Connections closed for breaking the protocol.
    pub protocol_errors: AtomicU64,
    /// Requests refused with 503 (the queue was full).
    pub refused_overload: AtomicU64,
    /// Requests slower than the slow threshold.
    pub slow_requests: AtomicU64,
}

impl Stats {
    /// Adds one to `counter`.
    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A response the loop gives itself, without a worker.
#[derive(Debug)]
pub struct Refusal {
    pub status: u16,
    pub retry_after: bool,
}

impl Refusal {
    pub fn new(status: u16) -> Refusal {
        Refusal {
            status,
            retry_after: false,
        }
    }

    /// The CGI-style response bytes.
    pub fn encode(&self) -> Vec<u8> {
        let reason = reason_phrase(self.status);
        let mut headers = vec![("Content-Type".to_string(), "text/plain".to_string())];
        if self.retry_after {
            headers.push(("Retry-After".to_string(), "1".to_string()));
        }
        let mut out = Vec::with_capacity(128);
        write_reply_head(&mut out, self.status, reason, &headers);
        out.extend_from_slice(reason.to_ascii_lowercase().as_bytes());
        out.push(b'\n');
        out
    }
}

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
    warnings: RateLimit,
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
            warnings: RateLimit::default(),
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
            Stats::add(&self.stats.slow_requests);
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
        let handler = self.router.route(&path).ok_or(Refusal::new(404))?.clone();
        let declared = declared_length(&params).ok_or(Refusal::new(400))?;
        if self.limits.max_body_bytes > 0
            && declared.is_some_and(|n| n > self.limits.max_body_bytes)
        {
            return Err(Refusal::new(413));
        }
        self.next_key += 1;
        let req = ReqRef {
            conn,
            fcgi_id,
            key: self.next_key,
        };
        let shared = Arc::new(Shared::new(
            req,
            role,
            self.sender.clone(),
            Arc::clone(&self.temp),
        ));
        let job = Job {
            handler,
            req: Request::new(params, path, role, shared.clone()),
            resp: Response::new(shared.clone()),
        };
        if let Err(job) = self.pool.submit(job, self.now) {
            // Abort first: dropping the unrun response must not wait.
            shared.abort();
            drop(job);
            Stats::add(&self.stats.refused_overload);
            return Err(Refusal {
                status: 503,
                retry_after: true,
            });
        }
        Ok(shared)
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

    /// Logs one line about a misbehaving client, at most a few a second.
    pub fn warn_client(&mut self, peer: &str, what: &dyn std::fmt::Display) {
        Stats::add(&self.stats.protocol_errors);
        if let Some(suppressed) = self.warnings.allow(self.now) {
            if suppressed > 0 {
                log::warn!("{suppressed} more client errors not logged");
            }
            log::warn!("client {peer}: {what}");
        }
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

/// At most [`RateLimit::PER_SECOND`] lines a second; counts the rest.
#[derive(Default)]
struct RateLimit {
    window: Option<Instant>,
    used: u32,
    suppressed: u64,
}

impl RateLimit {
    const PER_SECOND: u32 = 10;

    /// Some(lines suppressed since the last allowed one) when allowed.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        if self
            .window
            .is_none_or(|w| now.duration_since(w) >= Duration::from_secs(1))
        {
            self.window = Some(now);
            self.used = 0;
        }
        if self.used >= Self::PER_SECOND {
            self.suppressed += 1;
            return None;
        }
        self.used += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
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

    #[test]
    fn rate_limit_counts_what_it_drops() {
        let mut r = RateLimit::default();
        let t = Instant::now();
        for _ in 0..10 {
            assert_eq!(r.allow(t), Some(0));
        }
        assert_eq!(r.allow(t), None);
        assert_eq!(r.allow(t), None);
        assert_eq!(r.allow(t + Duration::from_secs(1)), Some(2));
    }

    #[test]
    fn refusals_are_cgi_responses() {
        let r = Refusal {
            status: 503,
            retry_after: true,
        }
        .encode();
        let text = String::from_utf8(r).unwrap();
        assert!(
            text.starts_with("Status: 503 Service Unavailable\r\n"),
            "{text}"
        );
        assert!(text.contains("Retry-After: 1\r\n"));
    }
}
