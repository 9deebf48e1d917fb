//! Wakes the event loop from other threads: an eventfd in the poller plus a
//! flag, so a batch of completions costs one wakeup, not one per message.
//!
//! Protocol: a sender pushes its message, then calls [`Waker::wake`]; only
//! the first wake after the loop last drained writes the eventfd. The loop
//! calls [`Waker::reset`] before draining, so a message pushed after the
//! drain began always produces a fresh wake.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::eventfd::{EfdFlags, EventFd};

use super::stats::{bump, StatsHandle};

/// A cross-thread wakeup for the loop; shared through an `Arc`.
pub struct Waker {
    fd: EventFd,
    pending: AtomicBool,
    /// Counts the eventfd writes (`wakeups`: per request, a cost the status
    /// page and benchmarks show).
    stats: StatsHandle,
}

impl Waker {
    pub fn new(stats: StatsHandle) -> io::Result<Waker> {
        let fd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        Ok(Waker {
            fd,
            pending: AtomicBool::new(false),
            stats,
        })
    }

    /// Makes the loop's next (or current) wait return.
    pub fn wake(&self) {
        if self.pending.swap(true, Ordering::SeqCst) {
            return;
        }
        bump(&self.stats.wakeups);
        // EAGAIN means the counter is saturated: the loop is woken anyway.
        let _ = self.fd.write(1);
    }

    /// Called by the loop when the eventfd is readable, before draining.
    pub fn reset(&self) {
        let _ = self.fd.read();
        // SeqCst: the clear must be ordered before the drain's reads of the
        // channel, so a sender that saw `pending` still set has its message
        // found by this drain.
        self.pending.swap(false, Ordering::SeqCst);
    }

    /// The fd to register in the poller.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_fd().as_raw_fd()
    }

    /// Eventfd writes so far.
    #[cfg(test)]
    pub fn wakeups(&self) -> u64 {
        self.stats.wakeups.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_wakes_before_a_reset_write_once() {
        let w = Waker::new(StatsHandle::default()).unwrap();
        for _ in 0..10 {
            w.wake();
        }
        assert_eq!(w.wakeups(), 1);
        w.reset();
        w.wake();
        assert_eq!(w.wakeups(), 2);
    }
}
