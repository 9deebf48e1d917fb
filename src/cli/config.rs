//! The configuration of `fastgate serve`: the options as clap reads them
//! ([`ServeArgs`], raw strings from the command line or the `FASTGATE_*`
//! environment), and the checked, typed result ([`Config`]): the server's
//! [`Options`] plus what only the binary does (mounts of built-in apps,
//! prefork, the error log). Values stay strings until here so that every bad one is reported the
//! same way, naming the flag and the value:
//! `--idle-timeout "5x": expected a duration like 500ms, 30s or 5m`.

use std::ffi::OsString;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::ArgMatches;

use super::units::{parse_duration, parse_size};
use crate::server::{privileges, Cidr, LogFormat, LogTarget, Options};
use crate::spec::ListenSpec;

/// One `--mount PREFIX=APP`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// Normalised: starts with `/`, no trailing `/` except the root itself.
    pub prefix: String,
    /// A built-in app name (`hello`, `echo`, `env`, `sleep`, `ping`, ...).
    pub app: String,
}

/// Where a CGI script's stderr goes (`--cgi-stderr`).
pub use crate::apps::cgi::StderrTo as CgiStderr;

/// Everything `fastgate serve` was asked to do, checked.
#[derive(Clone, Debug)]
pub struct Config {
    /// Empty: fd 0 if it is a listening socket, else `LISTEN_FDS`, else
    /// `fastcgi://127.0.0.1:9000`.
    pub listen: Vec<ListenSpec>,
    /// Empty: `/=hello`.
    pub mounts: Vec<Mount>,
    pub cgi_roots: Vec<PathBuf>,
    pub cgi_allow_root: bool,
    /// 1: no master. `auto` is resolved to the CPU count by the parser.
    pub processes: usize,
    pub min_threads: usize,
    pub max_threads: usize,
    pub queue: usize,
    pub max_conns: usize,
    pub max_reqs: usize,
    /// 0: never.
    pub max_requests: u64,
    pub max_params_bytes: usize,
    /// 0: no limit.
    pub max_body_bytes: u64,
    pub idle_timeout: Duration,
    pub header_timeout: Duration,
    /// None: no limit (`0`).
    pub request_timeout: Option<Duration>,
    /// The longest pause in a request body; None: no limit (`0`).
    pub body_timeout: Option<Duration>,
    /// How long pending output may go untaken; None: no limit (`0`).
    pub send_timeout: Option<Duration>,
    pub shutdown_timeout: Duration,
    pub slow_threshold: Option<Duration>,
    pub cgi_stderr: CgiStderr,
    pub socket_mode: Option<u32>,
    /// `USER[:GROUP]`.
    pub socket_owner: Option<(String, Option<String>)>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub pidfile: Option<PathBuf>,
    pub allow_from: Vec<Cidr>,
    pub allow_uid: Vec<u32>,
    pub allow_gid: Vec<u32>,
    pub access_log: Option<LogTarget>,
    pub log_format: LogFormat,
    pub error_log: Option<PathBuf>,
    /// Bytes all temporary files together may hold (spooled bodies, held
    /// output).
    pub max_temp_bytes: u64,
    /// Where temporary files go; None: `$TMPDIR`, else `/tmp`.
    pub temp_dir: Option<PathBuf>,
}

impl Default for Config {
    /// The server's own defaults, plus those of the options only the
    /// command line has.
    fn default() -> Self {
        let s = Options::default();
        Config {
            listen: s.listen,
            mounts: Vec::new(),
            cgi_roots: Vec::new(),
            cgi_allow_root: false,
            processes: 1,
            min_threads: s.min_threads,
            max_threads: s.max_threads,
            queue: s.queue,
            max_conns: s.max_conns,
            max_reqs: s.max_reqs,
            max_requests: 0,
            max_params_bytes: s.max_params_bytes,
            max_body_bytes: s.max_body_bytes,
            idle_timeout: s.idle_timeout,
            header_timeout: s.header_timeout,
            request_timeout: s.request_timeout,
            body_timeout: s.body_timeout,
            send_timeout: s.send_timeout,
            shutdown_timeout: s.shutdown_timeout,
            slow_threshold: s.slow_threshold,
            cgi_stderr: CgiStderr::Log,
            socket_mode: s.socket_mode,
            socket_owner: s.socket_owner,
            user: s.user,
            group: s.group,
            pidfile: s.pidfile,
            allow_from: s.allow_from,
            allow_uid: s.allow_uid,
            allow_gid: s.allow_gid,
            access_log: s.access_log,
            log_format: s.log_format,
            error_log: None,
            max_temp_bytes: s.max_temp_bytes,
            temp_dir: s.temp_dir,
        }
    }
}

/// The part of the configuration the server runs on (mounts, prefork and
/// the error log are the command line's business).
impl From<Config> for Options {
    fn from(c: Config) -> Options {
        Options {
            listen: c.listen,
            min_threads: c.min_threads,
            max_threads: c.max_threads,
            queue: c.queue,
            max_conns: c.max_conns,
            max_reqs: c.max_reqs,
            max_params_bytes: c.max_params_bytes,
            max_body_bytes: c.max_body_bytes,
            idle_timeout: c.idle_timeout,
            header_timeout: c.header_timeout,
            request_timeout: c.request_timeout,
            body_timeout: c.body_timeout,
            send_timeout: c.send_timeout,
            shutdown_timeout: c.shutdown_timeout,
            slow_threshold: c.slow_threshold,
            socket_mode: c.socket_mode,
            socket_owner: c.socket_owner,
            user: c.user,
            group: c.group,
            pidfile: c.pidfile,
            allow_from: c.allow_from,
            allow_uid: c.allow_uid,
            allow_gid: c.allow_gid,
            access_log: c.access_log,
            log_format: c.log_format,
            max_temp_bytes: c.max_temp_bytes,
            temp_dir: c.temp_dir,
        }
    }
}

/// A configuration error (exit status 2): the flag, the value as given, and
/// what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// The long flag, e.g. `--max-reqs`.
    pub flag: String,
    /// The value as given.
    pub value: String,
    /// What is wrong: lowercase, no final period.
    pub reason: String,
    /// The `FASTGATE_*` variable the value came from, when it did not come
    /// from the command line.
    pub env: Option<String>,
}

