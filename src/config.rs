//! The resolved configuration of `fastgate serve`: every option of the
//! interface contract as a typed value. `src/main.rs` fills it from clap and
//! the `FASTGATE_*` environment; the parsers here check each value and name
//! the flag on error.

use std::path::PathBuf;
use std::time::Duration;

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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CgiStderr {
    #[default]
    Log,
    FastCgi,
    Both,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `--access-log PATH|-`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    File(PathBuf),
}

/// An IPv4 or IPv6 network for `--allow-from`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: std::net::IpAddr,
    pub prefix_len: u8,
}

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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: Vec::new(),
            mounts: Vec::new(),
            cgi_roots: Vec::new(),
            cgi_allow_root: false,
            processes: 1,
            min_threads: 2,
            max_threads: 32,
            queue: 1024,
            max_conns: 10_000,
            max_reqs: 128,
            max_requests: 0,
            max_params_bytes: 131_072,
            max_body_bytes: 0,
            idle_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            request_timeout: None,
            shutdown_timeout: Duration::from_secs(30),
            slow_threshold: None,
            cgi_stderr: CgiStderr::Log,
            socket_mode: None,
            socket_owner: None,
            user: None,
            group: None,
            pidfile: None,
            allow_from: Vec::new(),
            allow_uid: Vec::new(),
            allow_gid: Vec::new(),
            access_log: None,
            log_format: LogFormat::Text,
            error_log: None,
        }
    }
}
