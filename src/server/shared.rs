//! The state one request shares between the event loop and the worker
//! running its handler: the request body as it arrives, output credit for
//! backpressure, and the abort flag.
//!
//! Both directions are bounded. A request alone on its connection queues
//! at most [`BODY_HIGH`] unread body bytes in memory before the loop stops
//! reading the connection; the handler reading below [`BODY_LOW`] resumes
//! it. A request that shares its connection must never pause its siblings
//! (their handlers may be waiting for their own bodies behind the pause,
//! holding the workers it waits for): past [`SPILL_MEMORY`] its body goes
//! to a temporary file ([`SpoolFile`]), and the connection pauses only when
//! the connection's spool budget is spent, and only for a request whose
//! handler runs (one still queued is refused instead). A worker blocks
//! once [`OUTPUT_HIGH`] of its output is not yet written to the socket.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use super::message::{LoopSender, Message, ReqRef, Task};
use super::spool::{is_no_space, SpoolFile, TempSpace};
use crate::protocol::fastcgi::Role;

/// Unread body bytes above which the connection stops being read.
pub const BODY_HIGH: usize = 256 * 1024;
/// Unread body bytes below which a paused connection is read again.
pub const BODY_LOW: usize = 64 * 1024;
/// Unread body bytes kept in memory for a request that shares its
/// connection; the rest goes to its spool file.
pub const SPILL_MEMORY: usize = 64 * 1024;
/// Output bytes in flight per request before the worker waits.
pub const OUTPUT_HIGH: usize = 256 * 1024;

/// Which input stream: STDIN, or FastCGI's DATA (FILTER role).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    Stdin,
    Data,
}

#[derive(Default)]
struct Chunks {
    queue: VecDeque<Vec<u8>>,
    /// Offset into the front chunk already read.
    front_pos: usize,
    /// Bytes in `queue` not read yet (memory only).
    buffered: usize,
    /// Bytes that came after `queue`, on disk; while it exists every new
    /// byte goes here too, so the order holds.
    spill: Option<SpoolFile>,
    ended: bool,
}

impl Chunks {
    /// An empty stream that keeps only whether it ended.
    fn emptied(&self) -> Chunks {
        Chunks {
            ended: self.ended,
            ..Chunks::default()
        }
    }

    fn spilled(&self) -> u64 {
        self.spill.as_ref().map_or(0, SpoolFile::unread)
    }
}

/// What the loop does after handing a request body bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// Stop reading the connection until this request resumes it.
    Pause,
    /// The loop answers the request itself with this status (413: past
    /// `--max-temp-bytes`; 503: spool budget spent before it ran).
    Refuse(u16),
}

/// Where a body past [`SPILL_MEMORY`] goes when its request shares the
/// connection.
pub struct SpillTo<'a> {
    pub space: &'a Arc<TempSpace>,
    /// The connection's spooled bytes, and their bound.
    pub conn: &'a Arc<AtomicU64>,
    pub conn_limit: u64,
}

#[derive(Default)]
struct InputState {
    stdin: Chunks,
    data: Chunks,
    /// The loop stopped reading the connection because of this request.
    paused: bool,
    /// The handler dropped its body readers: further input is discarded.
    reader_gone: bool,
    /// The handler began reading DATA: STDIN, which comes before it
    /// (FastCGI 1.0 §6.4), is discarded from then on.
    stdin_skipped: bool,
    /// Readers waiting on `input_cv`: only then does a push notify it (a
    /// notify is a futex syscall even with nobody waiting, and most
    /// bodies arrive before their handler reads them).
    readers_waiting: u32,
    /// Called by the next push after a [`Shared::try_read`] found nothing
    /// (a handler polling other fds too: the CGI gateway).
    waker: Option<InputWaker>,
    wake_armed: bool,
}

/// Wakes a handler that reads its body without blocking (it polls an fd
/// this closure makes readable). Runs on the loop thread: must not block.
pub type InputWaker = Arc<dyn Fn() + Send + Sync>;

impl InputState {
    fn stream(&mut self, which: Input) -> &mut Chunks {
        match which {
            Input::Stdin => &mut self.stdin,
            Input::Data => &mut self.data,
        }
    }

    fn buffered(&self) -> usize {
        self.stdin.buffered + self.data.buffered
    }

    /// Few enough unread bytes to read the connection again.
    fn may_resume(&self) -> bool {
        self.buffered() <= BODY_LOW && self.stdin.spilled() + self.data.spilled() == 0
    }
}