impl Error {
    pub(crate) fn new(flag: &str, value: &str, reason: impl Into<String>) -> Error {
        Error {
            flag: flag.to_string(),
            value: value.to_string(),
            reason: reason.into(),
            env: None,
        }
    }

    /// Notes the environment variable the bad value came from, when clap
    /// took it from there: a value nobody typed is otherwise hard to find.
    pub fn with_source(mut self, matches: &ArgMatches) -> Error {
        let id = self.flag.trim_start_matches('-').replace('-', "_");
        // `try_contains_id` first: `value_source` panics on an unknown id.
        let known = matches.try_contains_id(&id).is_ok();
        if known && matches.value_source(&id) == Some(ValueSource::EnvVariable) {
            self.env = Some(env_name(&self.flag));
        }
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.flag, self.value)?;
        if let Some(var) = &self.env {
            write!(f, " (from {var})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for Error {}

/// Refuses a `FASTGATE_*` variable of `fastgate serve` that is set but
/// empty or blank (only spaces and commas), unless the command line gives
/// the option anyway. clap takes an empty variable as unset, so a
/// `FASTGATE_LISTEN=` left by a script would silently mean the default
/// listener. `lookup` reads the environment (`std::env::var_os`).
pub fn check_env(
    matches: &ArgMatches,
    lookup: impl Fn(&str) -> Option<OsString>,
) -> Result<(), Error> {
    let cmd = <ServeArgs as clap::Args>::augment_args(clap::Command::new("serve"));
    for arg in cmd.get_arguments() {
        let (Some(var), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        let var = var.to_string_lossy();
        let Some(value) = lookup(&var) else {
            continue;
        };
        let value = value.to_string_lossy();
        if !value.trim_matches([',', ' ', '\t', '\n']).is_empty()
            || from_command_line(matches, arg.get_id().as_str())
        {
            continue;
        }
        let mut err = Error::new(
            &format!("--{long}"),
            &value,
            format!("set but empty: give {var} a value, or unset it"),
        );
        err.env = Some(var.into_owned());
        return Err(err);
    }
    Ok(())
}

fn from_command_line(matches: &ArgMatches, id: &str) -> bool {
    // `try_contains_id` first: `value_source` panics on an unknown id.
    matches.try_contains_id(id).is_ok()
        && matches.value_source(id) == Some(ValueSource::CommandLine)
}

/// `--max-reqs` → `FASTGATE_MAX_REQS`.
fn env_name(flag: &str) -> String {
    let name = flag.trim_start_matches('-').replace('-', "_");
    format!("FASTGATE_{}", name.to_uppercase())
}

/// The options of `fastgate serve` as read from the command line and the
/// `FASTGATE_*` environment: raw strings, checked by [`ServeArgs::into_config`].
/// Defaults live in [`Config::default`], so an absent option is `None`.
#[derive(clap::Args, Clone, Debug, Default)]
#[command(next_help_heading = "Serve options")]
pub struct ServeArgs {
    /// Where to listen: fastcgi://HOST:PORT, scgi:/path.sock, HOST:PORT or /path.sock or
    /// unix:/path.sock (auto: FastCGI and SCGI on one socket), ...
    /// [default: fd 0 if it is a listening socket, else LISTEN_FDS, else fastcgi://127.0.0.1:9000]
    #[arg(
        short,
        long,
        value_name = "SPEC",
        allow_hyphen_values = true,
        env = "FASTGATE_LISTEN",
        value_delimiter = ','
    )]
    pub listen: Vec<String>,
    /// Serve APP under PREFIX (whole path segments; longest match wins) [default: /=hello]
    #[arg(
        short,
        long,
        value_name = "PREFIX=APP",
        allow_hyphen_values = true,
        env = "FASTGATE_MOUNT",
        value_delimiter = ','
    )]
    pub mount: Vec<String>,
    /// The cgi app runs only executables that resolve (symlinks followed) under these
    /// directories; required by --mount PREFIX=cgi
    #[arg(
        long,
        value_name = "DIR",
        allow_hyphen_values = true,
        env = "FASTGATE_CGI_ROOT",
        value_delimiter = ','
    )]
    pub cgi_root: Vec<String>,
    /// Let the cgi app run scripts while fastgate runs as root with no --user;
    /// FASTGATE_CGI_ALLOW_ROOT takes true or false
    // A string checked by `into_config`, as every other value, so that a bad
    // FASTGATE_CGI_ALLOW_ROOT is named: clap's own error would not say
    // where the value came from.
    #[arg(
        long,
        value_name = "BOOL",
        env = "FASTGATE_CGI_ALLOW_ROOT",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub cgi_allow_root: Option<String>,
    /// Prefork N children; auto = number of CPUs; 1 = no master [default: 1]
    #[arg(
        short,
        long,
        value_name = "N|auto",
        allow_hyphen_values = true,
        env = "FASTGATE_PROCESSES"
    )]
    pub processes: Option<String>,
    /// Worker threads kept per process [default: 2]
    #[arg(
        long,
        value_name = "N",
        allow_hyphen_values = true,
        env = "FASTGATE_MIN_THREADS"
    )]
    pub min_threads: Option<String>,
    /// Worker threads at most per process [default: 32]
    #[arg(
        long,
        value_name = "N",
        allow_hyphen_values = true,
        env = "FASTGATE_MAX_THREADS"
    )]
    pub max_threads: Option<String>,
    /// Requests waiting for a worker before new ones get 503 [default: 1024]
    #[arg(
        long,
        value_name = "N",
        allow_hyphen_values = true,
        env = "FASTGATE_QUEUE"
    )]
    pub queue: Option<String>,
    /// Connections per process before accepting pauses [default: 10000]
    #[arg(
        long,
        value_name = "N",
        allow_hyphen_values = true,
        env = "FASTGATE_MAX_CONNS"
    )]
    pub max_conns: Option<String>,
    /// Concurrent requests per FastCGI connection, FCGI_MAX_REQS [default: 128]
    #[arg(
        long,
        value_name = "N",
        allow_hyphen_values = true,
        env = "FASTGATE_MAX_REQS"
    )]
    pub max_reqs: Option<String>,
    /// Recycle a prefork child after N requests; 0 = never [default: 0]
    #[arg(
        long,
        value_name = "N",
        allow_hyphen_values = true,
        env = "FASTGATE_MAX_REQUESTS"
    )]
    pub max_requests: Option<String>,
    /// Total size of one request's params, past it 431; bytes, or with k, m, g
    /// (KiB, MiB, GiB) [default: 128k]
    #[arg(
        long,
        value_name = "SIZE",
        allow_hyphen_values = true,
        env = "FASTGATE_MAX_PARAMS_BYTES"
    )]
    pub max_params_bytes: Option<String>,
    /// Request body limit, 413 past it; 0 = none; bytes, or with k, m, g
    /// (KiB, MiB, GiB), e.g. 10m [default: 0]
    #[arg(
        long,
        value_name = "SIZE",
        allow_hyphen_values = true,
        env = "FASTGATE_MAX_BODY_BYTES"
    )]
    pub max_body_bytes: Option<String>,
    /// Close a kept-alive connection idle this long [default: 60s]
    #[arg(
        long,
        value_name = "D",
        allow_hyphen_values = true,
        env = "FASTGATE_IDLE_TIMEOUT"
    )]
    pub idle_timeout: Option<String>,
    /// Time allowed for a request's params to arrive [default: 10s]
    #[arg(
        long,
        value_name = "D",
        allow_hyphen_values = true,
        env = "FASTGATE_HEADER_TIMEOUT"
    )]
    pub header_timeout: Option<String>,
    /// Time allowed from dispatch to the end of the response; 0 = none [default: 0]
    #[arg(
        long,
        value_name = "D",
        allow_hyphen_values = true,
        env = "FASTGATE_REQUEST_TIMEOUT"
    )]
    pub request_timeout: Option<String>,
    /// Longest pause between two pieces of a request body before the request is aborted;
    /// 0 = none [default: 60s]
    #[arg(
        long,
        value_name = "D",
        allow_hyphen_values = true,
        env = "FASTGATE_BODY_TIMEOUT"
    )]
    pub body_timeout: Option<String>,
    /// How long a response may wait for the client to take any of it before the
    /// connection is cut; 0 = none [default: 60s]
    #[arg(
        long,
        value_name = "D",
        allow_hyphen_values = true,
        env = "FASTGATE_SEND_TIMEOUT"
    )]
    pub send_timeout: Option<String>,
    /// How long a graceful stop waits for requests in flight [default: 30s]
    #[arg(
        long,
        value_name = "D",
        allow_hyphen_values = true,
        env = "FASTGATE_SHUTDOWN_TIMEOUT"
    )]
    pub shutdown_timeout: Option<String>,
    /// Count and log requests slower than this; 0 = off [default: 0]
    #[arg(
        long,
        value_name = "D",
        allow_hyphen_values = true,
        env = "FASTGATE_SLOW_THRESHOLD"
    )]
    pub slow_threshold: Option<String>,
    /// Where a CGI script's stderr goes, line by line: log, fastcgi (FCGI_STDERR records,
    /// in nginx's error log) or both [default: log]
    #[arg(
        long,
        value_name = "WHERE",
        allow_hyphen_values = true,
        env = "FASTGATE_CGI_STDERR"
    )]
    pub cgi_stderr: Option<String>,
    /// Permissions of created Unix sockets, octal (660, 0660) [default: 0660]
    #[arg(
        long,
        value_name = "OCTAL",
        allow_hyphen_values = true,
        env = "FASTGATE_SOCKET_MODE"
    )]
    pub socket_mode: Option<String>,
    /// Owner of created Unix sockets, e.g. www-data:www-data for a front server whose
    /// workers run as www-data [default: the --user/--group dropped to, else the user
    /// fastgate runs as]
    #[arg(
        long,
        value_name = "USER[:GROUP]",
        allow_hyphen_values = true,
        env = "FASTGATE_SOCKET_OWNER"
    )]
    pub socket_owner: Option<String>,
    /// Drop privileges to this user after binding
    #[arg(
        short,
        long,
        value_name = "USER",
        allow_hyphen_values = true,
        env = "FASTGATE_USER"
    )]
    pub user: Option<String>,
    /// Drop privileges to this group after binding
    #[arg(
        short,
        long,
        value_name = "GROUP",
        allow_hyphen_values = true,
        env = "FASTGATE_GROUP"
    )]
    pub group: Option<String>,
    /// Write the master's (or single process's) pid here
    #[arg(
        long,
        value_name = "PATH",
        allow_hyphen_values = true,
        env = "FASTGATE_PIDFILE"
    )]
    pub pidfile: Option<String>,
    /// Refuse TCP peers outside every listed network (10.0.0.0/8, ::1)
    #[arg(
        long,
        value_name = "CIDR",
        allow_hyphen_values = true,
        env = "FASTGATE_ALLOW_FROM",
        value_delimiter = ','
    )]
    pub allow_from: Vec<String>,
    /// Refuse Unix-socket peers whose uid matches none of these
    #[arg(
        long,
        value_name = "UID",
        allow_hyphen_values = true,
        env = "FASTGATE_ALLOW_UID",
        value_delimiter = ','
    )]
    pub allow_uid: Vec<String>,
    /// Refuse Unix-socket peers whose gid matches none of these
    #[arg(
        long,
        value_name = "GID",
        allow_hyphen_values = true,
        env = "FASTGATE_ALLOW_GID",
        value_delimiter = ','
    )]
    pub allow_gid: Vec<String>,
    /// One line per request to this file, or - for stdout
    #[arg(
        long,
        value_name = "PATH|-",
        allow_hyphen_values = true,
        env = "FASTGATE_ACCESS_LOG"
    )]
    pub access_log: Option<String>,
    /// Access log format: text or json [default: text]
    #[arg(
        long,
        value_name = "FORMAT",
        allow_hyphen_values = true,
        env = "FASTGATE_LOG_FORMAT"
    )]
    pub log_format: Option<String>,
    /// Where log lines go [default: stderr]
    #[arg(
        long,
        value_name = "PATH",
        allow_hyphen_values = true,
        env = "FASTGATE_ERROR_LOG"
    )]
    pub error_log: Option<String>,
    /// All temporary files together (spooled request bodies, held
    /// responses) stay under this; past it a body gets 413, a response 503
    /// [default: 4g]
    #[arg(
        long,
        value_name = "SIZE",
        allow_hyphen_values = true,
        env = "FASTGATE_MAX_TEMP_BYTES"
    )]
    pub max_temp_bytes: Option<String>,
    /// Directory of the (unlinked) temporary files [default: $TMPDIR, else /tmp]
    #[arg(
        long,
        value_name = "DIR",
        allow_hyphen_values = true,
        env = "FASTGATE_TEMP_DIR"
    )]
    pub temp_dir: Option<String>,
}

