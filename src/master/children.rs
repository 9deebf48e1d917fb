//! The master's children: forking one (the child side never returns),
//! knowing when it serves (a byte on a pipe once its loop is built), and
//! reaping the ones that ended. Each child gets its end of a relay socket
//! (`relay.rs`) for `pubsub` across children.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, SigSet, Signal as Sig};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, pipe2, ForkResult, Pid};

use std::sync::Arc;

use super::relay::Link;
use crate::server::{signals, Bound, Error, Scoreboard, ServerBuilder};

/// Where a child is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Forked; its server is not built yet.
    Starting,
    Serving,
    /// Asked to stop; it finishes what it serves, then exits.
    Stopping,
}

/// One child process.
pub struct Child {
    pub pid: Pid,
    /// Its block on the scoreboard, released once it is reaped.
    pub slot: usize,
    /// Children of an older generation are replaced by a rolling restart.
    pub generation: u64,
    pub started_at: Instant,
    pub state: State,
    /// The child writes a byte here once it serves.
    ready: Option<OwnedFd>,
    /// The master's end of its relay; None once broken.
    pub relay: Option<Link>,
}

impl Child {
    /// The pipe to watch while it starts.
    pub fn ready_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.ready.as_ref().map(|f| f.as_fd())
    }

    /// Reads the readiness pipe: true once the child said it serves.
    pub fn check_ready(&mut self) -> bool {
        let Some(fd) = self.ready.take() else {
            return self.state == State::Serving;
        };
        let mut byte = [0u8; 1];
        let mut file = std::fs::File::from(fd);
        if matches!(file.read(&mut byte), Ok(1)) {
            if self.state == State::Starting {
                self.state = State::Serving;
            }
            return true;
        }
        // End of stream without a byte: it died before serving (the
        // reaper will see it).
        false
    }

    /// Sends `sig`; a child already gone is no error.
    pub fn signal(&self, sig: Sig) {
        let _ = kill(self.pid, sig);
    }

    /// Asks it to stop gracefully.
    pub fn stop(&mut self) {
        self.signal(Sig::SIGTERM);
        self.state = State::Stopping;
    }
}

/// What the child runs after the fork: its own server on copies of the
/// master's sockets. Never returns.
pub struct ChildPlan<'a> {
    pub builder: &'a mut ServerBuilder,
    pub bound: &'a Bound,
    /// Where every child counts, and the slot this one takes.
    pub board: &'a Arc<Scoreboard>,
    pub slot: usize,
    pub master: Pid,
    /// Recycle after this many requests (0: never).
    pub max_requests: u64,
    /// Run in the child before its server starts (drops the master's
    /// signal handlers).
    pub before: &'a mut dyn FnMut(),
    /// The master's ends of the other children's relays: closed in the
    /// child.
    pub inherited: Vec<RawFd>,
}

/// Forks a child; in the parent, its record (its slot claimed).
pub fn spawn(plan: ChildPlan<'_>, generation: u64) -> Result<Child, Error> {
    let (ready_r, ready_w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::new(format!("pipe for a child: {e}")))?;
    let (relay_master, relay_child) =
        UnixStream::pair().map_err(|e| Error::new(format!("relay for a child: {e}")))?;
    let link = Link::new(relay_master).map_err(|e| Error::new(format!("relay: {e}")))?;
    // The child keeps the signals blocked until its own handlers are in:
    // a TERM (its master's, or the kernel's when the master dies) that
    // came before would go to the master's handlers it inherits, and be
    // lost, or be ignored once they are disarmed.
    let mask = signals::block_handled();
    // SAFETY: the master runs no other thread (it never starts a server
    // of its own), so the child is a whole copy of a single-threaded
    // process and may do anything.
    let forked = unsafe { fork() };
    if !matches!(forked, Ok(ForkResult::Child)) {
        signals::restore_mask(&mask);
    }
    match forked.map_err(|e| Error::new(format!("fork: {e}")))? {
        ForkResult::Child => {
            drop(ready_r);
            drop(link);
            child_main(plan, ready_w, relay_child, mask)
        }
        ForkResult::Parent { child } => {
            plan.board.claim(plan.slot, child.as_raw() as u32);
            Ok(Child {
                pid: child,
                slot: plan.slot,
                generation,
                started_at: Instant::now(),
                state: State::Starting,
                ready: Some(ready_r),
                relay: Some(link),
            })
        }
    }
}

