//! Log lines of the binary (env_logger): their level from -v/-q and
//! `RUST_LOG`, their format, and where they go (stderr or `--error-log`,
//! a file reopened on USR1 like the access log).

use std::io::Write;
use std::path::Path;

use env_logger::Target;
use log::LevelFilter;

use crate::logfile::{self, LogFile};

/// Where log lines go: stderr, or the `--error-log` file (appended to,
/// reopened on USR1).
pub(crate) fn target(path: Option<&Path>) -> Result<Target, std::io::Error> {
    let Some(path) = path else {
        return Ok(Target::Stderr);
    };
    // LogFile's error already reads `PATH: what is wrong`.
    let file = LogFile::open(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("--error-log {e}")))?;
    Ok(Target::Pipe(Box::new(logfile::Writer(file))))
}

/// env_logger: info by default, moved by -v/-q, RUST_LOG wins.
/// Lines read `2026-01-01T00:00:00.000Z fastgate[PID]: LEVEL message`.
pub(crate) fn init((verbose, quiet): (u8, u8), target: Target) {
    let level = match i16::from(verbose) - i16::from(quiet) {
        ..=-2 => LevelFilter::Error,
        -1 => LevelFilter::Warn,
        0 => LevelFilter::Info,
        1 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    };
    env_logger::Builder::new()
        .filter_level(level)
        .parse_env("RUST_LOG")
        .target(target)
        .format(move |buf, record| {
            let time = buf.timestamp_millis();
            // Asked each time: a prefork child logs its own pid.
            let pid = std::process::id();
            writeln!(
                buf,
                "{time} fastgate[{pid}]: {} {}",
                record.level(),
                record.args()
            )
        })
        .init();
}
