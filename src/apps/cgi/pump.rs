//! The worker's side of a running script: one poll(2) loop over its
//! stdin, stdout and stderr pipes (nonblocking) and a wake eventfd, so the
//! body goes in while the output comes out (a script that answers before
//! it reads cannot deadlock), on the worker's own thread. The body is read
//! without waiting (`Shared::try_read`); when none is there the loop's
//! next push, or an abort, writes the eventfd.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::EventFd;

use super::process::Pipes;
use super::stderr::Lines;
use crate::protocol::cgi_response::{parse_head, Parsed};
use crate::server::shared::{Input, Shared};
use crate::Response;

/// Bytes moved per read or write.
const CHUNK: usize = 64 * 1024;
/// A response head longer than this is a bad gateway.
const HEAD_LIMIT: usize = 64 * 1024;
/// The longest poll: a missed wakeup costs at most this long.
const POLL_MS: u16 = 1000;
/// Reads of stderr after the script ended: a child it left behind that
/// keeps writing must not hold the worker.
const LAST_STDERR_READS: usize = 16;

/// How the script's output ended.
pub enum Ended {
    /// Its head was good and its stdout is at its end.
    Done,
    /// No good CGI head: the reason, for the log.
    BadHead(String),
}

/// One script's pipes and what is in flight between them and the request.
pub struct Pump<'a> {
    pipes: Pipes,
    wake: &'a EventFd,
    shared: &'a Shared,
    /// Body bytes read, `buf[sent..filled]` not yet in the script's stdin.
    body: Vec<u8>,
    sent: usize,
    filled: usize,
    /// The response head while it is gathered (None once it is out).
    head: Option<Vec<u8>>,
    out: Vec<u8>,
    errors: Lines,
}

#[derive(Default)]
struct Ready {
    wake: bool,
    stdout: bool,
    stderr: bool,
}

