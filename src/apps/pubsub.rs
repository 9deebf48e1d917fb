//! `pubsub`: long polling on the event loop, holding no worker thread.
//!
//! `GET PREFIX/CHANNEL[?timeout=S]` waits for the next message published on
//! CHANNEL: 200 with it, or 204 once S seconds passed (30 by default, at
//! most an hour). `POST PREFIX/CHANNEL` hands its body to every waiter
//! still connected and answers `delivered N`. A waiter whose client leaves
//! is dropped at once (its abort hook), so the next POST does not count it.
//!
//! Under prefork a message reaches the waiters of every child: the POST
//! delivers to its own child's waiters, sends the message to the master
//! over the child's relay (`server/relay.rs`), which hands it to every
//! other child; the POST answers once the master summed their counts
//! (`delivered` counts the waiters of all children).
//!
//! Everything here runs on the loop thread (the handler, the timers, the
//! abort hooks, relayed messages), so the state's mutex is never
//! contended; it is there because the loop's closures must be `Send`.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use crate::server::{relay, TimerHandle};
use crate::{Reply, Request};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_TIMEOUT_S: u64 = 3600;
/// The largest message, unless `--max-body-bytes` is lower: it is copied
/// to every waiter.
pub const MAX_MESSAGE: usize = 1 << 20;

/// The `pubsub` app mounted at one prefix.
pub struct PubSub {
    prefix: String,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    channels: HashMap<String, Vec<Waiter>>,
    next_id: u64,
}

struct Waiter {
    id: u64,
    reply: Reply,
    timer: TimerHandle,
}

/// Every `pubsub` of this process by prefix, for relayed messages.
static MOUNTS: Mutex<Vec<(String, Weak<Mutex<State>>)>> = Mutex::new(Vec::new());

/// Delivers a message relayed from another child to the waiters of this
/// one (the mounts at `mount`).
fn deliver_relayed(mount: &str, channel: &str, message: &[u8]) -> usize {
    let states: Vec<Arc<Mutex<State>>> = MOUNTS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|(prefix, _)| prefix == mount)
        .filter_map(|(_, state)| state.upgrade())
        .collect();
    states
        .iter()
        .map(|state| publish_to(state, channel, message))
        .sum()
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl PubSub {
    /// The app for requests under `prefix` (the channel is the rest of
    /// the path).
    pub fn new(prefix: &str) -> PubSub {
        let prefix = prefix.trim_end_matches('/').to_string();
        let state: Arc<Mutex<State>> = Arc::default();
        let mut mounts = MOUNTS.lock().unwrap_or_else(|p| p.into_inner());
        mounts.retain(|(_, s)| s.strong_count() > 0);
        mounts.push((prefix.clone(), Arc::downgrade(&state)));
        relay::on_publish(deliver_relayed);
        PubSub { prefix, state }
    }

    /// Waiters on every channel, now.
    pub fn waiters(&self) -> usize {
        lock(&self.state).channels.values().map(Vec::len).sum()
    }

    fn channel<'a>(&self, path: &'a str) -> Option<&'a str> {
        let rest = path.strip_prefix(self.prefix.as_str())?;
        let name = rest.strip_prefix('/').unwrap_or(rest);
        (!name.is_empty()).then_some(name)
    }

    /// `GET`: keeps the reply until a message, the timeout, or the
    /// client's leaving.
    fn wait(&self, channel: &str, timeout: Duration, reply: Reply) {
        let mut st = lock(&self.state);
        st.next_id += 1;
        let id = st.next_id;
        let on_timeout = Arc::clone(&self.state);
        let name = channel.to_string();
        let timer = reply.loop_handle().after(timeout, move || {
            if let Some(w) = take(&on_timeout, &name, id) {
                answer(w.reply, 204, b"");
            }
        });
        let on_abort = Arc::clone(&self.state);
        let name = channel.to_string();
        reply.on_abort(move || {
            if let Some(w) = take(&on_abort, &name, id) {
                w.timer.cancel();
            }
        });
        let waiter = Waiter { id, reply, timer };
        st.channels
            .entry(channel.to_string())
            .or_default()
            .push(waiter);
    }

    /// `POST`: the body to every waiter of the channel, in this process
    /// and, through the relay, in the other children; then `delivered N`.
    fn publish(&self, channel: &str, message: &[u8], reply: Reply) {
        let here = publish_to(&self.state, channel, message) as u64;
        let answer = move |others: u64| {
            let mut reply = reply;
            let _ = reply.write(format!("delivered {}\n", here + others).as_bytes());
            reply.finish();
        };
        match relay::get() {
            Some(r) => r.publish(&self.prefix, channel, message, answer),
            None => answer(0),
        }
    }
}

