//! Handlers and the mount table that picks one for a request path. A route
//! is of one of two kinds: a synchronous [`Handler`], run on a worker
//! thread, or an [`AsyncHandler`], called on the event loop itself.
//!
//! Prefixes match whole path segments (`/echo` matches `/echo` and
//! `/echo/x`, not `/echoes`); the longest matching prefix wins.

use std::io;
use std::sync::Arc;

use super::reply::Reply;
use super::request::Request;
use super::response::Response;

/// A synchronous handler: runs on a worker thread, may block.
///
/// Any `Fn(&mut Request, &mut Response) -> io::Result<()>` is one:
///
/// ```
/// use std::io::Write;
/// use fastgate::{Request, Response};
/// let hello = |_req: &mut Request, resp: &mut Response| resp.write_all(b"hi\n");
/// # fn is_handler<H: fastgate::Handler>(_: &H) {}
/// # is_handler(&hello);
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Answers one request; an error after output went out cuts the response.
    fn handle(&self, req: &mut Request, resp: &mut Response) -> io::Result<()>;
}

impl<F> Handler for F
where
    F: Fn(&mut Request, &mut Response) -> io::Result<()> + Send + Sync + 'static,
{
    fn handle(&self, req: &mut Request, resp: &mut Response) -> io::Result<()> {
        self(req, resp)
    }
}

/// An asynchronous handler: called on the event loop thread once the
/// request's input has ended (its body is all there: reading it never
/// blocks). It answers through the [`Reply`] at once, or keeps the reply
/// and answers later, from any thread, holding no thread meanwhile.
///
/// **It must never block**: while it runs, every connection waits. A call
/// that holds the loop longer than 50 ms is logged with its route. Work
/// that blocks belongs in a synchronous [`Handler`].
///
/// Any `Fn(Request, Reply)` is one:
///
/// ```
/// use fastgate::{Reply, Request};
/// let at_once = |_req: Request, mut reply: Reply| {
///     let _ = reply.write(b"now\n");
///     reply.finish();
/// };
/// # fn is_async<H: fastgate::AsyncHandler>(_: &H) {}
/// # is_async(&at_once);
/// ```
pub trait AsyncHandler: Send + Sync + 'static {
    /// Answers `req` through `reply`, now or later; never blocks.
    fn call(&self, req: Request, reply: Reply);
}

impl<F> AsyncHandler for F
where
    F: Fn(Request, Reply) + Send + Sync + 'static,
{
    fn call(&self, req: Request, reply: Reply) {
        self(req, reply)
    }
}

/// What a mount runs a request with.
#[derive(Clone)]
pub enum Route {
    /// A worker thread runs it.
    Pool(Arc<dyn Handler>),
    /// The loop calls it.
    Loop(Arc<dyn AsyncHandler>),
}

/// Mounted handlers, longest prefix first.
#[derive(Default, Clone)]
pub struct Router {
    mounts: Vec<(String, Route)>,
}

impl Router {
    /// Mounts `route` at `prefix` (a trailing `/` is ignored); a later
    /// mount at the same prefix replaces the earlier one.
    pub fn mount(&mut self, prefix: &str, route: Route) {
        let prefix = normalise(prefix);
        self.mounts.retain(|(p, _)| *p != prefix);
        self.mounts.push((prefix, route));
        self.mounts.sort_by_key(|m| std::cmp::Reverse(m.0.len()));
    }

    /// The mount prefix and route for `path`, if any prefix matches.
    pub fn route(&self, path: &str) -> Option<(&str, &Route)> {
        self.mounts
            .iter()
            .find(|(p, _)| matches(p, path))
            .map(|(p, r)| (p.as_str(), r))
    }
}

fn normalise(prefix: &str) -> String {
    let trimmed = prefix.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_string()
    } else if trimmed.starts_with('/') {
        trimmed.to_string()
    } else {
        format!("/{trimmed}")
    }
}

fn matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(n: u16) -> Route {
        Route::Pool(Arc::new(move |_: &mut Request, r: &mut Response| {
            r.set_status(n);
            Ok(())
        }))
    }

    #[test]
    fn whole_segments_and_longest_prefix() {
        let mut r = Router::default();
        r.mount("/echo", named(1));
        r.mount("/echo/deep/", named(2));
        let hit = |p: &str| r.route(p).is_some();
        assert!(hit("/echo") && hit("/echo/x") && hit("/echo/deep/x"));
        assert!(!hit("/echoes") && !hit("/") && !hit("/ech"));
        assert_eq!(r.route("/echo/deep/x").unwrap().0, "/echo/deep");
        assert_eq!(r.route("/echo/x").unwrap().0, "/echo");
        r.mount("/", named(3));
        assert!(r.route("/echoes").is_some());
    }
}
