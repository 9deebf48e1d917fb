//! The relay between a prefork child and its master, for `pubsub`: a
//! message published in one child reaches the waiters of every child.
//!
//! Before each fork the master makes a Unix socket pair; the child keeps
//! one end (installed here, process-wide, once its server is built) and the
//! master the other. Frames are length-prefixed:
//!
//! | frame | from | meaning |
//! |---|---|---|
//! | `PUBLISH{id, mount, channel, message}` | child → master → other children | deliver to your waiters |
//! | `DELIVERED{id, n}` | child → master | n of my waiters got message `id` |
//! | `TOTAL{id, n}` | master → publishing child | the other children delivered n |
//!
//! In the child, a writer thread sends the frames (the loop never blocks on
//! the socket) and a reader thread takes the master's frames and runs them
//! on the event loop (`LoopHandle::post`). Without a relay (one process)
//! nothing here is used.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crossbeam_channel::Sender;

use super::message::LoopHandle;

/// The largest frame: a message of 1 MiB, and room for its names.
pub(crate) const MAX_FRAME: usize = (1 << 20) + (128 << 10);

/// How long a publishing child waits for the master's `TOTAL` before it
/// counts its own waiters only (the master answers within a second).
const TOTAL_WAIT: Duration = Duration::from_secs(3);

const PUBLISH: u8 = 1;
const DELIVERED: u8 = 2;
const TOTAL: u8 = 3;

/// One frame of the relay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// Deliver `message` to the waiters of `channel` of the `pubsub`
    /// mounted at `mount`.
    Publish {
        id: u64,
        mount: String,
        channel: String,
        message: Vec<u8>,
    },
    /// A child delivered publish `id` to `n` waiters.
    Delivered { id: u64, n: u64 },
    /// The other children delivered publish `id` to `n` waiters.
    Total { id: u64, n: u64 },
}

impl Frame {
    /// The frame with its length prefix; None past [`MAX_FRAME`].
    pub(crate) fn encode(&self) -> Option<Vec<u8>> {
        let mut b = vec![0u8; 4];
        match self {
            Frame::Publish {
                id,
                mount,
                channel,
                message,
            } => {
                b.push(PUBLISH);
                b.extend_from_slice(&id.to_be_bytes());
                for s in [mount.as_bytes(), channel.as_bytes()] {
                    b.extend_from_slice(&u32::try_from(s.len()).ok()?.to_be_bytes());
                    b.extend_from_slice(s);
                }
                b.extend_from_slice(message);
            }
            Frame::Delivered { id, n } | Frame::Total { id, n } => {
                b.push(if matches!(self, Frame::Delivered { .. }) {
                    DELIVERED
                } else {
                    TOTAL
                });
                b.extend_from_slice(&id.to_be_bytes());
                b.extend_from_slice(&n.to_be_bytes());
            }
        }
        let len = b.len() - 4;
        if len > MAX_FRAME {
            return None;
        }
        b[..4].copy_from_slice(&(len as u32).to_be_bytes());
        Some(b)
    }

    /// The first frame of `buf` and the bytes it took; `Ok(None)` while it
    /// is incomplete; `Err` for a frame that cannot be.
    pub(crate) fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, String> {
        let Some(len) = buf.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(len.try_into().unwrap_or_default()) as usize;
        if len > MAX_FRAME {
            return Err(format!("a frame of {len} bytes"));
        }
        let Some(body) = buf.get(4..4 + len) else {
            return Ok(None);
        };
        Frame::parse(body)
            .map(|f| Some((f, 4 + len)))
            .ok_or_else(|| "a malformed frame".to_string())
    }

    fn parse(body: &[u8]) -> Option<Frame> {
        let (&kind, rest) = body.split_first()?;
        let id = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
        let mut rest = &rest[8..];
        match kind {
            PUBLISH => {
                let mut names = Vec::new();
                for _ in 0..2 {
                    let n = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
                    let s = std::str::from_utf8(rest.get(4..4 + n)?).ok()?;
                    names.push(s.to_string());
                    rest = &rest[4 + n..];
                }
                let channel = names.pop()?;
                let mount = names.pop()?;
                Some(Frame::Publish {
                    id,
                    mount,
                    channel,
                    message: rest.to_vec(),
                })
            }
            DELIVERED | TOTAL => {
                let n = u64::from_be_bytes(rest.try_into().ok()?);
                Some(if kind == DELIVERED {
                    Frame::Delivered { id, n }
                } else {
                    Frame::Total { id, n }
                })
            }
            _ => None,
        }
    }
}

/// Delivers a relayed message to this process's waiters: (mount, channel,
/// message) → how many got it. Set by the `pubsub` app.
pub(crate) type Deliver = fn(&str, &str, &[u8]) -> usize;

static DELIVER: OnceLock<Deliver> = OnceLock::new();
static RELAY: OnceLock<Relay> = OnceLock::new();

/// Names the function that delivers relayed messages (the first call wins).
pub(crate) fn on_publish(deliver: Deliver) {
    let _ = DELIVER.set(deliver);
}

type Done = Box<dyn FnOnce(u64) + Send>;

/// This child's end of the relay.
pub(crate) struct Relay {
    frames: Sender<Vec<u8>>,
    handle: LoopHandle,
    /// Publishes waiting for their `TOTAL`.
    pending: Mutex<HashMap<u64, Done>>,
    next_id: AtomicU64,
    /// False once the master's end is gone.
    alive: AtomicBool,
}

