//! What a server is asked to do, typed and already checked: listeners,
//! limits, timeouts, the Unix socket files it creates, the user it drops
//! to, who may connect, the access log and temporary files. The server owns
//! these options; the command line (`fastgate serve`) is one way to fill
//! them, a program using the library another.

use std::path::PathBuf;
use std::time::Duration;

use super::peer_filter::Cidr;
use crate::spec::ListenSpec;

/// Everything a [`Server`](super::Server) needs besides its handlers.
/// The defaults are those of `fastgate serve`.
///
/// ```
/// use std::time::Duration;
/// let mut options = fastgate::Options::default();
/// options.max_threads = 8;
/// options.idle_timeout = Duration::from_secs(5);
/// assert_eq!(options.queue, 1024);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Options {
    /// Where to listen. Empty: fd 0 if it is a listening socket, else
    /// systemd's `LISTEN_FDS`, else `fastcgi://127.0.0.1:9000`.
    pub listen: Vec<ListenSpec>,
    /// Worker threads kept (2).
    pub min_threads: usize,
    /// Worker threads at most (32).
    pub max_threads: usize,
    /// Requests waiting for a worker before new ones get 503 (1024).
    pub queue: usize,
    /// Connections before accepting pauses (10000).
    pub max_conns: usize,
    /// Concurrent requests per FastCGI connection, FCGI_MAX_REQS (128).
    pub max_reqs: usize,
    /// Total size of one request's params; past it 431 (128 KiB).
    pub max_params_bytes: usize,
    /// Request body limit, 413 past it; 0: none (0).
    pub max_body_bytes: u64,
    /// A kept-alive connection with no request in flight is closed (60 s).
    pub idle_timeout: Duration,
    /// Time allowed for a request's params to arrive (10 s).
    pub header_timeout: Duration,
    /// From dispatch to the end of the response; None: no limit (None).
    pub request_timeout: Option<Duration>,
    /// The longest pause in a request body; None: no limit (60 s).
    pub body_timeout: Option<Duration>,
    /// How long pending output may go untaken; None: no limit (60 s).
    pub send_timeout: Option<Duration>,
    /// How long a graceful stop waits for requests in flight (30 s).
    pub shutdown_timeout: Duration,
    /// Requests slower than this are counted and logged as slow (None).
    pub slow_threshold: Option<Duration>,
    /// Mode of the Unix socket files created; None: 0660.
    pub socket_mode: Option<u32>,
    /// Owner of the Unix socket files created, `USER[:GROUP]` as names or
    /// numbers; None: the user and group dropped to, else the running user.
    pub socket_owner: Option<(String, Option<String>)>,
    /// The user to drop to once the listeners are bound.
    pub user: Option<String>,
    /// The group to drop to once the listeners are bound.
    pub group: Option<String>,
    /// Where to write the process id (removed at exit).
    pub pidfile: Option<PathBuf>,
    /// TCP peers outside every listed network are refused; empty: none is.
    pub allow_from: Vec<Cidr>,
    /// Unix-socket peers whose uid matches none of these (nor of
    /// `allow_gid`) are refused; both empty: none is.
    pub allow_uid: Vec<u32>,
    /// Unix-socket peers whose gid matches none of these (nor of
    /// `allow_uid`) are refused; both empty: none is.
    pub allow_gid: Vec<u32>,
    /// Where the access log goes, one line per request; None: no log.
    pub access_log: Option<LogTarget>,
    /// The access log's line format.
    pub log_format: LogFormat,
    /// Bytes all temporary files together may hold: spooled bodies, held
    /// output (4 GiB).
    pub max_temp_bytes: u64,
    /// Where temporary files go; None: `$TMPDIR`, else `/tmp`.
    pub temp_dir: Option<PathBuf>,
}

/// The access log's line format (`--log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Space-separated fields.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Where the access log goes (`--access-log PATH|-`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogTarget {
    /// Standard output (`-`).
    Stdout,
    /// A file, appended to and reopened on USR1.
    File(PathBuf),
}

impl Default for Options {
    fn default() -> Self {
        Options {
            listen: Vec::new(),
            min_threads: 2,
            max_threads: 32,
            queue: 1024,
            max_conns: 10_000,
            max_reqs: 128,
            max_params_bytes: 131_072,
            max_body_bytes: 0,
            idle_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            request_timeout: None,
            body_timeout: Some(Duration::from_secs(60)),
            send_timeout: Some(Duration::from_secs(60)),
            shutdown_timeout: Duration::from_secs(30),
            slow_threshold: None,
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
            max_temp_bytes: 4 << 30,
            temp_dir: None,
        }
    }
}
