//! Handlers and the mount table that picks one for a request path.
//!
//! Prefixes match whole path segments (`/echo` matches `/echo` and
//! `/echo/x`, not `/echoes`); the longest matching prefix wins.

use std::io;
use std::sync::Arc;

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

/// Mounted handlers, longest prefix first.
#[derive(Default, Clone)]
pub struct Router {
    mounts: Vec<(String, Arc<dyn Handler>)>,
}

impl Router {
    /// Mounts `handler` at `prefix` (a trailing `/` is ignored); a later
    /// mount at the same prefix replaces the earlier one.
    pub fn mount(&mut self, prefix: &str, handler: Arc<dyn Handler>) {
        let prefix = normalise(prefix);
        self.mounts.retain(|(p, _)| *p != prefix);
        self.mounts.push((prefix, handler));
        self.mounts.sort_by_key(|m| std::cmp::Reverse(m.0.len()));
    }

    /// The handler for `path`, if any prefix matches.
    pub fn route(&self, path: &str) -> Option<&Arc<dyn Handler>> {
        self.mounts
            .iter()
            .find(|(p, _)| matches(p, path))
            .map(|(_, h)| h)
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

    fn named(n: u16) -> Arc<dyn Handler> {
        Arc::new(move |_: &mut Request, r: &mut Response| {
            r.set_status(n);
            Ok(())
        })
    }

    #[test]
    fn whole_segments_and_longest_prefix() {
        let mut r = Router::default();
        r.mount("/echo", named(1));
        r.mount("/echo/deep/", named(2));
        let hit = |p: &str| r.route(p).is_some();
        assert!(hit("/echo") && hit("/echo/x") && hit("/echo/deep/x"));
        assert!(!hit("/echoes") && !hit("/") && !hit("/ech"));
        let a = r.route("/echo/deep/x").unwrap();
        let b = r.route("/echo/x").unwrap();
        assert!(!Arc::ptr_eq(a, b), "longest prefix wins");
        r.mount("/", named(3));
        assert!(r.route("/echoes").is_some());
    }
}
