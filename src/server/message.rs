//! What other threads send to the event loop, and the sender they use.
//!
//! Workers never touch a socket: response bytes and flow-control notices go
//! through one channel, and the [`Waker`] makes the loop drain it, once per
//! batch of messages.

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use super::poller::Token;
use super::waker::Waker;
use crate::protocol::cgi_response::Head;

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
    pub fcgi_id: u16,
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
    },
    /// A request's handler read its body below the low-water mark: the
    /// connection may be read again.
    Resume { req: ReqRef },
}

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

/// Creates the channel; the receiver stays with the loop.
pub fn channel(waker: Arc<Waker>) -> (LoopSender, Receiver<Message>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    (LoopSender { tx, waker }, rx)
}