/// Shared through an `Arc` by the loop and the worker.
pub struct Shared {
    pub req: ReqRef,
    sender: LoopSender,
    dispatched: Instant,
    started: OnceLock<Instant>,
    aborted: AtomicBool,
    input: Mutex<InputState>,
    input_cv: Condvar,
    output: Mutex<usize>,
    output_cv: Condvar,
    /// Async requests only: closures posted to the loop when the request
    /// is aborted, and when its unwritten output falls back under
    /// [`OUTPUT_HIGH`].
    hooks: Mutex<Hooks>,
    /// Answered by an async handler: its body must never pause the
    /// connection (nobody reads it before it has all arrived), so it spools.
    asynchronous: AtomicBool,
}

/// What an async handler asked to hear about.
#[derive(Default)]
struct Hooks {
    /// The call of the handler (and its route, for the log), until the
    /// input has ended.
    start: Option<(String, Task)>,
    on_abort: Vec<Task>,
    on_writable: Vec<Task>,
}

/// Locks, recovering from a poisoned mutex: the state stays consistent
/// because every critical section is a few plain assignments.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn aborted_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "request aborted by the client",
    )
}

impl Shared {
    /// FILTER has a DATA stream after STDIN; AUTHORIZER has no input at
    /// all (FastCGI 1.0 §6.3: Apache sends it no FCGI_STDIN, not even the
    /// empty record).
    pub fn new(req: ReqRef, role: Role, sender: LoopSender) -> Shared {
        let mut input = InputState::default();
        input.stdin.ended = role == Role::Authorizer;
        input.data.ended = role != Role::Filter;
        Shared {
            req,
            sender,
            dispatched: Instant::now(),
            started: OnceLock::new(),
            aborted: AtomicBool::new(false),
            input: Mutex::new(input),
            input_cv: Condvar::new(),
            output: Mutex::new(0),
            output_cv: Condvar::new(),
            hooks: Mutex::default(),
            asynchronous: AtomicBool::new(false),
        }
    }

    // ---- loop side ----

    /// How long the request waited for a worker (None: it never got one).
    pub fn queue_time(&self) -> Option<Duration> {
        self.started
            .get()
            .map(|s| s.saturating_duration_since(self.dispatched))
    }

    /// Queues body bytes (empty: end of stream). `spill` is given when the
    /// request shares its connection (it must not pause it for nothing);
    /// alone, the request pauses the connection once its unread body
    /// passed [`BODY_HIGH`], and counts as pausing it until a `Resume` or
    /// its end.
    pub fn push(&self, which: Input, bytes: &[u8], spill: Option<&SpillTo>) -> Pushed {
        let mut st = lock(&self.input);
        // Bytes for a stream already ended (DATA of a RESPONDER, STDIN of an
        // AUTHORIZER) are never read: queued, they could pause the
        // connection with no end of input left to release it.
        let discarded =
            st.reader_gone || st.stream(which).ended || (which == Input::Stdin && st.stdin_skipped);
        let mut outcome = Pushed::Queued;
        if bytes.is_empty() {
            st.stream(which).ended = true;
        } else if !discarded {
            outcome = self.store(st.stream(which), bytes, spill);
        }
        if st.readers_waiting > 0 {
            self.input_cv.notify_all();
        }
        if let (true, Some(wake)) = (std::mem::take(&mut st.wake_armed), &st.waker) {
            wake();
        }
        let over = outcome == Pushed::Pause || (spill.is_none() && st.buffered() > BODY_HIGH);
        match outcome {
            Pushed::Refuse(_) => outcome,
            _ if over && !st.paused => {
                st.paused = true;
                Pushed::Pause
            }
            _ => Pushed::Queued,
        }
    }

    /// Keeps `bytes` in memory, or in the stream's spool file.
    fn store(&self, s: &mut Chunks, bytes: &[u8], spill: Option<&SpillTo>) -> Pushed {
        let fits = s.buffered + bytes.len() <= SPILL_MEMORY;
        if s.spill.is_none() && (spill.is_none() || fits) {
            s.queue.push_back(bytes.to_vec());
            s.buffered += bytes.len();
            return Pushed::Queued;
        }
        if let (None, Some(to)) = (&s.spill, spill) {
            match SpoolFile::create(to.space, Some(Arc::clone(to.conn))) {
                Ok(f) => s.spill = Some(f),
                Err(e) => return self.spool_failed(&e),
            }
        }
        let Some(file) = s.spill.as_mut() else {
            return Pushed::Queued;
        };
        if let Err(e) = file.append(bytes) {
            return self.spool_failed(&e);
        }
        let conn_full = spill.is_some_and(|to| to.conn.load(Ordering::Relaxed) > to.conn_limit);
        match (conn_full, self.started.get().is_some()) {
            (false, _) => Pushed::Queued,
            (true, true) => Pushed::Pause,
            (true, false) => Pushed::Refuse(503),
        }
    }

