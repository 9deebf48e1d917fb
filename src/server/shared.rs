//! The state one request shares between the event loop and the worker
//! running its handler: the request body as it arrives, output credit for
//! backpressure, and the abort flag.
//!
//! Both directions are bounded. The loop queues at most [`BODY_HIGH`]
//! unread body bytes before it stops reading the connection; the handler
//! reading below [`BODY_LOW`] resumes it. A worker blocks once
//! [`OUTPUT_HIGH`] of its output is not yet written to the socket.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use super::message::{LoopSender, Message, ReqRef};

/// Unread body bytes above which the connection stops being read.
pub const BODY_HIGH: usize = 256 * 1024;
/// Unread body bytes below which a paused connection is read again.
pub const BODY_LOW: usize = 64 * 1024;
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
    buffered: usize,
    ended: bool,
}

#[derive(Default)]
struct InputState {
    stdin: Chunks,
    data: Chunks,
    /// The loop stopped reading the connection because of this request.
    paused: bool,
    /// The handler dropped its body readers: further input is discarded.
    reader_gone: bool,
}

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
    /// `has_data`: the FILTER role, whose DATA stream follows STDIN.
    pub fn new(req: ReqRef, has_data: bool, sender: LoopSender) -> Shared {
        let mut input = InputState::default();
        input.data.ended = !has_data;
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
        }
    }

    // ---- loop side ----

    /// How long the request waited for a worker (None: it never got one).
    pub fn queue_time(&self) -> Option<Duration> {
        self.started
            .get()
            .map(|s| s.saturating_duration_since(self.dispatched))
    }

    /// Queues body bytes (empty: end of stream). Returns true when the
    /// unread body passed [`BODY_HIGH`] and the connection must pause; the
    /// request then counts as pausing it until a `Resume` or its end.
    pub fn push(&self, which: Input, bytes: &[u8]) -> bool {
        let mut st = lock(&self.input);
        if bytes.is_empty() {
            st.stream(which).ended = true;
        } else if !st.reader_gone {
            let s = st.stream(which);
            s.queue.push_back(bytes.to_vec());
            s.buffered += bytes.len();
        }
        self.input_cv.notify_all();
        if st.buffered() > BODY_HIGH && !st.paused {
            st.paused = true;
            return true;
        }
        false
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
        let _guard = lock(&self.output);
        self.output_cv.notify_all();
        was_paused
    }

    /// Output bytes of this request reached the socket.
    pub fn release_output(&self, n: usize) {
        let mut inflight = lock(&self.output);
        let before = *inflight;
        *inflight = inflight.saturating_sub(n);
        if before > OUTPUT_HIGH && *inflight <= OUTPUT_HIGH {
            self.output_cv.notify_all();
        }
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

    /// Blocks until all input has ended (discarding what the handler left
    /// unread) or the request is aborted.
    pub fn wait_input_complete(&self) -> io::Result<()> {
        let mut st = lock(&self.input);
        self.discard_unread(&mut st);
        while !(st.stdin.ended && st.data.ended) {
            if self.is_aborted() {
                return Err(aborted_error());
            }
            st = self.input_cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        Ok(())
    }

    /// The handler will read no more: drop queued input, discard the rest
    /// as it arrives, and let the connection be read again.
    fn discard_unread(&self, st: &mut InputState) {
        st.reader_gone = true;
        st.stdin = Chunks {
            ended: st.stdin.ended,
            ..Chunks::default()
        };
        st.data = Chunks {
            ended: st.data.ended,
            ..Chunks::default()
        };
        if std::mem::replace(&mut st.paused, false) {
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
        loop {
            if self.is_aborted() {
                return Err(aborted_error());
            }
            let s = st.stream(which);
            if let Some(front) = s.queue.front() {
                let n = copy_out(front, &mut s.front_pos, buf);
                s.buffered -= n;
                if s.front_pos == front.len() {
                    s.queue.pop_front();
                    s.front_pos = 0;
                }
                if st.paused && st.buffered() <= BODY_LOW {
                    st.paused = false;
                    self.send_resume();
                }
                return Ok(n);
            }
            if s.ended {
                return Ok(0);
            }
            st = self.input_cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
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

fn copy_out(front: &[u8], pos: &mut usize, buf: &mut [u8]) -> usize {
    let avail = &front[*pos..];
    let n = avail.len().min(buf.len());
    buf[..n].copy_from_slice(&avail[..n]);
    *pos += n;
    n
}
