//! The server: an event loop that owns every socket, a worker pool that
//! runs synchronous handlers, and what connects them (DESIGN.md,
//! "Architecture of one process").
//!
//! ```text
//! listeners ─accept─▶ event_loop (conn: bytes → codec → requests)
//!                          │ Job (bounded queue)        ▲ Message + Waker
//!                          ▼                            │
//!                        pool: handler(Request, Response)
//! ```

pub(crate) mod access_log;
mod conn;
mod context;
mod dispatch;
mod event_loop;
mod fastcgi_conn;
mod hold;
mod http_conn;
mod id_map;
#[allow(unsafe_code)] // system calls; see the file
mod janitor;
mod limits;
#[allow(unsafe_code)] // system calls; see the file
mod listener;
mod machine;
mod message;
pub mod notify;
mod options;
mod output;
mod peer_filter;
#[allow(unsafe_code)] // system calls; see the file
mod poller;
mod pool;
pub(crate) mod privileges;
mod refusal;
mod refused_peers;
pub(crate) mod relay;
mod reply;
mod request;
mod response;
mod router;
mod scgi_conn;
#[allow(unsafe_code)] // system calls; see the file
mod scoreboard;
pub(crate) mod shared;
pub(crate) mod signals;
mod slab;
mod spool;
mod stats;
mod stop;
mod timer;
#[allow(unsafe_code)] // system calls; see the file
pub(crate) mod upgrade;
mod waker;
mod warnings;

use std::fmt;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use self::message::{LoopHandle, TimerHandle};
use self::notify::Notifier;
pub use self::options::{LogFormat, LogTarget, Options};
pub use self::peer_filter::Cidr;
pub use self::reply::Reply;
pub use self::request::{Body, Request};
pub use self::response::Response;
pub use self::router::{AsyncHandler, Handler, Route};
pub use self::scoreboard::{ChildStats, Scoreboard, SlotState};
pub use self::stats::{Histogram, Stats, StatsHandle, BUCKETS_US};
pub use self::stop::StopHandle;

use self::access_log::AccessLog;
use self::context::Ctx;
use self::event_loop::EventLoop;
use self::janitor::Janitor;
use self::limits::Limits;
use self::listener::{Listener, UnixOptions};
use self::peer_filter::PeerFilter;
use self::pool::Pool;
use self::router::Router;
use self::waker::Waker;
use crate::logfile::LogFile;
use crate::spec::ListenSpec;

/// A runtime error (exit status 1); the message names the listener, path
/// or peer at fault.
#[derive(Debug)]
pub struct Error(String);

