//! The `fastgate` binary: parses the command line, builds the checked
//! configuration (`fastgate::config`), sets up logging, and hands over to the
//! library. Its only decisions are the exit status and printing an error
//! chain once: 2 for a usage or configuration error, 1 for a runtime error.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use env_logger::Target;
use fastgate::client::{self, RequestArgs};
use fastgate::config::{self, ServeArgs};
use fastgate::logfile::{self, LogFile};
use log::LevelFilter;

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
}

fn main() -> ExitCode {
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
        Command::Serve(args) => serve(*args, sub, verbosity),
        Command::Request(args) => request(&args, verbosity),
    }
}

/// `fastgate serve`: check the configuration, then run until a signal.
fn serve(args: ServeArgs, matches: &ArgMatches, (verbose, quiet): (u8, u8)) -> ExitCode {
    if let Err(e) = config::check_env(matches, |name| std::env::var_os(name)) {
        return fail(2, &e);
    }
    let config = match args.into_config() {
        Ok(config) => config,
        Err(e) => return fail(2, &e.with_source(matches)),
    };
    let target = match log_target(config.error_log.as_deref()) {
        Ok(target) => target,
        Err(e) => return fail(1, &e),
    };
    init_logging(verbose, quiet, target);
    match fastgate::server::serve(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(1, &e),
    }
}

/// `fastgate request`: one request, the response on stdout, the backend's
/// stderr on ours; a failure or a 5xx status exits 1.
fn request(args: &RequestArgs, (verbose, quiet): (u8, u8)) -> ExitCode {
    let opts = match args.to_options() {
        Ok(opts) => opts,
        Err(e) => return fail(2, &e),
    };
    init_logging(verbose, quiet, Target::Stderr);
    let resp = match client::send(&opts) {
        Ok(resp) => resp,
        Err(e) => return fail(1, &e),
    };
    let _ = std::io::stderr().write_all(&resp.stderr);
    if let Err(e) = client::write_response(&mut std::io::stdout().lock(), &resp, args.body_only) {
        return fail(1, &e);
    }
    ExitCode::from(u8::from(resp.head.status >= 500))
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

/// Where log lines go: stderr, or the `--error-log` file (appended to,
/// reopened on USR1).
fn log_target(path: Option<&Path>) -> Result<Target, std::io::Error> {
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
fn init_logging(verbose: u8, quiet: u8, target: Target) {
    let level = match i16::from(verbose) - i16::from(quiet) {
        ..=-2 => LevelFilter::Error,
        -1 => LevelFilter::Warn,
        0 => LevelFilter::Info,
        1 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    };
    let pid = std::process::id();
    env_logger::Builder::new()
        .filter_level(level)
        .parse_env("RUST_LOG")
        .target(target)
        .format(move |buf, record| {
            let time = buf.timestamp_millis();
            writeln!(
                buf,
                "{time} fastgate[{pid}]: {} {}",
                record.level(),
                record.args()
            )
        })
        .init();
}