impl ServeArgs {
    /// Checks every option and builds the configuration; the first bad value
    /// is the error.
    pub fn into_config(self) -> Result<Config, Error> {
        let d = Config::default();
        let (min_threads, max_threads) = self.threads(&d)?;
        Ok(Config {
            listen: parse_listens(&items("--listen", &self.listen)?)?,
            mounts: parse_mounts(&items("--mount", &self.mount)?)?,
            cgi_roots: each("--cgi-root", &self.cgi_root, parse_path)?,
            cgi_allow_root: opt("--cgi-allow-root", &self.cgi_allow_root, parse_bool)?
                .unwrap_or(d.cgi_allow_root),
            processes: opt("--processes", &self.processes, parse_processes)?.unwrap_or(d.processes),
            min_threads,
            max_threads,
            queue: count("--queue", &self.queue, 1, d.queue)?,
            max_conns: count("--max-conns", &self.max_conns, 1, d.max_conns)?,
            max_reqs: opt("--max-reqs", &self.max_reqs, |s| {
                to_usize(within(1, 65_535)(s)?)
            })?
            .unwrap_or(d.max_reqs),
            max_requests: opt("--max-requests", &self.max_requests, parse_number)?
                .unwrap_or(d.max_requests),
            max_params_bytes: opt("--max-params-bytes", &self.max_params_bytes, |s| {
                to_usize(size_at_least(1024)(s)?)
            })?
            .unwrap_or(d.max_params_bytes),
            max_body_bytes: opt("--max-body-bytes", &self.max_body_bytes, parse_size)?
                .unwrap_or(d.max_body_bytes),
            idle_timeout: opt("--idle-timeout", &self.idle_timeout, positive_duration)?
                .unwrap_or(d.idle_timeout),
            header_timeout: opt("--header-timeout", &self.header_timeout, positive_duration)?
                .unwrap_or(d.header_timeout),
            request_timeout: opt("--request-timeout", &self.request_timeout, zero_is_none)?
                .unwrap_or(d.request_timeout),
            body_timeout: opt("--body-timeout", &self.body_timeout, zero_is_none)?
                .unwrap_or(d.body_timeout),
            send_timeout: opt("--send-timeout", &self.send_timeout, zero_is_none)?
                .unwrap_or(d.send_timeout),
            shutdown_timeout: opt("--shutdown-timeout", &self.shutdown_timeout, parse_duration)?
                .unwrap_or(d.shutdown_timeout),
            slow_threshold: opt("--slow-threshold", &self.slow_threshold, zero_is_none)?
                .unwrap_or(d.slow_threshold),
            cgi_stderr: opt("--cgi-stderr", &self.cgi_stderr, parse_cgi_stderr)?
                .unwrap_or(d.cgi_stderr),
            socket_mode: opt("--socket-mode", &self.socket_mode, parse_socket_mode)?,
            socket_owner: opt("--socket-owner", &self.socket_owner, parse_socket_owner)?,
            user: opt("--user", &self.user, parse_user)?,
            group: opt("--group", &self.group, parse_group)?,
            pidfile: opt("--pidfile", &self.pidfile, parse_path)?,
            allow_from: each("--allow-from", &self.allow_from, parse_cidr)?,
            allow_uid: each("--allow-uid", &self.allow_uid, parse_id)?,
            allow_gid: each("--allow-gid", &self.allow_gid, parse_id)?,
            access_log: opt("--access-log", &self.access_log, parse_log_target)?,
            log_format: opt("--log-format", &self.log_format, parse_log_format)?
                .unwrap_or(d.log_format),
            error_log: opt("--error-log", &self.error_log, parse_path)?,
            max_temp_bytes: opt("--max-temp-bytes", &self.max_temp_bytes, parse_size)?
                .unwrap_or(d.max_temp_bytes),
            temp_dir: opt("--temp-dir", &self.temp_dir, parse_path)?,
        })
    }

