//! A complete request head goes from here to a worker in the pool or to
//! an async handler on the loop, or comes back as the refusal the loop
//! answers itself. An `impl` on the loop's context, since a dispatch uses
//! the router, the pool, the sender and the counters at once.

use std::borrow::Cow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use super::context::Ctx;
use super::event_loop::SLOW_ON_LOOP;
use super::message::{ConnId, LoopHandle};
use super::pool::Job;
use super::refusal::Refusal;
use super::reply::Reply;
use super::request::{routing_path, Request};
use super::response::Response;
use super::router::{AsyncHandler, Handler, Route};
use super::shared::Shared;

use crate::protocol::fastcgi::Role;
use crate::protocol::params::Params;

impl Ctx {
    /// Routes a complete request head and hands it to a worker or to the
    /// loop, or says why the loop must answer it itself.
    pub fn dispatch(
        &mut self,
        conn: ConnId,
        stream_id: u16,
        role: Role,
        params: Params,
    ) -> Result<Arc<Shared>, Refusal> {
        let path = routing_path(&params);
        let (prefix, route) = self.router.route(&path).ok_or(Refusal::new(404))?;
        self.check_length(&params)?;
        // Most paths are a slice of the params: kept only when joined.
        let path = match path {
            Cow::Owned(joined) => Some(joined),
            Cow::Borrowed(_) => None,
        };
        match route {
            Route::Pool(h) => {
                let handler = Arc::clone(h);
                self.dispatch_pool(conn, stream_id, role, params, path, handler)
            }
            Route::Loop(h) => {
                let async_route = (prefix.to_string(), Arc::clone(h));
                Ok(self.dispatch_async(conn, stream_id, role, params, path, async_route))
            }
        }
    }

    /// 400 for a `CONTENT_LENGTH` that is no length, 413 for one past the
    /// body limit.
    fn check_length(&self, params: &Params) -> Result<(), Refusal> {
        let declared = declared_length(params).ok_or(Refusal::new(400))?;
        let max = self.limits.max_body_bytes;
        if max > 0 && declared.is_some_and(|n| n > max) {
            return Err(Refusal::new(413));
        }
        Ok(())
    }

    /// A pool route: the job queues for a worker, or is refused with a
    /// 503 to retry when the queue is full.
    fn dispatch_pool(
        &mut self,
        conn: ConnId,
        stream_id: u16,
        role: Role,
        params: Params,
        path: Option<String>,
        handler: Arc<dyn Handler>,
    ) -> Result<Arc<Shared>, Refusal> {
        let shared = self.new_shared(conn, stream_id, role);
        let job = Job {
            handler,
            req: Request::new(params, path, role, shared.clone()),
            resp: Response::with_buffer(shared.clone(), self.spare_body()),
        };
        if let Err(job) = self.pool.submit(job, self.now) {
            // Abort first: dropping the unrun response must not wait.
            shared.abort();
            drop(job);
            return Err(Refusal::new(503));
        }
        Ok(shared)
    }

    /// The per-request state shared with whoever answers it.
    fn new_shared(&mut self, conn: ConnId, stream_id: u16, role: Role) -> Arc<Shared> {
        let req = self.new_req(conn, stream_id);
        Arc::new(Shared::new(req, role, self.sender.clone()))
    }

    /// An async route: the call waits in the request's state until the
    /// input has ended (at once for a request with none).
    fn dispatch_async(
        &mut self,
        conn: ConnId,
        stream_id: u16,
        role: Role,
        params: Params,
        path: Option<String>,
        (prefix, handler): (String, Arc<dyn AsyncHandler>),
    ) -> Arc<Shared> {
        let shared = self.new_shared(conn, stream_id, role);
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
