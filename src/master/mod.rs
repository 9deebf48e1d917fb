//! The prefork master (DESIGN.md, "Prefork"): it binds every listener once
//! (or takes them over), forks `--processes` children that serve the same
//! sockets, and then only supervises. It never serves a request and never
//! starts a thread, so forking stays safe.
//!
//! One small loop over a signal queue, as gunicorn's arbiter: wait for a
//! signal or a child's readiness (a second at most), act on what arrived
//! (`on_signal`), reap the children that ended, then bring the children to
//! their target (`scale`): each step can run again without harm.
//!
//! | signal | the master |
//! |---|---|
//! | TERM, INT | stops every child gracefully, waits for them (up to `--shutdown-timeout`), exits 0; a second INT stops at once |
//! | QUIT | stops every child at once |
//! | HUP | rolling restart: a new child, once it serves, replaces an old one, one by one |
//! | USR1 | reopens its log files, and asks every child to |
//! | USR2 | binary upgrade (`upgrade.rs`): the binary on disk starts with the sockets; once its children serve, this master hands over and stops gracefully; a new binary that fails leaves this one serving |
//! | TTIN / TTOU | one child more / fewer |
//!
//! The loop also polls each child's relay socket (`relay.rs`): a `pubsub`
//! message published in one child is handed to the others, and their
//! counts summed back, so a POST reaches the waiters of every child.
//!
//! A child that dies is replaced; one that dies before it serves (or within
//! a second) makes the next start wait, twice as long each time up to 10 s,
//! so a broken configuration costs no fork storm.

#[allow(unsafe_code)] // fork and _exit; see the file
mod children;
mod relay;
#[allow(unsafe_code)] // fork and _exit; see the file
mod upgrade;

use std::time::{Duration, Instant};

use std::os::fd::AsFd;
use std::sync::Arc;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal as Sig;
use nix::unistd::Pid;

use self::children::{Child, ChildPlan, State};
use self::relay::Hub;
use self::upgrade::{Exe, Upgrade};
use crate::server::notify::{status_line, Notifier};
use crate::server::signals::{Signal, Signals};
use crate::server::{Bound, Error, Scoreboard, ServerBuilder};

/// What the master is asked to keep running.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Children to keep (`--processes`).
    pub processes: usize,
    /// Recycle a child after this many requests (0: never).
    pub max_requests: u64,
    /// How long a graceful stop waits for the children.
    pub shutdown_timeout: Duration,
}

/// The longest start delay after children that keep dying.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A child that ends sooner than this after its start counts as failing.
const EARLY_DEATH: Duration = Duration::from_secs(1);

enum Run {
    Serving,
    /// Every child was asked to stop; past the deadline they are killed.
    Stopping {
        deadline: Instant,
    },
}

/// Runs the master until a signal stops it; `bound` holds the listeners.
pub fn run(
    builder: ServerBuilder,
    bound: Bound,
    plan: Plan,
    notifier: Option<Notifier>,
) -> Result<(), Error> {
    let signals =
        Signals::install(true).map_err(|e| Error::new(format!("signal handlers: {e}")))?;
    // Room for a rolling restart's extra children and a few TTINs.
    let board = Arc::new(Scoreboard::new((plan.processes * 4).max(64))?);
    let mut master = Master {
        builder,
        bound,
        board,
        signals,
        target: plan.processes.max(1),
        children: Vec::new(),
        generation: 0,
        run: Run::Serving,
        failures: 0,
        next_start: Instant::now(),
        plan,
        exe: Exe::of_this_process(),
        upgrade: None,
        successor_ready: crate::server::upgrade::take_ready_pipe(),
        notifier,
        next_status: Instant::now(),
        told_ready: false,
        hub: Hub::default(),
    };
    log::info!("master {}: {} children", std::process::id(), master.target);
    master.serve()
}

struct Master {
    builder: ServerBuilder,
    /// The listeners and the duties at exit (socket files, pidfile).
    bound: Bound,
    /// Every child's counters, made before the first fork.
    board: Arc<Scoreboard>,
    signals: Signals,
    target: usize,
    children: Vec<Child>,
    /// Bumped by HUP: older children are replaced one by one.
    generation: u64,
    run: Run,
    /// Children that died early in a row: the start backoff's exponent.
    failures: u32,
    /// No child is started before this (backoff).
    next_start: Instant,
    plan: Plan,
    /// This binary and its arguments, to start again on USR2.
    exe: Option<Exe>,
    /// A new binary started by USR2, not serving yet.
    upgrade: Option<Upgrade>,
    /// Started by an older master's USR2: told once the children serve.
    successor_ready: Option<std::os::fd::OwnedFd>,
    /// systemd (`NOTIFY_SOCKET`): told READY=1 once every child serves,
    /// a STATUS= line now and then, STOPPING=1 at a stop.
    notifier: Option<Notifier>,
    next_status: Instant,
    told_ready: bool,
    /// `pubsub` messages relayed between the children.
    hub: Hub,
}

