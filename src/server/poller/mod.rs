//! Readiness notification behind one small trait, so the event loop does not
//! care whether epoll (Linux) or poll(2) (anywhere, and in tests) is below it.
//!
//! Registrations are level-triggered: a socket that still has bytes to read
//! is reported again on the next wait, so a handler may stop early (for
//! backpressure) without losing a wakeup.

mod epoll;
mod poll;

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

pub use self::epoll::EpollPoller;
pub use self::poll::PollPoller;

/// Identifies a registration; the loop maps it to a listener or connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(pub usize);

/// What a registration waits for: a small bit set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interest(u8);

impl Interest {
    pub const READ: Interest = Interest(1);
    #[cfg(test)]
    pub const WRITE: Interest = Interest(2);

    pub fn readable(self) -> bool {
        self.0 & 1 != 0
    }

    pub fn writable(self) -> bool {
        self.0 & 2 != 0
    }

    /// Builds an interest from the two flags.
    pub fn new(read: bool, write: bool) -> Interest {
        Interest(read as u8 | (write as u8) << 1)
    }

    /// Also report a peer that closed its side (reported as readable),
    /// for a connection that is not being read.
    pub fn with_hangup(self, on: bool) -> Interest {
        Interest(self.0 | (on as u8) << 2)
    }

    pub fn hangup(self) -> bool {
        self.0 & 4 != 0
    }

    /// A listening socket several processes wait on: wake one of them per
    /// connection, not all (EPOLLEXCLUSIVE; poll(2) has no such thing).
    /// Such a registration is only added and deleted, never modified.
    pub const fn exclusive(self) -> Interest {
        Interest(self.0 | 8)
    }

    pub fn is_exclusive(self) -> bool {
        self.0 & 8 != 0
    }
}

/// One readiness report. Errors and hang-ups are reported as readable so
/// that the following read observes them.
#[derive(Clone, Copy, Debug)]
pub struct Event {
    pub token: Token,
    pub readable: bool,
    /// The loop writes at the end of every turn whatever the poller says;
    /// only the backends' tests read this.
    #[cfg_attr(not(test), allow(dead_code))]
    pub writable: bool,
}

/// The operations every backend implements.
pub trait Poller: Send {
    fn add(&mut self, fd: RawFd, token: Token, interest: Interest) -> io::Result<()>;
    fn modify(&mut self, fd: RawFd, token: Token, interest: Interest) -> io::Result<()>;
    fn delete(&mut self, fd: RawFd) -> io::Result<()>;
    /// Waits for readiness (no timeout: forever), appending to `events`
    /// after clearing it. EINTR returns Ok with no events.
    fn wait(&mut self, events: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()>;
}

/// The backend for this platform, or poll(2) when `FASTGATE_POLLER=poll`
/// (a switch for tests, so CI runs both backends).
pub fn new_poller() -> io::Result<Box<dyn Poller>> {
    if std::env::var_os("FASTGATE_POLLER").is_some_and(|v| v == "poll") {
        return Ok(Box::new(PollPoller::new()));
    }
    Ok(Box::new(EpollPoller::new()?))
}

/// Milliseconds for a poll timeout, rounded up so that a timer is never
/// woken a little early and then spun on.
fn timeout_ms(timeout: Option<Duration>) -> i32 {
    match timeout {
        None => -1,
        Some(d) => {
            let ms = d.as_micros().div_ceil(1000);
            ms.min(i32::MAX as u128) as i32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    fn readiness(p: &mut dyn Poller) {
        let (mut a, b) = UnixStream::pair().unwrap();
        p.add(b.as_raw_fd(), Token(7), Interest::READ).unwrap();
        let mut ev = Vec::new();
        p.wait(&mut ev, Some(Duration::from_millis(10))).unwrap();
        assert!(ev.is_empty(), "nothing to read yet");
        a.write_all(b"x").unwrap();
        p.wait(&mut ev, Some(Duration::from_secs(5))).unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].token, Token(7));
        assert!(ev[0].readable && !ev[0].writable);
        p.modify(b.as_raw_fd(), Token(8), Interest::WRITE).unwrap();
        p.wait(&mut ev, Some(Duration::from_secs(5))).unwrap();
        assert_eq!(ev[0].token, Token(8));
        assert!(ev[0].writable);
        p.delete(b.as_raw_fd()).unwrap();
        p.wait(&mut ev, Some(Duration::from_millis(10))).unwrap();
        assert!(ev.is_empty(), "deleted fd reported");
    }

    #[test]
    fn epoll_reports_readiness() {
        readiness(&mut EpollPoller::new().unwrap());
    }

    #[test]
    fn poll_reports_readiness() {
        readiness(&mut PollPoller::new());
    }

    #[test]
    fn timeouts_round_up() {
        assert_eq!(timeout_ms(None), -1);
        assert_eq!(timeout_ms(Some(Duration::from_micros(1))), 1);
        assert_eq!(timeout_ms(Some(Duration::from_millis(5))), 5);
    }
}
