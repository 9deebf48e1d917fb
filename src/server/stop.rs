//! Stopping a server from another thread: a [`StopHandle`] writes to the
//! socket the TERM handler writes to, so the loop sees exactly a TERM and
//! stops gracefully, with no new path through it.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use nix::sys::socket::{send, MsgFlags};

/// Stops a running [`Server`](super::Server) from any thread, as TERM
/// does: the listeners close, requests in flight finish (within
/// [`Options::shutdown_timeout`](super::Options::shutdown_timeout)), then
/// [`Server::run`](super::Server::run) returns `Ok`.
///
/// ```no_run
/// let mut builder = fastgate::Server::builder();
/// builder.listen("fastcgi://127.0.0.1:9000".parse().unwrap());
/// let server = builder.build().unwrap();
/// let stop = server.stop_handle();
/// std::thread::spawn(move || {
///     std::thread::sleep(std::time::Duration::from_secs(60));
///     stop.stop();
/// });
/// server.run().unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct StopHandle {
    term: Arc<UnixStream>,
}

impl StopHandle {
    pub(super) fn new(term: Arc<UnixStream>) -> StopHandle {
        StopHandle { term }
    }

    /// Asks for a graceful stop and returns at once. Asking again, or
    /// before [`Server::run`](super::Server::run) starts, is harmless;
    /// after the server stopped it does nothing.
    pub fn stop(&self) {
        // As signal-hook's handler does: never block (a full socket means
        // a TERM is already pending) and never raise SIGPIPE (once the
        // server is gone, nobody reads).
        let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
        let _ = send(self.term.as_raw_fd(), &[1], flags);
    }
}
