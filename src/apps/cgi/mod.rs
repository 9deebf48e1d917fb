//! `cgi`: the CGI/1.1 gateway, a drop-in for fcgiwrap. A request names a
//! script the fcgiwrap way; the script must resolve under a `--cgi-root`
//! (`script.rs`); it runs in a process group of its own with the params as
//! its environment (`process.rs`); one poll loop on the worker feeds it the
//! body while streaming its stdout back as the response (`pump.rs`); its
//! stderr goes to the log or to FCGI_STDERR (`stderr.rs`). Aborts and
//! `--request-timeout` (the loop aborts the request) kill the group.

mod process;
mod pump;
mod script;
mod stderr;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::signal::Signal;

use self::process::Group;
use self::pump::{Ended, Pump};
use crate::protocol::cgi_response::reason_phrase;
use crate::server::shared::Shared;
use crate::{Handler, Request, Response};

/// Where a script's stderr goes (`--cgi-stderr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StderrTo {
    /// The log, one line per line, naming the script and the request.
    #[default]
    Log,
    /// FCGI_STDERR records (a log line on SCGI and HTTP).
    FastCgi,
    /// Both.
    Both,
}

/// What the `cgi` app is told.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `--cgi-root`: scripts must resolve under one of these.
    pub roots: Vec<PathBuf>,
    /// `--cgi-allow-root`: run scripts even as root.
    pub allow_root: bool,
    /// `--user` was given: the server drops root before it serves.
    pub drops_root: bool,
    /// `--cgi-stderr`.
    pub stderr: StderrTo,
}

/// The gateway, mounted like any handler.
///
/// ```no_run
/// use fastgate::apps::cgi::{Cgi, Options};
/// let cgi = Cgi::new(&Options {
///     roots: vec!["/usr/lib/cgi-bin".into()],
///     ..Options::default()
/// })
/// .expect("a usable --cgi-root");
/// let mut builder = fastgate::Server::builder();
/// builder.mount("/cgi-bin", cgi);
/// ```
pub struct Cgi {
    roots: Vec<PathBuf>,
    stderr: StderrTo,
}

impl Cgi {
    /// Checks the options: at least one existing root, and not root
    /// unless root is dropped or allowed. The error names the flag and
    /// the fix.
    pub fn new(options: &Options) -> Result<Cgi, String> {
        let roots = script::resolve_roots(&options.roots)?;
        if nix::unistd::geteuid().is_root() && !options.drops_root && !options.allow_root {
            return Err(
                "the cgi app will not run scripts as root: give --user USER (root is \
                 dropped after binding) or --cgi-allow-root to run them as root anyway"
                    .into(),
            );
        }
        Ok(Cgi {
            roots,
            stderr: options.stderr,
        })
    }
}

impl Handler for Cgi {
    fn handle(&self, req: &mut Request, resp: &mut Response) -> io::Result<()> {
        let script = match script::locate(req.params(), &self.roots) {
            Ok(script) => script,
            Err(r) => return refuse(resp, r.status, &r.why),
        };
        let tag = tag(&script, req);
        let (mut child, pipes) = match process::spawn(&script, req.params()) {
            Ok(spawned) => spawned,
            Err(e) => return refuse(resp, 502, &format!("{tag}: cannot start it: {e}")),
        };
        let wake = Arc::new(EventFd::from_flags(
            EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC,
        )?);
        arm_hooks(req.shared(), &child.group, &wake);
        let errors = stderr::Lines::new(self.stderr, tag.clone());
        let mut pump = Pump::new(pipes, &wake, req.shared(), errors);
        let ended = pump.run(resp);
        pump.close_stdin();
        match ended {
            Ok(Ended::Done) => {
                let status = child.finish();
                log::debug!("cgi {tag}: {status}");
                pump.drain_stderr(resp)
            }
            Ok(Ended::BadHead(why)) => {
                child.terminate();
                pump.drain_stderr(resp)?;
                refuse(resp, 502, &format!("{tag}: {why}"))
            }
            Err(e) => {
                child.terminate();
                Err(e)
            }
        }
    }
}

/// `/srv/cgi/x.sh (request 7, /x.sh?a=1)`: who a log line is about.
fn tag(script: &Path, req: &Request) -> String {
    let uri = req.param("REQUEST_URI").unwrap_or_else(|| req.path());
    format!(
        "{} (request {}, {} {uri})",
        script.display(),
        req.shared().req.key,
        req.method()
    )
}

/// An abort (client gone, `--request-timeout`) TERMs the script's group
/// at once from the loop thread and wakes the pump, which finishes the
/// job (KILL after the grace, reap); a body push wakes the pump too.
/// Weak references: the hooks must not keep the pipe or the group alive.
fn arm_hooks(shared: &Shared, group: &Arc<Group>, wake: &Arc<EventFd>) {
    let (g, w) = (Arc::downgrade(group), Arc::downgrade(wake));
    shared.on_abort(Box::new(move || {
        if let Some(group) = g.upgrade() {
            group.signal(Signal::SIGTERM);
        }
        if let Some(wake) = w.upgrade() {
            let _ = wake.write(1);
        }
    }));
    let w = Arc::downgrade(wake);
    shared.set_input_waker(Arc::new(move || {
        if let Some(wake) = w.upgrade() {
            let _ = wake.write(1);
        }
    }));
}

/// A request answered without running anything (or after a script that
/// broke the protocol): logged, then a short plain-text answer.
fn refuse(resp: &mut Response, status: u16, why: &str) -> io::Result<()> {
    log::warn!("cgi: {why}; answered {status}");
    if resp.headers_sent() {
        return Err(io::Error::other(why.to_string()));
    }
    resp.set_status(status);
    resp.set_header("Content-Type", "text/plain");
    writeln!(resp, "{}", reason_phrase(status).to_ascii_lowercase())
}