/// The message to every waiter of `channel` still connected; how many got it.
fn publish_to(state: &Mutex<State>, channel: &str, message: &[u8]) -> usize {
    let waiters = lock(state).channels.remove(channel).unwrap_or_default();
    let mut delivered = 0;
    for w in waiters {
        w.timer.cancel();
        if !w.reply.is_aborted() && answer(w.reply, 200, message) {
            delivered += 1;
        }
    }
    delivered
}

/// Removes waiter `id` of `channel`, if it is still there.
fn take(state: &Mutex<State>, channel: &str, id: u64) -> Option<Waiter> {
    let mut st = lock(state);
    let list = st.channels.get_mut(channel)?;
    let at = list.iter().position(|w| w.id == id)?;
    let w = list.swap_remove(at);
    if list.is_empty() {
        st.channels.remove(channel);
    }
    Some(w)
}

/// Answers with `status` and `body`; false if the client is gone.
fn answer(mut reply: Reply, status: u16, body: &[u8]) -> bool {
    reply.set_status(status);
    if status != 204 {
        reply.set_header("Content-Type", "application/octet-stream");
    }
    let ok = body.is_empty() || reply.write(body).is_ok();
    reply.finish();
    ok
}

/// `?timeout=S`: whole seconds, at most an hour.
fn timeout(req: &Request) -> Option<Duration> {
    match req.query_param("timeout") {
        None => Some(DEFAULT_TIMEOUT),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .map(|s| Duration::from_secs(s.min(MAX_TIMEOUT_S))),
    }
}

/// The whole body, or None past [`MAX_MESSAGE`] (the input has ended:
/// reading never waits).
fn message(req: &mut Request) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    let limit = MAX_MESSAGE as u64 + 1;
    req.body().take(limit).read_to_end(&mut body).ok()?;
    (body.len() <= MAX_MESSAGE).then_some(body)
}

fn refuse(reply: Reply, status: u16, text: &str) {
    let mut reply = reply;
    reply.set_status(status);
    let _ = reply.write(text.as_bytes());
    reply.finish();
}

impl crate::AsyncHandler for PubSub {
    fn call(&self, mut req: Request, reply: Reply) {
        let Some(channel) = self.channel(req.path()).map(str::to_string) else {
            return refuse(reply, 404, "no channel: GET or POST PREFIX/CHANNEL\n");
        };
        match req.method() {
            "GET" | "HEAD" => match timeout(&req) {
                Some(t) => self.wait(&channel, t, reply),
                None => refuse(reply, 400, "timeout: expected whole seconds\n"),
            },
            "POST" | "PUT" => match message(&mut req) {
                Some(m) => self.publish(&channel, &m, reply),
                None => refuse(reply, 413, "message past 1 MiB\n"),
            },
            _ => refuse(reply, 405, "GET waits, POST publishes\n"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_channel_is_the_rest_of_the_path() {
        let p = PubSub::new("/events/");
        assert_eq!(p.channel("/events/room1"), Some("room1"));
        assert_eq!(p.channel("/events/a/b"), Some("a/b"));
        assert_eq!(p.channel("/events"), None);
        assert_eq!(p.channel("/events/"), None);
        let root = PubSub::new("/");
        assert_eq!(root.channel("/x"), Some("x"));
    }
}