fn child_main(plan: ChildPlan<'_>, ready: OwnedFd, relay: UnixStream, mask: SigSet) -> ! {
    let serving = || serve(plan, ready, relay, &mask);
    let code =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(serving)).unwrap_or_else(|_| {
            log::error!("child {}: panicked", std::process::id());
            1
        });
    // SAFETY: ends this process at once, skipping the destructors of the
    // master's state this copy still holds (they are the master's).
    unsafe { nix::libc::_exit(code) }
}

/// The child's life: exits with the master, builds and runs its server.
fn serve(plan: ChildPlan<'_>, ready: OwnedFd, relay: UnixStream, mask: &SigSet) -> i32 {
    die_with_master(plan.master);
    (plan.before)();
    for &fd in &plan.inherited {
        // SAFETY: `fd` is the master's end of another child's relay; this
        // copy of the master never uses it (the `Link` that owns it is
        // never dropped here: the child ends with `_exit`).
        unsafe { nix::libc::close(fd) };
    }
    if let Err(e) = plan
        .builder
        .use_scoreboard_slot(Arc::clone(plan.board), plan.slot)
    {
        return fail(&e);
    }
    let bound = match plan.bound.for_child() {
        Ok(b) => b,
        Err(e) => return fail(&e),
    };
    let server = match plan.builder.start(bound) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    // Its handlers are in: what arrived since the fork is acted on now.
    signals::restore_mask(mask);
    if let Err(e) = crate::server::relay::install(relay, server.loop_handle()) {
        log::warn!("child {}: no relay ({e})", std::process::id());
    }
    let _ = std::io::Write::write_all(&mut std::fs::File::from(ready), &[1]);
    if plan.max_requests > 0 {
        recycle_after(&server, plan.max_requests);
    }
    match server.run() {
        Ok(()) => 0,
        Err(e) => fail(&e),
    }
}

fn fail(e: &Error) -> i32 {
    log::error!("child {}: {e}", std::process::id());
    1
}

/// The kernel sends TERM when the master dies; a master already gone
/// before that was set means exit now.
fn die_with_master(master: Pid) {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and has
    // no pointer argument.
    unsafe {
        nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGTERM);
    }
    if nix::unistd::getppid() != master {
        // SAFETY: as in `child_main`.
        unsafe { nix::libc::_exit(0) }
    }
}

/// Stops the server gracefully once it answered `max` requests; the
/// master starts a successor.
fn recycle_after(server: &crate::server::Server, max: u64) {
    let stats = server.stats();
    let stop = server.stop_handle();
    let handle = server.loop_handle();
    check_requests(handle, stats, stop, max);
}

fn check_requests(
    handle: crate::server::LoopHandle,
    stats: crate::server::StatsHandle,
    stop: crate::server::StopHandle,
    max: u64,
) {
    let next = handle.clone();
    handle.after(Duration::from_millis(200), move || {
        let served = stats.requests.load(std::sync::atomic::Ordering::Relaxed);
        if served >= max {
            log::info!(
                "child {}: {served} requests served, recycling",
                std::process::id()
            );
            stop.stop();
        } else {
            check_requests(next, stats, stop, max);
        }
    });
}

/// A child that ended, and how.
pub struct Ended {
    pub pid: Pid,
    pub status: String,
}

/// Every child that ended since the last call (any process of ours: the
/// caller ignores pids it does not know).
pub fn reap() -> Vec<Ended> {
    let mut ended = Vec::new();
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => ended.push(Ended {
                pid,
                status: format!("exit {code}"),
            }),
            Ok(WaitStatus::Signaled(pid, sig, _)) => ended.push(Ended {
                pid,
                status: format!("killed by {sig:?}"),
            }),
            Ok(WaitStatus::StillAlive) | Err(_) => return ended,
            Ok(_) => {}
        }
    }
}
