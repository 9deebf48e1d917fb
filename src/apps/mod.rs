//! Built-in applications, one file each, mounted by name with `--mount`.
//! Each is an ordinary synchronous handler that runs in the worker pool,
//! so a benchmark of `hello` measures the path users' own code takes.

mod echo;
mod env;
mod hello;
mod ping;
mod sleep;

use std::sync::Arc;

use crate::server::Handler;

/// Names of the built-in apps this build serves.
pub const NAMES: &[&str] = &["hello", "echo", "env", "sleep", "ping"];

/// Whether `name` is a built-in app of this build.
pub fn is_known(name: &str) -> bool {
    NAMES.contains(&name)
}

/// The handler of a built-in app.
pub fn build(name: &str) -> Option<Arc<dyn Handler>> {
    let app: Arc<dyn Handler> = match name {
        "hello" => Arc::new(hello::hello),
        "echo" => Arc::new(echo::echo),
        "env" => Arc::new(env::env),
        "sleep" => Arc::new(sleep::sleep),
        "ping" => Arc::new(ping::ping),
        _ => return None,
    };
    Some(app)
}
