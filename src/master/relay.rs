//! The master's side of the `pubsub` relay (`server/relay.rs`): it reads
//! each child's frames without blocking (its supervision loop polls the
//! relay sockets), hands a `PUBLISH` to every other serving child, sums
//! their `DELIVERED` answers and sends the `TOTAL` to the publisher once
//! all answered, a second passed, or the missing ones ended. It starts no
//! thread: a write to a child that does not read within a second drops
//! that child's relay.

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{recv, MsgFlags};
use nix::unistd::Pid;

use super::children::{Child, State};
use crate::server::relay::{Frame, MAX_FRAME};

/// How long the master waits for the other children's counts.
const ANSWER_WAIT: Duration = Duration::from_secs(1);
/// A write to a child's relay that takes longer fails (and drops it).
const WRITE_WAIT: Duration = Duration::from_secs(1);

/// The master's end of one child's relay, and the bytes of a frame that
/// has not fully arrived.
pub struct Link {
    stream: UnixStream,
    buf: Vec<u8>,
}

impl Link {
    pub fn new(stream: UnixStream) -> std::io::Result<Link> {
        stream.set_write_timeout(Some(WRITE_WAIT))?;
        Ok(Link {
            stream,
            buf: Vec::new(),
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }

    pub fn raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    /// The whole frames that arrived, and whether the link is done (closed
    /// or broken).
    fn read(&mut self) -> (Vec<Frame>, Option<String>) {
        let mut chunk = vec![0u8; 64 << 10];
        let mut end = None;
        // Never more than one whole frame's worth at a time: poll says
        // when there is more.
        while self.buf.len() < 4 + MAX_FRAME {
            match recv(self.stream.as_raw_fd(), &mut chunk, MsgFlags::MSG_DONTWAIT) {
                Ok(0) => {
                    end = Some("closed".to_string());
                    break;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => break,
                Err(e) => {
                    end = Some(e.to_string());
                    break;
                }
            }
        }
        let mut frames = Vec::new();
        let mut used = 0;
        loop {
            match Frame::decode(&self.buf[used..]) {
                Ok(Some((frame, n))) => {
                    frames.push(frame);
                    used += n;
                }
                Ok(None) => break,
                Err(e) => {
                    end = Some(e);
                    break;
                }
            }
        }
        self.buf.drain(..used);
        (frames, end)
    }
}

/// A publish handed to other children, waiting for their counts.
struct Pending {
    origin: Pid,
    origin_id: u64,
    waiting: Vec<Pid>,
    sum: u64,
    deadline: Instant,
}

/// The publishes under way.
#[derive(Default)]
pub struct Hub {
    pending: HashMap<u64, Pending>,
    next_id: u64,
}

impl Hub {
    /// When the oldest publish stops waiting.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.deadline).min()
    }

    /// Child `i`'s relay is readable: acts on its frames.
    pub fn on_readable(&mut self, children: &mut [Child], i: usize) {
        let Some(link) = children.get_mut(i).and_then(|c| c.relay.as_mut()) else {
            return;
        };
        let (frames, end) = link.read();
        let pid = children[i].pid;
        for frame in frames {
            self.on_frame(children, pid, frame);
        }
        if let Some(why) = end {
            if children[i].state != State::Stopping && why != "closed" {
                log::warn!("child {pid}: relay dropped ({why})");
            }
            children[i].relay = None;
            self.forget(children, pid);
        }
    }

    fn on_frame(&mut self, children: &mut [Child], from: Pid, frame: Frame) {
        match frame {
            Frame::Publish {
                id,
                mount,
                channel,
                message,
            } => {
                self.next_id += 1;
                let mid = self.next_id;
                let bytes = Frame::Publish {
                    id: mid,
                    mount,
                    channel,
                    message,
                }
                .encode();
                let mut waiting = Vec::new();
                let mut dropped = Vec::new();
                for c in children.iter_mut() {
                    if c.pid == from || c.state == State::Starting {
                        continue;
                    }
                    let (Some(link), Some(bytes)) = (c.relay.as_mut(), bytes.as_ref()) else {
                        continue;
                    };
                    if link.send(bytes) {
                        waiting.push(c.pid);
                    } else {
                        log::warn!("child {}: relay dropped (it does not read)", c.pid);
                        c.relay = None;
                        dropped.push(c.pid);
                    }
                }
                self.pending.insert(
                    mid,
                    Pending {
                        origin: from,
                        origin_id: id,
                        waiting,
                        sum: 0,
                        deadline: Instant::now() + ANSWER_WAIT,
                    },
                );
                for pid in dropped {
                    self.forget(children, pid);
                }
                self.finish_answered(children);
            }
            Frame::Delivered { id, n } => {
                if let Some(p) = self.pending.get_mut(&id) {
                    if let Some(at) = p.waiting.iter().position(|&w| w == from) {
                        p.waiting.swap_remove(at);
                        p.sum += n;
                    }
                }
                self.finish_answered(children);
            }
            Frame::Total { .. } => {}
        }
    }

    /// Child `pid` will not answer (ended, or its relay is gone).
    pub fn forget(&mut self, children: &mut [Child], pid: Pid) {
        for p in self.pending.values_mut() {
            p.waiting.retain(|&w| w != pid);
        }
        self.finish_answered(children);
    }

    /// Answers the publishes that waited long enough.
    pub fn expire(&mut self, children: &mut [Child]) {
        let now = Instant::now();
        let late: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in late {
            self.finish(children, id);
        }
    }

    fn finish_answered(&mut self, children: &mut [Child]) {
        let done: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.waiting.is_empty())
            .map(|(&id, _)| id)
            .collect();
        for id in done {
            self.finish(children, id);
        }
    }

    /// Sends the `TOTAL` of publish `id` to the child that published it.
    fn finish(&mut self, children: &mut [Child], id: u64) {
        let Some(p) = self.pending.remove(&id) else {
            return;
        };
        let Some(c) = children.iter_mut().find(|c| c.pid == p.origin) else {
            return;
        };
        let total = Frame::Total {
            id: p.origin_id,
            n: p.sum,
        };
        if let (Some(link), Some(bytes)) = (c.relay.as_mut(), total.encode()) {
            if !link.send(&bytes) {
                log::warn!("child {}: relay dropped (it does not read)", c.pid);
                c.relay = None;
            }
        }
    }
}