impl Error {
    /// An error with this message.
    pub fn new(msg: impl Into<String>) -> Error {
        Error(msg.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// Builds a [`Server`]: listeners, handlers, limits. The calls may come
/// in any order.
///
/// ```no_run
/// use std::io::Write;
/// use fastgate::{Options, Request, Response, Server};
///
/// let mut options = Options::default();
/// options.max_threads = 4;
/// let mut builder = Server::builder();
/// builder
///     .listen("fastcgi://127.0.0.1:9000".parse().unwrap())
///     .options(options)
///     .mount("/", |_req: &mut Request, resp: &mut Response| resp.write_all(b"hi\n"));
/// builder.build().unwrap().run().unwrap();
/// ```
pub struct ServerBuilder {
    options: Options,
    /// Added by [`ServerBuilder::listen`], kept apart so that
    /// [`ServerBuilder::options`] never drops them.
    listen: Vec<ListenSpec>,
    router: Router,
    /// Made with the builder, so handlers built before the server (the
    /// `status` app) can read it.
    stats: StatsHandle,
    /// Whether the loop handles the process's signals.
    signals: bool,
    /// Listening sockets passed in by a parent process.
    inherited: Vec<OwnedFd>,
    /// Where the loop reports to systemd, if it does.
    notifier: Option<Notifier>,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder {
            options: Options::default(),
            listen: Vec::new(),
            router: Router::default(),
            stats: StatsHandle::new(),
            signals: false,
            inherited: Vec::new(),
            notifier: None,
        }
    }
}

impl ServerBuilder {
    /// The counters the server will keep, for a handler that reports them
    /// (a handle taken before [`use_scoreboard_slot`](Self::use_scoreboard_slot)
    /// follows it to the slot).
    pub fn stats(&self) -> StatsHandle {
        self.stats.clone()
    }

    /// For a prefork child, before [`start`](Self::start): count into
    /// `slot` of `board` (the master's, inherited across `fork`) instead of
    /// this process's own block, and let the `status` app report every
    /// child of the board. Sets the slot's pid to this process's.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fastgate::server::{Scoreboard, Server};
    ///
    /// // The master, before it forks:
    /// let board = Arc::new(Scoreboard::new(4).unwrap());
    /// // A child, after the fork:
    /// let mut builder = Server::builder();
    /// let status_sees = builder.stats();
    /// builder.use_scoreboard_slot(Arc::clone(&board), 2).unwrap();
    /// assert_eq!(status_sees.scoreboard().map(|(_, slot)| slot), Some(2));
    /// assert_eq!(board.children()[0].pid, std::process::id());
    /// ```
    ///
    /// Fails if `slot` is past the board's capacity, a slot was bound
    /// already, or the server has started (its gauges are up in the block
    /// it counts into).
    pub fn use_scoreboard_slot(
        &mut self,
        board: Arc<Scoreboard>,
        slot: usize,
    ) -> Result<(), Error> {
        self.stats.bind(board, slot)
    }

    /// Takes every limit from `options`, replacing earlier ones. Its
    /// listeners are served together with those added by
    /// [`listen`](Self::listen), before or after this call.
    pub fn options(&mut self, options: Options) -> &mut Self {
        self.options = options;
        self
    }

    /// Adds a listener, kept whatever [`options`](Self::options) come
    /// before or after.
    pub fn listen(&mut self, spec: ListenSpec) -> &mut Self {
        self.listen.push(spec);
        self
    }

    /// Mounts a synchronous handler at a path prefix.
    pub fn mount<H: Handler>(&mut self, prefix: &str, handler: H) -> &mut Self {
        self.router.mount(prefix, Route::Pool(Arc::new(handler)));
        self
    }

    /// Mounts an already shared handler.
    pub fn mount_shared(&mut self, prefix: &str, handler: Arc<dyn Handler>) -> &mut Self {
        self.router.mount(prefix, Route::Pool(handler));
        self
    }

    /// Mounts an asynchronous handler, called on the event loop (see
    /// [`AsyncHandler`]: it must never block).
    pub fn mount_async<H: AsyncHandler>(&mut self, prefix: &str, handler: H) -> &mut Self {
        self.router.mount(prefix, Route::Loop(Arc::new(handler)));
        self
    }

    /// Mounts a route of either kind.
    pub fn mount_route(&mut self, prefix: &str, route: Route) -> &mut Self {
        self.router.mount(prefix, route);
        self
    }

    /// Binds the listeners (dropping privileges after, if asked) and
    /// starts the worker pool: [`bind`](Self::bind) then
    /// [`start`](Self::start).
    pub fn build(&mut self) -> Result<Server, Error> {
        let bound = self.bind()?;
        self.start(bound)
    }

    /// Has the server handle the process's signals (TERM, INT, QUIT, HUP,
    /// USR1, USR2, TTIN, TTOU) as DESIGN.md's table says. Off by default:
    /// a program that embeds the library keeps its signals, and stops the
    /// server with a [`StopHandle`].
    pub fn handle_signals(&mut self, on: bool) -> &mut Self {
        self.signals = on;
        self
    }

    /// Serves a listening socket bound elsewhere (passed by a parent
    /// process); its protocol is detected per connection.
    pub fn inherit(&mut self, fd: OwnedFd) -> &mut Self {
        self.inherited.push(fd);
        self
    }

    /// Has the server report to systemd (`Type=notify`): `READY=1` when
    /// its loop starts, a `STATUS=` line every few seconds, `STOPPING=1`
    /// when a graceful stop begins. `None` (the default) reports nothing;
    /// under prefork the master reports and its children do not.
    ///
    /// ```no_run
    /// let mut builder = fastgate::Server::builder();
    /// builder.notify(fastgate::server::notify::Notifier::from_env());
    /// ```
    pub fn notify(&mut self, notifier: Option<Notifier>) -> &mut Self {
        self.notifier = notifier;
        self
    }

    /// The first half of [`build`](Self::build), done once: binds (or
    /// takes over) every listener, writes the pidfile and drops
    /// privileges. No thread is started yet, so this is where a prefork
    /// master forks.
    pub fn bind(&mut self) -> Result<Bound, Error> {
        raise_fd_limit();
        let options = self.take_options();
        let mut listeners = inherited_listeners(std::mem::take(&mut self.inherited))?;
        if let Some(handed) = upgrade::take_handed_over(&options)? {
            // A binary upgrade: the old master's sockets, not new ones.
            listeners.extend(handed);
        } else if listeners.is_empty() || !options.listen.is_empty() {
            listeners.extend(open_listeners(&options)?);
        }
        write_pidfile(options.pidfile.as_deref())?;
        let janitor = spawn_janitor(&options, &listeners)?;
        privileges::drop_to(options.user.as_deref(), options.group.as_deref())?;
        let exit = ExitDuty {
            pidfile: options.pidfile.clone(),
            janitor,
            creator: std::process::id(),
        };
        Ok(Bound {
            options,
            listeners,
            exit,
        })
    }

    /// The second half of [`build`](Self::build), in each process that
    /// serves: starts the worker threads and the event loop on `bound`.
    pub fn start(&mut self, bound: Bound) -> Result<Server, Error> {
        let Bound {
            options: cfg,
            listeners,
            exit,
        } = bound;
        let stats = self.stats.clone();
        stats.seal();
        stats.mark_started();
        let waker = Waker::new(stats.clone()).map_err(|e| Error::new(format!("eventfd: {e}")))?;
        let waker = Arc::new(waker);
        let (sender, rx) = message::channel(waker.clone());
        let specs = listeners.iter().map(|l| l.spec.clone()).collect();
        let router = Arc::new(std::mem::take(&mut self.router));
        let ctx = new_ctx(&cfg, router, sender, stats)?;
        let filter = PeerFilter {
            cidrs: cfg.allow_from.clone(),
            uids: cfg.allow_uid.clone(),
            gids: cfg.allow_gid.clone(),
        };
        let setup = (cfg.shutdown_timeout, filter, self.signals);
        let mut event_loop =
            EventLoop::new(listeners, ctx, rx, waker, setup.0, setup.1, setup.2)
                .map_err(|e| Error::new(format!("cannot start the event loop: {e}")))?;
        if let Some(notifier) = self.notifier.take() {
            event_loop.report_to(notify::Reporter::new(notifier, self.stats.clone()));
        }
        Ok(Server {
            event_loop,
            specs,
            exit,
        })
    }

    /// The options with every listener: those of the options, then those
    /// of [`listen`](Self::listen) not already among them.
    fn take_options(&mut self) -> Options {
        let mut options = std::mem::take(&mut self.options);
        for spec in std::mem::take(&mut self.listen) {
            if !options.listen.contains(&spec) {
                options.listen.push(spec);
            }
        }
        options
    }
}

/// Listeners bound and privileges dropped, no thread started yet: what
/// [`ServerBuilder::bind`] makes and [`ServerBuilder::start`] serves.
pub struct Bound {
    options: Options,
    listeners: Vec<Listener>,
    exit: ExitDuty,
}

impl Bound {
    /// The listeners, with real addresses (a port 0 resolved).
    pub fn listen_specs(&self) -> Vec<ListenSpec> {
        self.listeners.iter().map(|l| l.spec.clone()).collect()
    }

    /// A copy for a forked child: the same sockets (new fds), and none of
    /// the duties at exit (the socket files and the pidfile stay the
    /// parent's).
    pub fn for_child(&self) -> Result<Bound, Error> {
        let listeners = self
            .listeners
            .iter()
            .map(Listener::try_clone)
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| Error::new(format!("dup of a listening socket: {e}")))?;
        Ok(Bound {
            options: self.options.clone(),
            listeners,
            exit: ExitDuty::default(),
        })
    }

    /// The listening fds, to hand to another process.
    pub fn raw_fds(&self) -> Vec<std::os::fd::RawFd> {
        self.listeners.iter().map(Listener::raw_fd).collect()
    }

    /// The sockets now belong to a successor (a binary upgrade): this
    /// process will remove neither their files nor the pidfile.
    pub fn hand_over(&mut self) {
        for l in &mut self.listeners {
            l.forget_file();
        }
        self.exit.pidfile = None;
        if let Some(janitor) = self.exit.janitor.take() {
            janitor.cancel();
        }
    }
}

/// What the process that bound the listeners does when the server stops:
/// remove its pidfile, and let its janitor remove what it could not.
#[derive(Default)]
struct ExitDuty {
    pidfile: Option<PathBuf>,
    janitor: Option<Janitor>,
    /// The process that wrote the pidfile.
    creator: u32,
}

impl Drop for ExitDuty {
    fn drop(&mut self) {
        if self.pidfile.is_some() && std::process::id() != self.creator {
            // A forked copy unwinding: the duty is the parent's.
            std::mem::forget(self.janitor.take());
            return;
        }
        if let Some(path) = &self.pidfile {
            let ours = std::fs::read_to_string(path)
                .is_ok_and(|p| p.trim() == std::process::id().to_string());
            if ours {
                let _ = std::fs::remove_file(path);
            }
        }
        // Its pipe closes: it removes what this process could not.
        drop(self.janitor.take());
    }
}

/// A bound server, ready to run.
pub struct Server {
    event_loop: EventLoop,
    specs: Vec<ListenSpec>,
    /// Done after the listeners close (declared last: dropped last).
    exit: ExitDuty,
}

impl Server {
    /// A builder with the default [`Options`] and nothing mounted.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The listeners, with real addresses (a port 0 resolved).
    pub fn listen_specs(&self) -> &[ListenSpec] {
        &self.specs
    }

