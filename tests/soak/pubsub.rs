//! One pubsub round of the soak: a waiter on a channel of its own, then a
//! publisher that posts until `delivered N` says someone got it (the
//! waiter may not be registered yet: `delivered 0` is a right answer),
//! then the waiter's answer, which must be the message whenever a POST
//! said it was delivered. A message that no POST delivered leaves the
//! waiter its 204 at the timeout, which is right too (counted as a note).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::client::*;
use crate::common::*;
use crate::load::{nap, Env, Rng};

static CHANNEL: AtomicU64 = AtomicU64::new(0);

/// How long the master waits for the other children's counts.
const RELAY_WAIT: Duration = Duration::from_millis(950);

/// Most POSTs of one round before it lets the waiter time out.
const TRIES: u32 = 20;

pub fn round(env: &Env, rng: &mut Rng) {
    let ch = CHANNEL.fetch_add(1, Ordering::Relaxed);
    let uri = format!("/events/c{ch}");
    let message = env.body(rng, 64 << 10);
    let wait = Ask::new(
        "pubsub-wait",
        "GET",
        format!("{uri}?timeout=2"),
        Vec::new(),
        message.clone(),
    );
    env.tally.sent("fcgi-tcp", wait.kind);
    let (mut waiter, opened) = match fcgi_connect(&env.fcgi_tcp) {
        Ok(c) => c,
        Err(e) => return fail(env, &wait, Instant::now(), format!("connect: {e}")),
    };
    if let Err(e) = waiter.try_send_raw(&fcgi_bytes(&wait, 1, false)) {
        return fail(env, &wait, opened, format!("write: {e}"));
    }
    let mut posts = Posts::default();
    for _ in 0..TRIES {
        let sent = Instant::now();
        let n = publish(env, &uri, &message);
        posts.slowest = posts.slowest.max(sent.elapsed());
        posts.failed |= n.is_none();
        posts.delivered = n.unwrap_or(0);
        if posts.delivered > 0 {
            break;
        }
        nap(50);
    }
    let reply = match waiter.try_read_until_end(1) {
        Ok(r) => r,
        Err(e) => return fail(env, &wait, opened, e),
    };
    let o = judge_wait(env, &reply, &wait, &posts);
    book(&env.tally, "fcgi-tcp", wait.kind, opened, o);
}

fn fail(env: &Env, ask: &Ask, opened: Instant, what: String) {
    book(
        &env.tally,
        "fcgi-tcp",
        ask.kind,
        opened,
        Outcome::Broken(format!("{}: {what}", ask.uri)),
    );
}

/// What the POSTs of a round said.
#[derive(Default)]
struct Posts {
    /// The last answer's N.
    delivered: u64,
    /// The longest a POST took.
    slowest: Duration,
    /// Whether a POST got no answer (a killed child): its message may
    /// have gone out through the relay before its child died.
    failed: bool,
}

/// The waiter's answer: the message if any POST delivered it, else 204.
/// A message that came while every answered POST said `delivered 0` is
/// explained by a POST that failed (its child relayed it, then was
/// killed before answering), or by a count that reached the master past
/// its wait (`ANSWER_WAIT`, 1 s, in `master/relay.rs`: the documented
/// bound of `delivered N` under prefork) when a POST did wait that long;
/// else it is lost.
fn judge_wait(env: &Env, reply: &FcgiReply, wait: &Ask, posts: &Posts) -> Outcome {
    if posts.delivered > 0 {
        return judge_fcgi(reply, wait);
    }
    let slowest = posts.slowest;
    match split_cgi(&reply.stdout) {
        Some((204, _, b"")) => {
            env.tally.note("pubsub: no POST reached the waiter, it got its 204");
            Outcome::Answered
        }
        Some((200, _, body)) if body == wait.want_body.as_slice() && posts.failed => {
            env.tally.note("pubsub: the waiter got the message of a POST that failed in a killed child");
            Outcome::Answered
        }
        Some((200, _, body)) if body == wait.want_body.as_slice() && slowest >= RELAY_WAIT => {
            env.tally.note("pubsub: the waiter got the message while a POST, past the relay's 1 s, said delivered 0");
            Outcome::Answered
        }
        Some((status, _, body)) => Outcome::Wrong(format!(
            "{}: every POST said delivered 0 (the slowest in {slowest:?}), yet the waiter got {status} with {} bytes{}",
            wait.uri,
            body.len(),
            if body == wait.want_body.as_slice() { ", the message" } else { "" }
        )),
        None => Outcome::Wrong(format!("{}: no end of head", wait.uri)),
    }
}

/// One POST: the N of `delivered N`, or None when it got no answer (it
/// is booked as a failure; its child may have relayed the message before
/// it died, so what the waiter gets is then no evidence either way).
fn publish(env: &Env, uri: &str, message: &[u8]) -> Option<u64> {
    let ask = Ask::new(
        "pubsub-post",
        "POST",
        uri.to_string(),
        message.to_vec(),
        Vec::new(),
    );
    env.tally.sent("fcgi-unix", ask.kind);
    let (mut c, opened) = match fcgi_connect(&env.fcgi_unix) {
        Ok(c) => c,
        Err(e) => {
            fail(env, &ask, Instant::now(), format!("connect: {e}"));
            return None;
        }
    };
    if let Err(e) = c.try_send_raw(&fcgi_bytes(&ask, 1, false)) {
        fail(env, &ask, opened, format!("write: {e}"));
        return None;
    }
    let reply = match c.try_read_until_end(1) {
        Ok(r) => r,
        Err(e) => {
            fail(env, &ask, opened, e);
            return None;
        }
    };
    let (o, n) = judge_post(&reply, uri);
    book(&env.tally, "fcgi-unix", ask.kind, opened, o);
    Some(n)
}

/// A POST's answer must be 200 `delivered N` (or a refusal).
fn judge_post(reply: &FcgiReply, uri: &str) -> (Outcome, u64) {
    let Some((status, retry, body)) = split_cgi(&reply.stdout) else {
        return (Outcome::Wrong(format!("POST {uri}: no end of head")), 0);
    };
    if status == 503 && retry {
        return (Outcome::Refused, 0);
    }
    let text = String::from_utf8_lossy(body);
    let n = text
        .strip_prefix("delivered ")
        .and_then(|n| n.trim_end().parse().ok());
    match (status, n, reply.protocol_status) {
        (200, Some(n), REQUEST_COMPLETE) => (Outcome::Answered, n),
        _ => (Outcome::Wrong(format!("POST {uri}: {status} {text:?}")), 0),
    }
}