    /// `--min-threads` and `--max-threads` together: max >= min. A lone
    /// `--max-threads 1` lowers the default minimum rather than failing.
    fn threads(&self, d: &Config) -> Result<(usize, usize), Error> {
        let max = count("--max-threads", &self.max_threads, 1, d.max_threads)?;
        let min = match &self.min_threads {
            Some(_) => count("--min-threads", &self.min_threads, 1, d.min_threads)?,
            None => d.min_threads.min(max),
        };
        if max >= min {
            return Ok((min, max));
        }
        Err(match &self.max_threads {
            Some(v) => Error::new(
                "--max-threads",
                v,
                format!("must be at least --min-threads ({min})"),
            ),
            None => Error::new(
                "--min-threads",
                self.min_threads.as_deref().unwrap_or_default(),
                format!("must be at most --max-threads ({max})"),
            ),
        })
    }
}

/// Runs `parse` on one value, naming `flag` if it fails.
fn check<T>(
    flag: &'static str,
    value: &str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, Error> {
    parse(value).map_err(|reason| Error::new(flag, value, reason))
}

/// An option given at most once.
fn opt<T>(
    flag: &'static str,
    value: &Option<String>,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<Option<T>, Error> {
    value.as_deref().map(|v| check(flag, v, parse)).transpose()
}

/// A repeatable option, its items trimmed (see [`items`]).
fn each<T>(
    flag: &'static str,
    values: &[String],
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, Error> {
    let values = items(flag, values)?;
    values.iter().map(|v| check(flag, v, &parse)).collect()
}

/// The items of a repeatable option, each trimmed, so that
/// `FASTGATE_LISTEN="a:1, b:2"` reads as two specs. An empty item (a
/// trailing or doubled comma) is skipped, as a stray comma means nothing
/// else; an option given with no item at all is refused.
fn items<'a>(flag: &'static str, values: &'a [String]) -> Result<Vec<&'a str>, Error> {
    let kept: Vec<&str> = values
        .iter()
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .collect();
    if kept.is_empty() && !values.is_empty() {
        let reason = "empty: give one value, or several separated by commas";
        return Err(Error::new(flag, &values.join(","), reason));
    }
    Ok(kept)
}

/// A size or count of at least `min`.
fn count(
    flag: &'static str,
    value: &Option<String>,
    min: u64,
    default: usize,
) -> Result<usize, Error> {
    Ok(opt(flag, value, |s| to_usize(at_least(min)(s)?))?.unwrap_or(default))
}

fn to_usize(n: u64) -> Result<usize, String> {
    usize::try_from(n).map_err(|_| "number too large".into())
}

/// A decimal whole number.
fn parse_number(s: &str) -> Result<u64, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected a whole number".into());
    }
    s.parse().map_err(|_| "number too large".into())
}

/// A whole number of at least `min`.
fn at_least(min: u64) -> impl Fn(&str) -> Result<u64, String> {
    move |s| match parse_number(s)? {
        n if n < min => Err(format!("must be at least {min}")),
        n => Ok(n),
    }
}

/// A whole number in `min..=max`.
fn within(min: u64, max: u64) -> impl Fn(&str) -> Result<u64, String> {
    move |s| match parse_number(s)? {
        n if n < min || n > max => Err(format!("must be between {min} and {max}")),
        n => Ok(n),
    }
}

/// A size of at least `min` bytes.
fn size_at_least(min: u64) -> impl Fn(&str) -> Result<u64, String> {
    move |s| match parse_size(s)? {
        n if n < min => Err(format!("must be at least {min} bytes (1k)")),
        n => Ok(n),
    }
}

/// A yes-or-no value, spelled as clap's boolish values are.
fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "yes" | "y" | "on" | "1" => Ok(true),
        "false" | "no" | "n" | "off" | "0" => Ok(false),
        _ => Err("expected true or false (or yes/no, on/off, 1/0)".into()),
    }
}

