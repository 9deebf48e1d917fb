//! An event feed on asynchronous handlers: no thread waits for a reader.
//!
//! ```text
//! cargo run --example feed -- fastcgi://127.0.0.1:9100
//! ```
//!
//! - `GET /feed?after=N` answers the events after the N-th at once, or waits
//!   (no thread held) until there are some, 25 s at most (then 204).
//! - `POST /feed` adds its body as an event and wakes every reader.
//! - A clock thread adds a `tick` event every 2 s through `post()`, the way
//!   any other thread (a database listener, a queue consumer) would.
//!
//! Read it in a loop: `n=0; while :; do fastgate request fastcgi://127.0.0.1:9100
//! "/feed?after=$n" --body-only; n=$((n+1)); done`, or put nginx in front
//! and poll from a page. Every line of an answer is `N text`.

use std::io::Read;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use fastgate::{LoopHandle, Reply, Request, Server};

const WAIT: Duration = Duration::from_secs(25);

/// The events so far and the readers waiting for the next one. Only the
/// loop thread touches it (the handlers and posted closures run there).
#[derive(Default)]
struct Feed {
    events: Vec<String>,
    readers: Vec<(u64, usize, Reply)>,
    next_reader: u64,
}

type Shared = Arc<Mutex<Feed>>;

fn lock(feed: &Shared) -> MutexGuard<'_, Feed> {
    feed.lock().unwrap_or_else(|p| p.into_inner())
}

/// Answers `reply` with the events after the `after`-th.
fn send_events(events: &[String], after: usize, mut reply: Reply) {
    let mut body = String::new();
    for (i, e) in events.iter().enumerate().skip(after) {
        body.push_str(&format!("{} {e}\n", i + 1));
    }
    let _ = reply.write(body.as_bytes());
    reply.finish();
}

/// Adds an event and answers every waiting reader.
fn add_event(feed: &Shared, text: String) {
    let mut f = lock(feed);
    f.events.push(text);
    let readers = std::mem::take(&mut f.readers);
    for (_, after, reply) in readers {
        send_events(&f.events, after, reply);
    }
}

/// `GET /feed?after=N`: now if there is news, else later.
fn read(feed: &Shared, req: &Request, reply: Reply) {
    let after = req
        .query_param("after")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut f = lock(feed);
    if f.events.len() > after {
        return send_events(&f.events, after, reply);
    }
    f.next_reader += 1;
    let id = f.next_reader;
    let (gone, late) = (Arc::clone(feed), Arc::clone(feed));
    reply.on_abort(move || lock(&gone).readers.retain(|r| r.0 != id));
    reply.loop_handle().after(WAIT, move || {
        let mut f = lock(&late);
        if let Some(at) = f.readers.iter().position(|r| r.0 == id) {
            let (_, _, mut reply) = f.readers.swap_remove(at);
            reply.set_status(204);
            reply.finish();
        }
    });
    f.readers.push((id, after, reply));
}

/// `POST /feed`: the body becomes an event.
fn say(feed: &Shared, mut req: Request, mut reply: Reply) {
    let mut text = String::new();
    let _ = req.body().take(4096).read_to_string(&mut text);
    add_event(feed, text.trim_end().to_string());
    let _ = reply.write(b"ok\n");
    reply.finish();
}

/// A thread that adds an event every 2 s through the loop.
fn clock(handle: LoopHandle, feed: Shared) {
    std::thread::spawn(move || {
        for n in 1.. {
            std::thread::sleep(Duration::from_secs(2));
            let feed = Arc::clone(&feed);
            handle.post(move || add_event(&feed, format!("tick {n}")));
        }
    });
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let spec = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fastcgi://127.0.0.1:9100".into());
    let spec = spec.parse().unwrap_or_else(|e| {
        eprintln!("feed: {e}");
        std::process::exit(2);
    });
    let feed = Shared::default();
    let (reader, writer) = (Arc::clone(&feed), Arc::clone(&feed));
    let mut builder = Server::builder();
    builder.handle_signals(true);
    builder
        .listen(spec)
        .mount_async("/feed", move |req: Request, reply: Reply| {
            match req.method() {
                "POST" => say(&writer, req, reply),
                _ => read(&reader, &req, reply),
            }
        });
    let server = builder.build().unwrap_or_else(|e| {
        eprintln!("feed: {e}");
        std::process::exit(1);
    });
    clock(server.loop_handle(), feed);
    for spec in server.listen_specs() {
        log::info!("listening on {spec}");
    }
    if let Err(e) = server.run() {
        eprintln!("feed: {e}");
        std::process::exit(1);
    }
}
