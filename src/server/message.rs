//! What other threads send to the event loop, and the sender they use.
//!
//! Workers never touch a socket: response bytes and flow-control notices go
//! through one channel, and the [`Waker`] makes the loop drain it, once per
//! batch of messages.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::poller::Token;
use super::shared::Shared;
use super::waker::Waker;
use crate::protocol::cgi_response::Head;
use crate::protocol::params::Params;

/// Names a connection across slab-slot reuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnId {
    pub token: Token,
    pub generation: u32,
}

/// Names one request: its connection, its FastCGI request id (0 for SCGI)
/// and a key unique in the process, so a completion for an ended request
/// whose id was reused is recognised and dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReqRef {
    pub conn: ConnId,
    /// Which request of its connection: the FastCGI request id; 0 where a
    /// connection carries one request at a time (SCGI).
    pub stream_id: u16,
    pub key: u64,
}

/// How a response ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// More output follows.
    No,
    /// The response is complete.
    Complete,
    /// The handler failed after output had gone out: cut the response.
    Failed,
}

/// A message for the loop.
pub enum Message {
    /// Response output: the head (first time only), body bytes, and
    /// whether this ends the response.
    Output {
        req: ReqRef,
        head: Option<Head>,
        body: Vec<u8>,
        end: End,
        /// With the last output of a pool handler: its request's params,
        /// for the loop to reuse their vectors.
        spare: Option<Params>,
    },
    /// Error output of a request's handler: FCGI_STDERR records on
    /// FastCGI (written at once: it is no part of the response, so it is
    /// never held), a log line on protocols that have no such stream.
    /// The bytes took output credit, which the loop gives back.
    Stderr { shared: Arc<Shared>, bytes: Vec<u8> },
    /// A request's handler read its body below the low-water mark: the
    /// connection may be read again.
    Resume { req: ReqRef },
    /// A closure to run on the loop thread ([`LoopHandle::post`]).
    Run(Task),
    /// A closure to run on the loop thread at `when`, unless cancelled
    /// first ([`LoopHandle::after`]).
    After { id: u64, when: Instant, task: Task },
    /// Forget the closure of timer `id` now ([`TimerHandle::cancel`]).
    Cancel { id: u64 },
}

/// Work for the loop thread.
pub type Task = Box<dyn FnOnce() + Send>;

/// The sending half, cloned into every request.
#[derive(Clone)]
pub struct LoopSender {
    tx: Sender<Message>,
    waker: Arc<Waker>,
}

impl LoopSender {
    /// Queues a message and wakes the loop (once per batch).
    pub fn send(&self, msg: Message) {
        // The loop holds the receiver until it exits; a send after that has
        // nobody to deliver to, which is fine.
        let _ = self.tx.send(msg);
        self.waker.wake();
    }
}

/// A handle on the event loop that any thread may hold: it runs closures
/// on the loop thread, now or later. Closures run between two waits of the
/// loop and must not block (every connection waits while one runs); a
/// batch of posts costs one wakeup.
#[derive(Clone)]
pub struct LoopHandle {
    sender: LoopSender,
}

/// Timer ids, unique in the process (so a handle can cancel its timer
/// before the loop has even seen it).
static NEXT_TIMER: AtomicU64 = AtomicU64::new(1);

impl LoopHandle {
    pub(crate) fn new(sender: LoopSender) -> LoopHandle {
        LoopHandle { sender }
    }

    /// Runs `task` on the loop thread, soon.
    pub fn post(&self, task: impl FnOnce() + Send + 'static) {
        self.sender.send(Message::Run(Box::new(task)));
    }

    /// Runs `task` on the loop thread once `delay` has passed, unless the
    /// returned handle cancels it first.
    pub fn after(&self, delay: Duration, task: impl FnOnce() + Send + 'static) -> TimerHandle {
        let id = NEXT_TIMER.fetch_add(1, Ordering::Relaxed);
        let cancelled = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&cancelled);
        let task = Box::new(move || {
            if !flag.load(Ordering::Acquire) {
                task();
            }
        });
        let when = Instant::now() + delay;
        self.sender.send(Message::After { id, when, task });
        TimerHandle {
            id,
            cancelled,
            sender: self.sender.clone(),
        }
    }
}

/// A timer set by [`LoopHandle::after`].
pub struct TimerHandle {
    id: u64,
    cancelled: Arc<AtomicBool>,
    sender: LoopSender,
}

impl TimerHandle {
    /// The closure will not run (if it has not run yet), and the loop
    /// drops it at once.
    pub fn cancel(&self) {
        if !self.cancelled.swap(true, Ordering::AcqRel) {
            self.sender.send(Message::Cancel { id: self.id });
        }
    }
}

/// Creates the channel; the receiver stays with the loop.
pub fn channel(waker: Arc<Waker>) -> (LoopSender, Receiver<Message>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    (LoopSender { tx, waker }, rx)
}
