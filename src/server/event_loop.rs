//! The event loop: one thread that owns every socket.
//!
//! One [`EventLoop::turn`]: wait for readiness until the nearest deadline →
//! accept and read (requests go to the pool as soon as their head is
//! complete) → apply worker messages (one drain per wakeup, however many
//! arrived) → expire deadlines → write what each touched connection has
//! pending, once. Writing last means a batch of completions for one
//! connection leaves in one write.

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::conn::{CloseReason, Conn, ConnState};
use super::context::Ctx;
use super::listener::Listener;
use super::message::{Message, Task};
use super::notify::Reporter;
use super::peer_filter::{PeerFilter, Refused};
use super::poller::{Event, Interest, Poller, Token};
use super::refused_peers::RefusedPeers;
use super::scoreboard::SlotState;
use super::shared::Shared;
use super::signals::{Signal, Signals};
use super::slab::Slab;
use super::stats::{bump, drop_one, StatsHandle};
use super::timer::{Callbacks, Entry, Timers};
use super::waker::Waker;

const WAKER: Token = Token(usize::MAX);
const SIGNAL_BASE: usize = usize::MAX - 16;
const LISTENER_BASE: usize = usize::MAX - 1024;
/// Size of the shared read buffer.
const SCRATCH: usize = 64 * 1024;
/// Accepting pauses this long after the process ran out of fds.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How listeners are watched: prefork children share them, and each new
/// connection wakes one child, not all (no thundering herd).
/// (`FASTGATE_ACCEPT_HERD=1`, a benchmark switch, turns that off to
/// measure what it saves.)
fn listening() -> Interest {
    match std::env::var_os("FASTGATE_ACCEPT_HERD") {
        Some(_) => Interest::READ,
        None => Interest::READ.exclusive(),
    }
}

/// At a graceful stop, how long a connection accepted just before has to
/// send its first request.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// Rounds of held output (256 KiB each) one connection may write a turn.
const RELEASE_ROUNDS: usize = 8;
/// A closure or async handler that holds the loop longer than this is
/// logged: every connection waited for it.
pub const SLOW_ON_LOOP: Duration = Duration::from_millis(50);

/// Where the process is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Run {
    Serving,
    /// Graceful stop: finish requests in flight until the deadline.
    Draining {
        deadline: Instant,
    },
    Done,
}

pub struct EventLoop {
    poller: Box<dyn Poller>,
    listeners: Vec<Option<Listener>>,
    accepting: bool,
    accept_resume: Option<Instant>,
    /// Accepting failed for want of fds and the backlog has not been
    /// drained since: one episode, logged at its start and end.
    accept_starved: bool,
    conns: Slab,
    timers: Timers,
    /// Closures due later (`LoopHandle::after`).
    callbacks: Callbacks,
    ctx: Ctx,
    rx: Receiver<Message>,
    waker: Arc<Waker>,
    signals: Signals,
    shutdown_timeout: Duration,
    filter: PeerFilter,
    /// Refused peers and when each was last logged.
    refused: RefusedPeers,
    run: Run,
    scratch: Vec<u8>,
    events: Vec<Event>,
    touched: Vec<Token>,
    /// systemd's notify socket, when the process reports to it.
    notify: Option<Reporter>,
}

fn listener_token(i: usize) -> Token {
    Token(LISTENER_BASE + i)
}

impl EventLoop {
    pub fn new(
        listeners: Vec<Listener>,
        ctx: Ctx,
        rx: Receiver<Message>,
        waker: Arc<Waker>,
        shutdown_timeout: Duration,
        filter: PeerFilter,
        handle_signals: bool,
    ) -> io::Result<EventLoop> {
        let mut poller = super::poller::new_poller()?;
        poller.add(waker.raw_fd(), WAKER, Interest::READ)?;
        for (i, l) in listeners.iter().enumerate() {
            poller.add(l.raw_fd(), listener_token(i), listening())?;
        }
        let signals = Signals::install(handle_signals)?;
        for (i, fd) in signals.fds() {
            poller.add(fd, Token(SIGNAL_BASE + i), Interest::READ)?;
        }
        Ok(EventLoop {
            poller,
            listeners: listeners.into_iter().map(Some).collect(),
            accepting: true,
            accept_resume: None,
            accept_starved: false,
            conns: Slab::default(),
            timers: Timers::default(),
            callbacks: Callbacks::default(),
            ctx,
            rx,
            waker,
            signals,
            shutdown_timeout,
            filter,
            refused: RefusedPeers::default(),
            run: Run::Serving,
            scratch: vec![0; SCRATCH],
            events: Vec::with_capacity(256),
            touched: Vec::new(),
            notify: None,
        })
    }