/// A numeric uid or gid.
fn parse_id(s: &str) -> Result<u32, String> {
    let id = parse_number(s).ok().and_then(|n| u32::try_from(n).ok());
    id.ok_or_else(|| "expected a numeric id".into())
}

/// A duration that must not be zero (a zero idle timeout would close every
/// connection at once).
fn positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        Duration::ZERO => Err("must be more than 0".into()),
        d => Ok(d),
    }
}

/// A duration where `0` means "no limit".
fn zero_is_none(s: &str) -> Result<Option<Duration>, String> {
    Ok(Some(parse_duration(s)?).filter(|d| !d.is_zero()))
}

/// Every `--listen`, none twice.
fn parse_listens(values: &[&str]) -> Result<Vec<ListenSpec>, Error> {
    let mut specs: Vec<ListenSpec> = Vec::with_capacity(values.len());
    for v in values {
        let spec = check("--listen", v, parse_listen)?;
        if specs.contains(&spec) {
            return Err(Error::new("--listen", v, "listed twice"));
        }
        specs.push(spec);
    }
    Ok(specs)
}

/// One listen spec this build can serve.
fn parse_listen(s: &str) -> Result<ListenSpec, String> {
    let spec: ListenSpec = s.parse().map_err(|e: crate::spec::SpecError| {
        // The spec error quotes the value; the flag error does already.
        let quoted = format!("{s:?}: ");
        e.0.strip_prefix(&quoted).unwrap_or(&e.0).to_string()
    })?;
    Ok(spec)
}

/// Every `--mount`, no prefix twice.
fn parse_mounts(values: &[&str]) -> Result<Vec<Mount>, Error> {
    let mut mounts: Vec<Mount> = Vec::with_capacity(values.len());
    for v in values {
        let mount = check("--mount", v, parse_mount)?;
        if mounts.iter().any(|m| m.prefix == mount.prefix) {
            let reason = format!("prefix {:?} is mounted twice", mount.prefix);
            return Err(Error::new("--mount", v, reason));
        }
        mounts.push(mount);
    }
    Ok(mounts)
}

/// `PREFIX=APP`, the prefix normalised to have no trailing `/` (but `/`).
fn parse_mount(s: &str) -> Result<Mount, String> {
    let (prefix, app) = s
        .rsplit_once('=')
        .ok_or("expected PREFIX=APP, e.g. /echo=echo")?;
    if !prefix.starts_with('/') {
        return Err(format!("the prefix {prefix:?} must start with '/'"));
    }
    if prefix.contains(['?', '#']) || prefix.contains(char::is_whitespace) {
        return Err(format!(
            "the prefix {prefix:?} must be a plain path, without '?', '#' or spaces"
        ));
    }
    if !crate::apps::is_known(app) {
        let known = crate::apps::NAMES.join(", ");
        return Err(format!("unknown app {app:?} (known: {known})"));
    }
    let trimmed = prefix.trim_end_matches('/');
    Ok(Mount {
        prefix: if trimmed.is_empty() { "/" } else { trimmed }.to_string(),
        app: app.to_string(),
    })
}

/// `N` (1 to 1024) or `auto` (the number of CPUs).
fn parse_processes(s: &str) -> Result<usize, String> {
    match s {
        "auto" => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
        _ => to_usize(within(1, 1024)(s)?),
    }
}

/// An octal file mode: `660`, `0660`, `0o660`.
fn parse_socket_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    let octal = !digits.is_empty()
        && digits.len() <= 5
        && digits.bytes().all(|b| (b'0'..=b'7').contains(&b));
    let mode = u32::from_str_radix(digits, 8).ok().filter(|_| octal);
    match mode {
        None => Err("expected an octal mode like 660 or 0660".into()),
        Some(m) if m > 0o7777 => Err("mode above 7777".into()),
        Some(m) => Ok(m),
    }
}

/// `USER[:GROUP]`, each a name or a number that resolves here.
fn parse_socket_owner(s: &str) -> Result<(String, Option<String>), String> {
    const EXPECTED: &str = "expected USER or USER:GROUP";
    let (user, group) = match s.split_once(':') {
        None => (parse_name(s).map_err(|_| EXPECTED)?, None),
        Some((u, g)) => (
            parse_name(u).map_err(|_| EXPECTED)?,
            Some(parse_name(g).map_err(|_| EXPECTED)?),
        ),
    };
    privileges::resolve_user(&user).map_err(|e| format!("user {user:?}: {e}"))?;
    if let Some(g) = &group {
        privileges::resolve_group(g).map_err(|e| format!("group {g:?}: {e}"))?;
    }
    Ok((user, group))
}

