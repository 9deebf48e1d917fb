//! Built-in applications, one file each, mounted by name with `--mount`.
//! Most are ordinary synchronous handlers that run in the worker pool, so a
//! benchmark of `hello` measures the path users' own code takes; `pubsub`
//! is asynchronous and runs on the event loop. `cgi` needs its options
//! (`--cgi-root`...), so it is built by [`cgi::Cgi::new`], not by [`build`].

pub mod cgi;
mod echo;
mod env;
mod hello;
mod ping;
pub mod pubsub;
mod sleep;
mod status;

use std::sync::Arc;

use crate::server::{Handler, Route, StatsHandle};

/// Names of the built-in apps this build serves.
pub const NAMES: &[&str] = &[
    "hello", "echo", "env", "sleep", "ping", "pubsub", "status", "cgi",
];

/// Whether `name` is a built-in app of this build.
pub fn is_known(name: &str) -> bool {
    NAMES.contains(&name)
}

/// The route of a built-in app mounted at `prefix`; `stats` are the
/// counters of the server it will be mounted in (the `status` app reports
/// them, and every child's under prefork). None for an unknown name and
/// for `cgi`, which takes options: [`cgi::Cgi::new`].
pub fn build(name: &str, prefix: &str, stats: &StatsHandle) -> Option<Route> {
    if name == "pubsub" {
        return Some(Route::Loop(Arc::new(pubsub::PubSub::new(prefix))));
    }
    let app: Arc<dyn Handler> = match name {
        "hello" => Arc::new(hello::hello),
        "echo" => Arc::new(echo::echo),
        "env" => Arc::new(env::env),
        "sleep" => Arc::new(sleep::sleep),
        "ping" => Arc::new(ping::ping),
        "status" => Arc::new(status::Status::new(stats.clone())),
        _ => return None,
    };
    Some(Route::Pool(app))
}