    /// Live counters.
    pub fn stats(&self) -> StatsHandle {
        self.event_loop.stats()
    }

    /// A handle on the server's event loop, for any thread: `post` runs a
    /// closure on the loop, `after` schedules one.
    pub fn loop_handle(&self) -> LoopHandle {
        self.event_loop.loop_handle()
    }

    /// A handle that stops this server from another thread, as TERM does.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle::new(self.event_loop.term_writer())
    }

    /// Serves until TERM/INT (graceful) or QUIT (at once), or until a
    /// [`StopHandle`] asks.
    pub fn run(mut self) -> Result<(), Error> {
        let result = self
            .event_loop
            .run()
            .map_err(|e| Error::new(format!("event loop: {e}")));
        // The listeners close first; then the pidfile goes and the janitor
        // removes what this process, no longer root, could not.
        let exit = std::mem::take(&mut self.exit);
        drop(self);
        drop(exit);
        result
    }
}

/// What the loop's connections share: limits, handlers, the pool (whose
/// threads start here), the access log and the temporary space.
fn new_ctx(
    cfg: &Options,
    router: Arc<Router>,
    sender: message::LoopSender,
    stats: StatsHandle,
) -> Result<Ctx, Error> {
    let pool = Pool::new(cfg.min_threads, cfg.max_threads, cfg.queue, stats.clone());
    let mut ctx = Ctx::new(limits(cfg), router, pool, sender);
    ctx.stats = stats;
    ctx.access_log = open_access_log(cfg)?;
    ctx.slow_threshold = cfg.slow_threshold;
    let temp_dir = cfg.temp_dir.clone().unwrap_or_else(std::env::temp_dir);
    ctx.temp = spool::TempSpace::new(temp_dir, cfg.max_temp_bytes);
    Ok(ctx)
}

