//! The epoll(7) backend: O(1) per ready socket, the default on Linux.

use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::time::Duration;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use super::{timeout_ms, Event, Interest, Poller, Token};

/// Readiness through one epoll instance.
pub struct EpollPoller {
    epoll: Epoll,
    buf: Vec<EpollEvent>,
}

impl EpollPoller {
    pub fn new() -> io::Result<EpollPoller> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        Ok(EpollPoller {
            epoll,
            buf: vec![EpollEvent::empty(); 256],
        })
    }
}

fn flags(interest: Interest) -> EpollFlags {
    let mut f = EpollFlags::empty();
    if interest.readable() {
        f |= EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP;
    }
    if interest.writable() {
        f |= EpollFlags::EPOLLOUT;
    }
    if interest.hangup() {
        f |= EpollFlags::EPOLLRDHUP;
    }
    if interest.is_exclusive() {
        // Only EPOLLIN may go with it (no EPOLLRDHUP).
        f = EpollFlags::EPOLLIN | EpollFlags::EPOLLEXCLUSIVE;
    }
    f
}

fn borrow(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: the loop registers only fds it owns and deletes them before
    // closing; the borrow lives only for the duration of one epoll_ctl call.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

impl Poller for EpollPoller {
    fn add(&mut self, fd: RawFd, token: Token, interest: Interest) -> io::Result<()> {
        let ev = EpollEvent::new(flags(interest), token.0 as u64);
        Ok(self.epoll.add(borrow(fd), ev)?)
    }

    fn modify(&mut self, fd: RawFd, token: Token, interest: Interest) -> io::Result<()> {
        let mut ev = EpollEvent::new(flags(interest), token.0 as u64);
        Ok(self.epoll.modify(borrow(fd), &mut ev)?)
    }

    fn delete(&mut self, fd: RawFd) -> io::Result<()> {
        Ok(self.epoll.delete(borrow(fd))?)
    }

    fn wait(&mut self, events: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()> {
        events.clear();
        let t = EpollTimeout::try_from(timeout_ms(timeout)).unwrap_or(EpollTimeout::NONE);
        let n = match self.epoll.wait(&mut self.buf, t) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => 0,
            Err(e) => return Err(e.into()),
        };
        let err = EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP | EpollFlags::EPOLLRDHUP;
        for ev in &self.buf[..n] {
            let f = ev.events();
            events.push(Event {
                token: Token(ev.data() as usize),
                readable: f.intersects(EpollFlags::EPOLLIN | err),
                writable: f.intersects(EpollFlags::EPOLLOUT | EpollFlags::EPOLLERR),
            });
        }
        // A full buffer means more may be ready: grow for the next turn.
        if n == self.buf.len() && n < 4096 {
            self.buf.resize(n * 2, EpollEvent::empty());
        }
        Ok(())
    }
}
