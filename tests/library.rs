//! The library on its own, with no binary and no command line (it runs
//! under `--no-default-features` too): a server built in code, listeners
//! from `listen()` and from `Options` together, a handler that reads a
//! decoded query parameter, a stop asked from another thread, and a
//! server counting into a prefork scoreboard slot.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use fastgate::client::{self, RequestOptions};
use fastgate::server::{Scoreboard, SlotState};
use fastgate::{ListenSpec, Options, Request, Response, Server};

fn greet(req: &mut Request, resp: &mut Response) -> std::io::Result<()> {
    let name = req.query_param("name");
    writeln!(resp, "Hello, {}!", name.as_deref().unwrap_or("world"))
}

/// A fresh directory for a socket file.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fastgate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn get(spec: &ListenSpec, uri: &str) -> String {
    let mut opts = RequestOptions::new(spec.clone(), uri);
    opts.timeout = Duration::from_secs(10);
    let resp = client::send(&opts).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.head.status, 200, "{spec} {uri}");
    String::from_utf8(resp.body).unwrap()
}

#[test]
fn listen_then_options_serves_both_and_stops_from_another_thread() {
    let dir = temp_dir("library");
    let socket: ListenSpec = format!("fastcgi:{}/a.sock", dir.display()).parse().unwrap();
    let mut options = Options::default();
    options.listen = vec![socket.clone()];
    options.max_threads = 2;
    options.shutdown_timeout = Duration::from_secs(5);
    let mut builder = Server::builder();
    builder
        .listen("fastcgi://127.0.0.1:0".parse().unwrap())
        .options(options)
        .mount("/greet", greet);
    let server = builder.build().unwrap();
    let specs = server.listen_specs().to_vec();
    assert_eq!(specs.len(), 2, "{specs:?}");
    let tcp = specs.iter().find(|s| **s != socket).unwrap().clone();
    let stop = server.stop_handle();
    let running = thread::spawn(move || server.run());

    assert_eq!(get(&tcp, "/greet?name=Ada+L%C3%B6w"), "Hello, Ada Löw!\n");
    assert_eq!(get(&socket, "/greet?x=1&name=a%26b"), "Hello, a&b!\n");
    assert_eq!(get(&tcp, "/greet"), "Hello, world!\n");

    thread::spawn(move || stop.stop()).join().unwrap();
    let result = running.join().unwrap();
    assert!(result.is_ok(), "{result:?}");
    assert!(!dir.join("a.sock").exists(), "the socket file is removed");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_stop_asked_before_run_is_kept() {
    let mut options = Options::default();
    options.shutdown_timeout = Duration::from_secs(5);
    let mut builder = Server::builder();
    builder
        .options(options)
        .listen("scgi://127.0.0.1:0".parse().unwrap());
    let server = builder.build().unwrap();
    assert_eq!(server.listen_specs().len(), 1);
    let stop = server.stop_handle();
    stop.stop();
    stop.clone().stop();
    assert!(server.run().is_ok());
    stop.stop();
}

/// The two halves of `build`: `bind` takes over a socket bound elsewhere
/// (as a parent process passes one), `start` serves a copy made for a
/// forked child, and the copy owns none of the socket files.
#[test]
fn bind_then_start_serves_an_inherited_socket() {
    let dir = temp_dir("inherit");
    let path = dir.join("parent.sock");
    let parent = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let mut builder = Server::builder();
    builder.inherit(std::os::fd::OwnedFd::from(parent));
    builder.mount("/greet", greet);
    let bound = builder.bind().unwrap();
    let specs = bound.listen_specs();
    assert_eq!(specs.len(), 1);
    let child = bound.for_child().unwrap();
    let server = builder.start(child).unwrap();
    let stop = server.stop_handle();
    let running = thread::spawn(move || server.run());
    let spec: ListenSpec = format!("fastcgi:{}", path.display()).parse().unwrap();
    assert_eq!(get(&spec, "/greet?name=child"), "Hello, child!\n");
    stop.stop();
    running.join().unwrap().unwrap();
    assert!(
        path.exists(),
        "a copy for a child removed the parent's socket file"
    );
    drop(bound);
}

/// The status JSON of a server at `spec`.
fn status_json(spec: &ListenSpec) -> serde_json::Value {
    serde_json::from_str(&get(spec, "/status?json")).unwrap()
}

#[test]
fn a_server_on_a_scoreboard_slot_reports_every_child() {
    // The master, before it forks: the scoreboard, and a sibling it
    // forked earlier that has served 5 requests.
    let board = Arc::new(Scoreboard::new(4).unwrap());
    let sibling = 4_000_001;
    board.claim(0, sibling);
    board.stats(0).requests.store(5, Ordering::Relaxed);
    // The status app is mounted before the fork, as `serve` does.
    let mut builder = Server::builder();
    builder.listen("fastcgi://127.0.0.1:0".parse().unwrap());
    let status = fastgate::apps::build("status", "/status", &builder.stats()).unwrap();
    builder.mount_route("/status", status);
    let bound = builder.bind().unwrap();
    // The master claims slot 2 for the child it forked; the child (this
    // process stands for it) counts into it.
    board.claim(2, std::process::id());
    builder.use_scoreboard_slot(Arc::clone(&board), 2).unwrap();
    let server = builder.start(bound.for_child().unwrap()).unwrap();
    let spec = server.listen_specs()[0].clone();
    let stop = server.stop_handle();
    let running = thread::spawn(move || server.run());

    get(&spec, "/status?json");
    let v = status_json(&spec);
    assert_eq!(v["processes"], 2, "{v}");
    assert_eq!(v["pid"], std::process::id(), "the master's: {v}");
    assert_eq!(v["requests"], 5 + 1, "{v}");
    let children = v["children"].as_array().unwrap();
    let (first, me) = (&children[0], &children[1]);
    assert_eq!(
        (&first["slot"], &first["pid"]),
        (&0.into(), &sibling.into())
    );
    assert_eq!(
        (&first["state"], &first["requests"]),
        (&"starting".into(), &5.into())
    );
    assert_eq!(
        (&me["slot"], &me["pid"]),
        (&2.into(), &std::process::id().into())
    );
    assert_eq!(
        (&me["state"], &me["requests"]),
        (&"serving".into(), &1.into())
    );
    // This very request is busy; the worker of the one before may not
    // have marked itself idle yet, though its answer has arrived.
    let busy = me["threads_busy"].as_u64().unwrap();
    assert!((1..=2).contains(&busy), "this very request: {v}");

    // The sibling died and the master reaped it: it is gone, not a ghost.
    board.release(0);
    let v = status_json(&spec);
    assert_eq!(v["processes"], 1, "{v}");
    assert_eq!(v["children"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["requests"], 2, "{v}");

    stop.stop();
    assert!(running.join().unwrap().is_ok());
    assert_eq!(board.state(2), SlotState::Stopping);
}