impl<'a> Pump<'a> {
    pub fn new(pipes: Pipes, wake: &'a EventFd, shared: &'a Shared, errors: Lines) -> Pump<'a> {
        for fd in [
            pipes.stdin.as_ref().map(AsFd::as_fd),
            pipes.stdout.as_ref().map(AsFd::as_fd),
            pipes.stderr.as_ref().map(AsFd::as_fd),
        ]
        .into_iter()
        .flatten()
        {
            set_nonblocking(fd);
        }
        Pump {
            pipes,
            wake,
            shared,
            body: vec![0; CHUNK],
            sent: 0,
            filled: 0,
            head: Some(Vec::new()),
            out: vec![0; CHUNK],
            errors,
        }
    }

    /// Moves bytes both ways until the script's stdout ends.
    pub fn run(&mut self, resp: &mut Response) -> io::Result<Ended> {
        loop {
            if self.shared.is_aborted() {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "request aborted by the client",
                ));
            }
            self.feed_body()?;
            let ready = self.wait()?;
            if ready.wake {
                let _ = self.wake.read();
            }
            if ready.stderr {
                self.read_stderr(resp)?;
            }
            if ready.stdout {
                if let Some(ended) = self.read_stdout(resp)? {
                    return Ok(ended);
                }
            }
        }
    }

    /// Body bytes into the script's stdin, as far as both sides allow
    /// without waiting; the body's end closes stdin.
    fn feed_body(&mut self) -> io::Result<()> {
        while self.pipes.stdin.is_some() {
            if self.sent == self.filled && !self.read_body()? {
                return Ok(());
            }
            if !self.write_stdin() {
                return Ok(());
            }
        }
        Ok(())
    }

    /// False when no body bytes are there now (the waker is armed).
    fn read_body(&mut self) -> io::Result<bool> {
        (self.sent, self.filled) = (0, 0);
        match self.shared.try_read(Input::Stdin, &mut self.body) {
            Ok(0) => {
                self.pipes.stdin = None;
                Ok(false)
            }
            Ok(n) => {
                self.filled = n;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// False when the pipe is full (or gone: a script that closed its
    /// stdin gets no more of the body, which is discarded).
    fn write_stdin(&mut self) -> bool {
        let Some(stdin) = self.pipes.stdin.as_mut() else {
            return false;
        };
        match stdin.write(&self.body[self.sent..self.filled]) {
            Ok(n) => {
                self.sent += n;
                true
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
            Err(_) => {
                self.close_stdin();
                false
            }
        }
    }

    /// No more body for the script.
    pub fn close_stdin(&mut self) {
        self.pipes.stdin = None;
        (self.sent, self.filled) = (0, 0);
    }

    fn wait(&self) -> io::Result<Ready> {
        let stdin_wanted = self.sent < self.filled;
        let slots: [(Option<BorrowedFd>, PollFlags); 4] = [
            (Some(self.wake.as_fd()), PollFlags::POLLIN),
            (fd_if(&self.pipes.stdin, stdin_wanted), PollFlags::POLLOUT),
            (fd_if(&self.pipes.stdout, true), PollFlags::POLLIN),
            (fd_if(&self.pipes.stderr, true), PollFlags::POLLIN),
        ];
        let mut fds: Vec<PollFd> = Vec::with_capacity(4);
        let mut index = [None; 4];
        for (i, (fd, flags)) in slots.iter().enumerate() {
            if let Some(fd) = fd {
                index[i] = Some(fds.len());
                fds.push(PollFd::new(*fd, *flags));
            }
        }
        match poll(&mut fds, PollTimeout::from(POLL_MS)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        let hit = |i: usize| {
            index[i]
                .and_then(|j| fds[j].revents())
                .is_some_and(|r| !r.is_empty())
        };
        Ok(Ready {
            // A writable stdin (slot 1) is fed by the next turn's feed_body.
            wake: hit(0),
            stdout: hit(2),
            stderr: hit(3),
        })
    }

    /// Some once stdout has ended (or the head is bad).
    fn read_stdout(&mut self, resp: &mut Response) -> io::Result<Option<Ended>> {
        let Some(stdout) = self.pipes.stdout.as_mut() else {
            return Ok(Some(Ended::Done));
        };
        let n = match stdout.read(&mut self.out) {
            Ok(n) => n,
            Err(e) if is_transient(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        if n == 0 {
            self.pipes.stdout = None;
            let ended = match self.head {
                Some(_) => Ended::BadHead("its output ended before a complete header block".into()),
                None => Ended::Done,
            };
            return Ok(Some(ended));
        }
        let Some(head) = self.head.as_mut() else {
            resp.write_all(&self.out[..n])?;
            resp.flush()?;
            return Ok(None);
        };
        head.extend_from_slice(&self.out[..n]);
        self.parse_head(resp)
    }

    /// The head once complete: status and headers set, what follows it
    /// written.
    fn parse_head(&mut self, resp: &mut Response) -> io::Result<Option<Ended>> {
        let Some(bytes) = self.head.as_ref() else {
            return Ok(None);
        };
        let (consumed, head) = match parse_head(bytes, HEAD_LIMIT) {
            Ok(Parsed::Partial) => return Ok(None),
            Ok(Parsed::Complete { consumed, head }) => (consumed, head),
            Err(e) => return Ok(Some(Ended::BadHead(format!("bad header block: {e}")))),
        };
        // RFC 3875 §6.2: at least one header field (a lone blank line
        // is not a head but output that forgot it).
        if consumed <= 2 {
            return Ok(Some(Ended::BadHead(
                "no header block (a blank line first)".into(),
            )));
        }
        resp.set_status(head.status);
        for (name, value) in &head.headers {
            resp.add_header(name, value);
        }
        let rest = bytes[consumed..].to_vec();
        self.head = None;
        resp.write_all(&rest)?;
        resp.flush()?;
        Ok(None)
    }

    fn read_stderr(&mut self, resp: &mut Response) -> io::Result<()> {
        let Some(stderr) = self.pipes.stderr.as_mut() else {
            return Ok(());
        };
        match stderr.read(&mut self.out) {
            Ok(0) => self.pipes.stderr = None,
            Ok(n) => self.errors.feed(&self.out[..n], resp)?,
            Err(e) if is_transient(&e) => {}
            Err(_) => self.pipes.stderr = None,
        }
        Ok(())
    }

    /// The script has ended: what its stderr still holds, then the last
    /// unfinished line.
    pub fn drain_stderr(&mut self, resp: &mut Response) -> io::Result<()> {
        for _ in 0..LAST_STDERR_READS {
            if self.pipes.stderr.is_none() {
                break;
            }
            self.read_stderr_once(resp)?;
        }
        self.pipes.stderr = None;
        self.errors.finish(resp)
    }

    /// One read; a pipe with nothing in it now counts as ended.
    fn read_stderr_once(&mut self, resp: &mut Response) -> io::Result<()> {
        let Some(stderr) = self.pipes.stderr.as_mut() else {
            return Ok(());
        };
        match stderr.read(&mut self.out) {
            Ok(n) if n > 0 => self.errors.feed(&self.out[..n], resp),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            _ => {
                self.pipes.stderr = None;
                Ok(())
            }
        }
    }
}

fn fd_if<T: AsFd>(pipe: &Option<T>, wanted: bool) -> Option<BorrowedFd<'_>> {
    pipe.as_ref().filter(|_| wanted).map(AsFd::as_fd)
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

fn set_nonblocking(fd: BorrowedFd) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_or(OFlag::empty(), OFlag::from_bits_truncate);
    let _ = fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK));
}