    fn spool_failed(&self, e: &io::Error) -> Pushed {
        if is_no_space(e) {
            return Pushed::Refuse(413);
        }
        log::error!("request {}: spooling its body: {e}", self.req.key);
        Pushed::Refuse(503)
    }

    /// Marks the request aborted and wakes a handler blocked on it.
    /// Returns true when the request was pausing its connection (so the
    /// caller releases that pause itself).
    pub fn abort(&self) -> bool {
        self.aborted.store(true, Ordering::Release);
        let was_paused = {
            let mut st = lock(&self.input);
            std::mem::replace(&mut st.paused, false)
        };
        self.input_cv.notify_all();
        {
            let _guard = lock(&self.output);
            self.output_cv.notify_all();
        }
        // An async call that never started is dropped here (its reply
        // holds this state: kept, the two would never be freed).
        let (start, hooks) = {
            let mut h = lock(&self.hooks);
            let mut hooks = std::mem::take(&mut h.on_abort);
            hooks.append(&mut h.on_writable);
            (h.start.take(), hooks)
        };
        drop(start);
        for hook in hooks {
            self.sender.send(Message::Run(hook));
        }
        was_paused
    }

    /// Output bytes of this request reached the socket.
    pub fn release_output(&self, n: usize) {
        let mut inflight = lock(&self.output);
        let before = *inflight;
        *inflight = inflight.saturating_sub(n);
        if before > OUTPUT_HIGH && *inflight <= OUTPUT_HIGH {
            self.output_cv.notify_all();
            drop(inflight);
            let hooks = std::mem::take(&mut lock(&self.hooks).on_writable);
            for hook in hooks {
                self.sender.send(Message::Run(hook));
            }
        }
    }

    // ---- async requests ----

    /// Keeps the call of an async handler until the input has ended.
    pub fn set_start(&self, route: String, start: Task) {
        self.asynchronous.store(true, Ordering::Relaxed);
        lock(&self.hooks).start = Some((route, start));
    }

    /// Whether an async handler answers this request.
    pub fn is_async(&self) -> bool {
        self.asynchronous.load(Ordering::Relaxed)
    }

    /// The call of an async handler, once its input has ended (taken: it
    /// runs once).
    pub fn take_start_if_ready(&self) -> Option<(String, Task)> {
        let mut hooks = lock(&self.hooks);
        hooks.start.as_ref()?;
        if !self.input_complete() {
            return None;
        }
        hooks.start.take()
    }

    /// Runs `hook` on the loop when the request is aborted (at once if it
    /// already was).
    pub fn on_abort(&self, hook: Task) {
        let mut hooks = lock(&self.hooks);
        if self.is_aborted() {
            drop(hooks);
            self.sender.send(Message::Run(hook));
        } else {
            hooks.on_abort.push(hook);
        }
    }

    /// Takes credit for `n` output bytes without waiting; false while too
    /// much of this request's output is unwritten.
    pub fn try_acquire_output(&self, n: usize) -> io::Result<bool> {
        if self.is_aborted() {
            return Err(aborted_error());
        }
        let mut inflight = lock(&self.output);
        if *inflight > OUTPUT_HIGH {
            return Ok(false);
        }
        *inflight += n;
        Ok(true)
    }

    /// Runs `hook` on the loop once output may be written again (at once
    /// if it may now).
    pub fn on_writable(&self, hook: Task) {
        let inflight = lock(&self.output);
        if *inflight <= OUTPUT_HIGH || self.is_aborted() {
            drop(inflight);
            self.sender.send(Message::Run(hook));
            return;
        }
        lock(&self.hooks).on_writable.push(hook);
    }

    // ---- worker side ----

    /// A worker picked the request up.
    pub fn mark_started(&self) {
        let _ = self.started.set(Instant::now());
    }

    /// The loop's sender, for the response of this request.
    pub fn sender(&self) -> &LoopSender {
        &self.sender
    }

