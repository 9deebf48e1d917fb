//! Built-in applications, one file each, mounted by name with `--mount`.
//! Each is an ordinary synchronous handler that runs in the worker pool,
//! so a benchmark of `hello` measures the path users' own code takes.

mod echo;
mod env;
mod hello;
mod ping;
mod sleep;
mod status;

use std::sync::Arc;

use crate::config::Config;
use crate::server::{Handler, Stats};

/// Names of the built-in apps this build serves.
pub const NAMES: &[&str] = &["hello", "echo", "env", "sleep", "ping", "status"];

/// Whether `name` is a built-in app of this build.
pub fn is_known(name: &str) -> bool {
    NAMES.contains(&name)
}

/// The handler of a built-in app; `stats` are the counters of the server
/// it will be mounted in (the `status` app reports them).
pub fn build(name: &str, _config: &Config, stats: &Arc<Stats>) -> Option<Arc<dyn Handler>> {
    let app: Arc<dyn Handler> = match name {
        "hello" => Arc::new(hello::hello),
        "echo" => Arc::new(echo::echo),
        "env" => Arc::new(env::env),
        "sleep" => Arc::new(sleep::sleep),
        "ping" => Arc::new(ping::ping),
        "status" => Arc::new(status::Status::new(Arc::clone(stats))),
        _ => return None,
    };
    Some(app)
}