    /// The process-wide counters.
    pub fn stats(&self) -> StatsHandle {
        self.ctx.stats.clone()
    }

    /// Runs closures on this loop from any thread.
    pub fn loop_handle(&self) -> super::message::LoopHandle {
        super::message::LoopHandle::new(self.ctx.sender.clone())
    }

    /// Where a `StopHandle` writes: TERM's own socket, so a stop asked
    /// by another thread takes the path a TERM takes.
    pub fn term_writer(&self) -> Arc<std::os::unix::net::UnixStream> {
        self.signals.term_writer()
    }

    /// Reports to systemd while running (`READY=1`, `STATUS=`, `STOPPING=1`).
    pub fn report_to(&mut self, reporter: Reporter) {
        self.notify = Some(reporter);
    }

    /// Runs until a signal stops the process.
    pub fn run(&mut self) -> io::Result<()> {
        if let Some(n) = self.notify.as_mut() {
            n.ready();
        }
        // A prefork child's slot on the scoreboard says so (else a no-op).
        self.ctx.stats.set_state(SlotState::Serving);
        let ran = self.run_turns();
        self.ctx.stats.set_state(SlotState::Stopping);
        ran
    }

    fn run_turns(&mut self) -> io::Result<()> {
        while self.run != Run::Done {
            self.turn()?;
        }
        Ok(())
    }

    /// One wait and everything it made ready.
    pub fn turn(&mut self) -> io::Result<()> {
        let timeout = self.next_timeout();
        let mut events = std::mem::take(&mut self.events);
        self.poller.wait(&mut events, timeout)?;
        self.ctx.now = Instant::now();
        for ev in &events {
            self.dispatch(*ev);
        }
        self.events = events;
        self.drain_messages();
        self.expire_timers();
        // The turn's jobs go to the workers in one batch, before the
        // writes, so on another CPU they run while the loop writes.
        self.ctx.pool.wake();
        self.flush_touched();
        if let Some(log) = self.ctx.access_log.as_mut() {
            log.flush();
        }
        self.check_stop();
        Ok(())
    }

    fn next_timeout(&self) -> Option<Duration> {
        let mut next = self.timers.next();
        let grow = self.ctx.pool.next_check();
        // Closures due later, and the next status line for systemd.
        let status = self.notify.as_ref().map(Reporter::next);
        let later = [self.callbacks.next(), status].into_iter().flatten().min();
        for t in [self.accept_resume, self.drain_deadline(), grow, later]
            .into_iter()
            .flatten()
        {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        next.map(|t| t.saturating_duration_since(Instant::now()))
    }

    fn drain_deadline(&self) -> Option<Instant> {
        match self.run {
            Run::Draining { deadline } => Some(deadline),
            _ => None,
        }
    }

    fn dispatch(&mut self, ev: Event) {
        match ev.token {
            WAKER => {}
            Token(t) if t >= SIGNAL_BASE => self.on_signal(t - SIGNAL_BASE),
            Token(t) if t >= LISTENER_BASE => self.accept(t - LISTENER_BASE),
            token => self.on_conn_event(token, ev),
        }
    }

    fn on_conn_event(&mut self, token: Token, ev: Event) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if ev.readable && conn.state == ConnState::Open && !conn.interest.readable() {
            // Not asked to read (an unread body paused it), yet reported:
            // a hang-up or an error, which would be reported again on
            // every wait unless acted on now.
            return match conn.on_hangup_while_paused(&mut self.ctx) {
                Ok(()) => self.touch(token),
                Err(reason) => self.close(token, reason),
            };
        }
        if let (true, ConnState::Lingering { .. }) = (ev.readable, conn.state) {
            return match conn.discard(&mut self.scratch) {
                Ok(()) => {}
                Err(_) => self.close(token, CloseReason::PeerClosed),
            };
        }
        let result = if ev.readable && conn.state == ConnState::Open {
            // A bug in one connection's handling must not take the others
            // down: a panic closes that connection alone.
            let (ctx, scratch) = (&mut self.ctx, &mut self.scratch);
            guarded(|| conn.on_readable(ctx, scratch))
        } else {
            Ok(())
        };
        match result {
            Ok(()) => self.touch(token),
            Err(reason) => self.close(token, reason),
        }
    }

