//! Binary upgrade (USR2) as the old master runs it: the binary on disk is
//! started again (a new version, same arguments) with the listening
//! sockets left open for it and a pipe to say when its children serve.
//! Until then the old master and its children go on serving: the sockets
//! are shared, so no connection is refused. Then the old master hands its
//! socket files and pidfile over and stops its children gracefully; if the
//! new binary fails (exits, or stays silent too long), the old master
//! keeps serving and says why.

use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::unistd::{execv, fork, pipe2, ForkResult, Pid};

use crate::server::upgrade::{FDS_VAR, READY_VAR};

/// How long the new binary may take until its children serve.
pub const READY_WITHIN: Duration = Duration::from_secs(30);

/// What the old master started, and where to hear from it.
pub struct Upgrade {
    pub pid: Pid,
    /// The new master writes a byte here once its children serve.
    pub ready: OwnedFd,
    pub deadline: Instant,
}

/// The binary and arguments this master was started with, for USR2.
#[derive(Clone, Debug)]
pub struct Exe {
    path: PathBuf,
    args: Vec<OsString>,
}

impl Exe {
    /// Read at the master's start, before anyone replaces the file (the
    /// path as started: what a package upgrade replaces).
    pub fn of_this_process() -> Option<Exe> {
        let path = std::env::current_exe().ok()?;
        let mut args: Vec<OsString> = std::env::args_os().collect();
        *args.first_mut()? = path.clone().into_os_string();
        Some(Exe { path, args })
    }
}

/// Starts the binary on disk with `fds` inherited; the caller keeps
/// serving until the new master says it is ready.
pub fn start(exe: &Exe, fds: &[RawFd]) -> Result<Upgrade, String> {
    let path = cstring(exe.path.as_os_str().as_bytes())?;
    let args = exe
        .args
        .iter()
        .map(|a| cstring(a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    let (ready_r, ready_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let env = [
        (FDS_VAR, join(fds)),
        (READY_VAR, ready_w.as_raw_fd().to_string()),
    ];
    // SAFETY: the master runs no other thread; the child only clears
    // close-on-exec flags, sets two variables and executes.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => exec_new(&path, &args, fds, &ready_w, &env),
        ForkResult::Parent { child } => Ok(Upgrade {
            pid: child,
            ready: ready_r,
            deadline: Instant::now() + READY_WITHIN,
        }),
    }
}

fn exec_new(
    path: &CString,
    args: &[CString],
    fds: &[RawFd],
    ready: &OwnedFd,
    env: &[(&str, String)],
) -> ! {
    for fd in fds.iter().copied().chain([ready.as_raw_fd()]) {
        let _ = fcntl(
            // SAFETY: the fd is open in this process (a listening socket
            // of the master, or the pipe made just above).
            unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
            FcntlArg::F_SETFD(FdFlag::empty()),
        );
    }
    for (k, v) in env {
        std::env::set_var(k, v);
    }
    let err = execv(path, args).err();
    log::error!(
        "USR2: cannot execute {}: {}",
        path.to_string_lossy(),
        err.map_or_else(String::new, |e| e.to_string())
    );
    // SAFETY: ends the failed child at once, without the master's
    // destructors (they belong to the master).
    unsafe { nix::libc::_exit(127) }
}

fn cstring(bytes: &[u8]) -> Result<CString, String> {
    CString::new(bytes).map_err(|_| "a NUL byte in the command line".to_string())
}

fn join(fds: &[RawFd]) -> String {
    fds.iter()
        .map(|f| f.to_string())
        .collect::<Vec<_>>()
        .join(",")
}