impl Master {
    fn serve(&mut self) -> Result<(), Error> {
        loop {
            self.wait();
            self.reap();
            if let Run::Stopping { deadline } = self.run {
                if self.children.is_empty() {
                    log::info!("master {}: stopped", std::process::id());
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    self.kill_all();
                }
                continue;
            }
            self.check_upgrade_deadline();
            self.report_status();
            self.scale();
        }
    }

    /// A STATUS= line for systemd every few seconds.
    fn report_status(&mut self) {
        let Some(n) = &self.notifier else { return };
        if Instant::now() < self.next_status {
            return;
        }
        self.next_status = Instant::now() + crate::server::notify::STATUS_INTERVAL;
        let t = self.board.totals();
        let (total, idle) = (load(&t.threads_total), load(&t.threads_idle));
        let line = status_line(load(&t.requests), total.saturating_sub(idle), total, {
            self.children.len() as u64
        });
        let _ = n.status(&line);
    }

    fn check_upgrade_deadline(&mut self) {
        let Some(u) = &self.upgrade else { return };
        if Instant::now() < u.deadline {
            return;
        }
        let pid = u.pid;
        let _ = nix::sys::signal::kill(pid, Sig::SIGTERM);
        self.upgrade_failed("its children did not serve within 30 s; it was stopped");
    }

    /// Waits (a second at most, less while a start is delayed) for a
    /// signal or a child's readiness, and handles what came.
    fn wait(&mut self) {
        let now = Instant::now();
        let mut timeout = self.next_start.saturating_duration_since(now);
        if let Some(d) = self.hub.next_deadline() {
            timeout = timeout.min(d.saturating_duration_since(now));
        }
        let timeout = timeout.clamp(Duration::from_millis(10), Duration::from_secs(1));
        let signal_fds: Vec<_> = self.signals.fds().collect();
        let ready = {
            let mut fds: Vec<PollFd<'_>> = signal_fds
                .iter()
                .map(|(_, fd)| PollFd::new(borrow(*fd), PollFlags::POLLIN))
                .collect();
            let starting: Vec<usize> = (0..self.children.len())
                .filter(|&i| self.children[i].ready_fd().is_some())
                .collect();
            for &i in &starting {
                if let Some(fd) = self.children[i].ready_fd() {
                    fds.push(PollFd::new(fd, PollFlags::POLLIN));
                }
            }
            let upgrade_at = self.upgrade.as_ref().map(|u| {
                fds.push(PollFd::new(u.ready.as_fd(), PollFlags::POLLIN));
                fds.len() - 1
            });
            let relays: Vec<(usize, usize)> = self
                .children
                .iter()
                .enumerate()
                .filter_map(|(i, c)| {
                    let link = c.relay.as_ref()?;
                    fds.push(PollFd::new(link.fd(), PollFlags::POLLIN));
                    Some((i, fds.len() - 1))
                })
                .collect();
            let ms = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
            let _ = poll(&mut fds, ms);
            let fired: Vec<bool> = fds
                .iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            (fired, starting, upgrade_at, relays)
        };
        let (fired, starting, upgrade_at, relays) = ready;
        for (k, (index, _)) in signal_fds.iter().enumerate() {
            if fired[k] {
                for sig in self.signals.take(*index) {
                    self.on_signal(sig);
                }
            }
        }
        for (k, &i) in starting.iter().enumerate() {
            if fired[signal_fds.len() + k] {
                self.on_ready(i);
            }
        }
        if upgrade_at.is_some_and(|k| fired[k]) {
            self.on_upgrade_pipe();
        }
        for (i, k) in relays {
            if fired[k] {
                self.hub.on_readable(&mut self.children, i);
            }
        }
        self.hub.expire(&mut self.children);
    }

    /// A byte: the new master serves; an end of stream: it died.
    fn on_upgrade_pipe(&mut self) {
        let Some(u) = &self.upgrade else { return };
        let mut byte = [0u8; 1];
        match nix::unistd::read(&u.ready, &mut byte) {
            Ok(1) => self.upgrade_done(),
            _ => self.upgrade_failed("it ended before its children served"),
        }
    }

