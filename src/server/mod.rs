//! The event loop, connections and worker pool.

use std::fmt;

use crate::config::Config;

/// A runtime error of the server (exit status 1): it names the listener,
/// path or peer at fault.
#[derive(Debug)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// Runs `fastgate serve` with the built-in apps until a signal stops it.
pub fn serve(config: Config) -> Result<(), Error> {
    let _ = config;
    Err(Error("server not built yet".into()))
}
