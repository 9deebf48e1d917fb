//! Signals turned into readable sockets for the poller: a handler only
//! writes a byte (signal-hook's pipe), the loop reads it and acts.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use signal_hook::consts::{
    SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2,
};

/// What a signal asks of the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Term,
    Int,
    Quit,
    Hup,
    Usr1,
    /// Binary upgrade under prefork; logged and ignored in one process.
    Usr2,
    /// One child more under prefork; logged and ignored in one process.
    Ttin,
    /// One child fewer under prefork; logged and ignored in one process.
    Ttou,
    /// A child process ended (the prefork master reaps it).
    Chld,
}

/// Every signal of DESIGN.md's table: each gets a handler, so none keeps
/// its default action (USR2 would end the process, TTIN/TTOU stop it).
const SIGNALS: [(i32, Signal); 9] = [
    (SIGTERM, Signal::Term),
    (SIGINT, Signal::Int),
    (SIGQUIT, Signal::Quit),
    (SIGHUP, Signal::Hup),
    (SIGUSR1, Signal::Usr1),
    (SIGUSR2, Signal::Usr2),
    (SIGTTIN, Signal::Ttin),
    (SIGTTOU, Signal::Ttou),
    (SIGCHLD, Signal::Chld),
];

/// One socket per signal, so the loop knows which arrived.
pub struct Signals {
    readers: Vec<(UnixStream, Signal)>,
    ids: Vec<signal_hook::SigId>,
    /// The writing ends no handler owns (signals not handled): kept open,
    /// or the readers would see an end of stream on every wait.
    writers: Vec<UnixStream>,
    /// TERM's writing end, shared with every `StopHandle`: writing a byte
    /// there is TERM arriving.
    term: Arc<UnixStream>,
}

impl Signals {
    /// The sockets, with a handler writing to each when `handle` (the
    /// binary); without, only a `StopHandle` writes (a library user keeps
    /// the process's signals to itself).
    pub fn install(handle: bool) -> io::Result<Signals> {
        let mut signals = Signals {
            readers: Vec::new(),
            ids: Vec::new(),
            writers: Vec::new(),
            term: Arc::new(UnixStream::pair()?.0),
        };
        for (num, sig) in SIGNALS {
            let (reader, writer) = UnixStream::pair()?;
            reader.set_nonblocking(true)?;
            if sig == Signal::Term {
                signals.term = Arc::new(writer.try_clone()?);
            }
            match handle {
                true => signals
                    .ids
                    .push(signal_hook::low_level::pipe::register(num, writer)?),
                false => signals.writers.push(writer),
            }
            signals.readers.push((reader, sig));
        }
        Ok(signals)
    }

    /// TERM's writing end, for a `StopHandle`.
    pub fn term_writer(&self) -> Arc<UnixStream> {
        self.term.clone()
    }

    /// The fds to register, with their index.
    pub fn fds(&self) -> impl Iterator<Item = (usize, RawFd)> + '_ {
        self.readers
            .iter()
            .enumerate()
            .map(|(i, (r, _))| (i, r.as_raw_fd()))
    }

    /// Drains the socket at `index`; returns its signal once per arrival.
    pub fn take(&mut self, index: usize) -> Vec<Signal> {
        let Some((reader, sig)) = self.readers.get_mut(index) else {
            return Vec::new();
        };
        let mut buf = [0u8; 16];
        let mut got = Vec::new();
        while let Ok(n @ 1..) = reader.read(&mut buf) {
            got.extend(std::iter::repeat_n(*sig, n));
        }
        got
    }
}

/// Blocks every signal of the table in the calling thread (a master about
/// to fork: the child starts with them pending, not lost to the master's
/// handlers it inherits); returns the mask to restore.
pub fn block_handled() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
    let mut set = SigSet::empty();
    for (num, _) in SIGNALS {
        if let Ok(sig) = nix::sys::signal::Signal::try_from(num) {
            set.add(sig);
        }
    }
    let mut old = SigSet::empty();
    // Cannot fail with a valid `how` and set.
    let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old));
    old
}

/// Puts back a mask [`block_handled`] returned; signals that arrived
/// meanwhile are delivered now, to whatever handlers are installed.
pub fn restore_mask(old: &nix::sys::signal::SigSet) {
    use nix::sys::signal::{pthread_sigmask, SigmaskHow};
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(old), None);
}

impl Signals {
    /// The handlers go (the signals take their default action again).
    pub fn disarm(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        self.disarm();
    }
}