    fn on_ready(&mut self, i: usize) {
        let Some(child) = self.children.get_mut(i) else {
            return;
        };
        if child.check_ready() {
            self.failures = 0;
            log::info!("child {} serves", child.pid);
        }
        self.tell_predecessor();
    }

    /// A new master started by USR2 tells the old one, once all its
    /// children serve, that it may go.
    fn tell_predecessor(&mut self) {
        let serving = self
            .children
            .iter()
            .filter(|c| c.state == State::Serving)
            .count();
        if serving < self.target {
            return;
        }
        if !self.told_ready {
            self.told_ready = true;
            if let Some(n) = &self.notifier {
                let _ = n.ready(None);
            }
        }
        if let Some(pipe) = self.successor_ready.take() {
            let _ = std::io::Write::write_all(&mut std::fs::File::from(pipe), &[1]);
            log::info!("serving: the old master may stop");
        }
    }

    /// USR2: the binary on disk starts with our sockets.
    fn start_upgrade(&mut self) {
        if self.upgrade.is_some() {
            return log::warn!("USR2: an upgrade is already under way");
        }
        let Some(exe) = &self.exe else {
            return log::error!("USR2: the path of this binary is unknown; no upgrade");
        };
        match upgrade::start(exe, &self.bound.raw_fds()) {
            Ok(u) => {
                log::info!("USR2: new master {} started", u.pid);
                self.upgrade = Some(u);
            }
            Err(e) => log::error!("USR2: no upgrade: {e}"),
        }
    }

    /// The new master said it serves: hand over and stop gracefully.
    fn upgrade_done(&mut self) {
        if let Some(u) = self.upgrade.take() {
            log::info!("USR2: new master {} serves; stopping this one", u.pid);
        }
        self.bound.hand_over();
        self.stop_all();
    }

    /// The new binary failed: keep serving, and say why.
    fn upgrade_failed(&mut self, why: &str) {
        if let Some(u) = self.upgrade.take() {
            log::error!(
                "USR2: the new master {} failed ({why}); still serving",
                u.pid
            );
        }
    }

    fn on_signal(&mut self, sig: Signal) {
        match (sig, &self.run) {
            (Signal::Term | Signal::Int, Run::Serving) => self.stop_all(),
            (Signal::Int, Run::Stopping { .. }) | (Signal::Quit, _) => self.quit_all(),
            (Signal::Hup, Run::Serving) => self.rolling_restart(),
            (Signal::Usr1, _) => self.reopen_logs(),
            (Signal::Ttin, Run::Serving) => self.change_target(1),
            (Signal::Ttou, Run::Serving) => self.change_target(-1),
            (Signal::Usr2, Run::Serving) => self.start_upgrade(),
            _ => {}
        }
    }

    fn stop_all(&mut self) {
        if let Some(n) = &self.notifier {
            let _ = n.stopping();
        }
        log::info!(
            "graceful stop: {} children, waiting up to {:?}",
            self.children.len(),
            self.plan.shutdown_timeout
        );
        for c in &mut self.children {
            c.stop();
        }
        let grace = self.plan.shutdown_timeout + Duration::from_secs(1);
        self.run = Run::Stopping {
            deadline: Instant::now() + grace,
        };
    }

    fn quit_all(&mut self) {
        log::info!("stopping now");
        for c in &self.children {
            c.signal(Sig::SIGQUIT);
        }
        self.run = Run::Stopping {
            deadline: Instant::now() + Duration::from_secs(2),
        };
    }

    fn kill_all(&mut self) {
        for c in &self.children {
            log::warn!("child {} still running past the stop: killed", c.pid);
            c.signal(Sig::SIGKILL);
        }
    }

    fn rolling_restart(&mut self) {
        self.generation += 1;
        log::info!(
            "HUP: restarting {} children one by one",
            self.children.len()
        );
    }

    fn reopen_logs(&mut self) {
        crate::logfile::reopen_all();
        for c in &self.children {
            c.signal(Sig::SIGUSR1);
        }
        log::info!("USR1: log files reopened");
    }

    fn change_target(&mut self, by: isize) {
        self.target = self.target.saturating_add_signed(by).max(1);
        log::info!("{} children from now on", self.target);
    }

