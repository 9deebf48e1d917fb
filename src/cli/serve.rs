//! `fastgate serve`: the checked configuration turned into a server with
//! the built-in apps mounted, the start logged, and the server run until a
//! signal stops it.

use std::process::ExitCode;
use std::sync::Arc;

use clap::ArgMatches;

use super::config::{self, Config, Mount, ServeArgs};
use crate::apps::cgi::{self, Cgi};
use crate::master::Plan;
use crate::server::notify::Notifier;
use crate::server::{Error, Route, Server, ServerBuilder};

/// Checks the configuration (exit 2 on a bad value), sets up logging,
/// then serves (exit 1 on a runtime error).
pub(crate) fn run(args: ServeArgs, matches: &ArgMatches, verbosity: (u8, u8)) -> ExitCode {
    if let Err(e) = config::check_env(matches, |name| std::env::var_os(name)) {
        return super::fail(2, &e);
    }
    let config = match args.into_config() {
        Ok(config) => config,
        Err(e) => return super::fail(2, &e.with_source(matches)),
    };
    // The cgi app's own checks are configuration errors too.
    if let Err(e) = cgi_app(&config) {
        return super::fail(2, &Error::new(e));
    }
    let target = match super::logging::target(config.error_log.as_deref()) {
        Ok(target) => target,
        Err(e) => return super::fail(1, &e),
    };
    super::logging::init(verbosity, target);
    match serve(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => super::fail(1, &e),
    }
}

/// Runs the built-in apps of `config` until a signal stops the server.
pub(crate) fn serve(config: Config) -> Result<(), Error> {
    limit_malloc_arenas();
    let mounts = mounts(&config);
    let mut builder = Server::builder();
    builder.handle_signals(true);
    // Read (and unset) before any thread starts.
    let notifier = crate::server::notify::Notifier::from_env();
    let stats = builder.stats();
    let cgi = cgi_app(&config).map_err(Error::new)?;
    for m in &mounts {
        let app = match (&*m.app, &cgi) {
            ("cgi", Some(cgi)) => Some(Route::Pool(cgi.clone())),
            _ => crate::apps::build(&m.app, &m.prefix, &stats),
        };
        let app =
            app.ok_or_else(|| Error::new(format!("--mount {}={}: unknown app", m.prefix, m.app)))?;
        builder.mount_route(&m.prefix, app);
    }
    let start_line = start_line(&config, &mounts);
    let plan = Plan {
        processes: config.processes,
        max_requests: config.max_requests,
        shutdown_timeout: config.shutdown_timeout,
    };
    builder.options(config.into());
    if plan.processes > 1 {
        // The master tells systemd; its children stay silent.
        return prefork(builder, plan, &start_line, notifier);
    }
    builder.notify(notifier);
    let server = builder.build()?;
    for spec in server.listen_specs() {
        log::info!("listening on {spec}");
    }
    log::info!("{start_line}");
    server.run()
}

/// `--processes` above 1: a master binds, forks the children, supervises.
fn prefork(
    mut builder: ServerBuilder,
    plan: Plan,
    start_line: &str,
    notifier: Option<Notifier>,
) -> Result<(), Error> {
    let bound = builder.bind()?;
    for spec in bound.listen_specs() {
        log::info!("listening on {spec}");
    }
    log::info!("{start_line}");
    crate::master::run(builder, bound, plan, notifier)
}

/// The `cgi` app, when a `--mount` names it, checked (`--cgi-root`, root).
fn cgi_app(config: &Config) -> Result<Option<Arc<Cgi>>, String> {
    if !config.mounts.iter().any(|m| m.app == "cgi") {
        return Ok(None);
    }
    let options = cgi::Options {
        roots: config.cgi_roots.clone(),
        allow_root: config.cgi_allow_root,
        drops_root: config.user.is_some(),
        stderr: config.cgi_stderr,
    };
    Ok(Some(Arc::new(Cgi::new(&options)?)))
}

/// `--mount`s; none means `/=hello`.
fn mounts(config: &Config) -> Vec<Mount> {
    if !config.mounts.is_empty() {
        return config.mounts.clone();
    }
    vec![Mount {
        prefix: "/".into(),
        app: "hello".into(),
    }]
}

/// `fastgate 0.1.0 pid 42: threads 2..32, queue 1024, mounts /=hello`.
fn start_line(config: &Config, mounts: &[Mount]) -> String {
    let mounts: Vec<String> = mounts
        .iter()
        .map(|m| format!("{}={}", m.prefix, m.app))
        .collect();
    format!(
        "fastgate {} pid {}: threads {}..{}, queue {}, mounts {}",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        config.min_threads,
        config.max_threads,
        config.queue,
        mounts.join(",")
    )
}

/// glibc gives each thread that allocates under contention an arena of its
/// own, about 1 MB of RSS each that never goes back: a pool grown to 32
/// threads for blocked handlers kept them all. Two arenas serve the loop
/// and its workers (who mostly hand memory to each other anyway). A
/// `MALLOC_ARENA_MAX` in the environment still wins.
fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none_or(|v| v.is_empty()) {
        // SAFETY: mallopt takes two integers; called before any thread
        // of ours starts.
        unsafe {
            nix::libc::mallopt(nix::libc::M_ARENA_MAX, 2);
        }
    }
}
