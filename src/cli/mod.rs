//! The command line of the `fastgate` binary, the one user of the library
//! that knows clap and env_logger (the `cli` feature). It parses the
//! command line, checks it into a configuration (`config`), sets up
//! logging and hands over to the library; its only decisions are the exit
//! status and printing an error chain once: 2 for a usage or configuration
//! error, 1 for a runtime error.
//!
//! `config`, `request` and `bench` turn flags into the library's plain
//! options (`server::Options`, `client::RequestOptions`,
//! `client::bench::BenchOptions`); `serve` mounts the
//! built-in apps. Nothing outside `cli` imports from it: dependencies run
//! `protocol` ← `server` ← `apps` ← `cli`.

mod bench;
mod config;
mod logging;
mod request;
#[allow(unsafe_code)] // mallopt; see the file
mod serve;
// The value parsers of untrusted command-line text, public (and hidden)
// only so the fuzz targets can reach them.
#[doc(hidden)]
pub mod units;

#[doc(hidden)]
pub use self::config::parse_cidr;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use self::bench::BenchArgs;
use self::config::ServeArgs;
use self::request::RequestArgs;

/// A FastCGI/SCGI backend: a worker pool behind an event loop, serving
/// built-in apps and a CGI gateway.
#[derive(Parser)]
#[command(name = "fastgate", version, propagate_version = true)]
struct Cli {
    /// More log output (-v debug, -vv trace); RUST_LOG overrides
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Less log output (-q warn, -qq error); RUST_LOG overrides
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    quiet: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the backend
    Serve(Box<ServeArgs>),
    /// Send one request to a backend and print the response
    Request(RequestArgs),
    /// Load a backend with requests, speaking FastCGI or SCGI, and report the rate
    Bench(BenchArgs),
}

/// The whole binary: `src/main.rs` calls only this.
pub fn main() -> ExitCode {
    let matches = match Cli::command().try_get_matches() {
        Ok(m) => m,
        Err(e) => return usage_error(e),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    // clap requires a subcommand, so this is only a formality.
    let Some((_, sub)) = matches.subcommand() else {
        return ExitCode::from(2);
    };
    let verbosity = (cli.verbose, cli.quiet);
    match cli.command {
        Command::Serve(args) => serve::run(*args, sub, verbosity),
        Command::Request(args) => request::run(&args, verbosity),
        Command::Bench(args) => bench::run(&args, verbosity),
    }
}

/// Prints `fastgate: ERROR: CAUSE: ...` once and picks the exit status.
fn fail(status: u8, err: &dyn std::error::Error) -> ExitCode {
    let mut line = format!("fastgate: {err}");
    let mut source = err.source();
    while let Some(cause) = source {
        line.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    eprintln!("{line}");
    ExitCode::from(status)
}

/// Help and version go to stdout with status 0; a usage error goes to
/// stderr as `fastgate: ...` with status 2, like a configuration error.
fn usage_error(e: clap::Error) -> ExitCode {
    if !e.use_stderr() {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let _ = e.print();
        return ExitCode::from(2);
    }
    let text = e.render().to_string();
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    eprint!("fastgate: {text}");
    ExitCode::from(2)
}