    /// Forgets the children that ended, noting early deaths.
    fn reap(&mut self) {
        for ended in children::reap() {
            if self.upgrade.as_ref().is_some_and(|u| u.pid == ended.pid) {
                self.upgrade_failed(&ended.status);
                continue;
            }
            let Some(at) = self.children.iter().position(|c| c.pid == ended.pid) else {
                continue;
            };
            let child = self.children.swap_remove(at);
            self.board.release(child.slot);
            self.hub.forget(&mut self.children, child.pid);
            self.note_end(&child, &ended.status);
        }
    }

    fn note_end(&mut self, child: &Child, status: &str) {
        if child.state == State::Stopping {
            log::info!("child {} ended ({status})", child.pid);
            return;
        }
        let early = child.state == State::Starting || child.started_at.elapsed() < EARLY_DEATH;
        if !early {
            log::warn!("child {} died ({status}); starting another", child.pid);
            return;
        }
        self.failures = self.failures.saturating_add(1);
        let delay = backoff(self.failures);
        self.next_start = Instant::now() + delay;
        log::error!(
            "child {} ended at start ({status}); next start in {} ms",
            child.pid,
            delay.as_millis()
        );
    }

    /// Brings the children to the target: starts missing ones (not before
    /// the backoff allows), replaces one of an older generation once its
    /// successor serves, stops extra ones.
    fn scale(&mut self) {
        let current = |c: &&Child| c.state != State::Stopping && c.generation == self.generation;
        let live = self.children.iter().filter(current).count();
        let serving = self
            .children
            .iter()
            .filter(current)
            .filter(|c| c.state == State::Serving)
            .count();
        if live < self.target && Instant::now() >= self.next_start {
            self.start_child();
        } else if live > self.target {
            self.stop_newest();
        }
        if serving > 0 {
            self.retire_one_old(serving);
        }
    }

    /// An old child stops for each new one that serves beyond those that
    /// already replaced one.
    fn retire_one_old(&mut self, serving: usize) {
        let generation = self.generation;
        let old_running = self
            .children
            .iter()
            .filter(|c| c.generation < generation && c.state != State::Stopping)
            .count();
        let needed = self.target.saturating_sub(serving);
        if old_running > needed {
            if let Some(old) = self
                .children
                .iter_mut()
                .find(|c| c.generation < generation && c.state != State::Stopping)
            {
                log::info!("child {} replaced", old.pid);
                old.stop();
            }
        }
    }

    fn stop_newest(&mut self) {
        let generation = self.generation;
        if let Some(c) = self
            .children
            .iter_mut()
            .filter(|c| c.state != State::Stopping && c.generation == generation)
            .max_by_key(|c| c.started_at)
        {
            log::info!("child {} stopped (one fewer)", c.pid);
            c.stop();
        }
    }

    fn start_child(&mut self) {
        let Some(slot) = self.board.vacant() else {
            log::error!("no room on the scoreboard for another child");
            self.next_start = Instant::now() + MAX_BACKOFF;
            return;
        };
        let master = Pid::this();
        let signals = &mut self.signals;
        let mut before = || signals.disarm();
        let plan = ChildPlan {
            builder: &mut self.builder,
            bound: &self.bound,
            board: &self.board,
            slot,
            master,
            max_requests: self.plan.max_requests,
            before: &mut before,
            inherited: self
                .children
                .iter()
                .filter_map(|c| Some(c.relay.as_ref()?.raw_fd()))
                .collect(),
        };
        match children::spawn(plan, self.generation) {
            Ok(child) => {
                log::info!("child {} started", child.pid);
                self.children.push(child);
            }
            Err(e) => {
                log::error!("cannot start a child: {e}");
                self.failures = self.failures.saturating_add(1);
                self.next_start = Instant::now() + backoff(self.failures);
            }
        }
    }
}

fn load(n: &std::sync::atomic::AtomicU64) -> u64 {
    n.load(std::sync::atomic::Ordering::Relaxed)
}

/// 100 ms, doubling with each failure in a row, at most 10 s.
fn backoff(failures: u32) -> Duration {
    let ms = 100u64.saturating_mul(1 << failures.min(10));
    Duration::from_millis(ms).min(MAX_BACKOFF)
}

/// A borrowed fd from a raw one the signal sockets own for the master's
/// whole life.
#[allow(unsafe_code)]
fn borrow(fd: std::os::fd::RawFd) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: the fd belongs to `Signals`, which lives as long as the
    // master's loop that polls it; the borrow never outlives one poll.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_ten_seconds() {
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(3), Duration::from_millis(800));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }
}