/// The relay of this process, if it is a prefork child.
pub(crate) fn get() -> Option<&'static Relay> {
    RELAY.get()
}

/// Makes `stream` this child's relay, its frames run on `handle`'s loop.
pub(crate) fn install(stream: UnixStream, handle: LoopHandle) -> std::io::Result<()> {
    let reader = stream.try_clone()?;
    let (tx, rx) = crossbeam_channel::unbounded::<Vec<u8>>();
    let relay = Relay {
        frames: tx,
        handle,
        pending: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(1),
        alive: AtomicBool::new(true),
    };
    if RELAY.set(relay).is_err() {
        return Ok(());
    }
    let mut writer = stream;
    std::thread::Builder::new()
        .name("fastgate-relay-w".into())
        .spawn(move || {
            for frame in rx {
                if writer.write_all(&frame).is_err() {
                    break;
                }
            }
        })?;
    std::thread::Builder::new()
        .name("fastgate-relay-r".into())
        .spawn(move || read_frames(reader))?;
    Ok(())
}

impl Relay {
    /// Sends `message` to the other children; `done` runs on the loop with
    /// the number of their waiters that got it (0 if the master does not
    /// answer).
    pub(crate) fn publish(
        &'static self,
        mount: &str,
        channel: &str,
        message: &[u8],
        done: impl FnOnce(u64) + Send + 'static,
    ) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = Frame::Publish {
            id,
            mount: mount.to_string(),
            channel: channel.to_string(),
            message: message.to_vec(),
        };
        let Some(bytes) = frame.encode() else {
            return done(0);
        };
        if !self.alive.load(Ordering::Acquire) {
            return done(0);
        }
        self.lock().insert(id, Box::new(done));
        if self.frames.send(bytes).is_err() {
            return self.finish(id, 0);
        }
        self.handle.after(TOTAL_WAIT, move || self.finish(id, 0));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Done>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs the `done` of publish `id`, if it is still waiting.
    fn finish(&self, id: u64, n: u64) {
        let done = self.lock().remove(&id);
        if let Some(done) = done {
            done(n);
        }
    }

    /// Runs one frame from the master, on the loop.
    fn on_frame(&'static self, frame: Frame) {
        match frame {
            Frame::Publish {
                id,
                mount,
                channel,
                message,
            } => self.handle.post(move || {
                let n = DELIVER.get().map_or(0, |d| d(&mount, &channel, &message));
                if let Some(b) = (Frame::Delivered { id, n: n as u64 }).encode() {
                    let _ = self.frames.send(b);
                }
            }),
            Frame::Total { id, n } => self.handle.post(move || self.finish(id, n)),
            Frame::Delivered { .. } => {}
        }
    }

    /// The master's end is gone: publishes waiting count their own.
    fn lost(&'static self) {
        self.alive.store(false, Ordering::Release);
        let ids: Vec<u64> = self.lock().keys().copied().collect();
        self.handle.post(move || {
            for id in ids {
                self.finish(id, 0);
            }
        });
    }
}

/// The reader thread: frames from the master until its end closes.
fn read_frames(mut stream: UnixStream) {
    let Some(relay) = get() else { return };
    loop {
        let mut len = [0u8; 4];
        if stream.read_exact(&mut len).is_err() {
            break;
        }
        let n = u32::from_be_bytes(len) as usize;
        if n > MAX_FRAME {
            log::error!("relay: a frame of {n} bytes from the master");
            break;
        }
        let mut buf = len.to_vec();
        buf.resize(4 + n, 0);
        if stream.read_exact(&mut buf[4..]).is_err() {
            break;
        }
        match Frame::decode(&buf) {
            Ok(Some((frame, _))) => relay.on_frame(frame),
            _ => {
                log::error!("relay: a malformed frame from the master");
                break;
            }
        }
    }
    relay.lost();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_wait_for_their_end() {
        let frames = [
            Frame::Publish {
                id: 7,
                mount: "/events".into(),
                channel: "room/1".into(),
                message: b"hello".to_vec(),
            },
            Frame::Delivered { id: 7, n: 3 },
            Frame::Total { id: u64::MAX, n: 0 },
        ];
        let mut all = Vec::new();
        for f in &frames {
            all.extend(f.encode().unwrap());
        }
        let mut at = 0;
        for f in &frames {
            assert_eq!(Frame::decode(&all[at..at + 3]).unwrap(), None);
            let (got, used) = Frame::decode(&all[at..]).unwrap().unwrap();
            assert_eq!(&got, f);
            at += used;
        }
        assert_eq!(at, all.len());
    }

    #[test]
    fn oversized_and_malformed_frames_are_refused() {
        let big = Frame::Publish {
            id: 1,
            mount: "/".into(),
            channel: "c".into(),
            message: vec![0; MAX_FRAME],
        };
        assert!(big.encode().is_none());
        assert!(Frame::decode(&(MAX_FRAME as u32 + 1).to_be_bytes()).is_err());
        assert!(Frame::decode(&[0, 0, 0, 2, 9, 9]).is_err());
        let mut bad = (Frame::Total { id: 1, n: 2 }).encode().unwrap();
        bad[4] = 42;
        assert!(Frame::decode(&bad).is_err());
    }
}