    /// Marks a connection for the end-of-turn flush (once per turn).
    fn touch(&mut self, token: Token) {
        if let Some(conn) = self.conns.get_mut(token) {
            if !std::mem::replace(&mut conn.touched, true) {
                self.touched.push(token);
            }
        }
    }

    // ---- accepting ----

    fn accept(&mut self, index: usize) {
        bump(&self.ctx.stats.accept_wakeups);
        for _ in 0..64 {
            if !self.accepting || self.conns.len() >= self.ctx.limits.max_conns {
                self.set_accepting(false);
                return;
            }
            let Some(Some(listener)) = self.listeners.get(index) else {
                return;
            };
            let protocol = listener.spec.protocol;
            match listener.accept() {
                Ok(Some(stream)) => self.add_conn(stream, protocol),
                Ok(None) => return self.accept_drained(),
                Err(e) => return self.accept_failed(&e),
            }
        }
    }

    /// Out of fds (or memory), accepting pauses and is retried every
    /// [`ACCEPT_BACKOFF`]; the episode is logged once, at its start and
    /// at its end, not at every retry.
    fn accept_failed(&mut self, e: &io::Error) {
        let out_of_fds = matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        );
        if !out_of_fds {
            return self
                .ctx
                .warn_client(&"listener", &format_args!("accept: {e}"));
        }
        if !std::mem::replace(&mut self.accept_starved, true) {
            log::warn!("accept: {e}; accepting pauses until connections close");
        }
        self.set_accepting(false);
        self.accept_resume = Some(self.ctx.now + ACCEPT_BACKOFF);
    }

    /// Nothing left to accept: an out-of-fds episode is over. Not at the
    /// first success: while the backlog still holds connections, each
    /// freed fd is taken at once and the next accept fails again, and
    /// that is the same episode (logged as one, not once per fd freed).
    fn accept_drained(&mut self) {
        if std::mem::replace(&mut self.accept_starved, false) {
            log::warn!("accept: accepting again, the backlog is drained");
        }
    }

    fn add_conn(&mut self, stream: super::listener::Stream, protocol: crate::spec::Protocol) {
        // Checked before the connection is watched: a refused one is
        // closed with nothing read from it.
        if let Err(refused) = self.filter.check(&stream) {
            return self.refuse(&stream, refused);
        }
        let id = self.conns.next_id();
        let fd = stream.raw_fd();
        if let Err(e) = self.poller.add(fd, id.token, Interest::READ) {
            log::error!("cannot watch a new connection: {e}");
            return;
        }
        self.conns
            .insert(Conn::new(stream, id, protocol, &self.ctx));
        bump(&self.ctx.stats.accepted_conns);
        bump(&self.ctx.stats.active_conns);
        self.touch(id.token);
    }

    /// Logs a refusal, once a minute per peer (`RefusedPeers`); each one
    /// counts as a protocol error, logged or not. The caller drops the
    /// stream, closing it.
    fn refuse(&mut self, stream: &super::listener::Stream, refused: Refused) {
        let Refused { key, why } = refused;
        let logged = match key {
            Some(key) => self.refused.note(self.ctx.now, key),
            None => Some(0),
        };
        match logged {
            None => bump(&self.ctx.stats.protocol_errors),
            Some(0) => self
                .ctx
                .warn_client(&stream.peer(), &format_args!("refused: {why}")),
            Some(n) => self.ctx.warn_client(
                &stream.peer(),
                &format_args!(
                    "refused: {why} ({n} refusals of this peer since its last line not logged)"
                ),
            ),
        }
    }

    fn set_accepting(&mut self, on: bool) {
        if self.accepting == on {
            return;
        }
        self.accepting = on;
        // An exclusive registration cannot be modified: it comes and goes.
        for (i, l) in self.listeners.iter().enumerate() {
            let Some(l) = l else { continue };
            let _ = match on {
                true => self.poller.add(l.raw_fd(), listener_token(i), listening()),
                false => self.poller.delete(l.raw_fd()),
            };
        }
    }

    // ---- worker messages ----

    fn drain_messages(&mut self) {
        // Reset before draining: a message sent after this point wakes us.
        self.waker.reset();
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                Message::Output {
                    req,
                    head,
                    body,
                    end,
                    spare,
                } => {
                    if let Some(params) = spare {
                        self.ctx.recycle_params(params);
                    }
                    let Some(conn) = self.conns.get_id(req.conn) else {
                        continue;
                    };
                    let ctx = &mut self.ctx;
                    let applied = guarded(|| conn.on_output(ctx, req, head, body, end));
                    match applied {
                        Ok(()) => self.touch(req.conn.token),
                        Err(reason) => self.close(req.conn.token, reason),
                    }
                }
                Message::Stderr { shared, bytes } => self.stderr(&shared, &bytes),
                Message::Resume { req } => self.resume(req.conn),
                Message::Run(task) => self.run_task(task),
                Message::After { id, when, task } => self.callbacks.push(id, when, task),
                Message::Cancel { id } => self.callbacks.cancel(id),
            }
        }
    }

    /// Runs a posted closure; a panic in it is logged, never the loop's end.
    fn run_task(&mut self, task: Task) {
        let started = Instant::now();
        if catch_unwind(AssertUnwindSafe(task)).is_err() {
            log::error!("a closure posted to the loop panicked");
        }
        let took = started.elapsed();
        if took > SLOW_ON_LOOP {
            let what = format_args!("a closure posted to the loop ran {} ms", took.as_millis());
            self.ctx.warn_slow_on_loop(&what);
        }
    }

    fn stderr(&mut self, shared: &Arc<Shared>, bytes: &[u8]) {
        let written = match self.conns.get_id(shared.req.conn) {
            Some(conn) => conn.on_stderr(shared, bytes),
            None => false,
        };
        match written {
            true => self.touch(shared.req.conn.token),
            false => shared.release_output(bytes.len()),
        }
    }

    fn resume(&mut self, id: super::message::ConnId) {
        let Some(conn) = self.conns.get_id(id) else {
            return;
        };
        conn.on_resume();
        let ctx = &mut self.ctx;
        match guarded(|| conn.process_pending(ctx)) {
            Ok(()) => self.touch(id.token),
            Err(reason) => self.close(id.token, reason),
        }
    }

    // ---- deadlines ----

    fn expire_timers(&mut self) {
        let now = self.ctx.now;
        self.ctx.pool.maintain(now);
        if let Some(n) = self.notify.as_mut() {
            n.tick(now);
        }
        while let Some(task) = self.callbacks.pop_due(now) {
            self.run_task(task);
        }
        if self.accept_resume.is_some_and(|t| t <= now) {
            self.accept_resume = None;
            if self.run == Run::Serving {
                self.set_accepting(true);
            }
        }
        while let Some(e) = self.timers.pop_due(now) {
            let Some(conn) = self.conns.get_id(super::message::ConnId {
                token: e.token,
                generation: e.generation,
            }) else {
                continue;
            };
            if conn.armed != Some(e.when) {
                continue;
            }
            conn.armed = None;
            let ctx = &mut self.ctx;
            match guarded(|| conn.on_timer(ctx)) {
                Ok(()) => self.touch(e.token),
                Err(reason) => self.close(e.token, reason),
            }
        }
    }

    fn rearm(&mut self, token: Token) {
        let Some(generation) = self.conns.generation(token) else {
            return;
        };
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let Some(when) = conn.next_deadline(&self.ctx) else {
            return;
        };
        if conn.armed.is_some_and(|armed| armed <= when) {
            return;
        }
        conn.armed = Some(when);
        self.timers.push(Entry {
            when,
            token,
            generation,
        });
    }

    // ---- writing and closing ----

    fn flush_touched(&mut self) {
        let touched = std::mem::take(&mut self.touched);
        for &token in &touched {
            let Some(conn) = self.conns.get_mut(token) else {
                continue;
            };
            conn.touched = false;
            let ctx = &mut self.ctx;
            if let Err(reason) = guarded(|| flush_and_release(conn, ctx)) {
                self.close(token, reason);
                continue;
            }
            if conn.state == ConnState::Closed {
                self.close(token, CloseReason::PeerClosed);
                continue;
            }
            let wanted = conn.wanted_interest();
            if wanted != conn.interest {
                conn.interest = wanted;
                let _ = self.poller.modify(conn.stream.raw_fd(), token, wanted);
            }
            self.rearm(token);
        }
        self.touched = touched;
        self.touched.clear();
    }

    fn close(&mut self, token: Token, reason: CloseReason) {
        let Some(mut conn) = self.conns.remove(token) else {
            return;
        };
        let _ = self.poller.delete(conn.stream.raw_fd());
        let in_flight = conn.in_flight();
        conn.abort_all(&mut self.ctx);
        match reason {
            CloseReason::Protocol(what) => {
                // Best effort: a refusal already encoded may still go out.
                let _ = conn.flush(self.ctx.now);
                self.ctx
                    .warn_client(&conn.io.peer, &format_args!("{what}; connection closed"));
            }
            CloseReason::SlowClient(what) => self
                .ctx
                .warn_client(&conn.io.peer, &format_args!("{what}; connection closed")),
            CloseReason::Timeout(what) => {
                log::debug!("client {}: {what}; connection closed", conn.io.peer)
            }
            CloseReason::Io(e) => log::debug!("client {}: {e}; connection closed", conn.io.peer),
            CloseReason::PeerClosed if in_flight > 0 => {
                log::debug!(
                    "client {}: closed with {in_flight} requests in flight",
                    conn.io.peer
                )
            }
            CloseReason::PeerClosed => {}
        }
        drop_one(&self.ctx.stats.active_conns);
        if self.run == Run::Serving && self.accept_resume.is_none() {
            self.set_accepting(true);
        }
    }

    // ---- stopping ----

    fn on_signal(&mut self, index: usize) {
        for sig in self.signals.take(index) {
            match (sig, self.run) {
                (Signal::Term | Signal::Int, Run::Serving) => self.begin_drain(),
                (Signal::Int, Run::Draining { .. }) | (Signal::Quit, _) => {
                    log::info!("stopping now ({sig:?})");
                    self.run = Run::Done;
                }
                (Signal::Hup, _) => log::info!("HUP: nothing to restart in a single process"),
                (Signal::Usr2, _) => {
                    log::warn!("USR2: no binary upgrade in a single process; ignored")
                }
                (Signal::Ttin | Signal::Ttou, _) => log::warn!(
                    "{}: no children to add or remove in a single process; ignored",
                    if sig == Signal::Ttin { "TTIN" } else { "TTOU" }
                ),
                (Signal::Usr1, _) => {
                    crate::logfile::reopen_all();
                    log::info!("USR1: log files reopened");
                }
                _ => {}
            }
        }
    }

    fn begin_drain(&mut self) {
        if let Some(n) = self.notify.as_mut() {
            n.stopping();
        }
        let mut in_flight = 0;
        for t in self.conns.tokens() {
            in_flight += self.conns.get_mut(t).map_or(0, |c| c.in_flight());
        }
        log::info!(
            "graceful stop: {in_flight} requests in flight, waiting up to {:?}",
            self.shutdown_timeout
        );
        for (i, l) in self.listeners.iter_mut().enumerate() {
            if let Some(l) = l.take() {
                let _ = self.poller.delete(l.raw_fd());
                drop(l);
            }
            let _ = i;
        }
        self.accepting = false;
        self.ctx.draining = true;
        self.ctx.stats.set_state(SlotState::Stopping);
        self.run = Run::Draining {
            deadline: self.ctx.now + self.shutdown_timeout,
        };
        for token in self.conns.tokens() {
            let Some(conn) = self.conns.get_mut(token) else {
                continue;
            };
            // An idle kept-alive connection closes. One accepted that has
            // not sent its first request yet gets a moment for it (its
            // client connected before it could know of the stop, and the
            // bytes may be on their way).
            if conn.fresh() {
                conn.grace_until = Some(self.ctx.now + DRAIN_GRACE);
            } else if conn.in_flight() == 0 {
                conn.io.out.close_after = true;
                conn.state = ConnState::Closing;
            }
            self.touch(token);
        }
        self.flush_touched();
    }

    fn check_stop(&mut self) {
        let Run::Draining { deadline } = self.run else {
            return;
        };
        if self.conns.is_empty() {
            log::info!("stopped");
            self.run = Run::Done;
        } else if self.ctx.now >= deadline {
            log::warn!(
                "--shutdown-timeout passed with {} connections open; stopping",
                self.conns.len()
            );
            self.run = Run::Done;
        }
    }
}

/// Runs one connection's input handling; a panic in it becomes an error
/// that closes that connection alone.
/// Writes what a connection has; when that made room, held output of
/// its requests moves in and is written too.
fn flush_and_release(conn: &mut Conn, ctx: &mut Ctx) -> Result<(), CloseReason> {
    conn.flush(ctx.now)?;
    // A few rounds at most per turn, for fairness; a connection still
    // holding output asks to be written again (`wanted_interest`).
    for _ in 0..RELEASE_ROUNDS {
        if !conn.io.held_waiting || !conn.io.out.is_empty() {
            break;
        }
        conn.release_held(ctx);
        conn.flush(ctx.now)?;
    }
    Ok(())
}

fn guarded(f: impl FnOnce() -> Result<(), CloseReason>) -> Result<(), CloseReason> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(CloseReason::Protocol(
            "internal error (panic); see the log".into(),
        ))
    })
}