/// `--user`: a name or uid that exists here.
fn parse_user(s: &str) -> Result<String, String> {
    let name = parse_name(s)?;
    privileges::resolve_user(&name)?;
    Ok(name)
}

/// `--group`: a name or gid that exists here.
fn parse_group(s: &str) -> Result<String, String> {
    let name = parse_name(s)?;
    privileges::resolve_group(&name)?;
    Ok(name)
}

/// A user or group name or number.
fn parse_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.contains([':', '\0']) || s.contains(char::is_whitespace) {
        return Err("expected a user or group name".into());
    }
    Ok(s.to_string())
}

/// A file or directory path.
fn parse_path(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() || s.contains('\0') {
        return Err("expected a path".into());
    }
    Ok(PathBuf::from(s))
}

/// `ADDR/LEN` or a bare address (one host). Public (in the hidden `cli`
/// module) for the fuzz targets only.
pub fn parse_cidr(s: &str) -> Result<Cidr, String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| "expected an address or network like 10.0.0.0/8 or fd00::/8")?;
    let width: u8 = if addr.is_ipv4() { 32 } else { 128 };
    let prefix_len = match len {
        None => width,
        Some(l) => within(0, u64::from(width))(l)
            .ok()
            .and_then(|n| u8::try_from(n).ok())
            .ok_or_else(|| format!("prefix length must be 0 to {width}"))?,
    };
    Ok(Cidr::new(addr, prefix_len))
}

fn parse_cgi_stderr(s: &str) -> Result<CgiStderr, String> {
    match s {
        "log" => Ok(CgiStderr::Log),
        "fastcgi" => Ok(CgiStderr::FastCgi),
        "both" => Ok(CgiStderr::Both),
        _ => Err("expected log, fastcgi or both".into()),
    }
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err("expected text or json".into()),
    }
}

