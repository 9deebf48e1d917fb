//! The answer of an asynchronous handler: a handle the handler keeps for as
//! long as it likes and moves to any thread, writing the response when it
//! has one (status, headers, body chunks, end), with no thread held
//! meanwhile.
//!
//! It takes the path of a worker's output (`Message::Output` to the loop),
//! with the same bounds: a write that would put more than 256 KiB of
//! unwritten output in flight is refused with `WouldBlock`, and
//! [`Reply::on_writable`] says when to try again. The handler is only
//! called once the request's input has ended, so the loop's hold
//! (`hold.rs`) never has to keep its output. A reply dropped unanswered
//! gives the client a 502 (and a log line), never a hang.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::message::{End, LoopHandle, Message};
use super::shared::Shared;
use super::stats::{drop_one, StatsHandle};
use crate::protocol::cgi_response::{reason_phrase, Head};

/// The pending answer of one request of an [`AsyncHandler`](super::AsyncHandler).
pub struct Reply {
    shared: Arc<Shared>,
    handle: LoopHandle,
    stats: StatsHandle,
    status: u16,
    headers: Vec<(String, String)>,
    head_out: bool,
    done: bool,
}

impl Reply {
    pub(crate) fn new(shared: Arc<Shared>, handle: LoopHandle, stats: StatsHandle) -> Reply {
        stats.pending_async.fetch_add(1, Ordering::Relaxed);
        Reply {
            shared,
            handle,
            stats,
            status: 200,
            headers: Vec::new(),
            head_out: false,
            done: false,
        }
    }

    /// Sets the status (200 by default). Ignored once the head is out.
    pub fn set_status(&mut self, status: u16) {
        self.status = status;
    }

    /// Sets a header, replacing any of the same name (case-insensitive).
    pub fn set_header(&mut self, name: &str, value: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        let clean = |s: &str| s.replace(['\r', '\n'], " ");
        self.headers.push((clean(name), clean(value)));
    }

    /// The loop this request lives on: `post` and `after` from here.
    pub fn loop_handle(&self) -> &LoopHandle {
        &self.handle
    }

    /// Whether the client went away (writes fail from then on).
    pub fn is_aborted(&self) -> bool {
        self.shared.is_aborted()
    }

    /// Runs `hook` on the loop when the client aborts or disconnects (at
    /// once if it already has), so a waiter can be dropped without delay.
    pub fn on_abort(&self, hook: impl FnOnce() + Send + 'static) {
        self.shared.on_abort(Box::new(hook));
    }

    /// Hands the reply back to `then`, on the loop, once a write may
    /// succeed again (at once if it may now, or when the client has left:
    /// writes then fail).
    pub fn on_writable(self, then: impl FnOnce(Reply) + Send + 'static) {
        let shared = Arc::clone(&self.shared);
        shared.on_writable(Box::new(move || then(self)));
    }

    /// Hands `data` to the loop, never waiting: `WouldBlock` while the
    /// client has not taken enough of what was written before (then go on
    /// in [`Reply::on_writable`]); `ConnectionAborted` once it left.
    pub fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if !self.shared.try_acquire_output(data.len())? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.send(data.to_vec(), End::No);
        Ok(data.len())
    }

    /// Ends the response (sending the head first if nothing was written).
    pub fn finish(mut self) {
        self.end(End::Complete);
    }

    fn end(&mut self, end: End) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        drop_one(&self.stats.pending_async);
        if !self.shared.is_aborted() {
            self.send(Vec::new(), end);
        }
    }

    fn send(&mut self, body: Vec<u8>, end: End) {
        let head = (!std::mem::replace(&mut self.head_out, true)).then(|| self.head());
        self.shared.sender().send(Message::Output {
            req: self.shared.req,
            head,
            body,
            end,
            spare: None,
        });
    }

    fn head(&mut self) -> Head {
        let typed = self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
        if !typed {
            self.headers
                .push(("Content-Type".into(), "text/plain".into()));
        }
        Head {
            status: self.status,
            reason: reason_phrase(self.status).into(),
            headers: std::mem::take(&mut self.headers),
        }
    }
}

/// Replies dropped unanswered, for a rate-limited log line.
static DROPPED: AtomicU64 = AtomicU64::new(0);

impl Drop for Reply {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if !self.shared.is_aborted() {
            let n = DROPPED.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() || n == 0 {
                log::warn!(
                    "request {}: an async handler dropped its reply unanswered ({} so far)",
                    self.shared.req.key,
                    n + 1
                );
            }
        }
        if self.head_out {
            return self.end(End::Failed);
        }
        self.status = 502;
        self.headers = vec![("Content-Type".into(), "text/plain".into())];
        let body = b"bad gateway: the handler gave no answer\n".to_vec();
        if !self.shared.is_aborted() {
            self.send(body, End::No);
        }
        self.end(End::Complete);
    }
}