fn limits(cfg: &Options) -> Limits {
    let (params_per_conn, params_per_process) = Limits::params_budgets(cfg.max_params_bytes);
    Limits {
        max_conns: cfg.max_conns,
        max_reqs: cfg.max_reqs,
        max_params_bytes: cfg.max_params_bytes,
        params_per_conn,
        params_per_process,
        max_body_bytes: cfg.max_body_bytes,
        idle_timeout: cfg.idle_timeout,
        header_timeout: cfg.header_timeout,
        request_timeout: cfg.request_timeout,
        body_timeout: cfg.body_timeout,
        send_timeout: cfg.send_timeout,
    }
}

/// `--pidfile`, written while still root (its directory is often `/run`).
fn write_pidfile(path: Option<&Path>) -> Result<(), Error> {
    let Some(path) = path else { return Ok(()) };
    std::fs::write(path, format!("{}\n", std::process::id())).map_err(|e| {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        match dir {
            Some(d) if !d.exists() => Error::new(format!(
                "--pidfile {}: the directory {} does not exist",
                path.display(),
                d.display()
            )),
            _ => Error::new(format!("--pidfile {}: {e}", path.display())),
        }
    })
}

/// A janitor when root is dropped with files to remove at exit.
fn spawn_janitor(cfg: &Options, listeners: &[Listener]) -> Result<Option<Janitor>, Error> {
    let dropping = cfg.user.is_some() || cfg.group.is_some();
    let mut files: Vec<PathBuf> = listeners
        .iter()
        .filter_map(|l| l.created_path().map(Path::to_path_buf))
        .collect();
    files.extend(cfg.pidfile.clone());
    if !dropping || files.is_empty() || !nix::unistd::Uid::effective().is_root() {
        return Ok(None);
    }
    Janitor::spawn(&files)
        .map(Some)
        .map_err(|e| Error::new(format!("fork (to remove the socket files at exit): {e}")))
}