/// `-` is stdout, anything else a file.
fn parse_log_target(s: &str) -> Result<LogTarget, String> {
    match s {
        "-" => Ok(LogTarget::Stdout),
        path => parse_path(path).map(LogTarget::File),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    /// `fastgate serve` alone, to run the real clap definitions.
    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn config(argv: &[&str]) -> Result<Config, Error> {
        let argv = std::iter::once("serve").chain(argv.iter().copied());
        Serve::try_parse_from(argv)
            .expect("clap accepts")
            .args
            .into_config()
    }

    fn error(argv: &[&str]) -> String {
        config(argv).expect_err("should be refused").to_string()
    }

    #[test]
    fn durations() {
        let ok =
            |s: &str, ms: u64| assert_eq!(parse_duration(s), Ok(Duration::from_millis(ms)), "{s}");
        ok("0", 0);
        ok("500ms", 500);
        ok("30s", 30_000);
        ok("5m", 300_000);
        ok("1h", 3_600_000);
        ok("0s", 0);
        for bad in [
            "",
            "5",
            "5x",
            "ms",
            "-1s",
            "1.5s",
            "5 s",
            "s5",
            "99999999999999999999s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_duration("18446744073709551615h"),
            Err("duration too long".into())
        );
    }

    #[test]
    fn sizes() {
        let ok = |s: &str, n: u64| assert_eq!(parse_size(s), Ok(n), "{s}");
        ok("0", 0);
        ok("1023", 1023);
        ok("64k", 65_536);
        ok("64K", 65_536);
        ok("10m", 10 << 20);
        ok("2G", 2 << 30);
        ok("0k", 0);
        for bad in ["", "k", "-1", "1.5m", "10 m", "10mb", "10KiB", "1t", "m10"] {
            assert_eq!(
                parse_size(bad),
                Err("expected a size like 65536, 64k, 10m or 1g".into()),
                "{bad:?}"
            );
        }
        assert_eq!(parse_size("17179869184g"), Err("size too large".into()));
        assert_eq!(
            parse_size("99999999999999999999"),
            Err("size too large".into())
        );
        let c = config(&["--max-body-bytes", "10m", "--max-params-bytes", "64k"]).unwrap();
        assert_eq!((c.max_body_bytes, c.max_params_bytes), (10 << 20, 64 << 10));
        assert_eq!(
            error(&["--max-params-bytes", "1000"]),
            r#"--max-params-bytes "1000": must be at least 1024 bytes (1k)"#
        );
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = config(&[]).unwrap();
        assert!(c.listen.is_empty() && c.mounts.is_empty());
        assert_eq!((c.min_threads, c.max_threads, c.queue), (2, 32, 1024));
        assert_eq!(
            (c.max_conns, c.max_reqs, c.max_params_bytes),
            (10_000, 128, 131_072)
        );
        assert_eq!(c.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.request_timeout, None);
        assert_eq!(c.body_timeout, Some(Duration::from_secs(60)));
        assert_eq!(c.send_timeout, Some(Duration::from_secs(60)));
        assert_eq!(c.processes, 1);
    }

    #[test]
    fn every_option_is_read() {
        let c = config(&[
            "-l",
            "127.0.0.1:0",
            "--listen",
            "scgi:/tmp/a.sock",
            "-m",
            "/status/=ping",
            "--mount",
            "/=hello",
            "--cgi-root",
            "/srv/cgi",
            "--cgi-allow-root",
            "-p",
            "1",
            "--min-threads",
            "1",
            "--max-threads",
            "4",
            "--queue",
            "7",
            "--max-conns",
            "9",
            "--max-reqs",
            "65535",
            "--max-requests",
            "100",
            "--max-params-bytes",
            "1024",
            "--max-body-bytes",
            "5",
            "--idle-timeout",
            "1s",
            "--header-timeout",
            "2s",
            "--request-timeout",
            "3s",
            "--body-timeout",
            "0",
            "--send-timeout",
            "4s",
            "--shutdown-timeout",
            "0",
            "--slow-threshold",
            "250ms",
            "--cgi-stderr",
            "both",
            "--socket-mode",
            "0660",
            "--socket-owner",
            "www-data:nogroup",
            "-u",
            "nobody",
            "-g",
            "nogroup",
            "--pidfile",
            "/run/f.pid",
            "--allow-from",
            "10.0.0.0/8,::1",
            "--allow-uid",
            "0,33",
            "--allow-gid",
            "33",
            "--access-log",
            "-",
            "--log-format",
            "json",
            "--error-log",
            "/var/log/f.log",
        ])
        .unwrap();
        assert_eq!(c.listen.len(), 2);
        assert_eq!(
            c.mounts[0],
            Mount {
                prefix: "/status".into(),
                app: "ping".into()
            }
        );
        assert_eq!(c.cgi_roots, [PathBuf::from("/srv/cgi")]);
        assert!(c.cgi_allow_root);
        assert_eq!(
            (c.min_threads, c.max_threads, c.queue, c.max_conns),
            (1, 4, 7, 9)
        );
        assert_eq!(
            (c.max_reqs, c.max_requests, c.max_params_bytes),
            (65_535, 100, 1024)
        );
        assert_eq!(c.max_body_bytes, 5);
        assert_eq!(c.header_timeout, Duration::from_secs(2));
        assert_eq!(c.request_timeout, Some(Duration::from_secs(3)));
        assert_eq!(c.body_timeout, None);
        assert_eq!(c.send_timeout, Some(Duration::from_secs(4)));
        assert_eq!(c.shutdown_timeout, Duration::ZERO);
        assert_eq!(c.slow_threshold, Some(Duration::from_millis(250)));
        assert_eq!(c.cgi_stderr, CgiStderr::Both);
        assert_eq!(c.socket_mode, Some(0o660));
        assert_eq!(
            c.socket_owner,
            Some(("www-data".into(), Some("nogroup".into())))
        );
        assert_eq!(
            (c.user.as_deref(), c.group.as_deref()),
            (Some("nobody"), Some("nogroup"))
        );
        assert_eq!(c.allow_from.len(), 2);
        assert_eq!((c.allow_uid, c.allow_gid), (vec![0, 33], vec![33]));
        assert_eq!(c.access_log, Some(LogTarget::Stdout));
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.error_log, Some(PathBuf::from("/var/log/f.log")));
    }

    #[test]
    fn errors_name_flag_and_value() {
        assert_eq!(
            error(&["--idle-timeout", "5x"]),
            r#"--idle-timeout "5x": expected a duration like 500ms, 30s or 5m"#
        );
        assert_eq!(
            error(&["--max-threads", "0"]),
            r#"--max-threads "0": must be at least 1"#
        );
        assert_eq!(
            error(&["--max-reqs", "65536"]),
            r#"--max-reqs "65536": must be between 1 and 65535"#
        );
        for (flag, value) in [
            ("--queue", "0"),
            ("--max-conns", "0"),
            ("--max-reqs", "0"),
            ("--max-params-bytes", "1023"),
            ("--min-threads", "0"),
            ("--queue", "1k"),
            ("--max-body-bytes", "99999999999999999999999"),
            ("--header-timeout", "0"),
            ("--idle-timeout", "0"),
            ("--cgi-stderr", "syslog"),
            ("--log-format", "xml"),
            ("--socket-mode", "888"),
            ("--socket-mode", "17777"),
            ("--socket-mode", ""),
            ("--socket-owner", "www:"),
            ("--socket-owner", ":web"),
            ("--user", ""),
            ("--allow-from", "10.0.0.0/33"),
            ("--allow-from", "::/129"),
            ("--allow-from", "example.com"),
            ("--allow-uid", "root"),
            ("--allow-gid", "4294967296"),
            ("--processes", "0"),
            ("--processes", "many"),
            ("--pidfile", ""),
        ] {
            let e = config(&[flag, value]).expect_err(value);
            assert_eq!((e.flag.as_str(), e.value.as_str()), (flag, value));
        }
    }

    #[test]
    fn negative_numbers_are_refused() {
        assert_eq!(
            error(&["--queue=-1"]),
            r#"--queue "-1": expected a whole number"#
        );
    }

    #[test]
    fn a_value_starting_with_a_hyphen_is_the_flags_value() {
        let cmd = Serve::command();
        // `--cgi-allow-root` takes its value only after '='.
        let takes_next =
            |a: &&clap::Arg| a.get_action().takes_values() && !a.is_require_equals_set();
        let longs = cmd.get_arguments().filter(takes_next);
        for long in longs.filter_map(|a| a.get_long()) {
            let flag = format!("--{long}");
            let argv = ["serve", &flag, "-3"];
            let args = Serve::try_parse_from(argv).unwrap_or_else(|e| panic!("{flag}: {e}"));
            if let Err(e) = args.args.into_config() {
                assert_eq!((e.flag.as_str(), e.value.as_str()), (flag.as_str(), "-3"));
            }
        }
        assert_eq!(
            error(&["--max-reqs", "-3"]),
            r#"--max-reqs "-3": expected a whole number"#
        );
    }

    #[test]
    fn thread_bounds() {
        assert_eq!(
            error(&["--min-threads", "8", "--max-threads", "4"]),
            r#"--max-threads "4": must be at least --min-threads (8)"#
        );
        assert_eq!(
            error(&["--min-threads", "40"]),
            r#"--min-threads "40": must be at most --max-threads (32)"#
        );
        let c = config(&["--max-threads", "1"]).unwrap();
        assert_eq!((c.min_threads, c.max_threads), (1, 1));
    }

    #[test]
    fn listen_specs() {
        assert!(
            error(&["--listen", "ftp://x"]).starts_with(r#"--listen "ftp://x": unknown scheme"#)
        );
        assert_eq!(
            error(&["-l", "127.0.0.1:9000", "-l", "127.0.0.1:9000"]),
            r#"--listen "127.0.0.1:9000": listed twice"#
        );
    }

    #[test]
    fn mounts() {
        let m = |s: &str| parse_mount(s).map(|m| (m.prefix, m.app));
        assert_eq!(m("/=hello"), Ok(("/".into(), "hello".into())));
        assert_eq!(m("//=hello"), Ok(("/".into(), "hello".into())));
        assert_eq!(m("/echo/=echo"), Ok(("/echo".into(), "echo".into())));
        assert_eq!(m("/a=b=env"), Ok(("/a=b".into(), "env".into())));
        let no_app = m("hello").unwrap_err();
        assert!(no_app.contains("PREFIX=APP"), "{no_app}");
        let example = no_app.rsplit('=').next().unwrap_or_default();
        assert!(crate::apps::is_known(example), "a real app: {no_app}");
        assert!(m("nope=hello").unwrap_err().contains("must start with '/'"));
        assert!(m("/x?y=hello").is_err());
        let unknown = m("/=nope").unwrap_err();
        assert!(
            unknown.contains("\"nope\"") && unknown.contains("hello, echo"),
            "{unknown}"
        );
        assert_eq!(
            error(&["-m", "/x=echo", "-m", "/x/=env"]),
            r#"--mount "/x/=env": prefix "/x" is mounted twice"#
        );
    }

    #[test]
    fn processes_take_a_count_or_auto() {
        assert_eq!(config(&["-p", "1"]).unwrap().processes, 1);
        assert_eq!(config(&["-p", "4"]).unwrap().processes, 4);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(config(&["-p", "auto"]).unwrap().processes, cpus);
        assert!(error(&["-p", "0"]).contains("between 1 and 1024"));
    }

    #[test]
    fn socket_modes() {
        assert_eq!(parse_socket_mode("660"), Ok(0o660));
        assert_eq!(parse_socket_mode("0660"), Ok(0o660));
        assert_eq!(parse_socket_mode("0o600"), Ok(0o600));
        assert_eq!(parse_socket_mode("7777"), Ok(0o7777));
        assert_eq!(parse_socket_mode("07777"), Ok(0o7777));
        assert!(parse_socket_mode("+660").is_err());
        assert!(parse_socket_mode("0o").is_err());
    }

    #[test]
    fn socket_owners() {
        assert_eq!(parse_socket_owner("root"), Ok(("root".into(), None)));
        assert_eq!(
            parse_socket_owner("33:33"),
            Ok(("33".into(), Some("33".into())))
        );
        assert!(parse_socket_owner("a:b:c").is_err());
    }

    #[test]
    fn cidrs() {
        let c = |s: &str| parse_cidr(s).unwrap();
        assert_eq!(c("10.1.2.3/8"), Cidr::new("10.0.0.0".parse().unwrap(), 8));
        assert_eq!(c("127.0.0.1").prefix_len, 32);
        assert_eq!(c("::1").prefix_len, 128);
        assert_eq!(c("0.0.0.0/0").prefix_len, 0);
        assert!(c("0.0.0.0/0").contains("203.0.113.9".parse().unwrap()));
        assert!(!c("0.0.0.0/0").contains("::2".parse().unwrap()));
        assert!(c("fd00::/8").contains("fd12::1".parse().unwrap()));
        assert!(!c("fd00::/8").contains("fe80::1".parse().unwrap()));
        assert!(c("127.0.0.1").contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!c("127.0.0.1").contains("127.0.0.2".parse().unwrap()));
        assert!(c("::/0").contains("::1".parse().unwrap()));
        for bad in [
            "10.0.0.0/",
            "10.0.0.0/x",
            "10.0.0.0/33",
            "::1/200",
            "10.0.0/8",
            "",
        ] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn small_enums() {
        assert_eq!(parse_cgi_stderr("fastcgi"), Ok(CgiStderr::FastCgi));
        assert_eq!(parse_log_format("text"), Ok(LogFormat::Text));
        assert_eq!(
            parse_log_target("/x.log"),
            Ok(LogTarget::File("/x.log".into()))
        );
    }

    #[test]
    fn list_items_are_trimmed_and_empty_ones_skipped() {
        let c = config(&["-l", "127.0.0.1:1, /a.sock,", "-m", " /=hello ,,/e=echo"]).unwrap();
        assert_eq!(c.listen.len(), 2);
        assert_eq!(c.listen[1].to_string(), "/a.sock");
        assert_eq!(c.mounts.len(), 2);
        let c = config(&["--allow-uid", "0, 33", "--allow-from", " ::1 "]).unwrap();
        assert_eq!((c.allow_uid, c.allow_from.len()), (vec![0, 33], 1));
        let c = config(&["--cgi-root", "/a, /b", "--allow-gid", "1 ,2"]).unwrap();
        assert_eq!((c.cgi_roots.len(), c.allow_gid), (2, vec![1, 2]));
        assert_eq!(
            error(&["-l", " , "]),
            r#"--listen " , ": empty: give one value, or several separated by commas"#
        );
        assert!(error(&["--allow-uid", ""]).starts_with(r#"--allow-uid "": empty"#));
    }

    #[test]
    fn a_set_but_empty_variable_is_refused() {
        let matches = |argv: &[&str]| {
            let argv = std::iter::once("serve").chain(argv.iter().copied());
            Serve::command().try_get_matches_from(argv).unwrap()
        };
        let env = |value: &'static str| {
            move |name: &str| (name == "FASTGATE_LISTEN").then(|| OsString::from(value))
        };
        let err = check_env(&matches(&[]), env("")).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"--listen "" (from FASTGATE_LISTEN): set but empty: give FASTGATE_LISTEN a value, or unset it"#
        );
        assert!(check_env(&matches(&[]), env(" , ")).is_err());
        assert!(check_env(&matches(&[]), env("127.0.0.1:1")).is_ok());
        assert!(check_env(&matches(&["-l", "127.0.0.1:1"]), env("")).is_ok());
        assert!(check_env(&matches(&[]), |_| None).is_ok());
    }

    #[test]
    fn cgi_allow_root_is_a_switch_or_a_boolean() {
        assert!(!config(&[]).unwrap().cgi_allow_root);
        assert!(config(&["--cgi-allow-root"]).unwrap().cgi_allow_root);
        assert!(config(&["--cgi-allow-root=yes"]).unwrap().cgi_allow_root);
        assert!(!config(&["--cgi-allow-root=FALSE"]).unwrap().cgi_allow_root);
        assert_eq!(
            error(&["--cgi-allow-root=maybe"]),
            r#"--cgi-allow-root "maybe": expected true or false (or yes/no, on/off, 1/0)"#
        );
        // A switch: the next word is not its value.
        let argv = ["serve", "--cgi-allow-root", "no"];
        assert!(Serve::try_parse_from(argv).is_err());
    }

    #[test]
    fn env_names() {
        assert_eq!(env_name("--max-reqs"), "FASTGATE_MAX_REQS");
        assert_eq!(env_name("--listen"), "FASTGATE_LISTEN");
    }
}
