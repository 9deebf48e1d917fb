//! The poll(2) backend: portable and simple, O(registered fds) per wait.
//! It exists so the loop does not depend on epoll, and tests run it too.

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use super::{timeout_ms, Event, Interest, Poller, Token};

/// Readiness through poll(2) over every registered fd.
#[derive(Default)]
pub struct PollPoller {
    regs: HashMap<RawFd, (Token, Interest)>,
    fds: Vec<libc::pollfd>,
}

impl PollPoller {
    pub fn new() -> PollPoller {
        PollPoller::default()
    }
}

fn no_such_fd() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOENT)
}

impl Poller for PollPoller {
    fn add(&mut self, fd: RawFd, token: Token, interest: Interest) -> io::Result<()> {
        if self.regs.insert(fd, (token, interest)).is_some() {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        Ok(())
    }

    fn modify(&mut self, fd: RawFd, token: Token, interest: Interest) -> io::Result<()> {
        let reg = self.regs.get_mut(&fd).ok_or_else(no_such_fd)?;
        *reg = (token, interest);
        Ok(())
    }

    fn delete(&mut self, fd: RawFd) -> io::Result<()> {
        self.regs.remove(&fd).map(drop).ok_or_else(no_such_fd)
    }

    fn wait(&mut self, events: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()> {
        events.clear();
        self.fds.clear();
        for (&fd, &(_, interest)) in &self.regs {
            let mut ev = 0;
            if interest.readable() {
                ev |= libc::POLLIN;
            }
            if interest.writable() {
                ev |= libc::POLLOUT;
            }
            self.fds.push(libc::pollfd {
                fd,
                events: ev,
                revents: 0,
            });
        }
        if poll_fds(&mut self.fds, timeout_ms(timeout))? == 0 {
            return Ok(());
        }
        let err = libc::POLLERR | libc::POLLHUP | libc::POLLNVAL;
        for p in self.fds.iter().filter(|p| p.revents != 0) {
            let Some(&(token, interest)) = self.regs.get(&p.fd) else {
                continue;
            };
            events.push(Event {
                token,
                readable: p.revents & (libc::POLLIN | err) != 0 && interest.readable(),
                writable: p.revents & (libc::POLLOUT | libc::POLLERR) != 0 && interest.writable(),
            });
        }
        Ok(())
    }
}

/// poll(2) on a slice of pollfd; EINTR counts as "nothing ready".
fn poll_fds(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: `fds` is a valid, exclusively borrowed slice of pollfd for the
    // whole call, and its length is passed alongside the pointer.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(0)
        } else {
            Err(e)
        };
    }
    Ok(n as usize)
}