    pub fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::Acquire)
    }

    /// Whether every input stream has ended (STDIN, and DATA for FILTER).
    pub fn input_complete(&self) -> bool {
        let st = lock(&self.input);
        st.stdin.ended && st.data.ended
    }

    /// The handler returned without reading all its input: what is queued
    /// and what still arrives is discarded, and the connection is read
    /// again. Never waits.
    pub fn give_up_input(&self) {
        let mut st = lock(&self.input);
        self.discard_unread(&mut st);
    }

    /// The handler will read no more: drop queued input, discard the rest
    /// as it arrives, and let the connection be read again.
    fn discard_unread(&self, st: &mut InputState) {
        st.reader_gone = true;
        st.stdin = st.stdin.emptied();
        st.data = st.data.emptied();
        if std::mem::replace(&mut st.paused, false) {
            self.send_resume();
        }
    }

    /// A FILTER handler moved on to DATA: STDIN it left unread must not
    /// hold the connection paused, or DATA, queued behind it, never comes.
    fn skip_stdin(&self, st: &mut InputState) {
        st.stdin_skipped = true;
        st.stdin = st.stdin.emptied();
        if st.paused && st.may_resume() {
            st.paused = false;
            self.send_resume();
        }
    }

    fn send_resume(&self) {
        self.sender.send(Message::Resume { req: self.req });
    }

    /// Reads body bytes of one stream; Ok(0) at its end.
    pub fn read(&self, which: Input, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut st = lock(&self.input);
        if which == Input::Data && !st.stdin_skipped {
            self.skip_stdin(&mut st);
        }
        loop {
            if let Some(n) = self.read_now(&mut st, which, buf)? {
                return Ok(n);
            }
            st.readers_waiting += 1;
            st = self.input_cv.wait(st).unwrap_or_else(|p| p.into_inner());
            st.readers_waiting -= 1;
        }
    }

    /// Reads body bytes of one stream without waiting: `WouldBlock` when
    /// none are there yet, and then the waker set by
    /// [`Shared::set_input_waker`] runs at the next push.
    pub fn try_read(&self, which: Input, buf: &mut [u8]) -> io::Result<usize> {
        let mut st = lock(&self.input);
        if let Some(n) = self.read_now(&mut st, which, buf)? {
            return Ok(n);
        }
        st.wake_armed = true;
        Err(io::ErrorKind::WouldBlock.into())
    }

    /// What a read gets now: Some(bytes) (0 at the end, or for an empty
    /// `buf`), None when it must wait for more. Reading below the low-water
    /// mark lets a paused connection be read again.
    fn read_now(
        &self,
        st: &mut InputState,
        which: Input,
        buf: &mut [u8],
    ) -> io::Result<Option<usize>> {
        if self.is_aborted() {
            return Err(aborted_error());
        }
        let n = read_stream(st.stream(which), buf)?;
        if n > 0 && st.paused && st.may_resume() {
            st.paused = false;
            self.send_resume();
        }
        if n > 0 || st.stream(which).ended || buf.is_empty() {
            return Ok(Some(n));
        }
        Ok(None)
    }

    /// Sets the closure that [`Shared::try_read`]'s `WouldBlock` arms.
    pub fn set_input_waker(&self, waker: InputWaker) {
        lock(&self.input).waker = Some(waker);
    }

    /// Takes credit for `n` output bytes, waiting while too much of this
    /// request's output is unwritten.
    pub fn acquire_output(&self, n: usize) -> io::Result<()> {
        let mut inflight = lock(&self.output);
        while *inflight > OUTPUT_HIGH {
            if self.is_aborted() {
                return Err(aborted_error());
            }
            inflight = self
                .output_cv
                .wait(inflight)
                .unwrap_or_else(|p| p.into_inner());
        }
        if self.is_aborted() {
            return Err(aborted_error());
        }
        *inflight += n;
        Ok(())
    }
}

/// Reads what a stream holds: memory first (older), then its spool file;
/// a spool file read to its end is dropped. Ok(0): nothing there now.
fn read_stream(s: &mut Chunks, buf: &mut [u8]) -> io::Result<usize> {
    if let Some(front) = s.queue.front() {
        let n = copy_out(front, &mut s.front_pos, buf);
        s.buffered -= n;
        if s.front_pos == front.len() {
            s.queue.pop_front();
            s.front_pos = 0;
        }
        return Ok(n);
    }
    let Some(file) = s.spill.as_mut() else {
        return Ok(0);
    };
    let n = file.read(buf)?;
    if file.unread() == 0 {
        s.spill = None;
    }
    Ok(n)
}

fn copy_out(front: &[u8], pos: &mut usize, buf: &mut [u8]) -> usize {
    let avail = &front[*pos..];
    let n = avail.len().min(buf.len());
    buf[..n].copy_from_slice(&avail[..n]);
    *pos += n;
    n
}