/// Sockets passed with [`ServerBuilder::inherit`].
fn inherited_listeners(fds: Vec<OwnedFd>) -> Result<Vec<Listener>, Error> {
    fds.into_iter()
        .map(|fd| {
            let raw = fd.as_raw_fd();
            Listener::inherited(fd, &format!("inherited fd {raw}"))
                .map_err(|e| Error::new(format!("inherited fd {raw}: not a listening socket: {e}")))
        })
        .collect()
}

/// `--listen` specs, else fd 0, else systemd's sockets, else the default.
fn open_listeners(cfg: &Options) -> Result<Vec<Listener>, Error> {
    let unix = UnixOptions {
        mode: cfg.socket_mode.unwrap_or(0o660),
        owner: privileges::socket_owner(
            cfg.socket_owner.as_ref(),
            cfg.user.as_deref(),
            cfg.group.as_deref(),
        )?,
    };
    let listeners = bind_listeners(cfg, &unix)?;
    warn_root_only(&listeners, &unix);
    Ok(listeners)
}

/// Root with no owner given: a socket of mode 0660 is root's alone, and a
/// front server whose workers run as www-data gets EACCES (a 502).
fn warn_root_only(listeners: &[Listener], unix: &UnixOptions) {
    let others_may = unix.mode & 0o006 == 0o006;
    if unix.owner.is_some() || others_may || !nix::unistd::Uid::effective().is_root() {
        return;
    }
    for path in listeners.iter().filter_map(Listener::created_path) {
        log::warn!(
            "{}: only root may connect (mode {:04o}, owner root); a front server whose workers \
             run as another user gets \"permission denied\": give --socket-owner (e.g. \
             --socket-owner www-data:www-data) or --user/--group",
            path.display(),
            unix.mode
        );
    }
}

/// Where a server with no listener given, inherited or handed over
/// listens: loopback only, so that nothing off this machine can reach a
/// server started without thought (docs/SECURITY.md).
const DEFAULT_LISTEN: &str = "fastcgi://127.0.0.1:9000";

/// The listeners themselves, from the first source that has any.
fn bind_listeners(cfg: &Options, unix: &UnixOptions) -> Result<Vec<Listener>, Error> {
    if !cfg.listen.is_empty() {
        return cfg.listen.iter().map(|s| Listener::bind(s, unix)).collect();
    }
    if let Some(l) = Listener::from_stdin() {
        return Ok(vec![l]);
    }
    let inherited = Listener::from_systemd();
    if !inherited.is_empty() {
        return Ok(inherited);
    }
    let default: ListenSpec = DEFAULT_LISTEN
        .parse()
        .map_err(|e| Error::new(format!("{e}")))?;
    Ok(vec![Listener::bind(&default, unix)?])
}

/// `--access-log`: stdout (`-`) or a file reopened on USR1.
fn open_access_log(cfg: &Options) -> Result<Option<AccessLog>, Error> {
    let target = match &cfg.access_log {
        None => return Ok(None),
        Some(LogTarget::Stdout) => access_log::Target::Stdout,
        Some(LogTarget::File(path)) => access_log::Target::File(
            LogFile::open(path).map_err(|e| Error::new(format!("--access-log: {e}")))?,
        ),
    };
    Ok(Some(AccessLog::new(target, cfg.log_format)))
}

/// Raises the soft fd limit to the hard one: each connection is an fd.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> ListenSpec {
        s.parse().unwrap()
    }

    fn options_listening(on: &[&str]) -> Options {
        Options {
            listen: on.iter().map(|s| spec(s)).collect(),
            ..Options::default()
        }
    }

    #[test]
    fn the_default_listener_is_loopback_only() {
        let crate::Address::Tcp(addr) = spec(DEFAULT_LISTEN).address else {
            panic!("the default listener is TCP");
        };
        assert!(addr.ip().is_loopback(), "{addr}");
    }

    #[test]
    fn listeners_are_kept_whatever_the_order() {
        let mut before = Server::builder();
        before.listen(spec("127.0.0.1:1"));
        before.options(options_listening(&["/a.sock"]));
        let mut after = Server::builder();
        after.options(options_listening(&["/a.sock"]));
        after.listen(spec("127.0.0.1:1"));
        let want = [spec("/a.sock"), spec("127.0.0.1:1")];
        assert_eq!(before.take_options().listen, want);
        assert_eq!(after.take_options().listen, want);
    }

    #[test]
    fn a_listener_given_twice_is_bound_once() {
        let mut b = Server::builder();
        b.listen(spec("/a.sock"));
        b.options(options_listening(&["/a.sock"]));
        assert_eq!(b.take_options().listen, [spec("/a.sock")]);
    }
}
